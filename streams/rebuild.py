"""Rebuild the state Redis lost, from Kafka.

Redis in the local stack runs without persistence, and a production Redis can be flushed,
fail over to an empty replica or evict keys. The counts per area/topic/keyword/language are
an aggregate of ``posts.enriched``, which Kafka keeps for its retention, so they can always be
recomputed: every enriched post goes through :meth:`StateStore.record_batch` again, which
counts each post id once. Because that call is idempotent, a rebuild may run while the live
agents keep writing, and two rebuilds (two workers) cannot double-count.

How a worker notices the loss: :meth:`StateStore.claim_state` sets the event's marker key
(``cw:{event}:state``) if it is missing. A worker checks it at start and every few seconds;
the one that finds it missing (``SET NX`` succeeds for exactly one) rebuilds. At the very
first start of an event the marker is missing too: the rebuild then reads an empty or short
topic and costs nothing.

What is rebuilt: the counts and per-minute counts (from ``posts.enriched``) and the mood
stage's "already counted" markers (from ``posts.scored``), so re-delivered posts are not
counted twice in the mood metrics. Claim clusters, reach and the webcare queue are held in
the memory of the rumour stage and written back by it on its next batch or tick (see
``streams.rumours``); official accounts added with ``crowdwatch official add`` exist only in
Redis and must be added again after a loss (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge

from models.enrich import SAFETY_TEXT_CHARS, PostSummary, minute_bucket
from streams.settings import Settings
from streams.state import StateStore

log = logging.getLogger(__name__)

CHECK_EVERY_S = 5.0
CHUNK = 2_000


def summary_from_enriched(value: bytes | None, timestamp_ms: int | None) -> PostSummary | None:
    """The :class:`PostSummary` of one ``posts.enriched`` record (what the enrich stage
    counted), or None for a record that is not an enriched post. ``timestamp_ms`` (the Kafka
    record's time) stands in for the processing time of posts without ``created_at``."""
    d = _record(value)
    if d is None:
        return None
    pid = d["id"]
    now = (timestamp_ms or 0) / 1000.0 or time.time()
    created = d.get("created_at")
    safety = d.get("safety")
    category = safety.get("category") if isinstance(safety, Mapping) else None
    raw_kind, raw_text = d.get("kind"), d.get("text")
    kind = raw_kind if isinstance(raw_kind, str) else "post"
    text = raw_text if isinstance(raw_text, str) else ""
    platform = d.get("platform")
    return PostSummary(
        id=pid,
        minute=minute_bucket(created if isinstance(created, str) else None, now),
        lang=str(d.get("lang") or "und"),
        platform=platform if isinstance(platform, str) else None,
        areas=_strings(d.get("areas")),
        topics=_strings(d.get("topics")),
        keywords=_strings(d.get("keywords")),
        kind=kind,
        safety=category if isinstance(category, str) else None,
        safety_text=text[:SAFETY_TEXT_CHARS] if isinstance(category, str) else None,
    )


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str))


def scored_id(value: bytes | None) -> str | None:
    """The post id of one ``posts.scored`` record, or None."""
    d = _record(value)
    return None if d is None else str(d["id"])


def _record(value: bytes | None) -> dict[str, Any] | None:
    """A JSON object with a non-empty string ``id``, or None."""
    if not value:
        return None
    try:
        d = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(d, dict):
        return None
    pid = d.get("id")
    return d if isinstance(pid, str) and pid else None


@dataclass
class RebuildResult:
    records: int = 0
    posts: int = 0
    recounted: int = 0  # posts the store did not hold (what the loss had taken)
    scored: int = 0
    unreadable: int = 0
    seconds: float = 0.0


class RebuildMetrics:
    def __init__(self, registry: CollectorRegistry, event: str) -> None:
        self.event = event
        self.rebuilds = Counter(
            "crowdwatch_state_rebuilds", "Rebuilds of the Redis state from Kafka after Redis "
            "lost it (the state marker was missing)", ["event", "outcome"], registry=registry)
        self.recounted = Counter(
            "crowdwatch_state_rebuild_posts", "Posts counted again by state rebuilds (posts "
            "the store had lost)", ["event"], registry=registry)
        self.running = Gauge("crowdwatch_state_rebuild_running",
                             "1 while this worker rebuilds the state from Kafka", ["event"],
                             registry=registry)
        self.store_errors = Counter(
            "crowdwatch_state_store_unavailable", "Store calls that failed because the store "
            "was unreachable (each is retried)", ["event"], registry=registry)


