"""``crowdwatch replay``: JSON Lines files -> topic ``posts.raw`` with kafka-python.

Lines are sent as they are (bytes untouched), so invalid lines reach the worker
and are dead-lettered there with their offset. Posts are sent in ``created_at``
order across all files (stable: lines without a readable time keep their place
after the line before them), preserving relative timing divided by ``speed`` or
at a fixed ``max_rate``; gaps longer than ``max_gap`` seconds (wall) are cut.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from models.times import in_time_order
from streams.jsonl import iter_lines, open_input
from streams.settings import Settings


@dataclass(frozen=True, slots=True)
class Line:
    ts: float | None  # created_at as epoch seconds
    key: bytes | None  # post id when readable
    value: bytes


@dataclass
class ReplaySummary:
    files: list[str]
    lines: int = 0
    sent: int = 0
    without_time: int = 0
    unreadable: int = 0  # not a JSON object with an id: forwarded, the worker dead-letters it
    failed: int = 0  # Kafka refused the record (e.g. larger than the broker accepts)
    bytes: int = 0
    seconds: float = 0.0
    first_created_at: str | None = None
    last_created_at: str | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


REPLAY_MAX_BLOCK_MS = 300_000


def parse_line(raw: bytes) -> Line:
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        return Line(None, None, raw)
    if not isinstance(obj, dict):
        return Line(None, None, raw)
    key = obj.get("id")
    key_b = str(key).encode("utf-8", "surrogatepass") if isinstance(key, str | int) else None
    ts = None
    created = obj.get("created_at")
    if isinstance(created, str):
        try:
            ts = datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
        except ValueError:
            ts = None
    return Line(ts, key_b, raw)


def load_lines(paths: Sequence[Path], summary: ReplaySummary) -> list[Line]:
    """All lines of all files, ordered by created_at (stable, :func:`in_time_order`)."""

    def stamped(path: Path) -> Iterator[tuple[float | None, Line]]:
        with open_input(path) as handle:
            for raw in iter_lines(handle):
                line = parse_line(raw)
                summary.lines += 1
                if line.key is None:
                    summary.unreadable += 1
                if line.ts is None:
                    summary.without_time += 1
                yield line.ts, line

    lines = in_time_order(stamped(path) for path in paths)
    stamps = [ln.ts for ln in lines if ln.ts is not None]
    if stamps:
        summary.first_created_at = _iso(stamps[0])
        summary.last_created_at = _iso(stamps[-1])
    return lines


def _iso(ts: float) -> str:
    from datetime import UTC

    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Pacer:
    """Decides when each line may be sent (wall-clock seconds from start)."""

    def __init__(self, speed: float | None, max_rate: float | None, max_gap: float) -> None:
        if speed is not None and speed <= 0:
            raise ValueError("--speed must be > 0")
        if max_rate is not None and max_rate <= 0:
            raise ValueError("--max-rate must be > 0")
        if speed is not None and max_rate is not None:
            raise ValueError("give --speed or --max-rate, not both")
        self.speed = speed
        self.max_rate = max_rate
        self.max_gap = max_gap
        self._due = 0.0
        self._prev_ts: float | None = None
        self._n = 0

    def due(self, line: Line) -> float:
        """Seconds after the start at which ``line`` should be sent."""
        if self.max_rate is not None:
            self._n += 1
            return (self._n - 1) / self.max_rate
        if self.speed is None:
            return 0.0
        if line.ts is not None:
            if self._prev_ts is not None:
                gap = max(0.0, line.ts - self._prev_ts) / self.speed
                self._due += min(gap, self.max_gap)
            self._prev_ts = line.ts
        return self._due


def replay(
    paths: Sequence[Path],
    settings: Settings,
    *,
    topic: str | None = None,
    speed: float | None = None,
    max_rate: float | None = None,
    max_gap: float = 60.0,
    on_total: Callable[[int], None] | None = None,
    on_sent: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ReplaySummary:
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    pacer = Pacer(speed, max_rate, max_gap)
    summary = ReplaySummary(files=[str(p) for p in paths])
    lines = load_lines(paths, summary)
    if on_total is not None:
        on_total(len(lines))
    producer = KafkaProducer(
        client_id="crowdwatch-replay",
        acks="all",
        linger_ms=5,
        batch_size=256 * 1024,
        max_request_size=8 * 1024 * 1024,
        # ride out a broker restart (tens of seconds with many topics) instead of refusing
        # posts after kafka-python's default minute of waiting for metadata
        max_block_ms=REPLAY_MAX_BLOCK_MS,
        **settings.kafka_client_kwargs(),
    )
    target = topic or settings.topic_raw

    def _failed(exc: BaseException) -> None:
        summary.failed += 1
        if len(summary.errors) < 20:
            summary.errors.append(f"{type(exc).__name__}: {exc}")

    start = time.monotonic()
    pending = 0
    try:
        for line in lines:
            if should_stop is not None and should_stop():
                break
            wait = pacer.due(line) - (time.monotonic() - start)
            if wait > 0:
                if pending:
                    if on_sent is not None:
                        on_sent(pending)
                    pending = 0
                time.sleep(wait)
            try:
                future = producer.send(target, key=line.key, value=line.value)
            except KafkaError as exc:
                _failed(exc)
                continue
            future.add_errback(_failed)
            summary.sent += 1
            summary.bytes += len(line.value)
            pending += 1
            if pending >= 500:
                if on_sent is not None:
                    on_sent(pending)
                pending = 0
        producer.flush()
        if pending and on_sent is not None:
            on_sent(pending)
    finally:
        producer.close(timeout=10)
        summary.seconds = time.monotonic() - start
    return summary
