"""posts.claims -> clusters.events (+ cluster snapshots in the store, + rumour metrics).

Thin: decode and track in the rumour stage's own thread (clustering, stance, claim
prior, rumour score: ``models``), then write snapshots, metrics and events. The claims
topic has one partition by default, so exactly one worker holds the event's clusters
(see docs/architecture.md). At-least-once: re-delivered posts return their first
assignment and change no count; events are keyed by cluster id. A worker that starts, or
takes the partition over, first rebuilds the clusters and reach from the topic
(``streams.recovery``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streams.recovery import ClaimsRecovery

if TYPE_CHECKING:
    from faust import StreamT

    from streams.app import Pipeline

TICK_S = 5.0


def register(pipeline: Pipeline) -> None:
    settings = pipeline.settings
    stage = pipeline.rumours
    if stage is None:  # pragma: no cover - only registered with a stage
        return

    recovery = ClaimsRecovery(stage, settings, registry=pipeline.registry)

    @pipeline.app.agent(pipeline.claims_topic, name="crowdwatch.rumours")
    async def rumours(stream: StreamT) -> None:
        take_events = stream.take_events  # type: ignore[attr-defined]
        async for events in take_events(settings.batch_size, settings.batch_within):
            # a start or a take-over: rebuild the clusters and reach first (streams.recovery)
            firsts: dict[int, int] = {}
            for e in events:
                firsts.setdefault(e.message.partition, e.message.offset)
            for partition, offset in sorted(firsts.items()):
                await recovery.prepare(partition, offset)
            outputs = await stage.process([e.message.value for e in events])
            await pipeline.emit(outputs)
            for e in events:
                recovery.processed(e.message.partition, e.message.offset)
                # the stall watchdog of a rumour process watches posts.claims
                pipeline.processed[(e.message.topic, e.message.partition)] = e.message.offset

    @pipeline.app.timer(interval=TICK_S, name="crowdwatch.rumours.tick")
    async def rumour_tick() -> None:
        await pipeline.emit(await stage.tick())
