"""posts.raw -> posts.enriched (+ posts.deadletter).

Batches with ``stream.take_events`` and runs the CPU work in the pipeline's
executor, so the event loop keeps serving heartbeats, commits and /metrics.
At-least-once: a batch's events are acknowledged only after its outputs are
delivered; outputs are keyed by post id and the store counts each id once, so
re-delivery after a crash or rebalance re-sends outputs but never double-counts.
Authors are pseudonymised by the pipeline's processor (``streams.batch``, on unless
``CROWDWATCH_PSEUDONYMISE_AUTHORS=false``): no raw author id or handle reaches
``posts.enriched``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from models.enrich import RawRecord

if TYPE_CHECKING:
    from faust import StreamT

    from streams.app import Pipeline


def _source(event: Any) -> dict[str, Any]:
    msg = event.message
    return {"topic": msg.topic, "partition": msg.partition, "offset": msg.offset}


def register(pipeline: Pipeline) -> None:
    settings = pipeline.settings

    @pipeline.app.agent(pipeline.raw_topic, name="crowdwatch.enrich",
                        concurrency=settings.agent_concurrency)
    async def enrich(stream: StreamT) -> None:
        # take_events is on faust's Stream but not on its StreamT protocol
        take_events = stream.take_events  # type: ignore[attr-defined]
        async for events in take_events(settings.batch_size, settings.batch_within):
            started = time.monotonic()
            records = [RawRecord(e.message.value, _source(e)) for e in events]
            batch = await pipeline.process(records)
            fresh = await pipeline.record_state(batch.posts)
            await pipeline.emit(batch.outputs)
            pipeline.observe(batch, fresh, records, [e.message.timestamp for e in events], started)
