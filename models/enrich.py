"""The enrichment step: raw record -> validated post -> normalised, language, keywords, areas.

This is the one place the processing order is defined. ``crowdwatch score`` (files)
and the Faust agents (Kafka) both call :class:`Enricher`, so a post gets the same
fields whichever way it came in. Batches in, batches out; no I/O.

With a :class:`models.privacy.Pseudonymiser` (the streams layer passes one by default,
``CROWDWATCH_PSEUDONYMISE_AUTHORS``), ``author.id`` and ``author.handle`` of every
enriched post are keyed pseudonyms (``p:`` + 16 hex), so no raw author id or handle leaves
this stage; followers and verified are kept. The text (and the ``@mentions`` in it) is not
changed.
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from models.event import EventConfig
from models.lang import DEFAULT_LANGUAGES, HybridDetector, LanguageDetectorProtocol
from models.post import Post, Reject, decode_post
from models.privacy import Pseudonymiser
from models.safety import SafetyResult, classify_folded
from models.tagging import Tagger
from models.text import fold, hashtags, mentions, normalize
from models.times import MAX_AHEAD_S


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One input record and where it came from (topic/partition/offset or file/line)."""

    value: bytes | None
    source: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: str
    detail: str
    source: dict[str, Any]
    original: bytes | None

    def to_dict(self) -> dict[str, Any]:
        text: str | None
        try:
            text = self.original.decode("utf-8") if self.original is not None else None
        except UnicodeDecodeError:
            text = None
        return {
            "reason": self.reason,
            "detail": self.detail,
            "source": self.source,
            "original": text,
            "original_b64": (
                base64.b64encode(self.original).decode("ascii") if self.original is not None
                else None
            ),
        }


@dataclass(frozen=True, slots=True)
class EnrichedPost:
    post: Post
    text: str  # normalised
    lang: str
    keywords: tuple[str, ...]
    topics: tuple[str, ...]
    areas: tuple[str, ...]
    area_source: str | None
    hashtags: tuple[str, ...]
    mentions: tuple[str, ...]
    safety: SafetyResult | None = None  # set only for crowd-safety posts

    @property
    def id(self) -> str:
        return self.post.id

    @property
    def kind(self) -> str:
        """post, reply, quote, repost, like or delete (connectors set ``kind``; files may not)."""
        return post_kind(self.post)

    def to_dict(self) -> dict[str, Any]:
        out = self.post.to_dict()
        out.update(
            kind=self.kind,
            text=self.text,
            lang=self.lang,
            source_lang=self.post.lang,
            keywords=list(self.keywords),
            topics=list(self.topics),
            areas=list(self.areas),
            area_source=self.area_source,
            hashtags=list(self.hashtags),
            mentions=list(self.mentions),
        )
        if self.safety is not None:  # optional: present only on crowd-safety posts
            out["safety"] = self.safety.to_dict()
        return out


KINDS = frozenset({"post", "reply", "quote", "repost", "like", "delete"})
#: records that carry no content of their own: counted by kind only, never scored
SIGNAL_KINDS = frozenset({"like", "delete"})


def post_kind(post: Post) -> str:
    kind = post.extra.get("kind")
    if isinstance(kind, str) and kind in KINDS:
        return kind
    if kind is not None:
        return "other"
    if post.repost_of:
        return "repost"
    if post.quote_of:
        return "quote"
    if post.reply_to:
        return "reply"
    return "post"


@dataclass(frozen=True, slots=True)
class PostSummary:
    """What state and metrics need of an enriched post: small and cheap to pickle."""

    id: str
    minute: str  # UTC YYYYMMDDHHMM of created_at (else of processing)
    lang: str
    platform: str | None
    areas: tuple[str, ...]
    topics: tuple[str, ...]
    keywords: tuple[str, ...]
    kind: str = "post"
    #: crowd-safety category (models.safety) and, for those posts only, the text (alert samples)
    safety: str | None = None
    safety_text: str | None = None

    @property
    def is_content(self) -> bool:
        """False for likes and deletions, which are not posts people read."""
        return self.kind not in SIGNAL_KINDS

    def count_fields(self) -> list[str]:
        """The counters this post adds to: posts, lang:, area:, topic:, keyword: (likes and
        deletions only to kind:)."""
        if not self.is_content:
            return [f"kind:{self.kind}"]
        fields = ["posts", f"kind:{self.kind}", f"lang:{self.lang}"]
        fields += [f"area:{a}" for a in self.areas]
        fields += [f"topic:{t}" for t in self.topics]
        fields += [f"keyword:{k}" for k in self.keywords]
        return fields


