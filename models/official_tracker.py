"""Official messages end to end: reach, rebuttal races and the webcare queue, plain lists in
and out.

:class:`OfficialTracker` feeds each batch of enriched posts to the
:class:`~models.reach.ReachTracker` and the :class:`~models.webcare.WebcareQueue`, links
official posts to rumour clusters (by hand with :meth:`link`, or automatically when
:func:`~models.race.suggest_rebuttals` is confident), and keeps one
:class:`~models.race.RebuttalRace` per linked pair, fed with the per-minute reach of both
sides. It needs the :class:`~models.rumour_tracker.RumourTracker` that clustered the
same batch (for the rumour side of the races).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from models.official import OfficialRegistry
from models.race import (
    RaceConfig,
    RebuttalRace,
    denial_cues,
    rebuttal_minutes,
    rebuttals_summary,
    suggest_rebuttals,
    to_minute,
)
from models.reach import ReachTracker, official_posts_summary
from models.rumour_tracker import RumourTracker, TrackerBatch
from models.times import event_time
from models.webcare import WebcareQueue, questions_summary

SUGGEST_CANDIDATES = 50  # active clusters (highest rumour score first) a rebuttal is matched to


@dataclass
class OfficialBatch:
    changed_posts: list[dict[str, Any]] = field(default_factory=list)  # reach rows
    webcare: list[dict[str, Any]] = field(default_factory=list)  # new / answered items
    race_events: list[dict[str, Any]] = field(default_factory=list)  # fired / resolved
    suggestions: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)  # pairs linked in this batch


class OfficialTracker:
    def __init__(self, registry: OfficialRegistry, *, race: RaceConfig | None = None,
                 auto_link: bool = True, min_confidence: float = 0.5,
                 min_best: float = 0.25, min_cluster_size: int = 3) -> None:
        """``auto_link``: link an official post to the cluster it matches best (confidence
        >= ``min_best``) and to any other cluster it matches with >= ``min_confidence``."""
        self.registry = registry
        self.reach = ReachTracker(registry)
        self.webcare = WebcareQueue(registry)
        self.race_config = race or RaceConfig()
        self.auto_link = auto_link
        self.min_confidence = min_confidence
        self.min_best = min_best
        self.min_cluster_size = min_cluster_size
        self.races: dict[tuple[str, str], RebuttalRace] = {}
        # the races by official post and by cluster (a batch touches a few of thousands)
        self._by_post: dict[str, set[tuple[str, str]]] = {}
        self._by_cluster: dict[str, set[tuple[str, str]]] = {}
        self._published: dict[tuple[str, str], int] = {}  # race -> revision last taken
        self.suggestions: dict[tuple[str, str], float] = {}
        self._suggested: set[str] = set()  # official posts judged for suggestions
        self._curves: dict[str, dict[int, int]] = {}  # official post -> minute -> fed count
        self._texts: dict[str, tuple[str, str | None]] = {}  # official post -> text, lang
        self.watermark: float | None = None

    # ------------------------------------------------------------------ linking

    def link(self, official_post: str, cluster: str, rumours: RumourTracker | None = None,
             source: str = "manual") -> dict[str, Any]:
        """Start the race of ``official_post`` against ``cluster`` (idempotent)."""
        key = (official_post, cluster)
        if key not in self.races:
            race = RebuttalRace(official_post, cluster, self.race_config)
            row = self.reach.get(official_post)
            if row is not None:
                race.set_starts(rebuttal=row.get("first_seen"))
                self._feed_rebuttal(race, self._curve_of(official_post, row), fresh=True)
            c = rumours.clusterer.clusters.get(cluster) if rumours is not None else None
            if c is not None:  # the rumour so far: per-minute where still known, else a lump
                race.set_starts(rumour=c.first_seen)
                known = sum(c.minutes.values())
                if c.size > known:
                    race.add_rumour(int(c.first_seen // 60), c.size - known)
                for minute, n in sorted(c.minutes.items()):
                    race.add_rumour(minute, n)
            self.races[key] = race
            self._by_post.setdefault(official_post, set()).add(key)
            self._by_cluster.setdefault(cluster, set()).add(key)
        return {"official_post": official_post, "cluster": cluster, "source": source}

    def unlink(self, official_post: str, cluster: str) -> bool:
        key = (official_post, cluster)
        if self.races.pop(key, None) is None:
            return False
        self._published.pop(key, None)
        for index, name in ((self._by_post, official_post), (self._by_cluster, cluster)):
            keys = index.get(name)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del index[name]
        return True

    def retire(self, clusters: Iterable[str]) -> int:
        """Drop the races of clusters that expired: nothing feeds their rumour side any
        more, and each live race costs a history row per event-minute. The race's last
        summary stays in the state store until its TTL. Returns the races dropped."""
        dropped = 0
        for cluster in clusters:
            for post, _cluster in list(self._by_cluster.get(cluster, ())):
                dropped += self.unlink(post, cluster)
        return dropped

    def changed_races(self) -> list[RebuttalRace]:
        """The races changed since the last call (new, fed or evaluated), to publish."""
        out = [race for key, race in self.races.items()
               if self._published.get(key) != race.revision]
        for race in out:
            self._published[(race.official_post, race.cluster)] = race.revision
        return out

    # ------------------------------------------------------------------ ingest

    def process(self, posts: Sequence[Mapping[str, Any]], rumours: RumourTracker | None = None,
                tracked: TrackerBatch | None = None) -> OfficialBatch:
        out = OfficialBatch()
        # rebuttal candidates: the same for every official post of the batch (the rumour
        # tracker does not change while this runs), so ranked once and only when needed
        candidates: list[tuple[str, str]] | None = None

        def ranked() -> list[tuple[str, str]]:
            nonlocal candidates
            if candidates is None and rumours is not None:
                candidates = [(c.id, c.summary) for c in rumours.top_clusters(
                    SUGGEST_CANDIDATES, min_size=self.min_cluster_size,
                    where=lambda c: not c.official_root and bool(c.summary))]
            return candidates or []

        for post in posts:
            t = event_time(post.get("created_at"))  # 9999: no time (MAX_AHEAD_S)
            if t is not None:
                self.watermark = t if self.watermark is None else max(self.watermark, t)
            author = self.registry.author_of(post)
            if author is not None and isinstance(post.get("id"), str) \
                    and not (post.get("repost_of") or post.get("kind") in ("like", "repost")):
                self._texts.setdefault(post["id"], (str(post.get("text") or ""),
                                                    post.get("lang") or None))
        changed = self.reach.feed(posts)
        out.webcare = self.webcare.feed(posts)
        for pid in changed:
            row = self.reach.get(pid)
            if row is None:
                continue
            out.changed_posts.append(row)
            curve = self._curve_of(pid, row)
            for key in self._by_post.get(pid, ()):
                self._feed_rebuttal(self.races[key], curve, fresh=False)
            self._curves[pid] = curve
            if pid in self._texts and rumours is not None and pid not in self._suggested:
                out.suggestions += self._suggest(pid, ranked)
        if tracked is not None:  # the rumour side: new posts of linked clusters
            times: dict[str, float | None] | None = None
            for a in tracked.annotations:
                keys = self._by_cluster.get(a.cluster) if a.how != "redelivered" else None
                if not keys:
                    continue
                if times is None:
                    times = {str(p.get("id")): event_time(p.get("created_at")) for p in posts}
                minute = int((times.get(a.id) or self.watermark or 0.0) // 60)
                for key in keys:
                    self.races[key].add_rumour(minute)
            self.retire(c.id for c in tracked.expired)
        if self.auto_link:  # per official post: its best match, and any other confident one
            best: dict[str, float] = {}
            for s in out.suggestions:
                best[s["official_post"]] = max(best.get(s["official_post"], 0.0),
                                               s["confidence"])
            for s in out.suggestions:
                top = s["confidence"] == best[s["official_post"]]
                if s["confidence"] >= (self.min_best if top else self.min_confidence):
                    out.links.append(self.link(s["official_post"], s["cluster"], rumours,
                                               "auto"))
        self._forget_untracked()
        if self.watermark is not None:
            until = int(self.watermark // 60)
            for race in self.races.values():
                for ev in race.advance(until):
                    out.race_events.append({**ev, "official_post": race.official_post,
                                            "cluster": race.cluster})
        return out

    def _forget_untracked(self) -> None:
        """Drop the texts, fed curves and suggestion verdicts of official posts the reach
        tracker no longer follows (past its ``max_posts`` it evicts the oldest). Before,
        these grew with every official post of the event. Swept when they hold twice the
        tracker's cap, so a post costs O(1) amortised."""
        cap = 2 * max(self.reach.max_posts, 1)
        if max(len(self._texts), len(self._curves), len(self._suggested)) <= cap:
            return
        live = self.reach.posts
        self._texts = {k: v for k, v in self._texts.items() if k in live}
        self._curves = {k: v for k, v in self._curves.items() if k in live}
        self._suggested = {k for k in self._suggested if k in live}
        self.suggestions = {k: v for k, v in self.suggestions.items() if k[0] in live}

    def _curve_of(self, pid: str, row: Mapping[str, Any]) -> dict[int, int]:
        """Per-minute rebuttal reach (engagements + the official post itself)."""
        return {to_minute(m): n for m, n in rebuttal_minutes(row)}

    def _feed_rebuttal(self, race: RebuttalRace, curve: Mapping[int, int], *,
                       fresh: bool) -> None:
        before = {} if fresh else self._curves.get(race.official_post, {})
        for minute, n in curve.items():
            delta = n - before.get(minute, 0)
            if delta > 0:
                race.add_rebuttal(minute, delta)

    def _suggest(self, pid: str, candidates: Callable[[], list[tuple[str, str]]]
                 ) -> list[dict[str, Any]]:
        """Clusters the official post ``pid`` seems to rebut, among ``candidates()`` (the
        top active clusters by rumour score; ranked only for a post with a denial cue:
        without one nothing matches)."""
        text, lang = self._texts[pid]
        self._suggested.add(pid)
        out = []
        cues = denial_cues(text, lang)
        matches = suggest_rebuttals(text, lang, candidates(), cues=cues) if cues else []
        for cid, confidence in matches:
            self.suggestions[(pid, cid)] = confidence
            out.append({"official_post": pid, "cluster": cid, "confidence": confidence})
        if not out:
            self.suggestions[(pid, "")] = 0.0  # judged once: no candidate
        return out

    # ------------------------------------------------------------------ read side

    def top_races(self, k: int) -> list[RebuttalRace]:
        """The ``k`` linked pairs with the largest rumour reach (rank 1 = biggest rumour)."""
        return sorted(self.races.values(),
                      key=lambda r: (-r.rumour_total, r.official_post, r.cluster))[:k]

    def summary(self) -> dict[str, Any]:
        return {"official_posts": official_posts_summary(self.reach),
                "rebuttals": rebuttals_summary(self.races.values()),
                "questions": questions_summary(self.webcare)}
