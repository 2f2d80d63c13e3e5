"""posts.enriched -> posts.scored (+ mood metrics, + mood-shift signals).

Scoring runs in the pipeline's executor (torch releases the GIL), batched with
``take_events``; each post's mood is counted once per post id (the store's
``first_seen``), so re-delivery never double-counts; outputs are keyed by post id.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from faust import StreamT

    from streams.app import Pipeline


TICK_S = 5.0


def register(pipeline: Pipeline) -> None:
    settings = pipeline.settings

    @pipeline.app.agent(pipeline.enriched_topic, name="crowdwatch.sentiment")
    async def sentiment(stream: StreamT) -> None:
        take_events = stream.take_events  # type: ignore[attr-defined]
        # as many as the other stages take (batch_size): with a backlog the fixed costs of a
        # batch (a Redis round trip, waiting for Kafka's acknowledgement) are spread over
        # more posts, so the stage catches up instead of queueing; without one a batch is
        # what arrives within batch_within
        take = max(settings.batch_size, settings.sentiment_batch_size * 4)
        async for events in take_events(take, settings.batch_within):
            started = time.monotonic()
            batch = await pipeline.score([e.message.value for e in events])
            fresh = await pipeline.store.first_seen(pipeline.event_name, "mood",
                                                    [r.id for r in batch.rows])
            signals = pipeline.observe_mood(batch, fresh)
            await pipeline.emit([*batch.outputs, *signals])
            pipeline.mood_metrics.batch_seconds.observe(time.monotonic() - started)

    @pipeline.app.timer(interval=TICK_S, name="crowdwatch.sentiment.tick")
    async def mood_tick() -> None:
        # a quiet stream: mood shifts of areas nobody posts about end (Pipeline.mood_tick)
        await pipeline.emit(pipeline.mood_tick())
