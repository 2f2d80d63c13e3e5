"""Building the rumour stage from settings, and running it off the event loop.

:class:`RumourStage` owns one :class:`models.rumour_tracker.RumourTracker` and a
one-thread executor (the tracker is not thread-safe; torch inside the embedder releases
the GIL). It turns tracker results into outputs (``clusters.events``), store snapshots
and metrics. Used by the ``crowdwatch.rumours`` agent and tested without Kafka.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from models.clusters import ClusterSettings, OnlineClusterer
from models.embed import load_embedder
from models.event import EventConfig
from models.jsonio import dumps
from models.privacy import Pseudonymiser
from models.rumour import RumourScorer, RumourSettings, load_default_claim_classifier
from models.rumour_tracker import RumourTracker, TrackerBatch
from models.stance import load_default_stance
from streams.batch import Output
from streams.metrics import RumourMetrics
from streams.settings import Settings
from streams.state import StateStore

log = logging.getLogger(__name__)


def official_matcher(event: EventConfig | None) -> Any:
    """post dict -> True when its author is one of the event's official accounts."""
    accounts = {(a.platform, a.handle.lower().lstrip("@")) for a in
                (event.official_accounts if event else [])}

    def is_official(post: Mapping[str, Any]) -> bool:
        author = post.get("author")
        if not accounts or not isinstance(author, Mapping):
            return False
        handle = str(author.get("handle") or "").lower().lstrip("@")
        return (str(post.get("platform") or ""), handle) in accounts

    return is_official


def tracker_from(settings: Settings, event: EventConfig | None) -> RumourTracker:
    """The configured tracker: clusterer (+ embedder), stance and claim models, scorer."""
    embedder = load_embedder(settings.cluster_embedder, threads=settings.sentiment_threads)
    clusterer = OnlineClusterer(ClusterSettings(
        ttl_s=settings.cluster_ttl_s, semantic_cosine=settings.cluster_semantic_cosine,
        near_duplicate_jaccard=settings.cluster_near_duplicate_jaccard), embedder)
    scorer = RumourScorer(RumourSettings.from_weights(
        flag_threshold=settings.rumour_flag_threshold))
    key = settings.pseudonym_key.get_secret_value()
    if not key:
        log.warning("CROWDWATCH_PSEUDONYM_KEY not set: author pseudonyms change on restart")
    return RumourTracker(clusterer, scorer, stance=load_default_stance(),
                         claims=load_default_claim_classifier(),
                         is_official=official_matcher(event), pseudonymise=Pseudonymiser(key))


def decode_posts(values: Sequence[bytes | None]) -> tuple[list[dict[str, Any]], int]:
    posts: list[dict[str, Any]] = []
    unreadable = 0
    for value in values:
        try:
            obj = orjson.loads(value or b"")
        except orjson.JSONDecodeError:
            unreadable += 1
            continue
        if isinstance(obj, dict) and isinstance(obj.get("id"), str):
            posts.append(obj)
        else:
            unreadable += 1
    return posts, unreadable


class RumourStage:
    def __init__(self, tracker: RumourTracker, *, event: str, store: StateStore,
                 metrics: RumourMetrics, topic_events: str, state_ttl_s: int) -> None:
        self.tracker = tracker
        self.event = event
        self.store = store
        self.metrics = metrics
        self.topic_events = topic_events
        self.state_ttl_s = state_ttl_s
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crowdwatch-rumours")
        self.unreadable = 0
        self.alerts: Any = None  # agents.alerts.EventAlerts when alerting is configured

    async def process(self, values: Sequence[bytes | None]) -> list[Output]:
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        batch = await loop.run_in_executor(self.executor, self._process_sync, list(values))
        out = await self._publish(batch, count_posts=True)
        self.metrics.batch_seconds.observe(time.monotonic() - started)
        return out

    def _process_sync(self, values: list[bytes | None]) -> TrackerBatch:
        posts, unreadable = decode_posts(values)
        self.unreadable += unreadable
        return self.tracker.process(posts)

    async def tick(self) -> list[Output]:
        loop = asyncio.get_running_loop()
        batch = await loop.run_in_executor(self.executor, self.tracker.tick)
        return await self._publish(batch, count_posts=False)

    async def _publish(self, batch: TrackerBatch, *, count_posts: bool) -> list[Output]:
        fresh = [a for a in batch.annotations if a.how != "redelivered"] if count_posts else []
        self.metrics.observe([a.how for a in fresh], [a.stance for a in fresh],
                             [e.type for e in batch.events])
        snaps = [self.tracker.snapshot(c) for c in batch.changed if c.size >= 2 or c.flagged_at]
        await self.store.put_clusters(self.event, snaps, self.state_ttl_s)
        await self.store.drop_clusters(self.event, [c.id for c in batch.expired])
        if self.alerts is not None:
            for snap in snaps:
                if snap["flagged"]:
                    self.alerts.observe_cluster(snap, ended=snap["state"] == "resolved")
            for c in batch.expired:
                if c.flagged_at is not None:
                    self.alerts.observe_cluster({"id": c.id}, ended=True)
        self._set_gauges()
        return [(self.topic_events, e.cluster.encode(), dumps(e.to_dict(self.event)), None)
                for e in batch.events if e.size >= 2 or e.type == "flagged"]

    def _set_gauges(self) -> None:
        tracker = self.tracker
        active = [c.state for c in tracker.clusterer.clusters.values() if c.size >= 2]
        k = self.metrics.top_k
        top_scores = [c.score for c in tracker.clusters(min_size=2)[:k]]
        self.metrics.set_state(active, len(tracker.flagged()), tracker.top_flagged_velocity(k),
                               top_scores)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
