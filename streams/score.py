"""``crowdwatch score``: batch mode over JSON Lines files, no Kafka.

Runs the same :class:`models.enrich.Enricher` as the Faust agent, in the same
order, over batches of lines. One output line per accepted post, one reject line
per rejected input line; ``out + rejects == lines in``.

Authors are pseudonymised like the worker's enrich stage (``CROWDWATCH_PSEUDONYMISE_AUTHORS``,
key ``CROWDWATCH_PSEUDONYM_KEY``): the output lines carry ``p:<hmac>`` author ids and
handles; the summary names official accounts by their handles (from the event file).
Reject lines keep the original input line, with ``author.id``/``handle`` pseudonymised
when it parses as a JSON object (``Enricher.scrub``).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import EllipsisType
from typing import Any, BinaryIO

from models.enrich import BatchResult, Enricher, RawRecord, Tally
from models.jsonio import dumps
from models.official_tracker import OfficialTracker
from models.privacy import Pseudonymiser
from models.rumour_tracker import PostAnnotation, RumourTracker
from models.sentiment import SentimentScorer
from models.times import in_time_order, parse_time
from streams.batch import author_pseudonymiser
from streams.jsonl import InputError, iter_lines
from streams.settings import load_settings

BATCH = 1000


@dataclass
class ScoreResult:
    lines_in: int
    lines_out: int
    rejects: int
    tally: Tally
    by_sentiment: dict[str, int] = field(default_factory=dict)
    by_stance: dict[str, int] = field(default_factory=dict)
    clusters: list[dict[str, Any]] = field(default_factory=list)
    officials: dict[str, Any] = field(default_factory=dict)
    late_posts: int = 0  # older than the cluster TTL behind the newest post: in no cluster


def _write_jsonl(handle: BinaryIO | None, obj: dict[str, Any]) -> None:
    if handle is not None:
        handle.write(dumps(obj) + b"\n")


def score_stream(
    source: BinaryIO,
    source_name: str,
    enricher: Enricher,
    out: BinaryIO,
    rejects: BinaryIO | None,
    progress: Callable[[int], None] | None = None,
    scorer: SentimentScorer | None = None,
    tracker: RumourTracker | None = None,
    officials: OfficialTracker | None = None,
    pseudonymiser: Pseudonymiser | EllipsisType | None = ...,
    sort: bool = False,
) -> ScoreResult:
    """``tracker``: also cluster the posts and add ``stance``, ``cluster`` and
    ``rumour_score`` (the score of the post's cluster when the post was processed).

    ``pseudonymiser``: pseudonymise authors with it (None: keep them raw); by default the
    enricher's own, else the one the settings configure (on unless
    ``CROWDWATCH_PSEUDONYMISE_AUTHORS=false``). The enricher and the official registry
    are set up to use it (officials are matched by the pseudonyms of their handles).

    ``sort``: read the whole input first and process it in ``created_at`` order (see
    :func:`time_ordered`); outputs follow that order, rejects keep their line numbers.
    """
    if pseudonymiser is ...:
        pseudonymiser = enricher.pseudonymiser
        if pseudonymiser is None:
            pseudonymiser = author_pseudonymiser(load_settings())
    enricher.pseudonymiser = pseudonymiser
    if officials is not None and pseudonymiser is not None:
        registries = (officials.registry, officials.reach.registry, officials.webcare.registry)
        for reg in {id(r): r for r in registries}.values():
            reg.pseudonym = pseudonymiser.author_value
    if tracker is not None and officials is not None:  # whatever key the tracker was built with
        registry, own = officials.registry, tracker.is_official
        tracker.is_official = lambda post: own(post) or registry.author_of(post) is not None
    tally = Tally()
    by_sentiment: Counter[str] = Counter()
    by_stance: Counter[str] = Counter()
    late = 0
    ended: dict[str, dict[str, Any]] = {}  # clusters that expired before the end of input
    seen: set[str] = set()
    lines_in = lines_out = n_rejects = 0
    batch: list[RawRecord] = []

    def flush() -> None:
        nonlocal lines_out, n_rejects, late
        result: BatchResult = enricher.process(batch)
        # keep input order in the outputs: enrich() preserves the order of valid posts
        fresh = []
        sentiments = scorer.score([p.text for p in result.enriched]) if scorer else None
        records = [post.to_dict() for post in result.enriched]
        annotations: dict[str, PostAnnotation] = {}
        tracked = None
        if tracker is not None:
            tracked = tracker.process(records)
            for a in tracked.annotations:  # the first answer of an id (later: redelivered)
                annotations.setdefault(a.id, a)
        if officials is not None:
            officials.process(records, tracker, tracked)
        if tracker is not None and tracked is not None:
            for c in tracked.expired:
                if c.size >= 2 or c.flagged_at is not None:
                    ended[c.id] = cluster_summary(tracker.snapshot(c))
        for i, post in enumerate(result.enriched):
            is_new = post.id not in seen
            fresh.append(is_new)
            seen.add(post.id)
            record = records[i]
            if sentiments is not None:
                record["sentiment"] = sentiments[i].label
                record["sentiment_score"] = sentiments[i].score
                if is_new:
                    by_sentiment[sentiments[i].label] += 1
            ann = annotations.get(post.id)
            if ann is not None:
                record["stance"] = ann.stance
                # a late post (older than the cluster TTL behind the newest): no cluster
                record["cluster"] = ann.cluster or None
                record["rumour_score"] = None if ann.how == "late" else ann.rumour_score
                if is_new and ann.stance:
                    by_stance[ann.stance] += 1
                if is_new and ann.how == "late":
                    late += 1
            _write_jsonl(out, record)
        for dead in result.dead:
            _write_jsonl(rejects, {"line": dead.source["line"], "reason": dead.reason,
                                   "detail": dead.detail, "original": dead.to_dict()["original"],
                                   "original_b64": dead.to_dict()["original_b64"]})
        lines_out += len(result.enriched)
        n_rejects += len(result.dead)
        tally.add(result, fresh=fresh)
        if progress is not None:
            progress(len(batch))
        batch.clear()

    numbered = time_ordered(iter_lines(source)) if sort else enumerate(iter_lines(source), 1)
    if sort and tracker is not None:  # in time order a gap of days is real (see time_ordered)
        tracker.max_jump_s = math.inf
    for number, line in numbered:
        lines_in += 1
        batch.append(RawRecord(line, {"file": source_name, "line": number}))
        if len(batch) >= BATCH:
            flush()
    if batch:
        flush()
    if lines_out + n_rejects != lines_in:  # pragma: no cover - invariant
        raise AssertionError(f"lines out {lines_out} + rejects {n_rejects} != in {lines_in}")
    clusters: list[dict[str, Any]] = []
    if tracker is not None:
        live = [cluster_summary(tracker.snapshot(c)) for c in tracker.clusters()
                if c.size >= 2 or c.flagged_at is not None]
        clusters = sorted([*ended.values(), *live],
                          key=lambda c: (-c["rumour_score"], -c["size"], c["id"]))
    return ScoreResult(lines_in, lines_out, n_rejects, tally, dict(by_sentiment.most_common()),
                       dict(by_stance.most_common()), clusters,
                       officials.summary() if officials is not None else {}, late)


def time_ordered(lines: Iterable[bytes]) -> list[tuple[int, bytes]]:
    """(line number, line) in ``created_at`` order, stable (:func:`in_time_order`: a line
    without a readable time, bad JSON or no or an unparseable ``created_at``, keeps its
    place after the line before it, so bad lines are still rejected with their own numbers
    and in their neighbourhood). Reads everything into memory: for exports that are not in
    time order (newest first, by thread), which the claim clusters would otherwise mostly
    answer as late. In this order a post dated far ahead (9999) comes last, so the tracker
    may let event time jump freely (:attr:`RumourTracker.max_jump_s`): a file with a quiet
    day in it keeps its days apart."""

    def stamped() -> Iterable[tuple[float | None, tuple[int, bytes]]]:
        for number, line in enumerate(lines, 1):
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError):  # bad bytes or JSON: rejected later
                obj = None
            ts = parse_time(obj.get("created_at")) if isinstance(obj, dict) else None
            yield ts, (number, line)

    return in_time_order([stamped()])


SUMMARY_CLUSTER_FIELDS = ("id", "size", "rumour_score", "state", "flagged", "first_seen",
                          "last_seen", "summary", "roots", "replies", "reposts", "quotes",
                          "stance", "distinct_accounts", "top_terms", "sample_post_ids",
                          "drivers")


def cluster_summary(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A cluster as ``crowdwatch score --summary`` lists it (no sample texts, no spreaders)."""
    return {k: snapshot[k] for k in SUMMARY_CLUSTER_FIELDS}


def summary(result: ScoreResult, input_path: Path, event: str | None) -> dict[str, Any]:
    return {
        "input": str(input_path),
        "event": event,
        "lines_in": result.lines_in,
        "lines_out": result.lines_out,
        "rejects": result.rejects,
        "unique_posts": result.lines_out - result.tally.duplicates,
        **{k: v for k, v in result.tally.to_dict().items() if k.startswith("by_")},
        "by_sentiment": result.by_sentiment,
        "by_stance": result.by_stance,
        "clusters": result.clusters,
        "late_posts": result.late_posts,
        "official_posts": result.officials.get("official_posts", []),
        "rebuttals": result.officials.get("rebuttals", []),
        "questions": result.officials.get("questions", []),
    }


def open_output(path: Path) -> BinaryIO:
    try:
        return path.open("wb")
    except OSError as exc:
        raise InputError(f"{path}: cannot write: {exc.strerror or exc}") from None
