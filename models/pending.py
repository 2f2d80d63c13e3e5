"""Records that wait for a parent post which has not arrived yet.

Partitions are read side by side, so a reply can arrive before the post it answers. The
reach tracker (:mod:`models.reach`) and the webcare queue (:mod:`models.webcare`) park such
records here, keyed by the parent's id, and take them out when the parent arrives.

The buffer is bounded. A parked record is dropped when both hold:

* it is more than ``horizon_s`` of event time behind the newest post seen (the watermark);
* it arrived more than ``wall_s`` of processing time ago (on ``clock``).

The second rule keeps a record when the partitions are far apart in event time but the
parent is still on its way (a slow CPU, a lagging partition). At most ``max_items`` records
are kept in all: beyond that the oldest arrivals go first, whatever their age.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class PendingBuffer(Generic[V]):
    """Parked records by (table, parent id), expired in arrival order (see module doc).

    ``table`` names a kind of record (one buffer can hold several kinds under one bound);
    a record id is parked at most once per (table, parent)."""

    def __init__(self, *, horizon_s: float, wall_s: float, max_items: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.horizon_s = horizon_s
        self.wall_s = wall_s
        self.max_items = max_items
        self._clock = clock
        self._buckets: dict[tuple[str, str], dict[str, V]] = {}
        # (event time, table, parent, record id, arrival on ``clock``), in arrival order
        self._order: deque[tuple[float, str, str, str, float]] = deque()
        self._n = 0
        self.dropped = 0  # records expired without their parent arriving

    def __len__(self) -> int:
        return self._n

    def park(self, parent: str, record_id: str, value: V, ts: float | None,
             watermark: float | None, *, table: str = "") -> bool:
        """Keep ``value`` until ``parent`` arrives; False when it was already parked.
        ``ts``: the record's event time (None: the watermark stands in for it)."""
        bucket = self._buckets.setdefault((table, parent), {})
        if record_id in bucket:
            return False
        bucket[record_id] = value
        self._n += 1
        when = ts if ts is not None else (watermark or 0.0)
        self._order.append((when, table, parent, record_id, self._clock()))
        return True

    def take(self, parent: str, *, table: str = "") -> dict[str, V]:
        """The records waiting for ``parent`` (record id -> value), removed from the buffer."""
        bucket = self._buckets.pop((table, parent), None)
        if not bucket:
            return {}
        self._n -= len(bucket)
        return bucket

    def expire(self, watermark: float | None) -> int:
        """Drop what the rules of the module doc say is too old; returns how many."""
        horizon = watermark - self.horizon_s if watermark is not None else None
        arrived_before = self._clock() - self.wall_s
        order = self._order
        dropped = 0
        while order and (self._n > self.max_items
                         or (horizon is not None and order[0][0] < horizon
                             and order[0][4] <= arrived_before)):
            _, table, parent, record_id, _ = order.popleft()
            bucket = self._buckets.get((table, parent))
            if bucket is None or bucket.pop(record_id, None) is None:
                continue  # already taken out by its parent
            self._n -= 1
            dropped += 1
            if not bucket:
                del self._buckets[(table, parent)]
        if self._n == 0:
            order.clear()
        self.dropped += dropped
        return dropped