SAFETY_TEXT_CHARS = 280


def _utc_time(created_at: str | None, now: float) -> datetime | None:
    """An ISO 8601 time in UTC (naive: taken as UTC); None when absent, unreadable or more
    than ``models.times.MAX_AHEAD_S`` after ``now`` or the machine's clock, whichever is
    later (a date of 9999: one such post put its area's mood series at that minute, which
    dropped the area's history and every later post of it until 2026-12-08)."""
    if created_at:
        try:
            dt = datetime.fromisoformat(created_at.replace("Z", "+00:00"))
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            dt = dt.astimezone(UTC)
        except (ValueError, OverflowError):  # OverflowError: 9999-12-31T23:59-14:00
            return None
        return dt if dt.timestamp() <= max(now, time.time()) + MAX_AHEAD_S else None
    return None


def minute_bucket(created_at: str | None, now: float) -> str:
    """UTC minute (YYYYMMDDHHMM) of an ISO 8601 time; ``now`` (epoch s) when absent/unreadable."""
    d = _utc_time(created_at, now) or datetime.fromtimestamp(now, UTC)
    # not strftime("%Y..."): glibc writes a year before 1000 with three digits ("999..."), a
    # key of 11 characters that no reader parses (found by the property test below)
    return f"{d.year:04d}{d.month:02d}{d.day:02d}{d.hour:02d}{d.minute:02d}"


def epoch_minute(created_at: str | None, now: float) -> int:
    """The minute of :func:`minute_bucket` as minutes since the epoch (one parse, no
    formatting: the sentiment stage's mood rows need it for every post)."""
    dt = _utc_time(created_at, now)
    return int(dt.timestamp() // 60) if dt is not None else int(now // 60)


def summarize(post: EnrichedPost, now: float) -> PostSummary:
    return PostSummary(
        id=post.id,
        minute=minute_bucket(post.post.created_at, now),
        lang=post.lang,
        platform=post.post.platform,
        areas=post.areas,
        topics=post.topics,
        keywords=post.keywords,
        kind=post.kind,
        safety=post.safety.category if post.safety is not None else None,
        safety_text=post.text[:SAFETY_TEXT_CHARS] if post.safety is not None else None,
    )


@dataclass
class BatchResult:
    enriched: list[EnrichedPost] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)


