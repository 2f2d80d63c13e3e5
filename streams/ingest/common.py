"""What the live connectors share: settings, cursor file, backoff, sinks, metrics, pipeline.

The :class:`Pipeline` takes each mapped frame (``models.firehose``) and decides: dead-letter
(malformed), filter (with a reason) or produce; it keeps the counts that always reconcile
``received = produced + filtered + malformed`` once the sink has been flushed, de-duplicates
replays by event key, and writes the cursor file after the sink acknowledged everything
before it (at-least-once: a crash between checkpoints re-sends at most one interval).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import struct
import time
from collections import Counter as Tally
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.enrich import DeadLetter
from models.firehose import (
    FILTER_REASONS,
    KINDS,
    BoundedMap,
    ContentFilter,
    FrameReject,
    Mapped,
    RecentIds,
)
from streams.settings import DEFAULT_HOME, Settings

log = logging.getLogger(__name__)

SOURCES = ("bluesky", "mastodon")


class IngestSettings(BaseSettings):
    """Knobs of the connectors (``CROWDWATCH_INGEST_*``); command-line options win."""

    model_config = SettingsConfigDict(env_prefix="CROWDWATCH_INGEST_", frozen=True,
                                      extra="ignore")

    state_dir: Path = Field(default=DEFAULT_HOME / "ingest",
                            description="Where <name>.cursor.json files live")
    checkpoint_interval_s: float = Field(default=2.0, gt=0,
                                         description="Flush the sink and write the cursor")
    cursor_margin_s: float = Field(default=2.0, ge=0,
                                   description="Jetstream: resume this much before the cursor")
    backoff_initial_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=60.0, gt=0)
    idle_timeout_s: float = Field(
        default=90.0, gt=0, description="Mastodon: no event or heartbeat for this long: "
        "reconnect (Jetstream: websocket pings every 30 s detect a dead connection)")
    linger_ms: int = Field(default=20, ge=0, description="Kafka producer linger")
    max_batch_bytes: int = Field(default=512 * 1024, ge=1024, description="Kafka batch size")
    max_pending: int = Field(default=20_000, ge=1,
                             description="Unacknowledged Kafka sends before waiting for acks")
    dedupe_window: int = Field(default=200_000, ge=1000,
                               description="Event keys remembered to drop replays")
    cache_size: int = Field(default=200_000, ge=1000,
                            description="did -> handle and status id -> uri entries kept")
    max_frame_bytes: int = Field(default=8 * 1024 * 1024, ge=64 * 1024)
    shutdown_timeout_s: float = Field(default=30.0, gt=0,
                                      description="How long to wait for acks when stopping")
    bluesky_endpoint: str = "wss://jetstream2.us-east.bsky.network"
    bluesky_appview: str = Field(default="https://public.api.bsky.app",
                                 description="Resolves handles of watched accounts to dids")
    mastodon_token: SecretStr = Field(default=SecretStr(""),
                                      description="Mastodon user access token (secret)")
    metrics_host: str = "127.0.0.1"


class IngestError(Exception):
    """A problem the connector cannot retry its way out of (bad token, bad arguments)."""


# ---------------------------------------------------------------- cursor file


@dataclass
class Checkpoint:
    """What a restart resumes from."""

    source: str
    endpoint: str
    protocol: str = ""
    time_us: int | None = None  # event time of the last event handled
    seq: int | None = None  # Jetstream v2 sequence number of it
    last_id: str | None = None  # Mastodon: highest status id seen on this instance
    recent: list[str] = field(default_factory=list)  # event keys a resume may replay
    saved_at: float = 0.0

    def to_json(self) -> bytes:
        return json.dumps({
            "version": 1, "source": self.source, "endpoint": self.endpoint,
            "protocol": self.protocol, "time_us": self.time_us, "seq": self.seq,
            "last_id": self.last_id, "saved_at": self.saved_at, "recent": self.recent,
        }, ensure_ascii=False).encode("utf-8")


class CursorStore:
    """A small JSON file, replaced atomically. ``path=None``: nothing is persisted."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    @staticmethod
    def default_path(settings: IngestSettings, name: str) -> Path:
        return settings.state_dir.expanduser() / f"{name}.cursor.json"

    def load(self) -> Checkpoint | None:
        if self.path is None or not self.path.is_file():
            return None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            recent = data.get("recent") or []
            return Checkpoint(
                source=str(data["source"]), endpoint=str(data["endpoint"]),
                protocol=str(data.get("protocol") or ""),
                time_us=_opt_int(data.get("time_us")), seq=_opt_int(data.get("seq")),
                last_id=str(data["last_id"]) if data.get("last_id") is not None else None,
                recent=[str(k) for k in recent], saved_at=float(data.get("saved_at") or 0),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable cursor file %s: %s", self.path, exc)
            return None

    def save(self, checkpoint: Checkpoint) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("wb") as f:
            f.write(checkpoint.to_json())
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)


