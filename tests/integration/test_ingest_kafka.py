"""Live connectors into the real local Kafka (`crowdwatch stack up`), each test on its own
topics: records keyed by post id and valid canonical posts, dead letters on the dead-letter
topic, exactly-once ids across a server outage, the CLI end to end with /metrics."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from models.firehose import ContentFilter, Mapped, map_jetstream_frame
from models.post import Post, decode_post
from streams.embedded import free_port
from streams.ingest.bluesky import JetstreamConnector, JetstreamOptions
from streams.ingest.common import (
    IngestMetrics,
    IngestSettings,
    Pipeline,
    make_pipeline,
    make_sink,
)
from streams.ingest.fakes import (
    FakeJetstream,
    FakeMastodon,
    events_from_frames,
    synthetic_events,
)
from streams.ingest.mastodon import MastodonConnector, MastodonOptions
from streams.kafka_admin import ensure_topics
from streams.settings import Settings, stack_file
from tests.integration.conftest import REPO, consume_all
from tests.test_ingest import run_until

FIXTURES = REPO / "tests" / "fixtures" / "firehose"


def topics(stack_settings: Settings) -> Settings:
    tag = f"it-ingest-{uuid.uuid4().hex[:10]}"
    settings = stack_settings.model_copy(update={
        "topic_raw": f"{tag}.raw", "topic_deadletter": f"{tag}.deadletter"})
    ensure_topics(settings, [settings.topic_raw, settings.topic_deadletter])
    return settings


def ingest_settings(tmp_path: Path) -> IngestSettings:
    return IngestSettings(state_dir=tmp_path, checkpoint_interval_s=0.2, backoff_initial_s=0.02,
                          backoff_max_s=0.2, cursor_margin_s=0.2, linger_ms=5)


def kafka_pipeline(settings: Settings, ingest: IngestSettings, source: str, endpoint: str,
                   cursor: Path | None, protocol: str = "") -> Pipeline:
    metrics = IngestMetrics(CollectorRegistry(), source)
    sink = make_sink(None, settings, ingest, topic=settings.topic_raw, source=source,
                     metrics=metrics)
    return make_pipeline(source, endpoint, sink, metrics, ContentFilter(), ingest,
                         cursor_path=cursor, protocol=protocol)


def expected_ids(frames: list[Any]) -> list[str]:
    out = []
    for f in frames:
        m = map_jetstream_frame(f)
        if isinstance(m, Mapped) and m.post is not None and m.kind != "delete" \
                and m.control is None:
            out.append(m.post["id"])
    return out


def check_records(records: list[Any]) -> list[str]:
    """Every record is a valid canonical post keyed by its id; returns the ids."""
    ids = []
    for r in records:
        post = decode_post(r.value, max_text_chars=10_000)
        assert isinstance(post, Post), post
        assert r.key == post.id.encode()
        ids.append(post.id)
    return ids


@pytest.mark.asyncio
async def test_jetstream_into_kafka_with_dead_letters(stack_settings: Settings,
                                                       tmp_path: Path) -> None:
    settings = topics(stack_settings)
    frames: list[Any] = (FIXTURES / "jetstream_v2.jsonl").read_text().splitlines()
    bad = json.loads((FIXTURES / "malformed.json").read_text())
    frames[5:5] = [b["frame"] for b in bad if "frame" in b]
    fake = FakeJetstream(events_from_frames(frames, "v2"))
    url = await fake.start()
    ingest = ingest_settings(tmp_path)
    pipeline = kafka_pipeline(settings, ingest, "bluesky", url, tmp_path / "c.json", "v2")
    connector = JetstreamConnector(pipeline, ingest, JetstreamOptions(endpoint=url,
                                                                      protocol="v2"))
    try:
        result = await run_until(connector, lambda: pipeline.counts.total_received >= len(frames),
                                  limit_s=60)
    finally:
        await fake.stop()
    assert result.error is None
    c = pipeline.counts
    assert c.total_received == c.produced + sum(c.filtered.values()) + c.malformed
    records = await asyncio.to_thread(consume_all, settings, [settings.topic_raw], c.produced, 60)
    assert sorted(check_records(records)) == sorted(expected_ids(frames))
    dead = await asyncio.to_thread(consume_all, settings, [settings.topic_deadletter],
                                   c.malformed, 60)
    assert len(dead) == c.malformed == len([b for b in bad if "frame" in b])
    for d in dead:
        body = json.loads(d.value)
        assert set(body) == {"reason", "detail", "source", "original", "original_b64"}
        assert body["source"] == {"connector": "bluesky", "endpoint": url}


@pytest.mark.asyncio
async def test_outage_mid_stream_gives_each_post_once_in_kafka(stack_settings: Settings,
                                                                tmp_path: Path) -> None:
    settings = topics(stack_settings)
    events = synthetic_events(4000, seed=11)
    fake = FakeJetstream(events, stop_after=1500)
    url = await fake.start()
    ingest = ingest_settings(tmp_path)
    pipeline = kafka_pipeline(settings, ingest, "bluesky", url, tmp_path / "c.json", "v1")
    connector = JetstreamConnector(pipeline, ingest, JetstreamOptions(endpoint=url))
    stop = asyncio.Event()
    task = asyncio.create_task(connector.run(stop))
    second = FakeJetstream(events, port=0)
    try:
        await asyncio.wait_for(fake.paused.wait(), 30)
        port = fake.port
        await fake.stop()
        second = FakeJetstream(events, port=port)
        await second.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while pipeline.time_us != events[-1].time_us:
            assert loop.time() < deadline and not task.done()
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        result = await asyncio.wait_for(task, 60)
        await second.stop()
        await fake.stop()
    assert result.error is None and pipeline.counts.reconnects >= 1
    expected = expected_ids([e.v1 for e in events])
    records = await asyncio.to_thread(consume_all, settings, [settings.topic_raw],
                                      len(expected), 60)
    ids = check_records(records)
    assert len(ids) == len(set(ids)) == len(expected) == pipeline.counts.produced
    assert set(ids) == set(expected)


@pytest.mark.asyncio
async def test_mastodon_into_kafka(stack_settings: Settings, tmp_path: Path) -> None:
    settings = topics(stack_settings)
    raw = json.loads((FIXTURES / "mastodon_events.json").read_text())
    events = [(e["event"], e["data"] if isinstance(e["data"], str) else json.dumps(e["data"]))
              for e in raw]
    fake = FakeMastodon(events, token="synthetic-token")
    url = await fake.start()
    ingest = ingest_settings(tmp_path)
    pipeline = kafka_pipeline(settings, ingest, "mastodon", url, None, "public")
    connector = MastodonConnector(pipeline, ingest, MastodonOptions(
        instance="https://social.fictief.test", endpoint=url, token="synthetic-token"))
    try:
        await run_until(connector, lambda: pipeline.counts.total_received >= len(events),
                        limit_s=60)
    finally:
        await fake.stop()
    records = await asyncio.to_thread(consume_all, settings, [settings.topic_raw], 8, 60)
    ids = check_records(records)
    assert len(ids) == pipeline.counts.produced == 8
    assert all(json.loads(r.value)["platform"] == "mastodon" for r in records)


@pytest.mark.asyncio
async def test_cli_into_kafka_with_metrics(stack_settings: Settings, tmp_path: Path) -> None:
    settings = topics(stack_settings)
    events = synthetic_events(3000, seed=5, protocols=("v1",))
    fake = FakeJetstream(events)
    url = await fake.start()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROWDWATCH_")}
    env.update(CROWDWATCH_STACK_FILE=str(stack_file()),
               CROWDWATCH_TOPIC_DEADLETTER=settings.topic_deadletter,
               CROWDWATCH_INGEST_STATE_DIR=str(tmp_path / "state"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streams.cli", "ingest", "bluesky", "--endpoint", url,
        "--topic", settings.topic_raw, "--metrics-port", str(port), "--duration", "120",
        cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    expected = expected_ids([e.v1 for e in events])
    metrics = ""
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while f'crowdwatch_ingest_events_produced_total{{source="bluesky"}} {len(expected)}.0' \
                not in metrics:
            assert loop.time() < deadline, metrics[-2000:]
            assert proc.returncode is None
            await asyncio.sleep(0.2)
            metrics = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
        proc.send_signal(signal.SIGTERM)  # stops cleanly: flush, cursor, summary, exit 0
        _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await fake.stop()
    assert proc.returncode == 0, stderr.decode()
    assert f"{len(events)} received, {len(expected)} produced" in stderr.decode()
    assert 'crowdwatch_ingest_connected{source="bluesky"} 1.0' in metrics
    records = await asyncio.to_thread(consume_all, settings, [settings.topic_raw],
                                      len(expected), 60)
    assert sorted(check_records(records)) == sorted(expected)
    assert (tmp_path / "state" / "bluesky.cursor.json").is_file()


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - 127.0.0.1
            return str(r.read().decode())
    except OSError:
        return ""
