"""posts.claims -> clusters.events (+ cluster snapshots in the store, + rumour metrics).

Thin: decode and track in the rumour stage's own thread (clustering, stance, claim
prior, rumour score: ``models``), then write snapshots, metrics and events. The claims
topic has one partition by default, so exactly one worker holds the event's clusters
(see docs/architecture.md). At-least-once: re-delivered posts return their first
assignment and change no count; events are keyed by cluster id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from faust import StreamT

    from streams.app import Pipeline

TICK_S = 5.0


def register(pipeline: Pipeline) -> None:
    settings = pipeline.settings
    stage = pipeline.rumours
    if stage is None:  # pragma: no cover - only registered with a stage
        return

    @pipeline.app.agent(pipeline.claims_topic, name="crowdwatch.rumours")
    async def rumours(stream: StreamT) -> None:
        take_events = stream.take_events  # type: ignore[attr-defined]
        async for events in take_events(settings.batch_size, settings.batch_within):
            outputs = await stage.process([e.message.value for e in events])
            await pipeline.emit(outputs)

    @pipeline.app.timer(interval=TICK_S, name="crowdwatch.rumours.tick")
    async def rumour_tick() -> None:
        await pipeline.emit(await stage.tick())