class Enricher:
    """Validates and enriches posts. Thread-safe: agents call it from an executor."""

    def __init__(
        self,
        event: EventConfig | None = None,
        *,
        max_text_chars: int = 10_000,
        detector: LanguageDetectorProtocol | None = None,
        pseudonymiser: Pseudonymiser | None = None,
    ) -> None:
        """``pseudonymiser``: replace author ids and handles with keyed pseudonyms (None:
        keep them as they came in)."""
        self.event = event
        self.max_text_chars = max_text_chars
        self.pseudonymiser = pseudonymiser
        languages = set(DEFAULT_LANGUAGES) | set(event.languages if event else ())
        self.detector = detector or HybridDetector(languages)
        self.tagger = Tagger(event)

    def decode(self, record: RawRecord) -> Post | DeadLetter:
        result = decode_post(record.value, max_text_chars=self.max_text_chars)
        if isinstance(result, Reject):
            return DeadLetter(result.reason.value, result.detail, record.source,
                              self.scrub(record.value))
        return result

    def scrub(self, original: bytes | None) -> bytes | None:
        """A rejected record with ``author.id`` / ``author.handle`` pseudonymised (values of
        the wrong type become ``p:redacted``) when it parses as a JSON object with an author;
        otherwise (or without a pseudonymiser) the original bytes unchanged."""
        p = self.pseudonymiser
        if p is None or original is None:
            return original
        try:
            obj = json.loads(original)
        except (ValueError, RecursionError):  # not JSON (or not UTF-8): kept as it came
            return original
        author = obj.get("author") if isinstance(obj, dict) else None
        if not isinstance(author, dict) or not any(
                author.get(f) is not None for f in ("id", "handle")):
            return original
        platform = obj.get("platform") if isinstance(obj.get("platform"), str) else None
        clean = dict(author)
        for name in ("id", "handle"):
            value = clean.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            if isinstance(value, str):
                clean[name] = p.author_value(platform, value) if value.strip() else value
            elif value is not None:
                clean[name] = "p:redacted"
        obj["author"] = clean
        try:
            return json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate escape: keep it escaped
            return json.dumps(obj).encode("ascii")
        except (ValueError, RecursionError):  # pragma: no cover - parsed, so serialisable
            return original

    def pseudonymise(self, post: Post) -> Post:
        """``post`` with its author pseudonymised (unchanged without a pseudonymiser)."""
        p = self.pseudonymiser
        if p is None or post.author is None:
            return post
        author = p.author(post.platform, post.author)
        return post if author == post.author else replace(post, author=author)

    def enrich(self, posts: Sequence[Post]) -> list[EnrichedPost]:
        if self.pseudonymiser is not None:
            posts = [self.pseudonymise(p) for p in posts]
        texts = [normalize(p.text) for p in posts]
        langs = self.detector.detect_batch(texts, [p.lang for p in posts])
        out = []
        for post, text, lang in zip(posts, texts, langs, strict=True):
            folded = fold(text)
            keywords, topics = self.tagger.keywords_for(folded)
            areas, area_source = self.tagger.areas_for(folded, post.geo)
            safety = classify_folded(folded) if post_kind(post) not in SIGNAL_KINDS else None
            out.append(
                EnrichedPost(
                    post=post,
                    text=text,
                    lang=lang,
                    keywords=tuple(keywords),
                    topics=tuple(topics),
                    areas=tuple(areas),
                    area_source=area_source,
                    hashtags=tuple(hashtags(text)),
                    mentions=tuple(mentions(text)),
                    safety=safety if safety is not None and safety.is_safety else None,
                )
            )
        return out

    def process(self, records: Sequence[RawRecord]) -> BatchResult:
        """Decode and enrich a batch; every record ends up enriched or dead-lettered."""
        result = BatchResult()
        posts: list[Post] = []
        for record in records:
            decoded = self.decode(record)
            if isinstance(decoded, DeadLetter):
                result.dead.append(decoded)
            else:
                posts.append(decoded)
        result.enriched = self.enrich(posts) if posts else []
        return result


@dataclass
class Tally:
    """Counts of one run; ``consumed == accepted + rejected`` always holds."""

    consumed: int = 0
    accepted: int = 0
    duplicates: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    by_lang: Counter[str] = field(default_factory=Counter)
    by_area: Counter[str] = field(default_factory=Counter)
    by_keyword: Counter[str] = field(default_factory=Counter)
    by_topic: Counter[str] = field(default_factory=Counter)
    by_platform: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)

    @property
    def rejected(self) -> int:
        return sum(self.by_reason.values())

    def add(self, result: BatchResult, *, fresh: Sequence[bool] | None = None) -> None:
        """Count a batch. ``fresh[i]`` False marks a re-delivered post (counted once only)."""
        self.consumed += len(result.enriched) + len(result.dead)
        self.accepted += len(result.enriched)
        for dead in result.dead:
            self.by_reason[dead.reason] += 1
        for i, post in enumerate(result.enriched):
            if fresh is not None and not fresh[i]:
                self.duplicates += 1
                continue
            self.by_kind[post.kind] += 1
            if post.kind in SIGNAL_KINDS:
                continue
            self.by_lang[post.lang] += 1
            self.by_platform[post.post.platform or "unknown"] += 1
            self.by_area.update(post.areas)
            self.by_keyword.update(post.keywords)
            self.by_topic.update(post.topics)

    def to_dict(self) -> dict[str, Any]:
        return {
            "consumed": self.consumed,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "duplicates": self.duplicates,
            "by_reject_reason": dict(self.by_reason.most_common()),
            "by_lang": dict(self.by_lang.most_common()),
            "by_platform": dict(self.by_platform.most_common()),
            "by_kind": dict(self.by_kind.most_common()),
            "by_area": dict(self.by_area.most_common()),
            "by_topic": dict(self.by_topic.most_common()),
            "by_keyword": dict(self.by_keyword.most_common()),
        }
