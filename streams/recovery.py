"""Rebuild the rumour stage's memory from ``posts.claims`` when a worker takes the topic over.

The claim clusters, the reach of official posts, rebuttal races and the webcare queue live
in the memory of the worker that holds the claims partition (``streams.rumours``). A worker
that starts after a crash, or receives the partition in a rebalance, would otherwise start
empty: clusters would restart at size 1 and reach counters at 0, and the snapshots it writes
would overwrite the right ones in Redis.

So before the first batch of a partition (or after a gap in its offsets: another worker
processed in between) the agent replays that partition's records from
``now - recovery_window`` up to the offset of the batch, through the same tracker code and
without any outputs: no cluster events, no signals, no alert or annotation pushes, no post
counters (those were all produced by the worker that processed the posts first). Flags the
earlier process raised (its snapshots in Redis) are restored: whether a cluster crosses the
threshold depends on where batches and ticks fell, and an announced flag must not vanish.
Then it writes one set of snapshots and reach documents. The tracker is idempotent by post id, so
records the live agent later re-delivers change nothing.

Cost: the replay runs the clustering models over the window (the embedder dominates: e5-small
on 2 cores embeds about 340 distinct texts/s in int8 with VNNI, 560 with
CROWDWATCH_CLUSTER_EMBEDDER_PRECISION=bf16 on an AMX CPU, 20-30 on an AVX2-only CPU;
thousands per second with the hashing embedder), so a
take-over after hours of a busy event takes minutes; the partition's lag shows it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter

from models.official_tracker import OfficialBatch
from models.rumour_tracker import TrackerBatch
from models.times import parse_time
from streams.settings import Settings

if TYPE_CHECKING:
    from streams.rumours import RumourStage

log = logging.getLogger(__name__)

CHUNK = 2_000
MAX_PRIOR_CLUSTERS = 100_000


@dataclass
class RecoveryResult:
    partition: int
    start_offset: int = 0
    end_offset: int = 0
    records: int = 0
    clusters: int = 0
    official_posts: int = 0
    seconds: float = 0.0


def read_partition(settings: Settings, topic: str, partition: int, since_ms: int | None,
                   end_offset: int) -> Iterator[list[bytes | None]]:
    """Values of ``topic``/``partition`` from the first record at or after ``since_ms``
    (None: the beginning) up to ``end_offset`` (exclusive), in chunks. Blocking
    (kafka-python): run it in a thread."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(enable_auto_commit=False, group_id=None,
                             **settings.kafka_client_kwargs())
    tp = TopicPartition(topic, partition)
    try:
        consumer.assign([tp])
        start: int | None = None
        if since_ms is not None:
            found = consumer.offsets_for_times({tp: since_ms}).get(tp)
            start = found.offset if found is not None else end_offset
        if start is None:
            consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, start)
        while consumer.position(tp) < end_offset:
            got = consumer.poll(timeout_ms=1000, max_records=CHUNK).get(tp, [])
            chunk = [r.value for r in got if r.offset < end_offset]
            if chunk:
                yield chunk
    finally:
        consumer.close()


