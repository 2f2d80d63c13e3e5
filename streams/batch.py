"""The CPU part of a batch, runnable in a thread or in a worker child process.

:class:`BatchProcessor` validates, enriches and serialises one batch and returns a
:class:`PreparedBatch` of plain values (output records, post summaries, reject
reasons), cheap to pickle across a process boundary. With ``cpu_processes > 0``
the pipeline runs it in a process pool, so the parsing/tagging work does not
compete with the Faust event loop for the GIL.

Authors are pseudonymised here by default (:func:`author_pseudonymiser`): what goes to
``posts.enriched``, ``posts.claims`` and on to ``posts.scored`` carries ``p:<hmac>``
author ids and handles, never the raw ones (``posts.raw`` and dead letters of records that
failed validation are the exceptions, see docs/data-protection.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from models.enrich import (
    SIGNAL_KINDS,
    Enricher,
    PostSummary,
    RawRecord,
    epoch_minute,
    summarize,
)
from models.event import EventConfig, parse_event
from models.jsonio import dumps
from models.mood import MoodRow
from models.privacy import Pseudonymiser
from models.sentiment import SentimentScorer

if TYPE_CHECKING:
    from streams.settings import Settings

Output = tuple[str, bytes | None, bytes, list[tuple[str, bytes]] | None]

log = logging.getLogger(__name__)


def author_pseudonymiser(settings: Settings) -> Pseudonymiser | None:
    """The enrich stage's author pseudonymiser (key ``CROWDWATCH_PSEUDONYM_KEY``, else this
    process's random key); None when ``CROWDWATCH_PSEUDONYMISE_AUTHORS`` is off."""
    if not settings.pseudonymise_authors:
        return None
    key = settings.pseudonym_key.get_secret_value()
    if not key:
        log.warning("CROWDWATCH_PSEUDONYM_KEY not set: author pseudonyms are random per "
                    "process (they change on restart and differ between workers)")
    return Pseudonymiser(key or None)


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    outputs: list[Output]
    posts: list[PostSummary]
    reasons: list[str] = field(default_factory=list)


class BatchProcessor:
    def __init__(self, event: EventConfig | None, *, max_text_chars: int, topic_enriched: str,
                 topic_deadletter: str, topic_claims: str | None = None,
                 pseudonymiser: Pseudonymiser | None = None) -> None:
        """``pseudonymiser``: :func:`author_pseudonymiser` (None keeps raw authors)."""
        self.enricher = Enricher(event, max_text_chars=max_text_chars,
                                 pseudonymiser=pseudonymiser)
        self.topic_enriched = topic_enriched
        self.topic_deadletter = topic_deadletter
        self.topic_claims = topic_claims  # set when the rumour stage runs without sentiment

    def __call__(self, records: Sequence[RawRecord]) -> PreparedBatch:
        result = self.enricher.process(records)
        now = time.time()
        outputs: list[Output] = []
        for post in result.enriched:
            key, value = post.id.encode("utf-8"), dumps(post.to_dict())
            outputs.append((self.topic_enriched, key, value, None))
            if self.topic_claims and post.kind != "delete":  # likes count as reach
                outputs.append((self.topic_claims, key, value, None))
        for dead in result.dead:
            src = dead.source
            headers = [
                ("reason", dead.reason.encode()),
                ("source", f"{src.get('topic')}/{src.get('partition')}/{src.get('offset')}"
                 .encode()),
            ]
            outputs.append((self.topic_deadletter, None, dumps(dead.to_dict()), headers))
        return PreparedBatch(
            outputs=outputs,
            posts=[summarize(p, now) for p in result.enriched],
            reasons=[d.reason for d in result.dead],
        )


# ---- child-process side: one processor per child, built by the pool initializer

_CHILD: BatchProcessor | None = None


def init_child(event_yaml: str | None, max_text_chars: int, topic_enriched: str,
               topic_deadletter: str, topic_claims: str | None = None,
               pseudonym_key: bytes | None = None) -> None:
    """``pseudonym_key``: the parent's :attr:`Pseudonymiser.key` (the same pseudonyms as
    the parent even without a configured key); None: authors are not pseudonymised."""
    global _CHILD
    event = parse_event(event_yaml, "<event>") if event_yaml else None
    _CHILD = BatchProcessor(event, max_text_chars=max_text_chars, topic_enriched=topic_enriched,
                            topic_deadletter=topic_deadletter, topic_claims=topic_claims,
                            pseudonymiser=Pseudonymiser(pseudonym_key)
                            if pseudonym_key is not None else None)


def run_in_child(records: Sequence[RawRecord]) -> PreparedBatch:
    if _CHILD is None:  # pragma: no cover - the initializer always runs first
        raise RuntimeError("batch child not initialised")
    return _CHILD(records)


# ---- the sentiment stage: posts.enriched -> posts.scored


@dataclass(frozen=True, slots=True)
class ScoredBatch:
    outputs: list[Output]
    rows: list[MoodRow]
    unreadable: int  # enriched records that were not JSON objects (never expected)


def score_values(values: Sequence[bytes | None], scorer: SentimentScorer,
                 topic_scored: str, topic_claims: str | None = None) -> ScoredBatch:
    """Score enriched posts (JSON); the output is the post plus ``sentiment`` and
    ``sentiment_score`` (also sent to ``topic_claims`` when the rumour stage runs)."""
    posts: list[dict[str, Any]] = []
    likes: list[tuple[bytes, bytes]] = []
    unreadable = 0
    for value in values:
        try:
            obj = orjson.loads(value or b"")
        except orjson.JSONDecodeError:
            unreadable += 1
            continue
        if not (isinstance(obj, dict) and isinstance(obj.get("text"), str) and "id" in obj):
            unreadable += 1
        elif obj.get("kind") not in SIGNAL_KINDS:  # likes and deletions carry no text to score
            posts.append(obj)
        elif topic_claims and obj.get("kind") == "like":  # a like is reach of its subject
            likes.append((str(obj["id"]).encode("utf-8"), value or b""))
    sentiments = scorer.score([p["text"] for p in posts])
    now = time.time()
    outputs: list[Output] = []
    rows: list[MoodRow] = []
    for post, s in zip(posts, sentiments, strict=True):
        post["sentiment"] = s.label
        post["sentiment_score"] = s.score
        pid = str(post["id"])
        value = dumps(post)
        outputs.append((topic_scored, pid.encode("utf-8"), value, None))
        if topic_claims:
            outputs.append((topic_claims, pid.encode("utf-8"), value, None))
        rows.append(MoodRow(
            id=pid, minute=epoch_minute(post.get("created_at"), now),
            lang=str(post.get("lang") or "und"), areas=tuple(post.get("areas") or ()),
            topics=tuple(post.get("topics") or ()), label=s.label, score=s.score))
    if topic_claims:
        outputs += [(topic_claims, key, value, None) for key, value in likes]
    return ScoredBatch(outputs, rows, unreadable)
