"""How far official messages travel: reposts, replies, quotes, likes, accounts, audience.

:class:`ReachTracker` is fed enriched post dicts (``EnrichedPost.to_dict()``; canonical
post dicts work too: ``kind`` is derived like :func:`models.enrich.post_kind` when absent)
in arrival order. It tracks *only* posts written by official accounts (see
:class:`models.official.OfficialRegistry`) and counts their **direct** engagements:

* ``reposts``: records with ``repost_of == id`` (kind ``repost``);
* ``quotes``: records with ``quote_of == id`` (kind ``quote``; a reply that also embeds a
  quote counts as a reply to its parent *and* a quote of the quoted post);
* ``replies``: records with ``reply_to == id`` (kind ``reply``), whoever wrote them,
  official accounts included (a partner agency's repost is a repost);
* ``likes``: records of kind ``like`` whose ``like_of`` (or ``subject``) is ``id``
  (Bluesky sends them; the generator and Mastodon's streams do not).

These are exactly the ``reposts`` / ``replies`` / ``quotes`` of the generator's truth
(``models/generate.py`` counts each emitted record once, by kind, on its direct parent).

Exact and idempotent: every engagement is counted once per official post, keyed by the
engagement's post id, so re-delivered records change nothing. Engagements that arrive
*before* the official post (out of order by a few seconds, or across partitions) wait in a
bounded pending buffer keyed by parent id and are counted when the post arrives.

Memory bounds (all configurable):

* tracked official posts: ``max_posts`` (oldest evicted);
* per post, the dedupe window of engagement ids: ``max_ids_per_post`` (FIFO); a record
  re-delivered after more than that many *newer* engagements of the same post would be
  counted again. The sets of engaged accounts and of resharers are exact and grow with
  the number of distinct engaged accounts of official posts only;
* the pending buffer: engagements whose parent is not (yet) a known official post, kept
  while they are less than ``pending_horizon_s`` seconds of event time behind the newest
  record seen *or* arrived less than ``pending_wall_s`` seconds of processing time ago, and
  at most ``max_pending`` entries; an official post arriving later than that loses them.
  The processing-time grace matters after a crash or a rebalance: the partitions' backlogs
  are then read side by side, so a fast replay or a lagging partition can put engagements
  many minutes of event time ahead of their official post.

Redis mirror (the lead's part): ``distinct_accounts`` is a HyperLogLog
(``PFADD official:{id}:accounts {platform}:{author}``; ``PFCOUNT``; ~0.81 % standard
error, 12 KiB a key) while this class keeps the exact set; the audience needs a set of
resharers (``SADD official:{id}:resharers`` returns 1 for a new one -> ``INCRBY
official:{id}:audience followers``); dedupe is ``SADD official:{id}:seen {engagement id}``
(or a ``SET NX`` with a TTL as the window).
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from models.official import OfficialRegistry
from models.pending import PendingBuffer
from models.times import event_time, parse_time

__all__ = [
    "DEFAULT_REPOST_MILESTONES",
    "OfficialPostReach",
    "ReachTracker",
    "author_key",
    "engagement_edges",
    "official_posts_summary",
    "parse_time",
    "record_kind",
]

DEFAULT_REPOST_MILESTONES: tuple[int, ...] = (10, 50, 100)
_KINDS = frozenset({"post", "reply", "quote", "repost", "like", "delete"})


def record_kind(post: Mapping[str, Any]) -> str:
    """``kind`` of a post dict: its own ``kind`` field, else derived from its references
    (the same rule as :func:`models.enrich.post_kind`)."""
    kind = post.get("kind")
    if isinstance(kind, str) and kind in _KINDS:
        return kind
    if kind is not None:
        return "other"
    if post.get("repost_of"):
        return "repost"
    if post.get("quote_of"):
        return "quote"
    if post.get("reply_to"):
        return "reply"
    return "post"


def _ref(post: Mapping[str, Any], name: str) -> str | None:
    value = post.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) and value else None


def engagement_edges(post: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(parent id, engagement kind)`` pairs of one record (usually zero or one)."""
    kind = record_kind(post)
    if kind == "repost":
        parent = _ref(post, "repost_of")
        return [(parent, "repost")] if parent else []
    if kind == "like":
        parent = _ref(post, "like_of") or _ref(post, "subject")
        return [(parent, "like")] if parent else []
    if kind not in ("reply", "quote", "post"):
        return []
    edges: list[tuple[str, str]] = []
    reply_to = _ref(post, "reply_to")
    quote_of = _ref(post, "quote_of")
    if reply_to and kind in ("reply", "post"):
        edges.append((reply_to, "reply"))
    if quote_of and quote_of != reply_to:
        edges.append((quote_of, "quote"))
    return edges