class ClaimsRecovery:
    """Decides when the rumour stage must be rebuilt and rebuilds it (see the module doc)."""

    def __init__(self, stage: RumourStage, settings: Settings, *,
                 registry: CollectorRegistry | None = None,
                 window_s: float | None = None) -> None:
        self.stage = stage
        self.recoveries = Counter(
            "crowdwatch_rumour_recoveries", "Rebuilds of the rumour stage's clusters and reach "
            "from the claims topic (a start, a take-over or a gap)", ["event"],
            registry=registry)
        self.replayed = Counter(
            "crowdwatch_rumour_recovery_records", "Claims records replayed by those rebuilds",
            ["event"], registry=registry)
        self.settings = settings
        self.window_s = window_s if window_s is not None else float(
            max(settings.rumour_state_ttl_s, settings.cluster_ttl_s))
        self.next_offset: dict[int, int] = {}  # partition -> next offset this process expects
        self.primed = False
        self.results: list[RecoveryResult] = []

    async def prepare(self, partition: int, offset: int) -> RecoveryResult | None:
        """Before a batch of ``partition`` starting at ``offset``: once per process, take
        over the flags earlier processes raised (their snapshots in the store); then rebuild
        when :meth:`needed`."""
        if not self.primed:
            self.primed = True
            prior = await self.stage.store.top_clusters(self.stage.event, MAX_PRIOR_CLUSTERS)
            flagged_at = {str(c["id"]): t for c in prior if c.get("flagged")
                          and (t := parse_time(c.get("flagged_at"))) is not None}
            if flagged_at:
                await self.stage.on_thread(self.stage.tracker.restore_flags, flagged_at)
                log.info("rumour stage: %d flags raised earlier stay raised", len(flagged_at))
        if self.needed(partition, offset):
            return await self.recover(partition, offset)
        return None

    def needed(self, partition: int, offset: int) -> bool:
        """True when records before ``offset`` were processed by another process (a start, a
        take-over, a gap), never for offset 0 or a re-delivery of what this process saw."""
        expected = self.next_offset.get(partition)
        if expected is None:
            return offset > 0
        return offset > expected

    def processed(self, partition: int, last_offset: int) -> None:
        self.next_offset[partition] = max(self.next_offset.get(partition, 0), last_offset + 1)

    async def recover(self, partition: int, upto: int) -> RecoveryResult:
        stage = self.stage
        started = time.monotonic()
        since_ms = int((time.time() - self.window_s) * 1000) if self.window_s > 0 else None
        result = RecoveryResult(partition=partition, end_offset=upto)
        log.warning("rumour stage: rebuilding clusters and reach from %s/%d before offset %d "
                    "(window %.0fs)", self.settings.topic_claims, partition, upto, self.window_s)
        if stage.officials is not None:
            await stage.sync_officials()  # accounts and links added with the CLI first
        loop = asyncio.get_running_loop()
        it = read_partition(self.settings, self.settings.topic_claims, partition, since_ms, upto)
        changed: dict[str, Any] = {}
        expired: dict[str, Any] = {}
        merged = OfficialBatch()
        reach: dict[str, dict[str, Any]] = {}
        webcare: dict[str, dict[str, Any]] = {}
        engaged: dict[str, list[str]] = {}
        while True:
            chunk = await loop.run_in_executor(None, next, it, None)
            if chunk is None:
                break
            result.records += len(chunk)
            tracked, ob, eng = await stage.on_thread(stage.track, chunk)
            for c in tracked.changed:
                changed[c.id] = c
                expired.pop(c.id, None)
            for c in tracked.expired:
                expired[c.id] = c
                changed.pop(c.id, None)
            if ob is not None:
                reach.update({str(r["id"]): r for r in ob.changed_posts})
                webcare.update({str(w["id"]): w for w in ob.webcare})
                merged.suggestions += ob.suggestions
                merged.links += ob.links
            for pid, accounts in eng.items():
                engaged.setdefault(pid, []).extend(accounts)
        merged.changed_posts = list(reach.values())
        merged.webcare = list(webcare.values())
        batch = TrackerBatch(changed=list(changed.values()), expired=list(expired.values()))
        await stage.publish_recovered(batch, merged if stage.officials is not None else None,
                                      engaged)
        self.next_offset[partition] = max(self.next_offset.get(partition, 0), upto)
        result.clusters = len(changed)
        result.official_posts = len(reach)
        result.seconds = time.monotonic() - started
        self.results.append(result)
        self.recoveries.labels(stage.event).inc()
        self.replayed.labels(stage.event).inc(result.records)
        log.warning("rumour stage rebuilt in %.1fs: %d records, %d clusters changed, %d "
                    "official posts", result.seconds, result.records, result.clusters,
                    result.official_posts)
        return result
