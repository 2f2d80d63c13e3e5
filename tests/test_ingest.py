"""The live connectors without Kafka: pipeline, cursor file, backoff, and the Jetstream and
Mastodon connectors against local stand-ins (streams.ingest.fakes) on 127.0.0.1, writing
JSON Lines files (``--out`` mode). Kafka is covered in tests/integration/test_ingest_kafka.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import signal
import sys
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from models.firehose import (
    ContentFilter,
    Mapped,
    map_jetstream_frame,
)
from streams.cli import app
from streams.embedded import free_port
from streams.ingest.bluesky import JetstreamConnector, JetstreamOptions, dictionary_id
from streams.ingest.common import (
    Backoff,
    Checkpoint,
    Connector,
    CursorStore,
    FileSink,
    IngestError,
    IngestMetrics,
    IngestSettings,
    Pipeline,
    RunResult,
    make_pipeline,
    rejects_path_for,
    start_metrics_server,
)
from streams.ingest.fakes import (
    FakeEvent,
    FakeJetstream,
    FakeMastodon,
    events_from_frames,
    synthetic_events,
)
from streams.ingest.mastodon import MastodonConnector, MastodonOptions

FIXTURES = Path(__file__).parent / "fixtures" / "firehose"
REPO = Path(__file__).resolve().parents[1]
POL = "did:plc:fakepolitie2amsterdam7pp"
TOKEN = "synthetic-token"


def fixture_frames(protocol: str) -> list[str]:
    name = "jetstream_v1.jsonl" if protocol == "v1" else "jetstream_v2.jsonl"
    return (FIXTURES / name).read_text(encoding="utf-8").splitlines()


def malformed_frames() -> list[tuple[str | bytes, str]]:
    cases = json.loads((FIXTURES / "malformed.json").read_text(encoding="utf-8"))
    return [(base64.b64decode(c["frame_b64"]) if "frame_b64" in c else c["frame"], c["reason"])
            for c in cases]


def mastodon_events() -> list[tuple[str, str]]:
    events = json.loads((FIXTURES / "mastodon_events.json").read_text(encoding="utf-8"))
    return [(e["event"], e["data"] if isinstance(e["data"], str)
             else json.dumps(e["data"], ensure_ascii=False)) for e in events]


def expected_ids(frames: Sequence[str | bytes]) -> list[str]:
    """Ids a pass-everything connector produces (deletes are not emitted by default)."""
    out = []
    for f in frames:
        m = map_jetstream_frame(f)
        if isinstance(m, Mapped) and m.post is not None and m.kind != "delete" \
                and m.control is None:
            out.append(m.post["id"])
    return out


def ingest_settings(tmp_path: Path, **kw: Any) -> IngestSettings:
    values: dict[str, Any] = {
        "state_dir": tmp_path / "state", "checkpoint_interval_s": 0.05,
        "backoff_initial_s": 0.01, "backoff_max_s": 0.1, "cursor_margin_s": 0.2,
        "idle_timeout_s": 10, "shutdown_timeout_s": 5}
    values.update(kw)
    return IngestSettings(**values)


class Run:
    """A connector wired to a file sink, a fresh registry and a cursor file."""

    def __init__(self, tmp_path: Path, source: str, endpoint: str, *,
                 ingest: IngestSettings | None = None, content_filter: ContentFilter | None = None,
                 cursor: bool = True, protocol: str = "", emit_deletes: bool = False,
                 out_name: str = "out.jsonl") -> None:
        self.ingest = ingest or ingest_settings(tmp_path)
        self.out = tmp_path / out_name
        self.registry = CollectorRegistry()
        self.metrics = IngestMetrics(self.registry, source)
        self.sink = FileSink(self.out)
        self.cursor_path = tmp_path / f"{source}.cursor.json" if cursor else None
        self.pipeline = make_pipeline(
            source, endpoint, self.sink, self.metrics, content_filter or ContentFilter(),
            self.ingest, cursor_path=self.cursor_path, protocol=protocol,
            emit_deletes=emit_deletes)

    def lines(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text(encoding="utf-8").splitlines()]

    def rejects(self) -> list[dict[str, Any]]:
        path = rejects_path_for(self.out)
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return value or 0.0


async def run_until(connector: Connector, done: Callable[[], bool], limit_s: float = 15.0
                    ) -> RunResult:
    """Run ``connector`` until ``done()`` holds (then stop it cleanly)."""
    stop = asyncio.Event()
    task = asyncio.create_task(connector.run(stop))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not done() and not task.done():
        if loop.time() > deadline:
            stop.set()
            await task
            raise AssertionError(f"condition not met in {limit_s}s: "
                                 f"{connector.pipeline.counts.to_dict()}")
        await asyncio.sleep(0.002)
    stop.set()
    return await asyncio.wait_for(task, max(15.0, limit_s))


async def until(done: Callable[[], bool], limit_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not done():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.002)


def reconciles(run: Run) -> None:
    c = run.pipeline.counts
    assert c.total_received == c.produced + sum(c.filtered.values()) + c.malformed, c.to_dict()
    received = sum(run.metric("crowdwatch_ingest_events_received_total", source=s, kind=k)
                   for s in ("bluesky", "mastodon")
                   for k in ("post", "reply", "quote", "repost", "like", "delete", "identity",
                             "account", "other"))
    produced = sum(run.metric("crowdwatch_ingest_events_produced_total", source=s)
                   for s in ("bluesky", "mastodon"))
    malformed = sum(run.metric("crowdwatch_ingest_events_malformed_total", source=s)
                    for s in ("bluesky", "mastodon"))
    filtered = sum(v for v in (
        run.registry.get_sample_value("crowdwatch_ingest_events_filtered_total",
                                      {"source": run.metrics.source, "reason": r})
        for r in c.filtered) if v)
    assert received == produced + filtered + malformed == c.total_received
    assert produced == c.produced == len(run.lines())


# ---------------------------------------------------------------- small parts


def test_backoff_grows_is_capped_jittered_and_resets() -> None:
    b = Backoff(0.5, 8.0, random.Random(3))
    delays = [b.next_delay() for _ in range(8)]
    steps = [min(8.0, 0.5 * 2**i) for i in range(8)]
    for d, step in zip(delays, steps, strict=True):
        assert step / 2 <= d <= step
    assert max(delays) <= 8.0 and delays[-1] >= 4.0
    assert len({round(d, 6) for d in delays}) == len(delays)  # jitter
    b.reset()
    assert b.next_delay() <= 0.5


def test_cursor_store_roundtrip_and_bad_files(tmp_path: Path) -> None:
    store = CursorStore(tmp_path / "x" / "bluesky.cursor.json")
    assert store.load() is None
    cp = Checkpoint(source="bluesky", endpoint="wss://j.test", protocol="v2",
                    time_us=1_808_813_703_412_000, seq=42, recent=["a", "b"], saved_at=1.5)
    store.save(cp)
    assert store.load() == cp
    assert not list((tmp_path / "x").glob("*.tmp"))
    assert store.path is not None
    store.path.write_text("{not json")
    assert store.load() is None
    assert CursorStore(None).load() is None
    CursorStore(None).save(cp)  # no-op
    default = CursorStore.default_path(IngestSettings(state_dir=tmp_path), "koningsdag")
    assert default == tmp_path / "koningsdag.cursor.json"


def test_rejects_file_name() -> None:
    assert rejects_path_for(Path("/x/cap.jsonl")) == Path("/x/cap.rejects.jsonl")
    assert rejects_path_for(Path("/x/cap")) == Path("/x/cap.rejects.jsonl")


class MemorySink:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes]] = []
        self.dead: list[dict[str, Any]] = []
        self._unacked = 0
        self._acked = 0

    async def start(self) -> None:
        return None

    async def send(self, key: bytes, value: bytes) -> None:
        self.sent.append((key, value))
        self._unacked += 1

    async def dead_letter(self, value: bytes) -> None:
        self.dead.append(json.loads(value))

    async def flush(self, limit_s: float | None = None) -> None:
        self._acked += self._unacked
        self._unacked = 0

    def take_acked(self) -> int:
        n, self._acked = self._acked, 0
        return n

    async def stop(self) -> None:
        return None


def memory_pipeline(**kw: Any) -> tuple[Pipeline, MemorySink, CollectorRegistry]:
    registry = CollectorRegistry()
    sink = MemorySink()
    pipeline = Pipeline("bluesky", "ws://127.0.0.1:1", sink, IngestMetrics(registry, "bluesky"),
                        kw.pop("content_filter", ContentFilter()), CursorStore(None), **kw)
    return pipeline, sink, registry


@pytest.mark.asyncio
async def test_pipeline_counts_reconcile_and_dead_letters_keep_the_original() -> None:
    pipeline, sink, registry = memory_pipeline(connector="bluesky-jetstream")
    frames: list[str | bytes] = [*fixture_frames("v1")]
    for raw, _ in malformed_frames():
        frames.append(raw)
    for raw in frames:
        await pipeline.process(map_jetstream_frame(raw), raw)
    await pipeline.checkpoint()
    c = pipeline.counts
    assert c.malformed == len(malformed_frames()) == len(sink.dead)
    assert c.total_received == len(frames)
    assert c.total_received == c.produced + sum(c.filtered.values()) + c.malformed
    assert c.filtered == {"control": 2, "unsupported": 1, "delete": 2}
    assert c.produced == len(sink.sent) == len(expected_ids(fixture_frames("v1")))
    for dead, (raw, reason) in zip(sink.dead, malformed_frames(), strict=True):
        assert set(dead) == {"reason", "detail", "source", "original", "original_b64"}
        assert dead["reason"] == reason and dead["detail"]
        assert dead["source"] == {"connector": "bluesky-jetstream", "endpoint": "ws://127.0.0.1:1"}
        original = raw if isinstance(raw, bytes) else raw.encode()
        assert base64.b64decode(dead["original_b64"]) == original
        assert dead["original"] == (None if reason == "invalid_utf8" else original.decode())
    for key, value in sink.sent:
        assert json.loads(value)["id"] == key.decode()
    get = registry.get_sample_value
    assert get("crowdwatch_ingest_events_received_total",
               {"source": "bluesky", "kind": "like"}) == 2
    assert get("crowdwatch_ingest_events_matched_total",
               {"source": "bluesky", "kind": "like"}) == 2
    assert get("crowdwatch_ingest_events_filtered_total",
               {"source": "bluesky", "reason": "control"}) == 2
    assert get("crowdwatch_ingest_events_malformed_total", {"source": "bluesky"}) == len(sink.dead)
    assert get("crowdwatch_ingest_events_produced_total", {"source": "bluesky"}) == c.produced
    assert get("crowdwatch_ingest_events_filtered_total",
               {"source": "bluesky", "reason": "keyword"}) == 0  # series exist from the start


@pytest.mark.asyncio
async def test_pipeline_drops_replays_learns_handles_and_emits_deletes_it_can_tie() -> None:
    pipeline, sink, _ = memory_pipeline(
        emit_deletes=True, content_filter=ContentFilter(keywords=["kingsday", "koningsdag"]))
    frames = dict(zip(json.loads((FIXTURES / "jetstream_v1.names.json").read_text()),
                      fixture_frames("v1"), strict=True))
    for name in ("post_nl", "post_nl", "identity", "official_post", "like_delete", "post_en",
                 "delete", "delete"):
        await pipeline.process(map_jetstream_frame(frames[name]), frames[name])
    sent = [json.loads(v) for _, v in sink.sent]
    assert [p["id"].rsplit("/", 1)[-1] for p in sent] == \
        ["3ltest2aaaa22", "3ltest2bbbb22", "3ltest2bbbb22#delete"]
    assert pipeline.counts.filtered["duplicate"] == 2  # post_nl and the second delete
    assert pipeline.counts.filtered["delete"] == 1  # a like never produced
    assert pipeline.counts.filtered["keyword"] == 1  # official_post: no keyword, not watched
    assert pipeline.handles[POL] == "politie-fictief.bsky.test"


@pytest.mark.asyncio
async def test_pipeline_v2_seq_replays_are_duplicates() -> None:
    pipeline, sink, _ = memory_pipeline(protocol="v2")
    frames = fixture_frames("v2")
    for raw in frames[:5] + frames[3:8]:  # a resume at seq 3 (inclusive) replays 3 and 4
        await pipeline.process(map_jetstream_frame(raw), raw)
    assert pipeline.counts.filtered["duplicate"] == 2
    assert len(sink.sent) == 7
    assert pipeline.seq == 81000007


# ---------------------------------------------------------------- Jetstream connector


def interleave_malformed(frames: list[str]) -> list[str | bytes]:
    out: list[str | bytes] = []
    bad = [raw for raw, _ in malformed_frames()]
    for i, frame in enumerate(frames):
        out.append(frame)
        if i % 2 == 1 and bad:
            out.append(bad.pop())
    out.extend(bad)
    return out


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", ["v1", "v2"])
async def test_jetstream_to_file_with_malformed_frames(tmp_path: Path, protocol: str) -> None:
    frames = interleave_malformed(fixture_frames(protocol))
    fake = FakeJetstream(events_from_frames(frames, protocol))
    url = await fake.start()
    run = Run(tmp_path, "bluesky", url, protocol=protocol)
    connector = JetstreamConnector(run.pipeline, run.ingest,
                                   JetstreamOptions(endpoint=url, protocol=protocol))
    try:
        result = await run_until(connector,
                                 lambda: run.pipeline.counts.total_received >= len(frames))
    finally:
        await fake.stop()
    assert result.error is None
    assert [p["id"] for p in run.lines()] == expected_ids(frames)
    rejects = run.rejects()
    assert sorted(r["reason"] for r in rejects) == sorted(r for _, r in malformed_frames())
    assert all(r["source"] == {"connector": "bluesky", "endpoint": url} for r in rejects)
    reconciles(run)
    conn = fake.connections[0]
    query = dict(conn["query"])
    if protocol == "v1":
        assert conn["query"][:3] == [("wantedCollections", "app.bsky.feed.post"),
                                     ("wantedCollections", "app.bsky.feed.repost"),
                                     ("wantedCollections", "app.bsky.feed.like")]
        assert "cursor" not in query
    else:
        assert conn["subprotocol"] == "xrpc.v1.json"
        assert ("kinds", "commit") in conn["query"] and ("kinds", "identity") in conn["query"]
        assert ("collections", "app.bsky.feed.like") in conn["query"]
        assert run.pipeline.counts.filtered["control"] == 5  # identity, account, info, sync, error
    # the cursor file holds the last event's position
    cp = CursorStore(run.cursor_path).load()
    assert cp is not None and cp.time_us == run.pipeline.time_us and cp.protocol == protocol


def synthetic(n: int) -> list[FakeEvent]:
    return synthetic_events(n, seed=7, step_us=500)


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", ["v1", "v2"])
async def test_server_stopped_mid_stream_resumes_without_gap_or_duplicates(
        tmp_path: Path, protocol: str) -> None:
    events = synthetic(3000)
    frames = [e.v1 if protocol == "v1" else e.v2 for e in events]
    fake = FakeJetstream(events, stop_after=1200)
    url = await fake.start()
    run = Run(tmp_path, "bluesky", url, protocol=protocol)
    connector = JetstreamConnector(run.pipeline, run.ingest,
                                   JetstreamOptions(endpoint=url, protocol=protocol))
    stop = asyncio.Event()
    task = asyncio.create_task(connector.run(stop))
    second: FakeJetstream | None = None
    try:
        await asyncio.wait_for(fake.paused.wait(), 10)
        await until(lambda: run.pipeline.counts.total_received >= 1200)
        position = (run.pipeline.time_us, run.pipeline.seq)
        await fake.stop()  # the server goes away mid-stream
        second = FakeJetstream(events, port=fake.port)
        await second.start()
        while run.pipeline.time_us != events[-1].time_us:
            await asyncio.sleep(0.002)
            assert not task.done(), task
    finally:
        stop.set()
        result = await asyncio.wait_for(task, 15)
        if second is not None:
            await second.stop()
        await fake.stop()
    assert result.error is None
    ids = [p["id"] for p in run.lines()]
    assert len(ids) == len(set(ids))  # no duplicates
    assert ids == expected_ids(frames)  # no gap, in order
    assert run.pipeline.counts.reconnects >= 1
    assert run.metric("crowdwatch_ingest_reconnects_total", source="bluesky") >= 1
    assert second is not None
    resumed = dict(second.connections[0]["query"])
    time_us, seq = position
    assert time_us is not None
    if protocol == "v1":  # time cursor minus the safety margin; replays dropped by key
        assert int(resumed["cursor"]) == time_us - 200_000
        assert run.pipeline.counts.filtered["duplicate"] >= 300
    else:  # same instance: the seq cursor (inclusive); the replayed last event dropped
        assert int(resumed["cursor"]) == seq
        assert run.pipeline.counts.filtered["duplicate"] == 1
    reconciles(run)


@pytest.mark.asyncio
async def test_restart_resumes_from_the_cursor_file(tmp_path: Path) -> None:
    events = synthetic(2500)
    frames = [e.v1 for e in events]
    fake = FakeJetstream(events)
    url = await fake.start()
    try:
        first = Run(tmp_path, "bluesky", url)
        c1 = JetstreamConnector(first.pipeline, first.ingest, JetstreamOptions(endpoint=url))
        await run_until(c1, lambda: first.pipeline.counts.total_received >= 1000)
        cp = CursorStore(first.cursor_path).load()
        assert cp is not None and cp.time_us == first.pipeline.time_us
        assert cp.recent  # keys a resume may replay
        # a new process: new pipeline, same cursor file and output file
        second = Run(tmp_path, "bluesky", url)
        c2 = JetstreamConnector(second.pipeline, second.ingest, JetstreamOptions(endpoint=url))
        await run_until(c2, lambda: second.pipeline.time_us == events[-1].time_us)
    finally:
        await fake.stop()
    ids = [p["id"] for p in second.lines()]  # the same file, appended
    assert ids == expected_ids(frames)
    assert int(dict(fake.connections[1]["query"])["cursor"]) == cp.time_us - 200_000
    assert second.pipeline.counts.filtered["duplicate"] > 0


@pytest.mark.asyncio
async def test_flaky_connection_is_cut_again_and_again(tmp_path: Path) -> None:
    events = synthetic(3000)
    fake = FakeJetstream(events, cut_after=600)
    url = await fake.start()
    run = Run(tmp_path, "bluesky", url, cursor=False)
    connector = JetstreamConnector(run.pipeline, run.ingest, JetstreamOptions(endpoint=url))
    try:
        await run_until(connector, lambda: run.pipeline.time_us == events[-1].time_us)
    finally:
        await fake.stop()
    assert [p["id"] for p in run.lines()] == expected_ids([e.v1 for e in events])
    assert run.pipeline.counts.reconnects >= 4
    assert run.cursor_path is None
    reconciles(run)


def train_dictionary(events: Sequence[FakeEvent]) -> bytes:
    import zstandard

    samples = [e.v1.encode() if isinstance(e.v1, str) else e.v1 for e in events]
    samples += [e.v2.encode() if isinstance(e.v2, str) else e.v2 for e in events]
    return bytes(zstandard.train_dictionary(8192, samples).as_bytes())


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", ["v1", "v2"])
async def test_zstd_compressed_frames_with_a_dictionary(tmp_path: Path, protocol: str) -> None:
    events = synthetic(1500)
    dictionary = train_dictionary(events[:1000])
    corrupt = FakeEvent(events[99].time_us + 1, events[99].seq, b"\x28\xb5\x2f\xfd garbage",
                        b"\x28\xb5\x2f\xfd garbage")
    served = [*events[:100], corrupt, *events[100:]]
    fake = FakeJetstream(served, dictionary=dictionary)
    url = await fake.start()
    run = Run(tmp_path, "bluesky", url, protocol=protocol)
    connector = JetstreamConnector(run.pipeline, run.ingest, JetstreamOptions(
        endpoint=url, protocol=protocol, compress=True, dictionary=dictionary))
    try:
        await run_until(connector, lambda: run.pipeline.counts.total_received >= len(served))
    finally:
        await fake.stop()
    assert [p["id"] for p in run.lines()] == expected_ids(
        [e.v1 if protocol == "v1" else e.v2 for e in events])
    assert [r["reason"] for r in run.rejects()] == ["decompress_failed"]
    query = dict(fake.connections[0]["query"])
    if protocol == "v1":
        assert query["compress"] == "true"
    else:
        assert int(query["zstdDictionary"]) == dictionary_id(dictionary) != 0
    reconciles(run)


def test_compression_needs_a_usable_dictionary(tmp_path: Path) -> None:
    run = Run(tmp_path, "bluesky", "ws://127.0.0.1:9")
    with pytest.raises(IngestError, match="--zstd-dictionary"):
        JetstreamConnector(run.pipeline, run.ingest,
                           JetstreamOptions(endpoint="ws://127.0.0.1:9", compress=True))
    with pytest.raises(IngestError, match="id header"):
        JetstreamConnector(run.pipeline, run.ingest, JetstreamOptions(
            endpoint="ws://127.0.0.1:9", protocol="v2", compress=True,
            dictionary=b"raw content dictionary without a header"))
    with pytest.raises(IngestError, match="ws://"):
        JetstreamConnector(run.pipeline, run.ingest, JetstreamOptions(endpoint="ftp://x"))


@pytest.mark.asyncio
async def test_refused_subscription_is_a_clear_error(tmp_path: Path) -> None:
    fake = FakeJetstream([], status=404)
    url = await fake.start()
    run = Run(tmp_path, "bluesky", url)
    connector = JetstreamConnector(run.pipeline, run.ingest, JetstreamOptions(endpoint=url))
    try:
        result = await asyncio.wait_for(connector.run(asyncio.Event()), 10)
    finally:
        await fake.stop()
    assert result.error is not None and "refused the subscription (404" in result.error


@pytest.mark.asyncio
async def test_unavailable_server_is_retried_with_backoff(tmp_path: Path) -> None:
    fake = FakeJetstream([], status=503)
    url = await fake.start()
    run = Run(tmp_path, "bluesky", url)
    connector = JetstreamConnector(run.pipeline, run.ingest, JetstreamOptions(endpoint=url))
    try:
        result = await run_until(connector, lambda: len(fake.connections) >= 4)
    finally:
        await fake.stop()
    assert result.error is None and run.pipeline.counts.reconnects >= 3


@pytest.mark.asyncio
async def test_watched_handles_are_resolved_and_only_their_repos_asked_for(
        tmp_path: Path) -> None:
    frames = fixture_frames("v1")
    fake = FakeJetstream(events_from_frames(frames), handles={"politie-fictief.bsky.test": POL})
    url = await fake.start()
    run = Run(tmp_path, "bluesky", url, content_filter=ContentFilter(
        keywords=["nothing-matches-this"], accounts=["@Politie-Fictief.bsky.test"]))
    connector = JetstreamConnector(run.pipeline, run.ingest, JetstreamOptions(
        endpoint=url, only_accounts=True, appview=url.replace("ws://", "http://")))
    try:
        await run_until(connector, lambda: run.pipeline.counts.total_received >= len(frames))
    finally:
        await fake.stop()
    assert ("wantedDids", POL) in fake.connections[0]["query"]
    produced = {p["id"].rsplit("/", 1)[-1]: p for p in run.lines()}
    assert set(produced) == {"3ltest2pppp22", "3ltest2gggh22", "3ltest2llll22"}
    assert produced["3ltest2pppp22"]["author"] == {"id": POL,
                                                   "handle": "politie-fictief.bsky.test"}


@pytest.mark.asyncio
async def test_metrics_are_served_over_http(tmp_path: Path) -> None:
    frames = fixture_frames("v1")
    fake = FakeJetstream(events_from_frames(frames))
    url = await fake.start()
    run = Run(tmp_path, "bluesky", url)
    connector = JetstreamConnector(run.pipeline, run.ingest, JetstreamOptions(endpoint=url))
    port = free_port()
    stop_server = start_metrics_server(run.registry, "127.0.0.1", port)
    try:
        await run_until(connector, lambda: run.pipeline.counts.total_received >= len(frames))
        body = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
    finally:
        stop_server()
        await fake.stop()
    assert 'crowdwatch_ingest_events_received_total{kind="post",source="bluesky"}' in body
    assert 'crowdwatch_ingest_events_filtered_total{reason="control",source="bluesky"} 2.0' in body
    assert "crowdwatch_ingest_lag_seconds" in body
    assert run.metric("crowdwatch_ingest_cursor_timestamp_seconds", source="bluesky") == \
        pytest.approx(frames and json.loads(frames[-1])["time_us"] / 1e6)
    assert run.metric("crowdwatch_ingest_connected", source="bluesky") == 0  # stopped


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - 127.0.0.1
        return str(r.read().decode())


# ---------------------------------------------------------------- Mastodon connector


def mastodon_options(url: str, **kw: Any) -> MastodonOptions:
    values: dict[str, Any] = {"instance": "https://social.fictief.test", "endpoint": url,
                              "token": TOKEN}
    values.update(kw)
    return MastodonOptions(**values)


@pytest.mark.asyncio
async def test_mastodon_stream_to_file(tmp_path: Path) -> None:
    events = mastodon_events()
    fake = FakeMastodon(events, token=TOKEN)
    url = await fake.start()
    run = Run(tmp_path, "mastodon", url)
    connector = MastodonConnector(run.pipeline, run.ingest, mastodon_options(url))
    try:
        await run_until(connector, lambda: run.pipeline.counts.total_received >= len(events))
    finally:
        await fake.stop()
    posts = run.lines()
    assert [p["kind"] for p in posts] == ["post", "reply", "post", "repost", "quote", "post",
                                          "post", "post"]
    assert posts[1]["reply_to"] == posts[0]["id"]
    assert posts[6]["operation"] == "update" and posts[6]["id"] == posts[0]["id"]
    c = run.pipeline.counts
    assert c.received["delete"] == 2 and c.filtered["delete"] == 2
    assert c.filtered["unsupported"] == 2  # notification, filters_changed
    assert fake.connections[0]["path"] == "/api/v1/streaming/public"
    assert fake.connections[0]["auth"] == f"Bearer {TOKEN}"
    reconciles(run)


@pytest.mark.asyncio
async def test_mastodon_deletes_of_produced_posts_can_be_emitted(tmp_path: Path) -> None:
    events = mastodon_events()
    fake = FakeMastodon(events, token=TOKEN)
    url = await fake.start()
    run = Run(tmp_path, "mastodon", url, emit_deletes=True,
              content_filter=ContentFilter(keywords=["brand", "koningsdag"]))
    connector = MastodonConnector(run.pipeline, run.ingest, mastodon_options(url))
    try:
        await run_until(connector, lambda: run.pipeline.counts.total_received >= len(events))
    finally:
        await fake.stop()
    kinds = [(p["kind"], p.get("delete_of", p["id"]).rsplit("/", 1)[-1]) for p in run.lines()]
    assert kinds == [("post", "112233445566778801"), ("reply", "9112233445566778802"),
                     ("post", "112233445566778801"), ("post", "9112233445566778807"),
                     ("delete", "9112233445566778807")]
    reconciles(run)


@pytest.mark.asyncio
async def test_mastodon_401_is_a_clear_error(tmp_path: Path) -> None:
    fake = FakeMastodon(mastodon_events(), token="another-token")
    url = await fake.start()
    run = Run(tmp_path, "mastodon", url)
    connector = MastodonConnector(run.pipeline, run.ingest, mastodon_options(url))
    try:
        result = await asyncio.wait_for(connector.run(asyncio.Event()), 10)
    finally:
        await fake.stop()
    assert result.error is not None and "401" in result.error and "user access token" in \
        result.error


@pytest.mark.asyncio
async def test_mastodon_reconnects_and_drops_replays(tmp_path: Path) -> None:
    events = mastodon_events()
    fake = FakeMastodon(events, token=TOKEN, cut_after=5)
    url = await fake.start()
    run = Run(tmp_path, "mastodon", url)
    connector = MastodonConnector(run.pipeline, run.ingest, mastodon_options(url))
    try:
        await run_until(connector, lambda: run.pipeline.counts.total_received >= 20)
    finally:
        await fake.stop()
    ids = [p["id"] for p in run.lines()]
    assert len(ids) == len(set(ids)) == 5
    assert run.pipeline.counts.filtered["duplicate"] >= 10
    assert run.pipeline.counts.reconnects >= 3
    reconciles(run)


@pytest.mark.asyncio
async def test_mastodon_several_tags_share_one_pipeline(tmp_path: Path) -> None:
    events = mastodon_events()
    fake = FakeMastodon([], token=TOKEN, tag_events={"koningsdag": events[:4],
                                                     "amsterdam": events[2:6]})
    url = await fake.start()
    run = Run(tmp_path, "mastodon", url)
    connector = MastodonConnector(run.pipeline, run.ingest, mastodon_options(
        url, stream="hashtag", tags=("koningsdag", "#amsterdam")))
    try:
        await run_until(connector, lambda: run.pipeline.counts.total_received >= 8)
    finally:
        await fake.stop()
    assert sorted(c["query"][0][1] for c in fake.connections) == ["amsterdam", "koningsdag"]
    assert len(run.lines()) == 6 and run.pipeline.counts.filtered["duplicate"] == 2
    reconciles(run)


@pytest.mark.asyncio
async def test_mastodon_server_sent_events_as_served(tmp_path: Path) -> None:
    """The recorded stream: comments, CRLF line ends, multi-line data."""
    raw = (FIXTURES / "mastodon_stream.sse").read_bytes()
    raw += b"event: update\ndata: {\"id\": \"1\",\ndata:  \"uri\": 5}\n\n"  # 2 lines, bad uri
    closing = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i in range(0, len(raw), 700):  # in pieces, across line ends
            await resp.write(raw[i:i + 700])
        await closing.wait()
        return resp

    server = web.Application()
    server.router.add_get("/api/v1/streaming/public/local", handler)
    runner = web.AppRunner(server, handle_signals=False)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}"
    run = Run(tmp_path, "mastodon", url)
    connector = MastodonConnector(run.pipeline, run.ingest,
                                  mastodon_options(url, stream="public:local"))
    try:
        await run_until(connector, lambda: run.pipeline.counts.total_received >= 13)
    finally:
        closing.set()
        await runner.cleanup()
    assert len(run.lines()) == 8
    assert [r["reason"] for r in run.rejects()] == ["missing_field"]
    assert run.rejects()[0]["original"] == '{"id": "1",\n "uri": 5}'
    reconciles(run)


def test_mastodon_options_are_checked(tmp_path: Path) -> None:
    run = Run(tmp_path, "mastodon", "http://127.0.0.1:9")
    for kw, match in (({"stream": "home"}, "--stream"), ({"stream": "hashtag"}, "--tag"),
                      ({"tags": ("x",)}, "--tag needs"), ({"token": " "}, "token is required"),
                      ({"endpoint": "ws://x"}, "--endpoint")):
        with pytest.raises(IngestError, match=match):
            MastodonConnector(run.pipeline, run.ingest, mastodon_options("http://x", **kw))


# ---------------------------------------------------------------- command line


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROWDWATCH_")}
    env["CROWDWATCH_STACK_FILE"] = str(tmp_path / "no-stack.env")
    env["CROWDWATCH_INGEST_STATE_DIR"] = str(tmp_path / "state")
    env["CROWDWATCH_INGEST_BACKOFF_INITIAL_S"] = "0.05"
    env["CROWDWATCH_INGEST_CHECKPOINT_INTERVAL_S"] = "0.2"
    return env


@pytest.mark.parametrize(("args", "message"), [
    (["bluesky", "--compress", "--out", "x.jsonl"], "--compress needs --zstd-dictionary"),
    (["bluesky", "--protocol", "v3", "--out", "x.jsonl"], "choose v1 or v2"),
    (["bluesky", "--cursor", "1700000000", "--out", "x.jsonl"], "in microseconds"),
    (["bluesky"], "no Kafka configured"),
    (["mastodon", "--instance", "https://m.test", "--out", "x.jsonl"], "token is required"),
    (["mastodon", "--instance", "https://m.test", "--token", "t", "--stream", "hashtag",
      "--out", "x.jsonl"], "needs --tag"),
])
def test_cli_refuses_bad_arguments_with_one_line(tmp_path: Path, args: list[str],
                                                  message: str) -> None:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("CROWDWATCH_")}
    env.update(_env(tmp_path))  # CliRunner overlays the environment: unset the others
    result = CliRunner().invoke(app, ["ingest", *args], env=env)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


async def _cli(args: Sequence[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streams.cli", "ingest", *args, cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


@pytest.mark.asyncio
async def test_cli_duration_stops_cleanly_and_writes_the_file(tmp_path: Path) -> None:
    frames = fixture_frames("v1")
    fake = FakeJetstream(events_from_frames(frames))
    url = await fake.start()
    out = tmp_path / "capture.jsonl"
    try:
        proc = await _cli(["bluesky", "--endpoint", url, "--out", str(out), "--duration", "1.5",
                           "--keyword", "koningsdag", "--keyword", "tram", "--lang", "nl"],
                          _env(tmp_path))
        _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        await fake.stop()
    text = stderr.decode()
    assert proc.returncode == 0, text
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [p["id"].rsplit("/", 1)[-1] for p in lines] == \
        ["3ltest2aaaa22", "3ltest2cccc22", "3ltest2ffff22", "3ltest2aaaa22"]
    assert f"{len(frames)} received, 4 produced" in text
    assert (tmp_path / "state" / "bluesky.cursor.json").is_file()


@pytest.mark.asyncio
async def test_cli_stops_cleanly_on_sigint_and_fails_clearly_on_401(tmp_path: Path) -> None:
    fake = FakeMastodon(mastodon_events(), token=TOKEN)
    url = await fake.start()
    out = tmp_path / "m.jsonl"
    try:
        proc = await _cli(["mastodon", "--instance", url, "--token", TOKEN, "--out", str(out),
                           "--name", "m1"], _env(tmp_path))
        for _ in range(3000):
            if out.exists() and len(out.read_text().splitlines()) >= 8:
                break
            await asyncio.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, stderr.decode()
        assert "8 produced" in stderr.decode()
        assert (tmp_path / "state" / "m1.cursor.json").is_file()
        bad = await _cli(["mastodon", "--instance", url, "--token", "wrong", "--out",
                          str(tmp_path / "n.jsonl"), "--no-cursor"], _env(tmp_path))
        _, stderr = await asyncio.wait_for(bad.communicate(), 30)
    finally:
        await fake.stop()
    text = stderr.decode()
    assert bad.returncode == 1, text
    error_lines = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "401" in error_lines[0]
    assert "Traceback" not in text


# ---------------------------------------------------------------- Kafka sink (no broker)


def test_murmur2_partitioning_matches_the_kafka_clients() -> None:
    from aiokafka.partitioner import DefaultPartitioner, murmur2

    from streams.ingest.common import key_partitioner
    from streams.ingest.common import murmur2 as fast

    rng = random.Random(5)
    partitions = [0, 1, 2, 3]
    for n in range(300):
        key = bytes(rng.randrange(256) for _ in range(n % 97))
        assert fast(key) == murmur2(bytearray(key)) & 0xFFFFFFFF
        assert key_partitioner(key, partitions, partitions) == \
            DefaultPartitioner()(key, partitions, partitions)
    assert key_partitioner(None, partitions, [2]) == 2


class StandInProducer:
    """aiokafka's send(): a future per record; ``fail`` keys are refused once."""

    def __init__(self, fail: set[bytes] | None = None, hang: bool = False) -> None:
        self.fail = set(fail or ())
        self.hang = hang
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.hanging: list[asyncio.Future[None]] = []

    async def send(self, topic: str, value: bytes, key: bytes | None = None
                   ) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if key in self.fail:
            self.fail.discard(key)
            fut.set_exception(RuntimeError("NotLeaderForPartition"))
        elif not self.hang:
            self.sent.append((topic, key, value))
            fut.set_result(None)
        else:
            self.hanging.append(fut)
        return fut


