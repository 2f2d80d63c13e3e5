"""Prometheus metrics of a worker, created against an injected registry.

Labels are bounded: event (one per config), area and topic (from the event
file), lang (the detector's fixed set + ``und``), platform (a fixed list, else
``other``), reason (the :class:`~models.post.RejectReason` values). Never post
ids, handles or cluster ids.
"""

from __future__ import annotations

import contextlib
from collections import Counter as Tally
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from models.enrich import PostSummary
from models.mood import MoodRow
from models.post import RejectReason
from models.safety import CATEGORIES as SAFETY_CATEGORIES
from streams.watchdog import PartitionStatus

KNOWN_PLATFORMS = frozenset({"twitter", "x", "bluesky", "mastodon", "facebook", "instagram",
                             "tiktok", "telegram", "reddit", "youtube", "threads"})
NO_AREA = "none"
NO_TOPIC = "none"

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


def platform_label(platform: str | None) -> str:
    if not platform:
        return "unknown"
    p = platform.lower()
    return p if p in KNOWN_PLATFORMS else "other"


class PipelineMetrics:
    def __init__(self, registry: CollectorRegistry, event: str, *, areas: Sequence[str] = (),
                 topics: Sequence[str] = (), warm: bool = True) -> None:
        """``warm``: create the per-reason, per-area and per-topic series at 0 (a process that
        reads no posts.raw, the rumour process, does not, so it exports no such series)."""
        self.event = event
        self.consumed = Counter(
            "crowdwatch_posts_consumed", "Records read from posts.raw (incl. re-deliveries)",
            registry=registry)
        self.accepted = Counter(
            "crowdwatch_posts_accepted", "Records that were valid posts", registry=registry)
        self.rejected = Counter(
            "crowdwatch_posts_rejected", "Records dead-lettered, by reason", ["reason"],
            registry=registry)
        self.duplicates = Counter(
            "crowdwatch_posts_duplicate",
            "Valid posts seen before (re-delivered or re-posted with the same id); "
            "not counted again in aggregates", registry=registry)
        self.by_lang = Counter(
            "crowdwatch_posts_by_lang", "Unique posts by detected language", ["event", "lang"],
            registry=registry)
        self.by_area = Counter(
            "crowdwatch_posts_by_area", "Unique posts by event area ('none' = no area)",
            ["event", "area"], registry=registry)
        self.by_topic = Counter(
            "crowdwatch_posts_by_topic", "Unique posts by event topic ('none' = no keyword)",
            ["event", "topic"], registry=registry)
        self.by_kind = Counter(
            "crowdwatch_posts_by_kind", "Unique records by kind (post, reply, quote, repost, "
            "like, delete, other)", ["event", "kind"], registry=registry)
        self.by_platform = Counter(
            "crowdwatch_posts_by_platform", "Unique posts by platform", ["event", "platform"],
            registry=registry)
        self.latency = Histogram(
            "crowdwatch_processing_latency_seconds",
            "From the record's Kafka timestamp to its enriched output being acknowledged",
            buckets=LATENCY_BUCKETS, registry=registry)
        self.batch_seconds = Histogram(
            "crowdwatch_batch_seconds", "Wall time to process one batch", registry=registry,
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.lag = Gauge(
            "crowdwatch_consumer_lag", "Records behind the end of the partition",
            ["topic", "partition"], registry=registry)
        self.committed = Gauge(
            "crowdwatch_consumer_committed_offset", "Last committed offset",
            ["topic", "partition"], registry=registry)
        self.last_batch = Gauge(
            "crowdwatch_last_batch_timestamp_seconds", "Unix time the last batch finished",
            registry=registry)
        # stall watchdog (streams/watchdog.py): series of revoked partitions are removed
        self.stalled = Gauge(
            "crowdwatch_consumer_stalled",
            "1 while the partition has lag and neither its committed nor its processed offset "
            "moved for CROWDWATCH_STALL_AFTER_S, else 0", ["topic", "partition"],
            registry=registry)
        self.stalled_seconds = Gauge(
            "crowdwatch_consumer_stalled_seconds",
            "Seconds the partition has had lag without its offsets moving (0 while caught up "
            "or moving)", ["topic", "partition"], registry=registry)
        self.watchdog_restarts = Counter(
            "crowdwatch_watchdog_restarts",
            "Times the stall watchdog stopped this worker so its supervisor restarts it "
            "(CROWDWATCH_STALL_RESTART_S; the process exits right after)", registry=registry)
        self.malloc_trimmed = Counter(
            "crowdwatch_malloc_trimmed_bytes", "Resident memory handed back to the OS by the "
            "periodic malloc_trim (CROWDWATCH_MALLOC_TRIM_EVERY_S)", registry=registry)
        self.store_errors = Counter(
            "crowdwatch_store_errors", "Failed writes to the state store (Redis)",
            registry=registry)

        # series that exist from the start read as 0, not "no data", on dashboards
        if warm:
            for reason in RejectReason:
                self.rejected.labels(reason.value)
            for area in (*areas, NO_AREA):
                self.by_area.labels(event, area)
            for topic in (*topics, NO_TOPIC):
                self.by_topic.labels(event, topic)

    def observe_partitions(self, statuses: Sequence[PartitionStatus],
                           revoked: Sequence[tuple[str, int]] = ()) -> None:
        """Lag and stall series of the assigned partitions; revoked ones are removed (a
        partition now read by another worker must not keep this worker's last values)."""
        for s in statuses:
            labels = (s.topic, str(s.partition))
            if s.lag is not None:
                self.lag.labels(*labels).set(s.lag)
            self.stalled.labels(*labels).set(1 if s.stalled else 0)
            self.stalled_seconds.labels(*labels).set(round(s.idle_s, 3))
        for topic, partition in revoked:
            for gauge in (self.lag, self.committed, self.stalled, self.stalled_seconds):
                with contextlib.suppress(KeyError):
                    gauge.remove(topic, str(partition))

    def observe_batch(self, posts: Sequence[PostSummary], reasons: Sequence[str],
                      fresh: Sequence[bool]) -> None:
        """Count one processed batch; ``fresh[i]`` False = post id seen before."""
        self.consumed.inc(len(posts) + len(reasons))
        self.accepted.inc(len(posts))
        for reason, n in Tally(reasons).items():
            self.rejected.labels(reason).inc(n)
        langs: Tally[str] = Tally()
        platforms: Tally[str] = Tally()
        areas: Tally[str] = Tally()
        topics: Tally[str] = Tally()
        kinds: Tally[str] = Tally()
        duplicates = 0
        for post, is_new in zip(posts, fresh, strict=True):
            if not is_new:
                duplicates += 1
                continue
            kinds[post.kind] += 1
            if not post.is_content:
                continue
            langs[post.lang] += 1
            platforms[platform_label(post.platform)] += 1
            areas.update(post.areas or (NO_AREA,))
            topics.update(post.topics or (NO_TOPIC,))
        if duplicates:
            self.duplicates.inc(duplicates)
        ev = self.event
        for metric, counts in ((self.by_kind, kinds), (self.by_lang, langs),
                               (self.by_platform, platforms),
                               (self.by_area, areas), (self.by_topic, topics)):
            for label, n in counts.items():
                metric.labels(ev, label).inc(n)


MOOD_BUCKETS = (-0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0)


class MoodMetrics:
    """Crowd mood: per-class counters and a score histogram, so Grafana computes the mood of
    any window (``rate(sum)/rate(count)``); shift signals as gauges."""

    def __init__(self, registry: CollectorRegistry, event: str) -> None:
        self.event = event
        self.posts = Counter(
            "crowdwatch_mood_posts", "Scored unique posts by class",
            ["event", "area", "topic", "lang", "class"], registry=registry)
        self.score = Histogram(
            "crowdwatch_mood_score", "Sentiment score (-1 negative .. 1 positive) of unique posts",
            ["event", "area"], buckets=MOOD_BUCKETS, registry=registry)
        # scores are in [-1, 1]: their sum is not a counter (and prometheus_client drops a
        # histogram's _sum when it has negative buckets). Mean mood of a window:
        # (increase(positive) - increase(negative)) / increase(crowdwatch_mood_score_count)
        self.positive = Counter(
            "crowdwatch_mood_positive", "Sum of the positive parts of unique posts' scores",
            ["event", "area"], registry=registry)
        self.negative = Counter(
            "crowdwatch_mood_negative", "Sum of the negative parts (as positive numbers)",
            ["event", "area"], registry=registry)
        self.scored = Counter(
            "crowdwatch_sentiment_scored", "Posts scored (incl. re-deliveries)", registry=registry)
        self.cache_hits = Counter(
            "crowdwatch_sentiment_cache_hits", "Posts whose normalised text was scored before",
            registry=registry)
        self.batch_seconds = Histogram(
            "crowdwatch_sentiment_batch_seconds", "Wall time to score one batch",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=registry)
        self.shift_active = Gauge(
            "crowdwatch_mood_shift_active", "1 while a negative mood shift is active",
            ["event", "scope", "name"], registry=registry)
        self.shift_z = Gauge(
            "crowdwatch_mood_shift_zscore", "Current window mood vs baseline, in sigmas",
            ["event", "scope", "name"], registry=registry)
        self.signals = Counter(
            "crowdwatch_mood_signals", "Mood shift signals emitted", ["event", "scope", "state"],
            registry=registry)

    def observe(self, rows: Sequence[MoodRow], fresh: Sequence[bool]) -> None:
        classes: Tally[tuple[str, str, str, str]] = Tally()
        for row, is_new in zip(rows, fresh, strict=True):
            if not is_new:
                continue
            for area in row.areas or (NO_AREA,):
                self.score.labels(self.event, area).observe(row.score)
                if row.score > 0:
                    self.positive.labels(self.event, area).inc(row.score)
                elif row.score < 0:
                    self.negative.labels(self.event, area).inc(-row.score)
                for topic in row.topics or (NO_TOPIC,):
                    classes[(area, topic, row.lang, row.label)] += 1
        for (area, topic, lang, label), n in classes.items():
            self.posts.labels(self.event, area, topic, lang, label).inc(n)


class SafetyMetrics:
    """Crowd-safety posts (``models.safety``) per area and category, counted once per post id
    (the enrich stage's fresh flags). Labels are bounded: the event's areas + ``none`` and the
    four categories."""

    def __init__(self, registry: CollectorRegistry, event: str, *,
                 areas: Sequence[str] = (), warm: bool = True) -> None:
        self.event = event
        self.posts = Counter(
            "crowdwatch_safety_posts",
            "Unique crowd-safety posts by area ('none' = no area) and category",
            ["event", "area", "category"], registry=registry)
        for area in (*areas, NO_AREA) if warm else ():
            for category in SAFETY_CATEGORIES:
                self.posts.labels(event, area, category)

    def observe(self, posts: Sequence[PostSummary], fresh: Sequence[bool]) -> None:
        counts: Tally[tuple[str, str]] = Tally()
        for post, is_new in zip(posts, fresh, strict=True):
            if is_new and post.safety is not None:
                for area in post.areas or (NO_AREA,):
                    counts[(area, post.safety)] += 1
        for (area, category), n in counts.items():
            self.posts.labels(self.event, area, category).inc(n)


CLUSTER_EVENT_TYPES = ("created", "grew", "state_changed", "flagged", "expired")
#: how a post joined its cluster; "late": older than the clusterer's TTL behind the newest
#: event time, so in no cluster (counted, not clustered)
CLUSTER_MATCHES = ("new", "thread", "near_duplicate", "semantic", "late")
LIFECYCLE_STATES = ("emerging", "growing", "peaking", "fading", "resolved")
STANCE_LABELS = ("support", "deny", "query", "comment")


class RumourMetrics:
    """Rumour clusters. Labels are bounded: no cluster or post ids, only event, the fixed
    match/state/stance/event-type vocabularies and rank 1..K of the top flagged clusters."""

    def __init__(self, registry: CollectorRegistry, event: str, *, top_k: int = 5) -> None:
        self.event = event
        self.top_k = top_k
        self.active = Gauge("crowdwatch_rumour_active_clusters",
                            "Active claim clusters (2+ posts) by lifecycle state",
                            ["event", "state"], registry=registry)
        self.flagged = Gauge("crowdwatch_rumour_flagged_clusters",
                             "Active clusters flagged as rumour (not resolved)", ["event"],
                             registry=registry)
        self.top_velocity = Gauge(
            "crowdwatch_rumour_top_velocity",
            "Posts/min of the K fastest flagged clusters, by rank (1 = fastest)",
            ["event", "rank"], registry=registry)
        self.top_score = Gauge(
            "crowdwatch_rumour_top_score", "Rumour score of the K highest-scoring clusters",
            ["event", "rank"], registry=registry)
        self.posts = Counter("crowdwatch_rumour_posts",
                             "Posts clustered, once per post id, by how they joined "
                             "(late: older than the cluster TTL, in no cluster)",
                             ["event", "match"], registry=registry)
        self.stance = Counter("crowdwatch_rumour_stance_posts",
                              "Posts by stance towards their cluster's claim",
                              ["event", "stance"], registry=registry)
        self.events = Counter("crowdwatch_rumour_cluster_events", "Cluster events emitted",
                              ["event", "type"], registry=registry)
        self.batch_seconds = Histogram(
            "crowdwatch_rumour_batch_seconds", "Wall time to cluster one batch",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=registry)
        self.flagged.labels(event).set(0)
        for state in LIFECYCLE_STATES:
            self.active.labels(event, state).set(0)
        for match in CLUSTER_MATCHES:
            self.posts.labels(event, match)
        for label in STANCE_LABELS:
            self.stance.labels(event, label)
        for kind in CLUSTER_EVENT_TYPES:
            self.events.labels(event, kind)
        for rank in range(1, top_k + 1):
            self.top_velocity.labels(event, str(rank)).set(0)
            self.top_score.labels(event, str(rank)).set(0)

    def observe(self, matches: Sequence[str], stances: Sequence[str | None],
                event_types: Sequence[str]) -> None:
        for match, n in Tally(m for m in matches if m in CLUSTER_MATCHES).items():
            self.posts.labels(self.event, match).inc(n)
        for stance, n in Tally(s for s in stances if s in STANCE_LABELS).items():
            self.stance.labels(self.event, stance).inc(n)
        for kind, n in Tally(event_types).items():
            self.events.labels(self.event, kind).inc(n)

    def set_state(self, states: Sequence[str], flagged: int, top_velocity: Sequence[float],
                  top_scores: Sequence[float]) -> None:
        by_state = Tally(states)
        for state in LIFECYCLE_STATES:
            self.active.labels(self.event, state).set(by_state.get(state, 0))
        self.flagged.labels(self.event).set(flagged)
        for rank in range(1, self.top_k + 1):
            v = top_velocity[rank - 1] if rank <= len(top_velocity) else 0.0
            s = top_scores[rank - 1] if rank <= len(top_scores) else 0.0
            self.top_velocity.labels(self.event, str(rank)).set(v)
            self.top_score.labels(self.event, str(rank)).set(s)


OFFICIAL_ROLES = ("police", "municipality", "fire", "ambulance", "organiser", "other")
REACH_KINDS = ("reposts", "replies", "quotes", "likes")


class OfficialMetrics:
    """Official posts, rebuttal races and the webcare queue. Labels are bounded: the
    account role vocabulary, engagement kinds, and rank 1..K of the linked pairs."""

    def __init__(self, registry: CollectorRegistry, event: str, *, top_k: int = 5) -> None:
        self.event = event
        self.top_k = top_k
        self.tracked = Gauge("crowdwatch_official_posts_tracked",
                             "Official posts whose reach is tracked", ["event"], registry=registry)
        self.reach = Gauge("crowdwatch_official_reach",
                           "Engagements with official posts, by account role and kind",
                           ["event", "role", "kind"], registry=registry)
        self.audience = Gauge("crowdwatch_official_audience",
                              "Estimated audience of official posts (followers of distinct "
                              "resharers), by account role", ["event", "role"], registry=registry)
        self.ratio = Gauge("crowdwatch_rebuttal_reach_ratio",
                           "Rebuttal reach / rumour reach of the K linked pairs with the "
                           "biggest rumours (rank 1 = biggest)", ["event", "rank"],
                           registry=registry)
        self.races = Gauge("crowdwatch_rebuttal_races", "Linked rebuttal/rumour pairs by state",
                           ["event", "state"], registry=registry)
        self.outrunning = Counter("crowdwatch_rebuttal_outrunning",
                                  "Times a rumour started out-running its rebuttal", ["event"],
                                  registry=registry)
        self.webcare_open = Gauge("crowdwatch_webcare_open",
                                  "Unanswered questions/complaints to official accounts",
                                  ["event"], registry=registry)
        self.webcare_oldest = Gauge("crowdwatch_webcare_oldest_age_seconds",
                                    "Age of the oldest unanswered item (event time)", ["event"],
                                    registry=registry)
        self.webcare_items = Counter("crowdwatch_webcare_items",
                                     "Questions/complaints to official accounts", ["event", "kind"],
                                     registry=registry)
        self.response = Histogram("crowdwatch_webcare_response_seconds",
                                  "Time for an official account to answer", ["event"],
                                  buckets=(60, 300, 600, 900, 1800, 3600, 7200),
                                  registry=registry)
        self.tracked.labels(event).set(0)
        for role in OFFICIAL_ROLES:
            self.audience.labels(event, role).set(0)
            for kind in REACH_KINDS:
                self.reach.labels(event, role, kind).set(0)
        # no ratio series until a pair is linked: a 0 would read as "the rumour wins"
        for state in ("quiet", "firing"):
            self.races.labels(event, state).set(0)
        self.outrunning.labels(event)
        self.webcare_open.labels(event).set(0)
        self.webcare_oldest.labels(event).set(0)
        for kind in ("question", "complaint"):
            self.webcare_items.labels(event, kind)
        self.response.labels(event)

    def set_reach(self, rows: Sequence[dict[str, object]]) -> None:
        totals: Tally[tuple[str, str]] = Tally()
        audience: Tally[str] = Tally()
        for row in rows:
            role = str(row.get("role") or "other")
            role = role if role in OFFICIAL_ROLES else "other"
            for kind in REACH_KINDS:
                totals[(role, kind)] += int(row.get(kind) or 0)  # type: ignore[call-overload]
            audience[role] += int(row.get("estimated_audience") or 0)  # type: ignore[call-overload]
        self.tracked.labels(self.event).set(len(rows))
        for role in OFFICIAL_ROLES:
            self.audience.labels(self.event, role).set(audience.get(role, 0))
            for kind in REACH_KINDS:
                self.reach.labels(self.event, role, kind).set(totals.get((role, kind), 0))

    def set_races(self, ratios: Sequence[float | None], states: Sequence[str]) -> None:
        for rank in range(1, self.top_k + 1):
            r = ratios[rank - 1] if rank <= len(ratios) else None
            if r is None:
                with contextlib.suppress(KeyError):  # never set
                    self.ratio.remove(self.event, str(rank))
            else:
                self.ratio.labels(self.event, str(rank)).set(r)
        by_state = Tally(states)
        for state in ("quiet", "firing"):
            self.races.labels(self.event, state).set(by_state.get(state, 0))
