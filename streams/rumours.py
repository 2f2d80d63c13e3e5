"""Building the rumour stage from settings, and running it off the event loop.

:class:`RumourStage` owns one :class:`models.rumour_tracker.RumourTracker` and a
one-thread executor (the tracker is not thread-safe; torch inside the embedder releases
the GIL). It turns tracker results into outputs (``clusters.events``), store snapshots
and metrics. Used by the ``crowdwatch.rumours`` agent and tested without Kafka.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson

from models.clusters import ClusterSettings, OnlineClusterer
from models.embed import load_embedder
from models.event import EventConfig
from models.jsonio import dumps
from models.official import OfficialRegistry
from models.official_tracker import OfficialBatch, OfficialTracker
from models.privacy import Pseudonymiser
from models.reach import author_key, engagement_edges
from models.rumour import RumourScorer, RumourSettings, load_default_claim_classifier
from models.rumour_tracker import RumourTracker, TrackerBatch
from models.stance import load_default_stance
from streams.batch import Output
from streams.metrics import OfficialMetrics, RumourMetrics
from streams.settings import Settings
from streams.state import StateStore

log = logging.getLogger(__name__)
T = TypeVar("T")


def official_matcher(event: EventConfig | None, pseudonymiser: Pseudonymiser | None = None
                     ) -> Callable[[Mapping[str, Any]], bool]:
    """post dict -> True when its author is one of the event's official accounts (by handle
    or author id, in clear or pseudonymised with ``pseudonymiser``'s key)."""
    return registry_matcher(OfficialRegistry.from_event(
        event, pseudonym=pseudonymiser.author_value if pseudonymiser is not None else None))


def registry_matcher(registry: OfficialRegistry) -> Callable[[Mapping[str, Any]], bool]:
    def is_official(post: Mapping[str, Any]) -> bool:
        return len(registry) > 0 and registry.author_of(post) is not None

    return is_official


def either(*matchers: Callable[[Mapping[str, Any]], bool]
           ) -> Callable[[Mapping[str, Any]], bool]:
    return lambda post: any(m(post) for m in matchers)


def tracker_from(settings: Settings, event: EventConfig | None) -> RumourTracker:
    """The configured tracker: clusterer (+ embedder), stance and claim models, scorer."""
    embedder = load_embedder(settings.cluster_embedder, threads=settings.sentiment_threads,
                             precision=settings.cluster_embedder_precision)
    clusterer = OnlineClusterer(ClusterSettings(
        ttl_s=settings.cluster_ttl_s, max_posts=settings.cluster_max_posts,
        max_clusters=settings.cluster_max_clusters,
        semantic_cosine=settings.cluster_semantic_cosine,
        near_duplicate_jaccard=settings.cluster_near_duplicate_jaccard), embedder)
    scorer = RumourScorer(RumourSettings.from_weights(
        flag_threshold=settings.rumour_flag_threshold))
    key = settings.pseudonym_key.get_secret_value()
    if not key:
        log.warning("CROWDWATCH_PSEUDONYM_KEY not set: author pseudonyms change on restart")
    pseudonymiser = Pseudonymiser(key or None)  # the enrich stage's key (models.privacy)
    return RumourTracker(clusterer, scorer, stance=load_default_stance(),
                         claims=load_default_claim_classifier(),
                         is_official=official_matcher(event, pseudonymiser),
                         pseudonymise=pseudonymiser)


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


OFFICIALS = "officials"  # store collections (see streams.state)
LINKS = "rebuttal_links"
SUGGESTIONS = "rebuttal_suggestions"
REACH = "official_posts"
RACES = "races"
WEBCARE = "webcare"


def link_key(official_post: str, cluster: str) -> str:
    return f"{official_post}|{cluster}"


#: event time standing still this long (seconds of processing time) counts as a quiet
#: stream: the tick then moves the clusters' clock on by itself (``RumourStage._tick_sync``)
QUIET_AFTER_S = 60.0


