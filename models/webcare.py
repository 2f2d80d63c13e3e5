"""Webcare: citizens' questions and complaints addressed to official accounts.

A post is *addressed* to an official account when it mentions the account's handle (on the
post's platform; see :class:`models.official.OfficialRegistry` for handle spellings) or
replies to a post written by an official account. Posts *by* official accounts, reposts,
likes and deletions are never addressed. Quoting an official post without mentioning it is
talking *about* it to one's own followers, not *to* the account: not addressed.

An addressed post becomes an item when :func:`classify_request` finds a question (a
question mark, or an interrogative opening such as "waarom", "wanneer", "hoe", "waar kan
ik", "kan iemand", "why", "when", "how", "is it", ...) or a complaint ("schandalig",
"belachelijk", "geen politie te zien", "terrible", "disgrace", ...). Questions win when
both apply.

An item is *answered* by the first reply from an official account whose ``reply_to`` is
the item's id, or that replies to a follow-up in the same thread (the asker's reply to the
question or to an official reply in that thread). Any official account may answer (the
citizen got an answer); ``answered_by_addressee`` tells whether it was the addressed one.

:class:`WebcareQueue` is exact and idempotent under re-delivery (items keyed by post id)
and tolerant of out-of-order arrival: candidate replies whose parent is not known yet, and
official replies whose question is not known yet, wait in bounded buffers
(``max_pending`` entries) and are resolved when the parent / question arrives. A waiting
entry is dropped once it is more than ``pending_horizon_s`` of event time behind the newest
post seen *and* arrived more than ``pending_wall_s`` of processing time ago. That is the
rule of :class:`models.pending.PendingBuffer`, shared with :class:`models.reach.ReachTracker`:
partitions read side by side, after a restart or on a slow machine, can put a reply many
minutes of event time ahead of its parent.
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from models.event import OfficialAccount
from models.official import OfficialRegistry
from models.pending import PendingBuffer
from models.reach import author_key, record_kind
from models.text import URL, fold, mentions, normalize
from models.times import event_time, parse_time

__all__ = [
    "WebcareItem",
    "WebcareQueue",
    "classify_request",
    "percentile",
    "questions_summary",
]

# tables of the pending buffer
_CAND, _ANSWERS, _FOLLOWUPS = "candidate", "answer", "followup"
_LEADING_MENTIONS = re.compile(r"^(?:\s*@[\w.\-]+(?:@[\w.\-]+)?[,:]?)+\s*")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")

# An interrogative opening (after leading mentions) marks a question without "?".
_OPENERS_1 = frozenset({
    # nl
    "waarom", "wanneer", "hoe", "hoelang", "hoeveel", "waar", "waarheen", "wat", "wie",
    "welke", "welk", "klopt", "mag", "mogen", "kan", "kunnen", "kun", "moet", "moeten",
    "rijdt", "rijden", "gaat", "gaan", "weet", "weten", "zijn", "is", "heeft", "hebben",
    "wordt", "worden",
    # en
    "why", "when", "how", "where", "what", "who", "which", "can", "could", "would", "will",
    "should", "are", "was", "were", "do", "does", "did", "has", "have", "any",
    "anyone", "anybody",
})
# Phrases anywhere in the text.
_QUESTION_PHRASES = (
    "kan iemand", "kunnen jullie", "kun je", "weet iemand", "weten jullie",
    "wat is er aan de hand", "waar kan ik", "waar moet ik", "hoe kom ik", "hoe kan ik",
    "wat moet ik", "is het waar", "klopt het", "graag reactie", "graag antwoord",
    "can someone", "can anyone", "does anyone know", "anyone know", "what is going on",
    "what's going on", "where can i", "where do i", "how do i", "what should i",
    "please confirm", "please advise",
)
_COMPLAINT_PHRASES = (
    # nl
    "schandalig", "belachelijk", "geen politie te zien", "nergens politie", "waar is de politie",
    "waar blijft de politie", "waardeloos", "slecht geregeld", "slecht georganiseerd",
    "schande", "onacceptabel", "onverantwoord", "klachtenlijn", "ik wil een klacht",
    "klacht indienen", "niemand doet iets", "doe er wat aan", "doe iets",
    # en
    "terrible", "disgrace", "disgraceful", "ridiculous", "unacceptable", "useless",
    "shameful", "appalling", "no police anywhere", "where are the police",
    "where were the police", "do something", "complaint",
)
_COMPLAINT_RE = re.compile(r"\b(?:" + "|".join(re.escape(p) for p in _COMPLAINT_PHRASES)
                           + r")\b")
_QUESTION_RE = re.compile(r"\b(?:" + "|".join(re.escape(p) for p in _QUESTION_PHRASES)
                          + r")\b")


def classify_request(text: str, lang: str | None = None) -> str | None:
    """``"question"``, ``"complaint"`` or None for a post's text (Dutch and English cues;
    ``lang`` is accepted for future per-language rules and currently unused)."""
    del lang
    body = URL.sub(" ", normalize(text))
    folded = fold(body)
    if "?" in folded or "¿" in folded:
        return "question"
    stripped = _LEADING_MENTIONS.sub("", folded)
    words = _WORD.findall(stripped)
    if words and words[0] in _OPENERS_1 and len(words) >= 3:
        return "question"
    if _QUESTION_RE.search(folded):
        return "question"
    if _COMPLAINT_RE.search(folded):
        return "complaint"
    return None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (``q`` in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    xs = sorted(values)
    if len(xs) == 1:
        return float(xs[0])
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return float(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))


@dataclass
class WebcareItem:
    id: str
    platform: str | None
    to_account: str
    role: str
    kind: str  # question | complaint
    via: str  # mention | reply
    asker: str | None
    asker_handle: str | None
    text: str
    created_at: str | None
    ts: float | None
    answered_by: str | None = None
    answered_by_account: str | None = None
    answered_by_addressee: bool | None = None
    answered_at: str | None = None
    response_s: float | None = None

    @property
    def answered(self) -> bool:
        return self.answered_by is not None

    def to_dict(self, now: float | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "platform": self.platform, "to_account": self.to_account,
            "role": self.role, "kind": self.kind, "via": self.via, "asker": self.asker,
            "asker_handle": self.asker_handle, "text": self.text,
            "created_at": self.created_at, "answered": self.answered,
            "answered_by": self.answered_by, "answered_by_account": self.answered_by_account,
            "answered_by_addressee": self.answered_by_addressee,
            "answered_at": self.answered_at, "response_s": self.response_s,
        }
        if now is not None:
            out["age_s"] = max(0.0, now - self.ts) if self.ts is not None else None
        return out


@dataclass(frozen=True, slots=True)
class _Answer:
    id: str
    account: OfficialAccount
    created_at: str | None
    ts: float | None


def _now(value: float | str | datetime | None) -> float | None:
    if value is None or isinstance(value, float | int):
        return None if value is None else float(value)
    if isinstance(value, datetime):
        return value.timestamp() if value.tzinfo is not None else parse_time(value.isoformat())
    return parse_time(value)


class WebcareQueue:
    """Open and answered questions/complaints to official accounts (see module doc)."""

    def __init__(self, registry: OfficialRegistry, *, pending_horizon_s: float = 600.0,
                 pending_wall_s: float = 120.0, max_pending: int = 50_000,
                 max_threads: int = 200_000, max_official_posts: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = registry
        self.max_threads = max_threads
        self.max_official_posts = max_official_posts
        self.items: dict[str, WebcareItem] = {}
        self._official_posts: dict[str, OfficialAccount] = {}
        # post id -> question id, for the question itself and follow-ups in its thread
        self._thread: dict[str, str] = {}
        # records waiting for their parent, one bound over three tables: candidate requests
        # (_CAND: the post), official replies (_ANSWERS: an _Answer) and asker follow-ups
        # (_FOLLOWUPS: the asker key)
        self._pending: PendingBuffer[Any] = PendingBuffer(
            horizon_s=pending_horizon_s, wall_s=pending_wall_s, max_items=max_pending,
            clock=clock)
        self._seen: set[str] = set()
        self._seen_order: deque[str] = deque()
        self.watermark: float | None = None

    # -- feeding ------------------------------------------------------------------------
    def feed(self, posts: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Process posts in arrival order; returns changes: ``{"event": "new" | "answered",
        **item}`` for each new item and each item answered in this batch."""
        changes: list[dict[str, Any]] = []
        for post in posts:
            changes.extend(self._one(post))
        self._expire()
        return changes

    def add(self, post: Mapping[str, Any]) -> WebcareItem | None:
        """Add one post if it is an addressed question/complaint (idempotent)."""
        before = set(self.items)
        self.feed([post])
        pid = post.get("id")
        return self.items.get(pid) if isinstance(pid, str) and pid not in before else None

    def _one(self, post: Mapping[str, Any]) -> list[dict[str, Any]]:
        pid = post.get("id")
        if isinstance(pid, int) and not isinstance(pid, bool):
            pid = str(pid)
        if not isinstance(pid, str) or not pid:
            return []
        ts = event_time(post.get("created_at"))  # 9999: no time (MAX_AHEAD_S)
        if ts is not None and (self.watermark is None or ts > self.watermark):
            self.watermark = ts
        if pid in self._seen or pid in self.items:
            return []
        self._remember(pid)
        kind = record_kind(post)
        if kind not in ("post", "reply", "quote"):
            return []
        reply_to = post.get("reply_to")
        reply_to = reply_to if isinstance(reply_to, str) and reply_to else None
        acc = self.registry.author_of(post)
        changes: list[dict[str, Any]] = []
        if acc is not None:
            self._official_posts[pid] = acc
            if len(self._official_posts) > self.max_official_posts:
                self._official_posts.pop(next(iter(self._official_posts)))
            # requests that replied to this post before it arrived
            for cand in self._pending.take(pid, table=_CAND).values():
                changes.extend(self._consider(cand, parent_account=acc))
            if reply_to is not None:
                answer = _Answer(pid, acc, _str(post.get("created_at")), ts)
                if reply_to in self._thread:
                    changes.extend(self._answer(self._thread[reply_to], answer))
                else:
                    self._pending.park(reply_to, pid, answer, ts, self.watermark, table=_ANSWERS)
            if pid in self._thread:  # asker follow-ups to this answer that came first
                changes.extend(self._adopt_followups(pid, self._thread[pid]))
            else:
                self._pending.take(pid, table=_FOLLOWUPS)
            return changes
        parent_acc = self._official_posts.get(reply_to) if reply_to else None
        changes.extend(self._consider(post, parent_account=parent_acc,
                                      may_wait=reply_to is not None))
        if pid not in self.items and reply_to is not None:
            asker = author_key(post)
            q = self._thread.get(reply_to)
            if q is not None:
                if self.items[q].asker == asker:
                    self._set_thread(pid, q)
                    changes.extend(self._drain_answers(pid, q))
                    changes.extend(self._adopt_followups(pid, q))
            else:
                self._pending.park(reply_to, pid, asker, ts, self.watermark, table=_FOLLOWUPS)
        return changes

    def _consider(self, post: Mapping[str, Any], *, parent_account: OfficialAccount | None,
                  may_wait: bool = False) -> list[dict[str, Any]]:
        pid = str(post["id"])
        if pid in self.items:
            return []
        text = post.get("text")
        text = text if isinstance(text, str) else ""
        request = classify_request(text, _str(post.get("lang")))
        if request is None:
            return []
        platform = _str(post.get("platform"))
        target = parent_account
        via = "reply"
        if target is None:
            via = "mention"
            found = post.get("mentions")
            handles = ([m for m in found if isinstance(m, str)] if isinstance(found, list)
                       else mentions(text))
            for handle in handles:
                target = self.registry.is_official(platform, handle)
                if target is not None:
                    break
        if target is None:
            if may_wait:
                parent = post.get("reply_to")
                if isinstance(parent, str) and parent:
                    self._pending.park(parent, pid, post, event_time(post.get("created_at")),
                                       self.watermark, table=_CAND)
            return []
        author = post.get("author")
        asker_handle = author.get("handle") if isinstance(author, Mapping) else None
        item = WebcareItem(
            id=pid, platform=platform, to_account=target.handle, role=target.role.value,
            kind=request, via=via, asker=author_key(post),
            asker_handle=asker_handle if isinstance(asker_handle, str) else None, text=text,
            created_at=_str(post.get("created_at")), ts=event_time(post.get("created_at")),
        )
        self.items[pid] = item
        self._set_thread(pid, pid)
        changes = [{"event": "new", **item.to_dict()}]
        changes.extend(self._drain_answers(pid, pid))
        changes.extend(self._adopt_followups(pid, pid))
        return changes

    def _adopt_followups(self, post_id: str, question: str) -> list[dict[str, Any]]:
        """Thread the asker's replies to ``post_id`` that arrived before it (recursively)."""
        changes: list[dict[str, Any]] = []
        asker = self.items[question].asker
        todo = [post_id]
        while todo:
            for fid, who in self._pending.take(todo.pop(), table=_FOLLOWUPS).items():
                if who == asker and fid not in self._thread:
                    self._set_thread(fid, question)
                    changes.extend(self._drain_answers(fid, question))
                    todo.append(fid)
        return changes

    def _drain_answers(self, post_id: str, question: str) -> list[dict[str, Any]]:
        changes: list[dict[str, Any]] = []
        for answer in self._pending.take(post_id, table=_ANSWERS).values():
            changes.extend(self._answer(question, answer))
        return changes

    def _answer(self, question: str, answer: _Answer) -> list[dict[str, Any]]:
        item = self.items.get(question)
        if item is None:
            return []
        self._set_thread(answer.id, question)
        if item.answered:  # keep the earliest answer, whatever the arrival order
            known = parse_time(item.answered_at)
            if answer.ts is None or known is None or answer.ts >= known:
                return []
        item.answered_by = answer.id
        item.answered_by_account = answer.account.handle
        item.answered_by_addressee = answer.account.handle == item.to_account
        item.answered_at = answer.created_at
        item.response_s = (max(0.0, answer.ts - item.ts)
                           if answer.ts is not None and item.ts is not None else None)
        return [{"event": "answered", **item.to_dict()}]

    # -- bounded bookkeeping --------------------------------------------------------------
    def _remember(self, pid: str) -> None:
        self._seen.add(pid)
        self._seen_order.append(pid)
        if len(self._seen_order) > self.max_threads:
            self._seen.discard(self._seen_order.popleft())

    def _set_thread(self, pid: str, question: str) -> None:
        self._thread[pid] = question
        if len(self._thread) > self.max_threads:
            self._thread.pop(next(iter(self._thread)))

    def _expire(self) -> None:
        self._pending.expire(self.watermark)

    # -- reading ------------------------------------------------------------------------
    def open_items(self, now: float | str | datetime | None = None) -> list[dict[str, Any]]:
        """Unanswered items, oldest first, with ``age_s`` at ``now`` (epoch s, ISO or aware
        datetime; default: the newest event time seen)."""
        t = _now(now)
        if t is None:
            t = self.watermark
        rows = [i for i in self.items.values() if not i.answered]
        rows.sort(key=lambda i: (i.ts is None, i.ts or 0.0, i.id))
        return [i.to_dict(now=t) for i in rows]

    def open_stats(self, now: float | None = None) -> tuple[int, float]:
        """(unanswered items, age in s of the oldest of them at ``now``; default: the newest
        event time seen): what ``open_items`` gives the gauges, without building the rows."""
        t = self.watermark if now is None else now
        count, oldest = 0, 0.0
        for item in self.items.values():
            if not item.answered:
                count += 1
                if t is not None and item.ts is not None:
                    oldest = max(oldest, t - item.ts)
        return count, oldest

    def all_items(self) -> list[dict[str, Any]]:
        rows = sorted(self.items.values(), key=lambda i: (i.ts is None, i.ts or 0.0, i.id))
        return [i.to_dict() for i in rows]

    def response_stats(self) -> dict[str, dict[str, Any]]:
        """Per addressed account: items, answered, open, median and p90 response time (s)."""
        by: dict[str, list[WebcareItem]] = {}
        for item in self.items.values():
            by.setdefault(item.to_account, []).append(item)
        out: dict[str, dict[str, Any]] = {}
        for account, items in sorted(by.items()):
            times = [i.response_s for i in items if i.response_s is not None]
            answered = sum(1 for i in items if i.answered)
            out[account] = {
                "items": len(items), "answered": answered, "open": len(items) - answered,
                "median_s": percentile(times, 50.0), "p90_s": percentile(times, 90.0),
            }
        return out

    @property
    def pending(self) -> int:
        return len(self._pending)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def questions_summary(queue: WebcareQueue) -> list[dict[str, Any]]:
    """``questions`` of ``crowdwatch score --summary``: id, to_account, kind, answered."""
    return [{"id": i["id"], "to_account": i["to_account"], "kind": i["kind"],
             "answered": i["answered"]} for i in queue.all_items()]