def stand_in_sink(producer: StandInProducer, retries: list[int]) -> Any:
    from streams.ingest.common import KafkaSink
    from streams.settings import Settings

    sink = KafkaSink(Settings(kafka_bootstrap="127.0.0.1:9"), "raw", "dead",
                     on_retry=retries.append)
    sink._producer = producer
    return sink


@pytest.mark.asyncio
async def test_kafka_sink_resends_refused_records_and_counts_acks() -> None:
    producer = StandInProducer(fail={b"k2", b"k4"})
    retries: list[int] = []
    sink = stand_in_sink(producer, retries)
    for i in range(6):
        await sink.send(f"k{i}".encode(), f"v{i}".encode())
    await sink.dead_letter(b"{}")
    await sink.flush()
    assert retries == [2]
    assert sorted(k for t, k, _ in producer.sent if t == "raw") == \
        [f"k{i}".encode() for i in range(6)]
    assert [t for t, _, _ in producer.sent].count("dead") == 1
    assert sink.take_acked() == 6 and sink.take_acked() == 0  # dead letters not counted


@pytest.mark.asyncio
async def test_kafka_sink_flush_times_out_and_keeps_what_is_pending() -> None:
    from streams.ingest.common import SinkTimeout

    sink = stand_in_sink(StandInProducer(hang=True), [])
    await sink.send(b"k", b"v")
    with pytest.raises(SinkTimeout, match="1 records"):
        await sink.flush(limit_s=0.02)
    assert len(sink._pending) == 1 and sink.take_acked() == 0


@pytest.mark.asyncio
async def test_kafka_sink_flush_cancelled_midway_loses_nothing() -> None:
    """A checkpoint cancelled while waiting for acks (the run stopping) keeps its records."""
    producer = StandInProducer(hang=True)
    sink = stand_in_sink(producer, [])
    for i in range(3):
        await sink.send(f"k{i}".encode(), b"v")
    task = asyncio.create_task(sink.flush())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(sink._pending) == 3
    for fut in producer.hanging:
        fut.set_result(None)
    await sink.flush()
    assert sink.take_acked() == 3