class RumourStage:
    """The event-level stage: claim clusters, and (with ``officials``) reach of official
    posts, rebuttal races and the webcare queue, all fed from the claims topic."""

    def __init__(self, tracker: RumourTracker, *, event: str, store: StateStore,
                 metrics: RumourMetrics, topic_events: str, state_ttl_s: int,
                 officials: OfficialTracker | None = None,
                 official_metrics: OfficialMetrics | None = None,
                 topic_signals: str = "signals",
                 base_registry: OfficialRegistry | None = None,
                 gauges_every_s: float = 1.0,
                 quiet_after_s: float = QUIET_AFTER_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``gauges_every_s``: refresh the state gauges (active and flagged clusters, top
        velocities, reach, races, open webcare items) after a batch at most this often; each
        refresh walks every cluster and official post, and Prometheus scrapes every 15 s.
        The tick refreshes them always; counters move with every batch. ``quiet_after_s``:
        when event time has not moved for this long on ``clock``, the tick judges the
        clusters at the watermark plus the time since (:meth:`_tick_sync`). ``clock``:
        seconds (monotonic) for that and for how long a race has had no cluster here
        (:meth:`_retire_orphans`)."""
        self.tracker = tracker
        self.clock = clock
        self.quiet_after_s = quiet_after_s
        # the watermark last noted (after a batch, at a tick) and since when (on ``clock``)
        # it has stood still
        self._quiet_mark = tracker.clusterer.watermark
        self._quiet_since = clock()
        # how long the stream has been quiet when the last tick ran (0: not quiet); the tick,
        # the snapshots and the gauges judge at the watermark plus this
        self._quiet_s = 0.0
        # (official post, cluster) -> clock time its race was first seen without a live
        # cluster in this stage
        self._orphaned: dict[tuple[str, str], float] = {}
        self.orphans_retired = 0
        self.gauges_every_s = gauges_every_s
        self._gauges_at = -math.inf
        self.officials = officials
        self.official_metrics = official_metrics
        self.topic_signals = topic_signals
        self.base_registry = base_registry or OfficialRegistry()
        # posts arrive with pseudonymised authors (enrich stage, same key as the tracker's):
        # the registries match official accounts by the pseudonyms of their handles and ids
        self._is_official = tracker.is_official  # the tracker's own (event accounts)
        p = tracker.pseudonymise
        self.pseudonym = p.author_value if isinstance(p, Pseudonymiser) else None
        if self.pseudonym is not None:
            self.base_registry.pseudonym = self.pseudonym
            if officials is not None:
                for reg in {id(r): r for r in (officials.registry, officials.reach.registry,
                                               officials.webcare.registry)}.values():
                    reg.pseudonym = self.pseudonym
        self.links: set[tuple[str, str]] = set()
        self.event = event
        self.store = store
        self.metrics = metrics
        self.topic_events = topic_events
        self.state_ttl_s = state_ttl_s
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crowdwatch-rumours")
        # The tracker's state is changed on the executor's thread and read on the event loop
        # (snapshots, gauges, reach documents). The agent's batches, the tick timer and a
        # recovery run concurrently, so one of them reading on the loop while another's
        # batch runs on the thread raised "OrderedDict mutated during iteration" (a 1M soak
        # crashed after ~10 min). Every entry point holds this lock for its whole call.
        self.lock = asyncio.Lock()
        self.unreadable = 0
        self.alerts: Any = None  # agents.alerts.EventAlerts when alerting is configured
        self.annotations: Any = None  # agents.annotations.EventAnnotations (Grafana)

    async def process(self, values: Sequence[bytes | None]) -> list[Output]:
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        async with self.lock:
            batch, ob, engaged = await loop.run_in_executor(self.executor, self._process_sync,
                                                             list(values))
            out = await self._publish(batch, ob, engaged, count_posts=True)
        self.metrics.batch_seconds.observe(time.monotonic() - started)
        return out

    async def on_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the stage's thread while no other stage call runs (recovery)."""
        async with self.lock:
            return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def _process_sync(self, values: list[bytes | None]
                      ) -> tuple[TrackerBatch, OfficialBatch | None, dict[str, list[str]]]:
        posts, unreadable = decode_posts(values)
        self.unreadable += unreadable
        self._quiet_s = 0.0  # a batch is judged at the watermark
        tracked = self.tracker.process(posts)
        self._note_watermark()
        if self.officials is None:
            return tracked, None, {}
        ob = self.officials.process(posts, self.tracker, tracked)
        engaged: dict[str, list[str]] = {}  # official post -> accounts engaging (for the HLL)
        for post in posts:
            key = author_key(post)
            if key is None:
                continue
            for parent, _kind in engagement_edges(post):
                if parent in self.officials.reach.posts:
                    engaged.setdefault(parent, []).append(self.tracker.pseudonymise(key))
        return tracked, ob, engaged

    async def tick(self) -> list[Output]:
        """Timer: pick up official accounts and rebuttal links managed with the CLI, then
        re-evaluate lifecycles and flags."""
        async with self.lock:
            linked: list[Output] = []
            if self.officials is not None and await self._sync_officials():
                linked = await self._publish_officials(OfficialBatch(), {})
            loop = asyncio.get_running_loop()
            batch = await loop.run_in_executor(self.executor, self._tick_sync)
            return [*linked, *await self._publish(batch, count_posts=False, gauges=True)]

    def _tick_sync(self) -> TrackerBatch:
        """Lifecycles and flags at the watermark; once event time has stood still for
        ``quiet_after_s`` (no post moved it: the stream went quiet, a replay ended), at the
        watermark plus the time since, so a claim nobody posts about any more fades and
        resolves on the command post's screen. Until 2026-12-08 the tick always used the
        watermark, and a quiet stream froze every cluster in the state of its last post
        ("growing") until posts came again."""
        mark = self._note_watermark()  # also here: a recovery moves it outside batches
        idle = self.clock() - self._quiet_since
        self._quiet_s = idle if mark and idle >= self.quiet_after_s else 0.0
        batch = self.tracker.tick(self._judged_at())
        if self.officials is not None:  # races of expired clusters end with them
            self.officials.retire(c.id for c in batch.expired)
            self._retire_orphans()
        return batch

    def _note_watermark(self) -> float:
        """The watermark; when it moved since last noted, the quiet time starts again."""
        mark = self.tracker.clusterer.watermark
        if mark != self._quiet_mark:
            self._quiet_mark, self._quiet_since = mark, self.clock()
        return mark

    def _judged_at(self) -> float | None:
        """Event time the clusters are judged at: None (the watermark) unless quiet."""
        return self.tracker.clusterer.watermark + self._quiet_s if self._quiet_s else None

    def _retire_orphans(self) -> int:
        """End the races whose cluster this stage has not held for a cluster TTL of clock
        time (the tick; on the stage's thread). Such a race comes from a link document
        written for a cluster that had expired already (by hand, or before links ended with
        their clusters): nothing would ever feed or end it. Its pair stays in :attr:`links`
        and its document in the store (another claims partition may hold the cluster), so
        the next sync does not link it again. Clock time, not event time: a recovery
        replays hours of event time in minutes, and a cluster linked before it re-forms
        late in that replay."""
        officials = self.officials
        if officials is None:
            return 0
        now = self.clock()
        live = self.tracker.clusterer.clusters
        ttl = self.tracker.clusterer.settings.ttl_s
        orphaned = self._orphaned
        ended = 0
        for key in list(officials.races):
            if key[1] in live:
                orphaned.pop(key, None)
                continue
            since = orphaned.setdefault(key, now)
            if now - since >= ttl:
                officials.unlink(*key)
                del orphaned[key]
                ended += 1
        for key in [k for k in orphaned if k not in officials.races]:
            del orphaned[key]  # unlinked meanwhile
        self.orphans_retired += ended
        return ended

    async def _sync_officials(self) -> bool:
        """Returns True when the rebuttal links changed."""
        officials = self.officials
        if officials is None:  # pragma: no cover - callers check
            return False
        stored = await self.store.get_docs(self.event, OFFICIALS)
        registry = OfficialRegistry.from_list([*self.base_registry.to_list(), *stored.values()],
                                              pseudonym=self.pseudonym)
        links = {(str(d["official_post"]), str(d["cluster"]))
                 for d in (await self.store.get_docs(self.event, LINKS)).values()
                 if isinstance(d, dict) and d.get("official_post") and d.get("cluster")}

        def apply() -> None:
            officials.registry = registry
            officials.reach.registry = registry
            officials.webcare.registry = registry
            # accounts added at run time open their own clusters too (never part of a rumour)
            self.tracker.is_official = either(self._is_official, registry_matcher(registry))
            for post, cluster in links - self.links:
                officials.link(post, cluster, self.tracker, "manual")
            for post, cluster in self.links - links:
                officials.unlink(post, cluster)

        await asyncio.get_running_loop().run_in_executor(self.executor, apply)
        changed = links != self.links
        self.links = links
        return changed

    async def _publish(self, batch: TrackerBatch, ob: OfficialBatch | None = None,
                       engaged: dict[str, list[str]] | None = None, *,
                       count_posts: bool, gauges: bool = False) -> list[Output]:
        """``gauges``: refresh the state gauges now, else when ``gauges_every_s`` passed."""
        now = time.monotonic()
        gauges = gauges or now - self._gauges_at >= self.gauges_every_s
        if gauges:
            self._gauges_at = now
        fresh = [a for a in batch.annotations if a.how != "redelivered"] if count_posts else []
        self.metrics.observe([a.how for a in fresh], [a.stance for a in fresh],
                             [e.type for e in batch.events])
        snaps = [self.tracker.snapshot(c, self._judged_at()) for c in batch.changed
                 if c.size >= 2 or c.flagged_at]
        await self.store.put_clusters(self.event, snaps, self.state_ttl_s)
        await self.store.drop_clusters(self.event, [c.id for c in batch.expired])
        if self.alerts is not None:
            for snap in snaps:
                if snap["flagged"]:
                    self.alerts.observe_cluster(snap, ended=snap["state"] == "resolved")
            for c in batch.expired:
                if c.flagged_at is not None:
                    self.alerts.observe_cluster({"id": c.id}, ended=True)
        if self.annotations is not None:
            for snap in snaps:
                self.annotations.observe_cluster(snap)
        if gauges:
            self._set_gauges()
            self._set_official_gauges()  # the tick has no official batch: refresh them here
        out: list[Output] = [
            (self.topic_events, e.cluster.encode(), dumps(e.to_dict(self.event)), None)
            for e in batch.events if e.size >= 2 or e.type == "flagged"]
        if ob is not None:
            out += await self._publish_officials(ob, engaged or {})
        if batch.expired and self.links:
            await self._end_links({c.id for c in batch.expired})
        return out

    async def _end_links(self, clusters: set[str]) -> None:
        """A rebuttal link ends with its cluster, like its race (``OfficialTracker.retire``):
        its document leaves the store and the pair leaves :attr:`links`. Before, both kept
        every pair an event ever linked (an automatic link per matching official post), and
        a restart re-created a race for each of them against a cluster long gone, which
        never ended. The race's last summary stays in the store until its TTL."""
        ended = [(post, cluster) for post, cluster in self.links if cluster in clusters]
        if ended:
            self.links.difference_update(ended)
            await self.store.del_docs(self.event, LINKS, [link_key(*x) for x in ended])

    def _set_official_gauges(self) -> None:
        """Reach, races and open webcare items: each refresh walks every official post."""
        officials, m = self.officials, self.official_metrics
        if officials is None or m is None:
            return
        m.set_reach(officials.reach.totals())
        top = officials.top_races(m.top_k)
        m.set_races([r.reach_ratio() for r in top], [r.state for r in officials.races.values()])
        mark = officials.watermark  # an unanswered question keeps ageing in a quiet stream
        n_open, oldest = officials.webcare.open_stats(
            None if mark is None else mark + self._quiet_s)
        m.webcare_open.labels(self.event).set(n_open)
        m.webcare_oldest.labels(self.event).set(oldest)

    async def _publish_officials(self, ob: OfficialBatch, engaged: dict[str, list[str]]
                                 ) -> list[Output]:
        officials, m = self.officials, self.official_metrics
        if officials is None:  # pragma: no cover - callers check
            return []
        ttl = self.state_ttl_s
        for pid, accounts in engaged.items():
            await self.store.add_distinct(self.event, f"reach:{pid}:accounts", accounts, ttl)
        await self.store.put_docs(self.event, REACH, {r["id"]: r for r in ob.changed_posts}, ttl)
        if self.annotations is not None:
            for row in ob.changed_posts:
                self.annotations.observe_official(row)
        await self.store.put_docs(self.event, WEBCARE, {w["id"]: w for w in ob.webcare}, ttl)
        await self.store.put_docs(self.event, SUGGESTIONS, {
            link_key(s["official_post"], s["cluster"]): s for s in ob.suggestions}, ttl)
        for link in ob.links:
            self.links.add((link["official_post"], link["cluster"]))
        await self.store.put_docs(self.event, LINKS, {
            link_key(x["official_post"], x["cluster"]): x for x in ob.links})
        await self.store.put_docs(self.event, RACES, {  # only what changed since the last write
            link_key(r.official_post, r.cluster): r.summary() for r in officials.changed_races()},
            ttl)
        out: list[Output] = []
        for ev in ob.race_events:
            record = {**ev, "type": "rebuttal_race", "transition": ev.get("event"),
                      "event": self.event}
            out.append((self.topic_signals,
                        link_key(str(ev["official_post"]), str(ev["cluster"])).encode(),
                        dumps(record), None))
        if m is not None:
            m.outrunning.labels(self.event).inc(
                sum(1 for ev in ob.race_events if ev.get("event") == "fired"))
            for w in ob.webcare:
                if w.get("event") == "new":
                    m.webcare_items.labels(self.event, str(w.get("kind"))).inc()
                elif w.get("event") == "answered" and w.get("response_s") is not None:
                    m.response.labels(self.event).observe(float(w["response_s"]))
        return out

    # ---- recovery (streams.recovery): replay posts.claims into memory, publish once ----

    def track(self, values: list[bytes | None]
              ) -> tuple[TrackerBatch, OfficialBatch | None, dict[str, list[str]]]:
        """Run records through the trackers only (the stage's thread): no outputs."""
        return self._process_sync(values)

    async def sync_officials(self) -> bool:
        """Pick up official accounts and rebuttal links managed with the CLI now."""
        async with self.lock:
            return await self._sync_officials()

    async def publish_recovered(self, batch: TrackerBatch, ob: OfficialBatch | None,
                                engaged: dict[str, list[str]]) -> None:
        """Write the snapshots and reach documents a recovery rebuilt. No cluster events,
        race signals, annotations or post counters: the process that handled those posts
        first sent them. Flagged clusters are re-announced to Alertmanager, which dedupes
        them (same labels), so a restart does not let their alerts resolve."""
        async with self.lock:
            annotations, self.annotations = self.annotations, None
            try:
                await self._publish(batch, ob, engaged, count_posts=False, gauges=True)
            finally:
                self.annotations = annotations

    def _set_gauges(self) -> None:
        tracker = self.tracker
        active = [c.state for c in tracker.clusterer.clusters.values() if c.size >= 2]
        k = self.metrics.top_k
        top_scores = [c.score for c in tracker.top_clusters(k, min_size=2)]
        self.metrics.set_state(active, len(tracker.flagged()),
                               tracker.top_flagged_velocity(k, self._judged_at()), top_scores)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
