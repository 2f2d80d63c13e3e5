"""Event times: ISO 8601 strings (``created_at``) to epoch seconds."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

T = TypeVar("T")

#: the instants a ``datetime`` can hold in UTC; an offset can push a valid ISO text
#: (``9999-12-31T23:59:59-14:00``, ``0001-01-01T00:00:00+14:00``) outside them, and such a
#: time would then crash every later ``datetime.fromtimestamp``
_MIN_TS = datetime(1, 1, 1, tzinfo=UTC).timestamp()
_MAX_TS = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()


def parse_time(value: Any) -> float | None:
    """Epoch seconds of an ISO 8601 time (``Z`` or offset; naive means UTC), else None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    ts = dt.timestamp()
    return ts if math.isfinite(ts) and _MIN_TS <= ts <= _MAX_TS else None


#: a ``created_at`` this far after the machine's clock is not an event time but a broken or
#: forged date (9999-12-31, 2099): the stages that keep an event clock treat it as missing,
#: so one such post cannot move their clocks to where every later post is old. Generous on
#: purpose: generated and test traffic is dated months ahead (Koningsdag 2027)
MAX_AHEAD_S = 366 * 86400.0


def event_time(value: Any, now: float | None = None) -> float | None:
    """:func:`parse_time`, but None for a time more than :data:`MAX_AHEAD_S` after ``now``
    (default: the machine's clock)."""
    ts = parse_time(value)
    if ts is None:
        return None
    return ts if ts <= (time.time() if now is None else now) + MAX_AHEAD_S else None


def in_time_order(runs: Iterable[Iterable[tuple[float | None, T]]]) -> list[T]:
    """The items of ``runs`` (each a file's ``(event time, item)`` pairs in file order)
    sorted by time, stable. An item without a time keeps its place after the item before it
    in its run (the first ones of a run go first): a bad line stays in its neighbourhood.
    Used by ``crowdwatch replay`` and ``crowdwatch score --sort``."""
    keyed: list[tuple[float, int, T]] = []
    for run in runs:
        last = -math.inf
        for ts, item in run:
            if ts is not None and math.isfinite(ts):
                last = ts
            keyed.append((last, len(keyed), item))
    keyed.sort(key=lambda k: (k[0], k[1]))
    return [item for _, _, item in keyed]
