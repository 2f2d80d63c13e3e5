"""Rumour tracking: clustering + stance + claim prior + rumour score, plain lists in and out.

:class:`RumourTracker` is what the ``crowdwatch.rumours`` agent and ``crowdwatch score``
run: posts (enriched dicts) in arrival order go in; per-post annotations (stance,
cluster, the cluster's rumour score at that moment), cluster events (created, grew,
state_changed, flagged, expired) and the clusters that changed come out. It holds no
I/O; the caller stores snapshots, emits events and sets metrics.

Re-delivered posts (same id while their cluster is active) return their first
annotation and change nothing. A post more than the clusterer's TTL behind the newest
event time is *late* (``how == "late"``, no cluster, score 0): it changes nothing either,
since a re-delivery of a post the clusterer has forgotten would otherwise count twice.
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC as _UTC
from datetime import datetime
from functools import lru_cache
from typing import Any, Protocol

from models.clusters import Assignment, Cluster, OnlineClusterer, input_from_post
from models.rumour import DRIVERS, ClusterFeatures, RumourScorer, score_drivers
from models.times import parse_time

GROWTH_MILESTONES = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 25_000,
                     50_000, 100_000)
TRACKED_KINDS = frozenset({"post", "reply", "repost", "quote", ""})
SAMPLE_TEXT_CHARS = 280
#: event time may move forward by at most this much in one post (else the post is placed
#: at the current watermark): one post dated 9999 would otherwise make every later post
#: "late" and expire every cluster. A jump is taken when the post next to it is dated there
#: too (the stream resumed after a quiet day, a replay's gap) and it is not this much ahead
#: of the machine's clock (see :meth:`RumourTracker._jump_holds`).
MAX_JUMP_S = 24 * 3600.0


class StanceModel(Protocol):
    def classify(self, texts: Sequence[str], parents: Sequence[str | None] | None = None
                 ) -> Sequence[Any]: ...  # items with .label


class ClaimModel(Protocol):
    def probs(self, posts: Sequence[Mapping[str, Any]]) -> list[float]: ...


@dataclass(frozen=True, slots=True)
class PostAnnotation:
    id: str
    cluster: str
    stance: str | None
    rumour_score: float
    how: str  # new | thread | near_duplicate | semantic | redelivered | late (no cluster)


@dataclass(frozen=True, slots=True)
class ClusterEvent:
    type: str  # created (2nd post) | grew (size milestones) | state_changed | flagged | expired
    cluster: str
    ts: float  # event time of the post (or watermark) that caused it
    size: int
    rumour_score: float
    state: str
    previous_state: str | None = None

    def to_dict(self, event: str) -> dict[str, Any]:
        return {"event": event, "type": self.type, "cluster": self.cluster,
                "ts": _iso(self.ts), "size": self.size,
                "rumour_score": round(self.rumour_score, 4), "state": self.state,
                **({"previous_state": self.previous_state} if self.previous_state else {})}


@dataclass
class TrackerBatch:
    annotations: list[PostAnnotation] = field(default_factory=list)
    events: list[ClusterEvent] = field(default_factory=list)
    changed: list[Cluster] = field(default_factory=list)
    expired: list[Cluster] = field(default_factory=list)


@lru_cache(maxsize=1 << 16)
def _iso(ts: float) -> str:
    """Cached: a snapshot formats its cluster's first and last seen times at every change,
    and most of them repeat (first_seen never changes)."""
    dt = datetime.fromtimestamp(ts, tz=_UTC)
    return f"{dt.year:04d}-{dt:%m-%dT%H:%M:%S}Z"  # 4-digit year also before 1000 (glibc)


def _rank(c: Cluster) -> tuple[float, int, str]:
    return (-c.score, -c.size, c.id)


def post_ts(post: Mapping[str, Any], default: float) -> float:
    """Event time of a post from ``created_at`` (ISO 8601), else ``default``."""
    ts = parse_time(post.get("created_at"))
    return default if ts is None else ts


class RumourTracker:
    def __init__(
        self,
        clusterer: OnlineClusterer,
        scorer: RumourScorer,
        *,
        stance: StanceModel | None = None,
        claims: ClaimModel | None = None,
        is_official: Callable[[Mapping[str, Any]], bool] | None = None,
        pseudonymise: Callable[[str], str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.clusterer = clusterer
        self.scorer = scorer
        self.stance = stance
        self.claims = claims
        self.is_official = is_official or (lambda _post: False)
        self.pseudonymise = pseudonymise or (lambda value: value)
        self.clock = clock
        self._annotations: dict[str, PostAnnotation] = {}
        self._arrivals: OrderedDict[str, float] = OrderedDict()  # post id -> event time
        self._texts: dict[str, dict[str, str]] = {}  # cluster -> sample id -> text
        self._prior_flags: dict[str, float] = {}  # cluster id -> flagged at (restore_flags)
        # how far one post may move event time forward (MAX_JUMP_S); a caller that feeds
        # posts sorted by time (``crowdwatch score --sort``) lifts it: there a far-future
        # date sorts to the end and a gap of days between posts is real
        self.max_jump_s = MAX_JUMP_S
        self._held_at: float | None = None  # the time of the last post held back as a jump

    # ------------------------------------------------------------------ features

    def features(self, c: Cluster, now: float) -> ClusterFeatures:
        window = self.scorer.settings.velocity_window_s
        return ClusterFeatures(
            size=c.size, roots=c.roots, replies=c.replies, reposts=c.reposts, quotes=c.quotes,
            support=c.stance.get("support", 0), deny=c.stance.get("deny", 0),
            query=c.stance.get("query", 0), comment=c.stance.get("comment", 0),
            distinct_authors=c.distinct_authors, verified_posts=c.verified_posts,
            official_posts=c.official_posts, reach=c.reach,
            age_s=max(0.0, now - c.first_seen),
            velocity=c.velocity(now, window),
            prev_velocity=c.velocity(now, window, offset_s=window),
            peak_velocity=c.peak_velocity, idle_s=max(0.0, now - c.last_seen),
            claim_prob=c.claim_prob if c.claim_n else 0.5)

    def _rescore(self, c: Cluster, now: float, ts: float, out: TrackerBatch) -> None:
        f = self.features(c, now)
        # an official statement and its thread are not a rumour, whatever the crowd says
        terms = None if c.official_root else self.scorer.explain(f)
        c.score = 0.0 if terms is None else self.scorer.score_of(terms)
        state = self.scorer.lifecycle(f)
        if state != c.state:
            out.events.append(ClusterEvent("state_changed", c.id, ts, c.size, c.score, state,
                                           c.state))
            c.state = state
        if c.flagged_at is None and not c.official_root and self._prior_flags:
            prior = self._prior_flags.pop(c.id, None)
            if prior is not None:  # raised by an earlier process: stays raised, not re-sent
                c.flagged_at = prior
        # on the score computed above (one explain() per rescore)
        if c.flagged_at is None and not c.official_root and state != "resolved" \
                and self.scorer.flags(f.size, c.score):
            c.flagged_at = ts
            out.events.append(ClusterEvent("flagged", c.id, ts, c.size, c.score, c.state))
        # why it scores what it scores, for the clusters the command post sees (snapshots:
        # two posts or more, or flagged); a tuple in DRIVERS order (~180 bytes a cluster)
        if terms is not None and (c.size >= 2 or c.flagged_at is not None):
            c.drivers = tuple(score_drivers(terms).values())

    # ------------------------------------------------------------------ ingest

    def process(self, posts: Sequence[Mapping[str, Any]]) -> TrackerBatch:
        """Track a batch of enriched posts (likes and deletions are skipped, not clustered)."""
        out = TrackerBatch()
        wall = self.clock()
        todo = [p for p in posts
                if isinstance(p.get("id"), str) and str(p.get("kind") or "") in TRACKED_KINDS]
        # once per id: a post twice in one batch is clustered once, its second copy is a
        # re-delivery (until 2026-12-07 both copies took the second's "redelivered"
        # assignment and the post got no annotation at all)
        fresh: list[Mapping[str, Any]] = []
        taken: set[str] = set()
        # this batch's answers: given even when not remembered past it (late posts: a later
        # delivery is late again; posts whose cluster expires within the batch; re-delivered
        # posts whose cluster a later post of the batch expires)
        answers: dict[str, PostAnnotation] = {}
        for p in todo:
            known = self._annotations.get(p["id"])
            if known is not None:
                answers[p["id"]] = known
            elif p["id"] not in taken:
                taken.add(p["id"])
                fresh.append(p)
        mark = self.clusterer.watermark
        times = {}
        stamps = [post_ts(p, wall) for p in fresh]
        for i, (p, ts) in enumerate(zip(fresh, stamps, strict=True)):
            if not mark or ts <= mark + self.max_jump_s:
                self._held_at = None
            elif not self._jump_holds(ts, mark, wall, stamps[i + 1] if i + 1 < len(stamps)
                                      else None):
                ts = mark  # dated far ahead alone (9999, a bad clock): expires nothing
            times[p["id"]] = ts
            # against the batch's own progress: a batch may span more than a day (a
            # backlog, a file); judged against the watermark before the batch, its later
            # posts were placed back there and came late (2026-12-07)
            mark = max(mark, ts)
        # the models skip posts already late (the clusterer refuses them): a consumer group
        # rewound by hours would otherwise put every old post through them for nothing
        live = [p for p in fresh if not self.clusterer.is_late(times[p["id"]])]
        stances = self._stances(live)
        claim_probs = self._claim_probs(live)
        inputs = []
        for p in fresh:
            author = p.get("author") if isinstance(p.get("author"), Mapping) else None
            raw_key = (author or {}).get("id") or (author or {}).get("handle")
            key = self.pseudonymise(f"{p.get('platform') or ''}:{raw_key}") if raw_key else None
            inp = input_from_post(p, ts=times[p["id"]], author_key=key,
                                  official=self.is_official(p),
                                  claim_prob=claim_probs.get(p["id"]))
            if inp.parent is not None:  # the cluster counts the stance of its replies/quotes
                inp = replace(inp, stance=stances.get(p["id"]))
            inputs.append(inp)
        assignments = dict(zip([p["id"] for p in fresh],
                               self.clusterer.add_batch(inputs), strict=True))
        changed: dict[str, Cluster] = {}
        last_ts: dict[str, float] = {}
        joined: list[tuple[str, str, str | None, str]] = []  # post id, cluster, stance, how
        orphans: list[tuple[str, str, str | None, str]] = []
        for p, inp in zip(fresh, inputs, strict=True):
            a: Assignment = assignments[p["id"]]
            if a.late:
                answers[p["id"]] = PostAnnotation(p["id"], "", None, 0.0, "late")
                continue
            c = self.clusterer.clusters.get(a.cluster_id)
            if a.redelivered:  # the clusterer remembers it, its annotation went past the cap
                answers[p["id"]] = PostAnnotation(p["id"], a.cluster_id, None, round(
                    c.score if c is not None else 0.0, 4), "redelivered")
                continue
            if c is None:  # a later post of this batch moved event time past the TTL
                orphans.append((p["id"], a.cluster_id, stances.get(p["id"]), a.how))
                continue
            if a.size == 2:  # a lone post is not a cluster yet
                out.events.append(ClusterEvent("created", c.id, inp.ts, a.size, c.score, c.state))
            for m in GROWTH_MILESTONES:
                if a.size == m:
                    out.events.append(ClusterEvent("grew", c.id, inp.ts, a.size, c.score,
                                                   c.state))
            if p["id"] in c.samples:
                self._texts.setdefault(c.id, {})[p["id"]] = str(p.get("text") or "")[
                    :SAMPLE_TEXT_CHARS]
            changed[c.id] = c
            last_ts[c.id] = max(last_ts.get(c.id, inp.ts), inp.ts)
            joined.append((p["id"], c.id, stances.get(p["id"]), a.how))
        # one score per cluster and batch: a post's rumour_score is its cluster's score
        # after the batch it arrived in
        for cid, c in changed.items():
            self._rescore(c, self.clusterer.watermark, last_ts[cid], out)
        for pid, cid, stance, how in joined:
            self._annotations[pid] = answers[pid] = PostAnnotation(
                pid, cid, stance, round(changed[cid].score, 4), how)
            self._arrivals[pid] = changed[cid].last_seen
        self._forget_old_annotations()
        for c in self.clusterer.expire(self.clusterer.watermark):
            out.events.append(ClusterEvent("expired", c.id, self.clusterer.watermark, c.size,
                                           c.score, c.state))
            out.expired.append(c)
            changed.pop(c.id, None)
            self._forget(c)
        if orphans:  # their cluster is gone: its score at its last post (until 2026-12-07
            # they got no annotation, so no cluster in `crowdwatch score` and no count)
            gone = {c.id: c for c in out.expired}
            for pid, cid, stance, how in orphans:
                c = gone.get(cid)
                score = 0.0 if c is None or c.official_root else self.scorer.score(
                    self.features(c, c.last_seen))
                answers[pid] = PostAnnotation(pid, cid, stance, round(score, 4), how)
        out.changed = list(changed.values())
        first = {p["id"] for p in fresh}  # answered as processed once, then as re-delivered
        for p in todo:
            ann = answers.get(p["id"])
            if ann is not None:
                out.annotations.append(ann if p["id"] in first else PostAnnotation(
                    ann.id, ann.cluster, ann.stance, ann.rumour_score, "redelivered"))
                first.discard(p["id"])
        return out

    def _jump_holds(self, ts: float, mark: float, wall: float, following: float | None,
                    ) -> bool:
        """Whether a post dated more than ``max_jump_s`` ahead of event time ``mark`` moves
        it there: when its neighbour (the post held back just before it, or the next post
        of its batch) is dated there too, within ``max_jump_s`` of it, and it is at most
        ``max_jump_s`` ahead of the clock. A stream that resumes after a quiet day (a
        replay's gap: most crisis-event files have one) moves on; a post dated 9999, or a
        run of them, does not. Until 2026-12-08 every such post was held back, so after one
        gap of more than a day event time stood still for the rest of the stream: no cluster
        expired and every later post had the same time."""
        span = self.max_jump_s

        def near(other: float | None) -> bool:
            return other is not None and other > mark + span and abs(other - ts) <= span

        if ts <= wall + span and (near(self._held_at) or near(following)):
            self._held_at = None
            return True
        self._held_at = ts
        return False

    def tick(self, now: float | None = None) -> TrackerBatch:
        """Re-evaluate lifecycle and flags of active clusters at ``now`` (event time,
        default the watermark); called on a timer so quiet clusters fade."""
        out = TrackerBatch()
        ts = self.clusterer.watermark if now is None else now
        for c in list(self.clusterer.clusters.values()):
            if c.size < 2 and c.flagged_at is None:
                continue
            before = (c.state, c.flagged_at)
            self._rescore(c, ts, ts, out)
            if (c.state, c.flagged_at) != before:
                out.changed.append(c)
        return out

    def _forget_old_annotations(self) -> None:
        """Annotations live as long as the clusterer remembers the post id. One older than
        ``ttl_s`` is dropped once the clusterer has forgotten its post, else checked again a
        ``ttl_s`` later: a cluster forgets its old members only when it next grows (or
        expires), so a post can outlive its first check. Dropping it from the queue there
        left its annotation behind for good (~33,000 of them after the soak's 150,000
        generated posts over 12 hours)."""
        mark = self.clusterer.watermark
        limit = mark - self.clusterer.settings.ttl_s
        still_known: list[str] = []
        while self._arrivals:
            pid, ts = next(iter(self._arrivals.items()))
            if ts >= limit:
                break
            del self._arrivals[pid]
            if self.clusterer.cluster_of(pid) is None:
                self._annotations.pop(pid, None)
            else:
                still_known.append(pid)
        for pid in still_known:
            self._arrivals[pid] = mark
        # past the clusterer's cap the oldest posts are forgotten whatever their age: their
        # annotations go with them (a re-delivery is still caught by the clusterer while it
        # remembers the post)
        over = len(self._arrivals) - self.clusterer.settings.max_posts
        for _ in range(max(0, over)):
            pid, _ts = self._arrivals.popitem(last=False)
            self._annotations.pop(pid, None)

    def _forget(self, c: Cluster) -> None:
        self._texts.pop(c.id, None)
        for pid in (*c.members, *c.kept_roots):
            self._annotations.pop(pid, None)

    def _stances(self, posts: Sequence[Mapping[str, Any]]) -> dict[str, str]:
        if self.stance is None:
            return {}
        texts: list[str] = []
        parents: list[str | None] = []
        ids: list[str] = []
        for p in posts:
            kind = str(p.get("kind") or "")
            if kind == "repost" or p.get("repost_of"):
                continue  # a repost spreads the claim; it says nothing of its own
            parent_id = p.get("reply_to") or p.get("quote_of")
            parent = None
            if isinstance(parent_id, str):
                pc = self.clusterer.cluster_of(parent_id)
                parent = pc.summary if pc is not None and pc.summary else ""
            ids.append(str(p["id"]))
            texts.append(str(p.get("text") or ""))
            parents.append(parent)
        if not ids:
            return {}
        results = self.stance.classify(texts, parents)
        return {pid: str(r.label) for pid, r in zip(ids, results, strict=True)}

    def _claim_probs(self, posts: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        if self.claims is None:
            return {}
        roots = [p for p in posts if not (p.get("reply_to") or p.get("repost_of")
                                          or p.get("quote_of"))]
        if not roots:
            return {}
        # a claim model on sentence vectors gets the clusterer's: with its CachedEmbedder
        # the clusterer then finds them in the cache (one embedding per root, not two)
        claims: Any = self.claims
        embedder = getattr(self.clusterer, "embedder", None)
        wants = getattr(claims, "wants_vectors", None)
        if embedder is not None and callable(wants) and wants(embedder):
            probs = claims.probs(roots, vectors=embedder.embed(
                [str(p.get("text") or "") for p in roots]))
        else:
            probs = claims.probs(roots)
        return {str(p["id"]): float(v) for p, v in zip(roots, probs, strict=True)}

    # ------------------------------------------------------------------ read side

    def annotation(self, post_id: str) -> PostAnnotation | None:
        return self._annotations.get(post_id)

    def snapshot(self, c: Cluster, now: float | None = None) -> dict[str, Any]:
        """What the command post sees of a cluster (Redis, CLI, summary)."""
        ts = self.clusterer.watermark if now is None else now
        window = self.scorer.settings.velocity_window_s
        texts = self._texts.get(c.id, {})
        return {
            "id": c.id, "summary": c.summary[:SAMPLE_TEXT_CHARS], "size": c.size,
            "roots": c.roots, "replies": c.replies, "reposts": c.reposts, "quotes": c.quotes,
            "stance": {k: c.stance.get(k, 0) for k in ("support", "deny", "query", "comment")},
            "distinct_accounts": c.distinct_authors, "reach": c.reach,
            "rumour_score": round(c.score, 4), "state": c.state,
            "official": c.official_root, "claim_prob": round(c.claim_prob, 4),
            # the score's logit in four parts (models.rumour.DRIVERS): claim, spread, doubt,
            # sources; positive pushes towards a rumour
            "drivers": dict(zip(DRIVERS, c.drivers, strict=False)),
            "flagged": c.flagged_at is not None,
            "flagged_at": _iso(c.flagged_at) if c.flagged_at is not None else None,
            "first_seen": _iso(c.first_seen), "last_seen": _iso(c.last_seen),
            "velocity": round(c.velocity(ts, window), 3),
            "top_terms": c.top_terms(self.clusterer.settings.top_terms),
            "top_spreaders": c.top_spreaders(self.clusterer.settings.top_spreaders),
            "sample_post_ids": list(c.samples),
            "sample_posts": [{"id": pid, "text": texts.get(pid, "")} for pid in c.samples],
        }

    def restore_flags(self, flagged_at: Mapping[str, float]) -> list[Cluster]:
        """Flags an earlier process raised (and announced), by cluster id and event time.

        A flag depends on where batches and ticks fell, so a process that rebuilds the
        clusters from the claims topic can miss one; these stay raised. Clusters already
        known are flagged now (returned, to be published); the others as soon as they form
        again (cluster ids are stable). Official clusters are never flagged.
        """
        out = []
        for cid, ts in flagged_at.items():
            c = self.clusterer.clusters.get(cid)
            if c is None:
                self._prior_flags[cid] = ts
            elif c.flagged_at is None and not c.official_root:
                c.flagged_at = ts
                out.append(c)
        return out

    def clusters(self, *, min_size: int = 1) -> list[Cluster]:
        """Active clusters, highest rumour score first (ties: larger, then id)."""
        return sorted((c for c in self.clusterer.clusters.values() if c.size >= min_size),
                      key=_rank)

    def top_clusters(self, k: int, *, min_size: int = 1,
                     where: Callable[[Cluster], bool] | None = None) -> list[Cluster]:
        """The first ``k`` of :meth:`clusters` (that pass ``where``), without sorting them
        all: a selection over the active window, for callers that need a few."""
        return heapq.nsmallest(k, (c for c in self.clusterer.clusters.values()
                                   if c.size >= min_size and (where is None or where(c))),
                               key=_rank)

    def flagged(self) -> list[Cluster]:
        return [c for c in self.clusterer.clusters.values()
                if c.flagged_at is not None and c.state != "resolved"]

    def top_flagged_velocity(self, k: int, now: float | None = None) -> list[float]:
        """Velocities (posts/min) of the ``k`` fastest flagged clusters, fastest first."""
        ts = self.clusterer.watermark if now is None else now
        window = self.scorer.settings.velocity_window_s
        return sorted((c.velocity(ts, window) for c in self.flagged()), reverse=True)[:k]



RUMOUR_LABELS = ("rumour", "non-rumour")


@dataclass(frozen=True)
class TrackerEvalReport:
    """``online``: a source post is flagged by its cluster's score after the batch it arrived
    in (what the command post saw then); ``at_end``: by its cluster's last score."""

    online: Any  # models.evaluation.ClassificationReport
    at_end: Any
    n_posts: int
    n_clusters: int
    latency_minutes: list[float]  # per flagged cluster with a rumour: first post -> flag

    def to_dict(self) -> dict[str, Any]:
        lat = sorted(self.latency_minutes)
        return {"n_posts": self.n_posts, "n_clusters": self.n_clusters,
                "online": self.online.to_dict(), "at_end": self.at_end.to_dict(),
                "detection_latency_minutes": {
                    "clusters": len(lat),
                    "median": lat[len(lat) // 2] if lat else None,
                    "p90": lat[min(len(lat) - 1, int(0.9 * len(lat)))] if lat else None}}


def evaluate_tracker(posts: Sequence[Mapping[str, Any]], gold: Mapping[str, bool],
                     tracker: RumourTracker, *, batch: int = 1) -> TrackerEvalReport:
    """Replay ``posts`` (sorted by ``created_at``) through ``tracker`` in batches of
    ``batch`` and score the gold-labelled posts: rumour flag = cluster score >= the
    scorer's threshold (and the cluster at least ``min_size_to_flag`` posts)."""
    from models.evaluation import classification_report

    ordered = sorted(posts, key=lambda p: post_ts(p, 0.0))
    online: dict[str, bool] = {}
    cluster_of: dict[str, str] = {}
    clusters: dict[str, Cluster] = {}  # kept after they expire in the tracker
    thr = tracker.scorer.settings.flag_threshold
    min_size = tracker.scorer.settings.min_size_to_flag
    for i in range(0, len(ordered), batch):
        out = tracker.process(ordered[i:i + batch])
        for c in out.changed:
            clusters[c.id] = c
        for a in out.annotations:
            if a.id in gold and a.id not in online:
                cluster_of[a.id] = a.cluster
                now_c = clusters.get(a.cluster)
                online[a.id] = a.rumour_score >= thr and (now_c is None
                                                          or now_c.size >= min_size)
    ids = [pid for pid in gold if pid in online]

    def label(flag: bool) -> str:
        return "rumour" if flag else "non-rumour"

    truth = [label(gold[pid]) for pid in ids]
    at_end: list[str] = []
    for pid in ids:
        end_c = clusters.get(cluster_of[pid])
        at_end.append(label(end_c is not None and end_c.score >= thr
                            and end_c.size >= min_size))
    latency = [(c.flagged_at - c.first_seen) / 60.0 for c in clusters.values()
               if c.flagged_at is not None and any(gold.get(m) for m in c.members)]
    return TrackerEvalReport(
        online=classification_report(truth, [label(online[p]) for p in ids], RUMOUR_LABELS),
        at_end=classification_report(truth, at_end, RUMOUR_LABELS),
        n_posts=len(ordered), n_clusters=len(clusters), latency_minutes=latency)
