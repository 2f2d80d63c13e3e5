"""``crowdwatch score``: batch mode over JSON Lines files, no Kafka.

Runs the same :class:`models.enrich.Enricher` as the Faust agent, in the same
order, over batches of lines. One output line per accepted post, one reject line
per rejected input line; ``out + rejects == lines in``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from models.enrich import BatchResult, Enricher, RawRecord, Tally
from models.jsonio import dumps
from models.sentiment import SentimentScorer
from streams.jsonl import InputError, iter_lines

BATCH = 1000


@dataclass
class ScoreResult:
    lines_in: int
    lines_out: int
    rejects: int
    tally: Tally
    by_sentiment: dict[str, int] = field(default_factory=dict)


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
) -> ScoreResult:
    tally = Tally()
    by_sentiment: Counter[str] = Counter()
    seen: set[str] = set()
    lines_in = lines_out = n_rejects = 0
    batch: list[RawRecord] = []

    def flush() -> None:
        nonlocal lines_out, n_rejects
        result: BatchResult = enricher.process(batch)
        # keep input order in the outputs: enrich() preserves the order of valid posts
        fresh = []
        sentiments = scorer.score([p.text for p in result.enriched]) if scorer else None
        for i, post in enumerate(result.enriched):
            is_new = post.id not in seen
            fresh.append(is_new)
            seen.add(post.id)
            record = post.to_dict()
            if sentiments is not None:
                record["sentiment"] = sentiments[i].label
                record["sentiment_score"] = sentiments[i].score
                if is_new:
                    by_sentiment[sentiments[i].label] += 1
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

    for line in iter_lines(source):
        lines_in += 1
        batch.append(RawRecord(line, {"file": source_name, "line": lines_in}))
        if len(batch) >= BATCH:
            flush()
    if batch:
        flush()
    if lines_out + n_rejects != lines_in:  # pragma: no cover - invariant
        raise AssertionError(f"lines out {lines_out} + rejects {n_rejects} != in {lines_in}")
    return ScoreResult(lines_in, lines_out, n_rejects, tally, dict(by_sentiment.most_common()))


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
    }


def open_output(path: Path) -> BinaryIO:
    try:
        return path.open("wb")
    except OSError as exc:
        raise InputError(f"{path}: cannot write: {exc.strerror or exc}") from None