def _read_chunks(settings: Settings, topic: str) -> Any:
    """Yield lists of ``(value, timestamp_ms)`` of ``topic`` from its beginning up to the end
    offsets at the time of the call (kafka-python, blocking: run it in a thread)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(enable_auto_commit=False, group_id=None,
                             **settings.kafka_client_kwargs())
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        pending = {tp for tp in tps if end[tp] > consumer.position(tp)}
        while pending:
            got = consumer.poll(timeout_ms=1000, max_records=CHUNK)
            chunk: list[tuple[bytes | None, int | None]] = []
            for tp, records in got.items():
                chunk += [(r.value, r.timestamp) for r in records if r.offset < end[tp]]
            for tp in list(pending):
                if consumer.position(tp) >= end[tp]:
                    pending.discard(tp)
            if chunk:
                yield chunk
    finally:
        consumer.close()


async def rebuild_state(settings: Settings, store: StateStore, event: str) -> RebuildResult:
    """Recount ``posts.enriched`` and re-mark ``posts.scored`` into ``store`` (idempotent)."""
    started = time.monotonic()
    result = RebuildResult()
    loop = asyncio.get_running_loop()

    async def each_chunk(topic: str, handle: Callable[[list[Any]], Any]) -> None:
        it = _read_chunks(settings, topic)
        while True:
            chunk = await loop.run_in_executor(None, next, it, None)
            if chunk is None:
                return
            await handle(chunk)

    async def enriched(chunk: list[tuple[bytes | None, int | None]]) -> None:
        result.records += len(chunk)
        summaries = [s for s in (summary_from_enriched(v, ts) for v, ts in chunk) if s]
        result.unreadable += len(chunk) - len(summaries)
        result.posts += len(summaries)
        result.recounted += sum(await store.record_batch(event, summaries))

    async def scored(chunk: list[tuple[bytes | None, int | None]]) -> None:
        ids = [i for i in (scored_id(v) for v, _ in chunk) if i]
        result.scored += len(ids)
        await store.first_seen(event, "mood", ids)

    await each_chunk(settings.topic_enriched, enriched)
    if settings.sentiment_model.strip().lower() != "off":
        await each_chunk(settings.topic_scored, scored)
    result.seconds = time.monotonic() - started
    return result


class StateGuard:
    """Checks the store's state marker; rebuilds from Kafka when it was missing."""

    def __init__(self, settings: Settings, store: StateStore, event: str,
                 metrics: RebuildMetrics,
                 rebuild: Callable[[], Any] | None = None,
                 on_rebuilt: Sequence[Callable[[], Any]] = ()) -> None:
        self.settings = settings
        self.store = store
        self.event = event
        self.metrics = metrics
        self._rebuild = rebuild or (lambda: rebuild_state(settings, store, event))
        self.on_rebuilt = list(on_rebuilt)
        self.running = False
        self.last: RebuildResult | None = None

    async def check(self) -> RebuildResult | None:
        """One check: rebuild when this worker claimed a missing marker. Store errors are
        left to the next check."""
        if self.running:
            return None
        try:
            claimed = await self.store.claim_state(self.event)
        except Exception as exc:
            log.warning("state marker check failed (%s): retrying later", exc.__class__.__name__)
            return None
        if not claimed:
            return None
        self.running = True
        self.metrics.running.labels(self.event).set(1)
        log.warning("state marker of event %r missing: Redis lost its data or this is the "
                    "event's first start; rebuilding the counts from Kafka", self.event)
        try:
            result: RebuildResult = await self._rebuild()
        except Exception:
            log.exception("rebuilding the state from Kafka failed; the next check retries")
            self.metrics.rebuilds.labels(self.event, "failed").inc()
            try:
                await self.store.release_state(self.event)
            except Exception:  # the next claim succeeds anyway if the store lost it again
                log.warning("could not release the state marker")
            return None
        finally:
            self.running = False
            self.metrics.running.labels(self.event).set(0)
        self.last = result
        self.metrics.rebuilds.labels(self.event, "done").inc()
        self.metrics.recounted.labels(self.event).inc(result.recounted)
        log.warning("state rebuilt from Kafka in %.1fs: %d records, %d posts, %d counted "
                    "again, %d mood markers, %d unreadable", result.seconds, result.records,
                    result.posts, result.recounted, result.scored, result.unreadable)
        for hook in self.on_rebuilt:
            await hook()
        return result