def author_key(post: Mapping[str, Any]) -> str | None:
    """``platform:author-id`` (else ``platform:@handle``) of a post, None when unknown."""
    author = post.get("author")
    if not isinstance(author, Mapping):
        return None
    platform = post.get("platform") or "unknown"
    aid = author.get("id")
    if isinstance(aid, str) and aid:
        return f"{platform}:{aid}"
    handle = author.get("handle")
    if isinstance(handle, str) and handle:
        return f"{platform}:@{handle.lstrip('@').lower()}"
    return None


def _followers(post: Mapping[str, Any]) -> int | None:
    author = post.get("author")
    if not isinstance(author, Mapping):
        return None
    value = author.get("followers")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None




def minute_iso(minute: int) -> str:
    """``YYYY-MM-DDTHH:MM:00Z`` of an epoch minute number."""
    dt = datetime.fromtimestamp(minute * 60, UTC)
    # not strftime("%Y"): glibc writes year 1 as "1", which fromisoformat cannot read back
    return f"{dt.year:04d}-{dt:%m-%dT%H:%M}:00Z"


@dataclass(frozen=True, slots=True)
class _Engagement:
    id: str
    kind: str
    account: str | None
    followers: int | None
    ts: float | None


@dataclass
class OfficialPostReach:
    """Reach state of one official post."""

    id: str
    account: str
    platform: str | None
    role: str
    kind: str
    created_at: str | None
    ts: float | None
    author: str | None
    milestones: tuple[int, ...]
    max_ids: int
    reposts: int = 0
    replies: int = 0
    quotes: int = 0
    likes: int = 0
    seen_ids: set[str] = field(default_factory=set)
    seen_order: deque[str] = field(default_factory=deque)
    accounts: set[str] = field(default_factory=set)
    resharers: dict[str, int | None] = field(default_factory=dict)
    minutes: dict[int, int] = field(default_factory=dict)
    # the smallest max(milestones) repost times, as a max-heap (negated)
    _repost_heap: list[float] = field(default_factory=list)

    def add(self, eng: _Engagement) -> bool:
        """Count one engagement; False when it was counted before (re-delivery)."""
        if eng.id in self.seen_ids or eng.id == self.id:
            return False
        self.seen_ids.add(eng.id)
        self.seen_order.append(eng.id)
        if len(self.seen_order) > self.max_ids:
            self.seen_ids.discard(self.seen_order.popleft())
        if eng.kind == "repost":
            self.reposts += 1
        elif eng.kind == "reply":
            self.replies += 1
        elif eng.kind == "quote":
            self.quotes += 1
        else:
            self.likes += 1
        if eng.account is not None:
            self.accounts.add(eng.account)
            if eng.kind in ("repost", "quote"):
                old = self.resharers.get(eng.account)
                if eng.account not in self.resharers or (
                        eng.followers is not None and (old is None or eng.followers > old)):
                    self.resharers[eng.account] = eng.followers
        if eng.ts is not None:
            minute = int(eng.ts // 60)
            self.minutes[minute] = self.minutes.get(minute, 0) + 1
            if eng.kind == "repost" and self.milestones:
                cap = max(self.milestones)
                heap = self._repost_heap
                if len(heap) < cap:
                    heapq.heappush(heap, -eng.ts)
                elif -heap[0] > eng.ts:
                    heapq.heapreplace(heap, -eng.ts)
        return True

    @property
    def distinct_accounts(self) -> int:
        return len(self.accounts - {self.author}) if self.author else len(self.accounts)

    @property
    def estimated_audience(self) -> int:
        return sum(f or 0 for acc, f in self.resharers.items() if acc != self.author)

    def time_to_reposts(self) -> dict[str, float | None]:
        times = sorted(-x for x in self._repost_heap)
        out: dict[str, float | None] = {}
        for n in self.milestones:
            if self.ts is None or len(times) < n:
                out[str(n)] = None
            else:
                out[str(n)] = max(0.0, times[n - 1] - self.ts)
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "account": self.account,
            "platform": self.platform,
            "role": self.role,
            "kind": self.kind,
            "reposts": self.reposts,
            "replies": self.replies,
            "quotes": self.quotes,
            "likes": self.likes,
            "engagements": self.reposts + self.replies + self.quotes + self.likes,
            "distinct_accounts": self.distinct_accounts,
            "estimated_audience": self.estimated_audience,
            "audience_unknown": sum(1 for acc, f in self.resharers.items()
                                    if f is None and acc != self.author),
            "first_seen": self.created_at,
            "curve": [[minute_iso(m), c] for m, c in sorted(self.minutes.items())],
            "time_to_reposts": self.time_to_reposts(),
        }