def _opt_int(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


# ---------------------------------------------------------------- backoff


class Backoff:
    """Exponential backoff with jitter, capped: half the step fixed, half random."""

    def __init__(self, initial: float, cap: float, rng: random.Random | None = None) -> None:
        self.initial = initial
        self.cap = cap
        self.attempt = 0
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security

    def next_delay(self) -> float:
        step = min(self.cap, self.initial * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        return step / 2 + self._rng.uniform(0, step / 2)

    def reset(self) -> None:
        self.attempt = 0


# ---------------------------------------------------------------- metrics


class IngestMetrics:
    """The connector's Prometheus series (labels: source, kind, reason: fixed sets)."""

    def __init__(self, registry: CollectorRegistry, source: str) -> None:
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}")
        self.source = source
        self.received = Counter("crowdwatch_ingest_events_received",
                                "Frames received, by kind", ["source", "kind"], registry=registry)
        self.matched = Counter("crowdwatch_ingest_events_matched",
                               "Events that passed the filters (to be produced), by kind",
                               ["source", "kind"], registry=registry)
        self.produced = Counter("crowdwatch_ingest_events_produced",
                                "Canonical records acknowledged by the sink (Kafka or file)",
                                ["source"], registry=registry)
        self.filtered = Counter("crowdwatch_ingest_events_filtered",
                                "Events not produced, by reason", ["source", "reason"],
                                registry=registry)
        self.malformed = Counter("crowdwatch_ingest_events_malformed",
                                 "Malformed frames (dead-lettered)", ["source"],
                                 registry=registry)
        self.reconnects = Counter("crowdwatch_ingest_reconnects",
                                  "Connections re-opened after a drop", ["source"],
                                  registry=registry)
        self.send_retries = Counter("crowdwatch_ingest_send_retries",
                                    "Records re-sent after the sink refused them", ["source"],
                                    registry=registry)
        self.lag = Gauge("crowdwatch_ingest_lag_seconds",
                         "Now minus the time of the last event received", ["source"],
                         registry=registry)
        self.cursor = Gauge("crowdwatch_ingest_cursor_timestamp_seconds",
                            "Event time of the persisted cursor", ["source"], registry=registry)
        self.connected = Gauge("crowdwatch_ingest_connected",
                               "1 while the stream is connected", ["source"], registry=registry)
        # children resolved once: the hot path only calls inc()
        self.received_by = {k: self.received.labels(source, k) for k in KINDS}
        self.matched_by = {k: self.matched.labels(source, k) for k in KINDS}
        self.filtered_by = {r: self.filtered.labels(source, r) for r in FILTER_REASONS}
        self.produced_n = self.produced.labels(source)
        self.malformed_n = self.malformed.labels(source)
        self.reconnects_n = self.reconnects.labels(source)
        self.send_retries_n = self.send_retries.labels(source)
        self.lag_g = self.lag.labels(source)
        self.cursor_g = self.cursor.labels(source)
        self.connected_g = self.connected.labels(source)


def start_metrics_server(registry: CollectorRegistry, host: str, port: int) -> Callable[[], None]:
    """Serve ``/metrics`` on host:port (a thread); returns the function that stops it."""
    from prometheus_client import start_http_server

    server, thread = start_http_server(port, addr=host, registry=registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop


# ---------------------------------------------------------------- sinks


class Sink(Protocol):
    async def start(self) -> None: ...

    async def send(self, key: bytes, value: bytes) -> None: ...

    async def dead_letter(self, value: bytes) -> None: ...

    async def flush(self, limit_s: float | None = None) -> None:
        """Wait until everything sent so far is acknowledged (retrying refused records);
        :class:`SinkTimeout` after ``limit_s`` seconds."""

    def take_acked(self) -> int:
        """Records acknowledged since the last call."""

    async def stop(self) -> None: ...


class SinkTimeout(Exception):
    """Records still unacknowledged when the flush timed out."""


class FileSink:
    """``--out FILE``: canonical posts as JSON Lines (appended), rejects to
    ``<FILE>.rejects.jsonl``. Lines count as acknowledged once flushed and fsynced."""

    def __init__(self, path: Path, rejects: Path | None = None) -> None:
        self.path = path
        self.rejects_path = rejects or rejects_path_for(path)
        self._out: Any = None
        self._rej: Any = None
        self._unflushed = 0
        self._acked = 0

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._out = self.path.open("ab")

    async def send(self, key: bytes, value: bytes) -> None:
        self._out.write(value + b"\n")
        self._unflushed += 1

    async def dead_letter(self, value: bytes) -> None:
        if self._rej is None:
            self._rej = self.rejects_path.open("ab")
        self._rej.write(value + b"\n")

    async def flush(self, limit_s: float | None = None) -> None:
        for f in (self._out, self._rej):
            if f is not None:
                f.flush()
                os.fsync(f.fileno())
        self._acked += self._unflushed
        self._unflushed = 0

    def take_acked(self) -> int:
        n, self._acked = self._acked, 0
        return n

    async def stop(self) -> None:
        await self.flush()
        for f in (self._out, self._rej):
            if f is not None:
                f.close()


def _refused(fut: asyncio.Future[Any]) -> bool:
    return fut.cancelled() or fut.exception() is not None


def rejects_path_for(out: Path) -> Path:
    name = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    return out.with_name(name + ".rejects.jsonl")


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (the Java client's and kafka-python's), word-at-a-time: the same
    values as ``aiokafka.partitioner.murmur2`` at a fraction of its cost."""
    length = len(data)
    m = 0x5BD1E995
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    n4 = length & ~3
    for (k,) in struct.iter_unpack("<I", data[:n4]):
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        h = ((h * m) & 0xFFFFFFFF) ^ ((k * m) & 0xFFFFFFFF)
    rest = length & 3
    if rest:
        tail = data[n4:]
        if rest == 3:
            h ^= tail[2] << 16
        if rest >= 2:
            h ^= tail[1] << 8
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def key_partitioner(key: bytes | None, all_partitions: Sequence[int],
                    available: Sequence[int]) -> int:
    """Keyed records: ``murmur2(key) % partitions`` like every Kafka client's default, so a
    post lands on the same partition whether it came from ingest or ``crowdwatch replay``."""
    if key is None:
        pool = available or all_partitions
        return pool[random.randrange(len(pool))]  # noqa: S311 - load spreading
    return all_partitions[(murmur2(key) & 0x7FFFFFFF) % len(all_partitions)]


class KafkaSink:
    """aiokafka producer (acks=all, linger): posts to ``topic`` keyed by post id, dead
    letters to ``deadletter_topic``. Refused records are re-sent with backoff until the
    broker takes them; nothing is counted as produced before the broker acknowledged it."""

    def __init__(self, settings: Settings, topic: str, deadletter_topic: str, *,
                 linger_ms: int = 20, max_batch_bytes: int = 512 * 1024,
                 max_pending: int = 20_000, client_id: str = "crowdwatch-ingest",
                 on_retry: Callable[[int], None] | None = None) -> None:
        self.settings = settings
        self.topic = topic
        self.deadletter_topic = deadletter_topic
        self.linger_ms = linger_ms
        self.max_batch_bytes = max_batch_bytes
        self.max_pending = max_pending
        self.client_id = client_id
        self.on_retry = on_retry
        self._producer: Any = None
        self._pending: list[tuple[asyncio.Future[Any], str, bytes | None, bytes]] = []
        self._acked = 0
        self._acked_dead = 0

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer

        kwargs = self.settings.kafka_client_kwargs()
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password"):
            kwargs.pop(name, None)  # kafka-python's names: aiokafka takes one context
        if self.settings.kafka_uses_tls:
            kwargs["ssl_context"] = self.settings.kafka_ssl_context()
        self._producer = AIOKafkaProducer(
            client_id=self.client_id, acks="all", linger_ms=self.linger_ms,
            max_batch_size=self.max_batch_bytes, max_request_size=8 * 1024 * 1024,
            request_timeout_ms=30_000, partitioner=key_partitioner, **kwargs)
        await self._producer.start()

    async def send(self, key: bytes, value: bytes) -> None:
        await self._send(self.topic, key, value)
        if len(self._pending) >= self.max_pending:
            await self.flush()

    async def dead_letter(self, value: bytes) -> None:
        await self._send(self.deadletter_topic, None, value)

    async def _send(self, topic: str, key: bytes | None, value: bytes) -> None:
        self._pending.append((await self._submit(topic, key, value), topic, key, value))

    async def _submit(self, topic: str, key: bytes | None, value: bytes) -> asyncio.Future[Any]:
        try:
            fut: asyncio.Future[Any] = await self._producer.send(topic, value, key=key)
        except Exception as exc:  # refused before queueing (e.g. no metadata): retried by flush
            fut = asyncio.get_running_loop().create_future()
            fut.set_exception(exc)
        return fut

    async def flush(self, limit_s: float | None = None) -> None:
        deadline = None if limit_s is None else time.monotonic() + limit_s
        backoff = Backoff(0.2, 10.0)
        pending, self._pending = self._pending, []
        try:
            while pending:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                _, not_done = await asyncio.wait([p[0] for p in pending], timeout=remaining)
                if not_done:
                    raise SinkTimeout(f"{len(not_done)} records not acknowledged by Kafka")
                failed = [p for p in pending if _refused(p[0])]
                self._acked += sum(1 for p in pending if p[1] == self.topic
                                   and not _refused(p[0]))
                pending = failed
                if not failed:
                    return
                log.warning("Kafka refused %d records (%s); re-sending", len(failed),
                            "cancelled" if failed[0][0].cancelled() else failed[0][0].exception())
                if self.on_retry is not None:
                    self.on_retry(len(failed))
                await asyncio.sleep(backoff.next_delay())
                for i, (_, topic, key, value) in enumerate(pending):  # in place: see below
                    pending[i] = (await self._submit(topic, key, value), topic, key, value)
        except BaseException:
            # cancelled or timed out: what is not acknowledged (or refused and not yet
            # re-sent) stays pending for the next flush, nothing is lost or counted twice
            self._pending = pending + self._pending
            raise

    def take_acked(self) -> int:
        n, self._acked = self._acked, 0
        return n

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()


# ---------------------------------------------------------------- pipeline


@dataclass
class Counts:
    """Plain counters of one run (mirrored into Prometheus)."""

    received: Tally[str] = field(default_factory=Tally)  # by kind
    matched: int = 0
    produced: int = 0
    filtered: Tally[str] = field(default_factory=Tally)  # by reason
    malformed: int = 0
    reconnects: int = 0

    @property
    def total_received(self) -> int:
        return sum(self.received.values())

    def to_dict(self) -> dict[str, Any]:
        return {"received": self.total_received, "produced": self.produced,
                "filtered": sum(self.filtered.values()), "malformed": self.malformed,
                "matched": self.matched, "reconnects": self.reconnects,
                "received_by_kind": dict(self.received.most_common()),
                "filtered_by_reason": dict(self.filtered.most_common())}


class Pipeline:
    """Per event: count, dead-letter, de-duplicate, filter, produce; cursor checkpoints."""

    def __init__(self, source: str, endpoint: str, sink: Sink, metrics: IngestMetrics,
                 content_filter: ContentFilter, store: CursorStore, *,
                 protocol: str = "", emit_deletes: bool = False, dedupe_window: int = 200_000,
                 cache_size: int = 200_000, checkpoint_interval_s: float = 2.0,
                 cursor_margin_s: float = 2.0, connector: str | None = None) -> None:
        self.source = source
        self.endpoint = endpoint
        self.protocol = protocol
        self.sink = sink
        self.metrics = metrics
        self.filter = content_filter
        self.store = store
        self.emit_deletes = emit_deletes
        self.checkpoint_interval_s = checkpoint_interval_s
        self.margin_us = int(cursor_margin_s * 1_000_000)
        self.dead_source = {"connector": connector or source, "endpoint": endpoint}
        self.counts = Counts()
        self.handles = BoundedMap(cache_size)  # did -> handle
        self.uris = BoundedMap(cache_size)  # Mastodon: status id -> uri
        self.produced_ids = RecentIds(cache_size)
        self._seen: dict[str, int] = {}  # event key -> event time (us), oldest first
        self._dedupe_window = dedupe_window
        self.time_us: int | None = None  # cursor: last event handled
        self.seq: int | None = None
        self.last_id: str | None = None
        self._last_checkpoint = time.monotonic()
        self._checkpoint_lock = asyncio.Lock()
        self._saved_position: tuple[int | None, int | None, str | None] | None = None
        self.resumed_from: Checkpoint | None = None

    # -- resume

    def resume(self) -> Checkpoint | None:
        """Load the cursor file (if it belongs to this source) into the pipeline."""
        cp = self.store.load()
        if cp is None or cp.source != self.source:
            return None
        self.resumed_from = cp
        self.time_us = cp.time_us
        self.last_id = cp.last_id
        # a seq is only meaningful on the instance that assigned it
        self.seq = cp.seq if cp.endpoint == self.endpoint and cp.protocol == self.protocol \
            else None
        for key in cp.recent:
            self._remember(key, cp.time_us or 0)
        if cp.time_us is not None:
            self.metrics.cursor_g.set(cp.time_us / 1e6)
        return cp

    # -- per event

    async def process(self, result: Mapped | FrameReject, raw: bytes | str) -> None:
        m = self.metrics
        c = self.counts
        if isinstance(result, FrameReject):
            c.received["other"] += 1
            m.received_by["other"].inc()
            await self.dead_letter(result.reason, result.detail, raw)
            return
        kind = result.kind
        c.received[kind] += 1
        m.received_by[kind].inc()
        reason = self._reason(result)
        if reason is not None:
            c.filtered[reason] += 1
            m.filtered_by[reason].inc()
        elif result.post is not None:
            post = result.post
            await self.sink.send(post["id"].encode("utf-8"), orjson.dumps(post))
            self.produced_ids.add(post["id"])
            c.matched += 1
            m.matched_by[kind].inc()
        # the cursor moves only once the record is in the sink's hands: a checkpoint (which
        # flushes the sink first) never covers an event that was not sent
        time_us = result.time_us
        if time_us is not None and (self.time_us is None or time_us > self.time_us):
            self.time_us = time_us
        if result.seq is not None and (self.seq is None or result.seq > self.seq):
            self.seq = result.seq

    def _reason(self, r: Mapped) -> str | None:
        """Why ``r`` is not produced (None: produce). Also remembers identities and keys."""
        if r.seq is not None and self.seq is not None and r.seq <= self.seq:
            return "duplicate"  # v2 resumes are inclusive: seq <= last handled is a replay
        key = r.key
        if key is not None:
            if key in self._seen:
                return "duplicate"
            self._remember(key, r.time_us or 0)
        if r.local_ids:
            for local_id, uri in r.local_ids:
                self.uris.put(local_id, uri)
        if r.local_id is not None and r.kind != "delete":
            self.last_id = _max_id(self.last_id, r.local_id)
        if r.control is not None:
            if r.control == "identity" and r.author is not None:
                if r.handle:
                    self.handles.put(r.author, r.handle)
                else:
                    self.handles.pop(r.author, None)
            return "control" if r.control in ("identity", "account", "sync", "info", "error") \
                else "unsupported"
        if r.post is None:
            return "delete" if r.kind == "delete" else "unsupported"
        if r.kind == "delete":
            if not self.emit_deletes:
                return "delete"
            if self.filter.passthrough or any(ref in self.produced_ids for ref in r.refs):
                return None
            return "delete"
        return self.filter.reason(r, self.produced_ids, self.handles)

    def _remember(self, key: str, time_us: int) -> None:
        seen = self._seen
        seen[key] = time_us
        if len(seen) > self._dedupe_window:
            del seen[next(iter(seen))]

    async def dead_letter(self, reason: str, detail: str, raw: bytes | str) -> None:
        self.counts.malformed += 1
        self.metrics.malformed_n.inc()
        original = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else bytes(raw)
        record = DeadLetter(reason, detail, self.dead_source, original).to_dict()
        await self.sink.dead_letter(orjson.dumps(record))

    # -- checkpoints

    def checkpoint_due(self) -> bool:
        return time.monotonic() - self._last_checkpoint >= self.checkpoint_interval_s

    async def checkpoint(self, limit_s: float | None = None) -> None:
        """Flush the sink (everything handled so far acknowledged), then write the cursor.
        One at a time: a second caller waits and then flushes what came after."""
        async with self._checkpoint_lock:
            await self._checkpoint(limit_s)

    async def _checkpoint(self, limit_s: float | None) -> None:
        time_us, seq, last_id = self.time_us, self.seq, self.last_id
        self._last_checkpoint = time.monotonic()
        try:
            await self.sink.flush(limit_s)
        finally:
            self.sync_produced()
        if time_us is not None:
            self.metrics.lag_g.set(max(0.0, time.time() - time_us / 1e6))
        position = (time_us, seq, last_id)
        if position == self._saved_position:
            return  # nothing moved: the file is current
        # a resume asks for cursor - margin: only events at or after that can come again
        floor = (time_us or 0) - self.margin_us
        recent: list[str] = []
        for key, t in reversed(self._seen.items()):
            if t < floor or len(recent) >= 50_000:
                break
            recent.append(key)
        recent.reverse()
        self.store.save(Checkpoint(source=self.source, endpoint=self.endpoint,
                                   protocol=self.protocol, time_us=time_us, seq=seq,
                                   last_id=last_id, recent=recent, saved_at=time.time()))
        self._saved_position = position
        if time_us is not None:
            self.metrics.cursor_g.set(time_us / 1e6)

    def sync_produced(self) -> None:
        n = self.sink.take_acked()
        if n:
            self.counts.produced += n
            self.metrics.produced_n.inc(n)

    def update_lag(self) -> None:
        if self.time_us is not None:
            self.metrics.lag_g.set(max(0.0, time.time() - self.time_us / 1e6))

    def note_reconnect(self) -> None:
        self.counts.reconnects += 1
        self.metrics.reconnects_n.inc()


def _max_id(current: str | None, new: str) -> str:
    if current is None:
        return new
    if current.isdigit() and new.isdigit():
        return new if int(new) > int(current) else current
    return max(current, new)


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; True when stopping."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()


def build_filter(keywords: Sequence[str], languages: Sequence[str], accounts: Sequence[str],
                 event: Any = None, platform: str = "") -> ContentFilter:
    """CLI keywords/languages/accounts plus, from an event file, every topic term, its
    languages and its official accounts on ``platform``."""
    kw = list(keywords)
    langs = list(languages)
    accts = list(accounts)
    if event is not None:
        kw += [term for topic in event.topics for term in topic.terms]
        langs += list(event.languages)
        accts += [a.handle for a in event.official_accounts if a.platform == platform]
    return ContentFilter(kw, langs, accts)


# ---------------------------------------------------------------- connector base


@dataclass
class RunResult:
    counts: Counts
    seconds: float
    error: str | None = None


class Connector:
    """The reconnect loop around :meth:`connect_once` (one connection, until it drops)."""

    source = ""

    def __init__(self, pipeline: Pipeline, ingest: IngestSettings) -> None:
        self.pipeline = pipeline
        self.ingest = ingest
        self.backoff = Backoff(ingest.backoff_initial_s, ingest.backoff_max_s)
        self.connections = 0

    async def setup(self) -> None:
        """Before the first connection (e.g. resolve handles)."""

    async def teardown(self) -> None:
        """After the last connection."""

    async def connect_once(self, stop: asyncio.Event) -> int:
        """Connect, consume until the stream ends or ``stop``; return frames handled.
        Raise :class:`IngestError` for what retrying cannot fix."""
        raise NotImplementedError

    async def run(self, stop: asyncio.Event) -> RunResult:
        start = time.monotonic()
        pipeline = self.pipeline
        error: str | None = None
        await pipeline.sink.start()
        ticker = asyncio.create_task(self._tick())
        try:
            pipeline.resume()
            await self.setup()
            while not stop.is_set():
                if self.connections:
                    pipeline.note_reconnect()
                self.connections += 1
                handled = 0
                try:
                    handled = await self.connect_once(stop)
                except IngestError:
                    raise
                except (OSError, TimeoutError) as exc:
                    log.warning("%s: connection failed: %s", self.source,
                                exc or type(exc).__name__)
                except Exception as exc:
                    if not _is_transport_error(exc):
                        raise
                    log.warning("%s: connection failed: %s", self.source, exc)
                finally:
                    pipeline.metrics.connected_g.set(0)
                if handled:
                    self.backoff.reset()
                if stop.is_set():
                    break
                await pipeline.checkpoint()  # the cursor is durable before we wait
                delay = self.backoff.next_delay()
                log.info("%s: reconnecting in %.2fs", self.source, delay)
                if await sleep_or_stop(stop, delay):
                    break
        except IngestError as exc:
            error = str(exc)
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            try:
                await self.teardown()
                await pipeline.checkpoint(limit_s=self.ingest.shutdown_timeout_s)
            except SinkTimeout as exc:
                error = error or f"stopping with unacknowledged records ({exc}); the cursor " \
                    "was not advanced past them"
            finally:
                await pipeline.sink.stop()
                pipeline.sync_produced()
        return RunResult(pipeline.counts, time.monotonic() - start, error)

    async def _tick(self) -> None:
        """Checkpoints on time, also while the stream is quiet; the lag gauge."""
        pipeline = self.pipeline
        period = min(pipeline.checkpoint_interval_s, 1.0) / 2
        while True:
            await asyncio.sleep(period)
            pipeline.update_lag()
            if pipeline.checkpoint_due():
                try:
                    await pipeline.checkpoint()
                except Exception:  # e.g. the cursor file cannot be written: keep going
                    log.exception("%s: checkpoint failed", self.source)


def _is_transport_error(exc: BaseException) -> bool:
    import aiohttp

    return isinstance(exc, aiohttp.ClientError)


async def close_on_stop(stop: asyncio.Event, close: Callable[[], Any]) -> None:
    """Wait for ``stop``, then call ``close`` (awaiting it if it is a coroutine)."""
    await stop.wait()
    result = close()
    if asyncio.iscoroutine(result):
        await result


def run_connector(connector: Connector, *, duration: float | None = None,
                  metrics: tuple[CollectorRegistry, str, int] | None = None,
                  on_started: Callable[[], None] | None = None) -> RunResult:
    """Run a connector until SIGINT/SIGTERM or ``duration`` seconds, with an optional
    ``/metrics`` server (registry, host, port)."""
    import signal

    async def main() -> RunResult:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        if duration is not None:
            loop.call_later(duration, stop.set)
        stop_metrics = start_metrics_server(*metrics) if metrics is not None else None
        if on_started is not None:
            on_started()
        try:
            return await connector.run(stop)
        finally:
            if stop_metrics is not None:
                stop_metrics()

    return asyncio.run(main())


def make_sink(out: Path | None, settings: Settings, ingest: IngestSettings, *,
              topic: str | None, source: str, metrics: IngestMetrics) -> Sink:
    """``--out FILE`` -> :class:`FileSink`; otherwise Kafka (``topic`` or posts.raw)."""
    if out is not None:
        return FileSink(out)
    return KafkaSink(settings, topic or settings.topic_raw, settings.topic_deadletter,
                     linger_ms=ingest.linger_ms, max_batch_bytes=ingest.max_batch_bytes,
                     max_pending=ingest.max_pending, client_id=f"crowdwatch-ingest-{source}",
                     on_retry=metrics.send_retries_n.inc)


def make_pipeline(source: str, endpoint: str, sink: Sink, metrics: IngestMetrics,
                  content_filter: ContentFilter, ingest: IngestSettings, *,
                  cursor_path: Path | None, protocol: str = "", emit_deletes: bool = False,
                  connector: str | None = None) -> Pipeline:
    return Pipeline(source, endpoint, sink, metrics, content_filter, CursorStore(cursor_path),
                    protocol=protocol, emit_deletes=emit_deletes,
                    dedupe_window=ingest.dedupe_window, cache_size=ingest.cache_size,
                    checkpoint_interval_s=ingest.checkpoint_interval_s,
                    cursor_margin_s=ingest.cursor_margin_s, connector=connector)
