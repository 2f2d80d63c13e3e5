"""Stall watchdog: per partition, is the consumer still making progress?

A known Faust failure (faust-streaming issues #175, #523, #532, #640) leaves a worker alive,
joined to its group and answering HTTP, while one or more of its partitions no longer move:
records pile up and nothing is processed or committed. The rebalance that would hand the
partitions to a healthy worker never comes, because the stuck member keeps heart-beating.

:class:`StallWatchdog` is the pure decision, with no I/O and no clock of its own: the worker
feeds it, every few seconds, one :class:`PartitionSample` per assigned partition (committed
offset, last processed offset, high-water mark) and the current time; it answers with a
:class:`PartitionStatus` per partition. A partition is

- **caught up** (lag 0): never stalled, whatever its offsets do;
- **ok**: it has lag, but its committed or processed offset moved within ``stall_after_s``;
- **stalled**: it has had lag and neither offset moved for ``stall_after_s`` seconds.

Partitions missing from a call were revoked: they drop out (and are reported once in
:attr:`StallWatchdog.revoked`, so their metric series can be removed). A partition assigned
again later starts afresh. ``restart_after_s`` (0 = never) marks the point where the worker
should give up and exit so its supervisor restarts it and the group rebalances.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class PartitionSample:
    """What the consumer knows of one assigned partition at one moment.

    ``committed``: the committed offset (Kafka's "next offset to read"), None before the first
    commit; ``processed``: the offset of the last record the worker finished, None before the
    first; ``highwater``: the partition's end offset (next offset to be written), None while
    unknown (no fetch yet)."""

    topic: str
    partition: int
    committed: int | None
    processed: int | None
    highwater: int | None

    @property
    def key(self) -> TopicPartition:
        return (self.topic, self.partition)

    @property
    def position(self) -> int:
        """The next offset this worker still has to process."""
        done = self.processed + 1 if self.processed is not None else 0
        return max(done, self.committed or 0, 0)

    @property
    def lag(self) -> int | None:
        """Records behind the end of the partition; None while the end is unknown."""
        if self.highwater is None:
            return None
        return max(0, self.highwater - self.position)


@dataclass(frozen=True, slots=True)
class PartitionStatus:
    """The watchdog's verdict on one partition.

    ``idle_s``: seconds the partition has had lag without its offsets moving (0 when caught
    up or moving); ``stalled``: ``idle_s >= stall_after_s``; ``restart``: stalled for at
    least ``restart_after_s`` (never when that is 0)."""

    topic: str
    partition: int
    lag: int | None
    stalled: bool
    idle_s: float
    restart: bool = False

    @property
    def key(self) -> TopicPartition:
        return (self.topic, self.partition)

    @property
    def name(self) -> str:
        return f"{self.topic}/{self.partition}"


@dataclass(slots=True)
class _Track:
    committed: int | None
    processed: int | None
    since: float  # last time the partition moved or was caught up (or was first seen)


class StallWatchdog:
    """Decides per partition: caught up, ok, or stalled (see the module docstring).

    ``stall_after_s`` > 0: seconds with lag and no offset movement before a partition counts
    as stalled. ``restart_after_s``: seconds of the same before the worker should restart;
    0 disables it; values below ``stall_after_s`` act as ``stall_after_s``."""

    def __init__(self, stall_after_s: float = 60.0, restart_after_s: float = 0.0) -> None:
        if stall_after_s <= 0:
            raise ValueError("stall_after_s must be > 0")
        if restart_after_s < 0:
            raise ValueError("restart_after_s must be >= 0 (0 = never restart)")
        self.stall_after_s = float(stall_after_s)
        self.restart_after_s = float(restart_after_s)
        self._tracks: dict[TopicPartition, _Track] = {}
        self._status: dict[TopicPartition, PartitionStatus] = {}
        self.revoked: list[TopicPartition] = []

    def observe(self, samples: Iterable[PartitionSample], now: float
                ) -> list[PartitionStatus]:
        """One look at the whole current assignment; returns a status per sampled partition
        (sorted by topic, partition). Partitions seen before but not sampled now are revoked:
        forgotten, and listed in :attr:`revoked` until the next call."""
        seen: dict[TopicPartition, PartitionSample] = {s.key: s for s in samples}
        self.revoked = sorted(k for k in self._tracks if k not in seen)
        for key in self.revoked:
            del self._tracks[key]
            self._status.pop(key, None)
        out = []
        for key in sorted(seen):
            sample = seen[key]
            track = self._tracks.get(key)
            if track is None:  # newly assigned: give it the full window to start
                track = self._tracks[key] = _Track(sample.committed, sample.processed, now)
            elif sample.committed != track.committed or sample.processed != track.processed:
                track.committed, track.processed, track.since = (sample.committed,
                                                                 sample.processed, now)
            lag = sample.lag
            if lag == 0:
                track.since = now  # caught up: the stall clock starts when lag appears
            idle = max(0.0, now - track.since) if lag else 0.0
            stalled = bool(lag) and idle >= self.stall_after_s
            restart = (stalled and self.restart_after_s > 0
                       and idle >= max(self.restart_after_s, self.stall_after_s))
            status = PartitionStatus(sample.topic, sample.partition, lag, stalled, idle,
                                     restart)
            self._status[key] = status
            out.append(status)
        return out

    @property
    def statuses(self) -> list[PartitionStatus]:
        """The verdicts of the last :meth:`observe`, sorted."""
        return [self._status[k] for k in sorted(self._status)]

    @property
    def stalled(self) -> list[PartitionStatus]:
        """The partitions stalled at the last :meth:`observe`."""
        return [s for s in self.statuses if s.stalled]

    @property
    def restart_due(self) -> list[PartitionStatus]:
        """Stalled partitions that have reached ``restart_after_s`` (empty when it is 0)."""
        return [s for s in self.statuses if s.restart]


class WorkerStalledError(RuntimeError):
    """The reason the worker crashes itself with when ``restart_after_s`` is reached."""


def health_body(ok: bool, *, event: str, store_ok: bool, lags: Mapping[TopicPartition, int],
                stalled: Sequence[PartitionStatus], stall_after_s: float,
                since_last_batch: float | None) -> dict[str, Any]:
    """The JSON body of ``/health`` (served with 200 when ``ok``, else 503)."""
    return {
        "status": "ok" if ok else "unhealthy",
        "event": event,
        "store": "ok" if store_ok else "unreachable",
        "assigned_partitions": sorted(f"{t}/{p}" for t, p in lags),
        "lag": sum(lags.values()),
        "seconds_since_last_batch": None if since_last_batch is None
        else round(since_last_batch, 3),
        "stalled": bool(stalled),
        "stall_after_s": stall_after_s,
        "stalled_partitions": [
            {"partition": s.name, "lag": s.lag, "seconds_without_progress": round(s.idle_s, 1)}
            for s in stalled],
    }