class ReachTracker:
    """Reach of every official post, fed with enriched post dicts (see module doc)."""

    def __init__(
        self,
        registry: OfficialRegistry,
        *,
        milestones: Sequence[int] = DEFAULT_REPOST_MILESTONES,
        max_posts: int = 10_000,
        max_ids_per_post: int = 250_000,
        pending_horizon_s: float = 300.0,
        pending_wall_s: float = 120.0,
        max_pending: int = 200_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if any(n < 1 for n in milestones):
            raise ValueError("repost milestones are positive counts")
        self.registry = registry
        self.milestones = tuple(sorted(set(milestones)))
        self.max_posts = max_posts
        self.max_ids_per_post = max_ids_per_post
        self.posts: dict[str, OfficialPostReach] = {}
        # engagements whose parent is not (yet) a known official post
        self._pending: PendingBuffer[_Engagement] = PendingBuffer(
            horizon_s=pending_horizon_s, wall_s=pending_wall_s, max_items=max_pending,
            clock=clock)
        self.watermark: float | None = None  # newest event time seen

    # -- feeding ------------------------------------------------------------------------
    def feed(self, posts: Iterable[Mapping[str, Any]]) -> list[str]:
        """Process a batch in arrival order; returns the ids of official posts that changed."""
        changed: dict[str, None] = {}
        for post in posts:
            for pid in self._one(post):
                changed[pid] = None
        self._expire()
        return list(changed)

    def track(self, post: Mapping[str, Any]) -> bool:
        """Start tracking ``post`` if an official account wrote it (idempotent)."""
        return self._track(post) is not None

    def _one(self, post: Mapping[str, Any]) -> list[str]:
        pid = _ref(post, "id")
        if pid is None:
            return []
        ts = event_time(post.get("created_at"))  # 9999: no time (MAX_AHEAD_S)
        if ts is not None and (self.watermark is None or ts > self.watermark):
            self.watermark = ts
        changed: list[str] = []
        kind = record_kind(post)
        edges = engagement_edges(post)
        if edges:
            eng_account = author_key(post)
            followers = _followers(post)
            for parent, ekind in edges:
                eng = _Engagement(pid, ekind, eng_account, followers, ts)
                state = self.posts.get(parent)
                if state is not None:
                    if state.add(eng):
                        changed.append(parent)
                else:
                    self._park(parent, eng)
        if kind not in ("like", "delete", "other") and pid not in self.posts:
            state = self._track(post)
            if state is not None:
                changed.append(pid)
        return changed

    def _track(self, post: Mapping[str, Any]) -> OfficialPostReach | None:
        pid = _ref(post, "id")
        if pid is None:
            return None
        if pid in self.posts:
            return self.posts[pid]
        acc = self.registry.author_of(post)
        if acc is None:
            return None
        platform = post.get("platform")
        created = post.get("created_at")
        state = OfficialPostReach(
            id=pid, account=acc.handle, platform=platform if isinstance(platform, str) else None,
            role=acc.role.value, kind=record_kind(post),
            created_at=created if isinstance(created, str) else None,
            ts=event_time(created), author=author_key(post), milestones=self.milestones,
            max_ids=self.max_ids_per_post,
        )
        self.posts[pid] = state
        for eng in self._pending.take(pid).values():
            state.add(eng)
        if len(self.posts) > self.max_posts:
            oldest = min(self.posts.values(), key=lambda s: (s.ts is None, s.ts or 0.0))
            del self.posts[oldest.id]
        return state

    def _park(self, parent: str, eng: _Engagement) -> None:
        self._pending.park(parent, eng.id, eng, eng.ts, self.watermark)

    def _expire(self) -> None:
        self._pending.expire(self.watermark)

    # -- reading ------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Engagements waiting for a parent that is not (yet) a known official post."""
        return len(self._pending)

    @property
    def dropped_pending(self) -> int:
        """Engagements forgotten unmatched (normal for replies to non-official posts)."""
        return self._pending.dropped

    def get(self, post_id: str) -> dict[str, Any] | None:
        state = self.posts.get(post_id)
        return state.summary() if state is not None else None

    def totals(self) -> list[dict[str, Any]]:
        """Per tracked official post: role, the four counts and the estimated audience;
        what the reach gauges need, without the curves and milestones of ``summary``."""
        return [{"role": s.role, "reposts": s.reposts, "replies": s.replies,
                 "quotes": s.quotes, "likes": s.likes,
                 "estimated_audience": s.estimated_audience} for s in self.posts.values()]

    def summary(self) -> list[dict[str, Any]]:
        """One dict per tracked official post, oldest first (see module doc)."""
        states = sorted(self.posts.values(), key=lambda s: (s.ts is None, s.ts or 0.0, s.id))
        return [s.summary() for s in states]


def official_posts_summary(reach: ReachTracker | Sequence[Mapping[str, Any]]
                           ) -> list[dict[str, Any]]:
    """``official_posts`` of ``crowdwatch score --summary``: id, account, role, counts,
    distinct accounts and estimated audience."""
    rows = reach.summary() if isinstance(reach, ReachTracker) else reach
    keys = ("id", "account", "role", "reposts", "replies", "quotes", "likes",
            "distinct_accounts", "estimated_audience")
    return [{k: row.get(k) for k in keys} for row in rows]
