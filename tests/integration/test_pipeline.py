"""The worker on the real local Kafka + Redis: every post comes out enriched or dead-lettered."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from streams.runtime import PACKAGED_EVENT
from streams.state import RedisStore
from tests.integration.conftest import SHARED, Worker, consume_all, run_cli

EVENT = "koningsdag-amsterdam"
REPLAY_FILE = SHARED / "replay" / "crisislex-2013_Alberta_floods.posts.jsonl"


def _wait_metric(worker: Worker, name: str, value: float, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    got = 0.0
    while time.monotonic() < deadline:
        got = worker.metric(name)
        if got >= value:
            return got
        time.sleep(0.3)
    return got


def _redis_counts(worker: Worker) -> dict[str, object]:
    s = worker.settings
    store = RedisStore(s.redis_url.get_secret_value(), prefix=s.redis_prefix)

    async def read() -> dict[str, object]:
        try:
            return await store.counts(EVENT)
        finally:
            await store.close()

    return asyncio.run(read())


def test_replay_of_a_real_crisis_file_comes_out_enriched(worker_factory: object) -> None:
    if not REPLAY_FILE.is_file():
        pytest.skip(f"{REPLAY_FILE} not present")
    worker: Worker = worker_factory(event=PACKAGED_EVENT)  # type: ignore[operator]
    worker.start()
    worker.wait_ready()
    lines = REPLAY_FILE.read_bytes().split(b"\n")
    lines = [ln for ln in lines if ln]
    ids = {json.loads(ln)["id"] for ln in lines}

    result = run_cli("replay", str(REPLAY_FILE), env=worker.env)
    assert result.returncode == 0, result.stderr
    assert "sent to" in result.stderr

    s = worker.settings
    out = consume_all(s, [s.topic_enriched, s.topic_deadletter], len(lines))
    enriched = [r for r in out if r.topic == s.topic_enriched]
    dead = [r for r in out if r.topic == s.topic_deadletter]
    assert {r.key.decode() for r in enriched} == ids
    assert len(enriched) + len(dead) == len(lines)
    assert dead == []
    sample = json.loads(enriched[0].value)
    for key in ("id", "text", "lang", "areas", "keywords", "topics"):
        assert key in sample

    consumed = _wait_metric(worker, "crowdwatch_posts_consumed_total", len(lines))
    assert consumed == len(lines)
    assert worker.metric("crowdwatch_posts_accepted_total") + worker.metric(
        "crowdwatch_posts_rejected_total") == consumed
    counts = _redis_counts(worker)
    assert counts["posts"] == len(ids)
    assert worker.metric("crowdwatch_consumer_lag") == 0


MALFORMED: dict[str, bytes] = {
    "not_json": b"{this is not json",
    "not_object": b'["a", "list"]',
    "missing_id": b'{"text": "geen id"}',
    "empty_id": b'{"id": "  ", "text": "leeg id"}',
    "missing_text": b'{"id": "m1"}',
    "wrong_type": b'{"id": "m2", "text": ["not", "a", "string"]}',
    "text_too_long": b'{"id": "m3", "text": "' + b"x" * 10_001 + b'"}',
    "invalid_utf8": b'{"id": "m4", "text": "caf\xe9"}',
}


def test_malformed_records_are_dead_lettered_and_the_worker_keeps_going(
    worker_factory: object, tmp_path: Path,
) -> None:
    worker: Worker = worker_factory(event=PACKAGED_EVENT)  # type: ignore[operator]
    worker.start()
    worker.wait_ready()
    good = [json.dumps({"id": f"ok{i}", "text": f"Drukte op de Dam {i} #koningsdag",
                        "created_at": f"2027-04-27T12:00:0{i}Z"}).encode() for i in range(3)]
    lines = [good[0], *MALFORMED.values(), good[1], b"", good[2]]
    path = tmp_path / "planted.posts.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    result = run_cli("replay", str(path), env=worker.env)
    assert result.returncode == 0, result.stderr

    s = worker.settings
    out = consume_all(s, [s.topic_enriched, s.topic_deadletter], len(lines))
    enriched = [r for r in out if r.topic == s.topic_enriched]
    dead = [json.loads(r.value) for r in out if r.topic == s.topic_deadletter]
    assert sorted(r.key.decode() for r in enriched) == ["ok0", "ok1", "ok2"]
    reasons = sorted(d["reason"] for d in dead)
    assert reasons == sorted([*MALFORMED, "not_json"])  # + the empty line
    import base64

    originals = {base64.b64decode(d["original_b64"]) for d in dead}
    assert set(MALFORMED.values()) <= originals
    for d in dead:
        assert d["detail"]
        assert d["source"]["topic"] == s.topic_raw
        assert isinstance(d["source"]["offset"], int)
    headers = {k for r in out if r.topic == s.topic_deadletter for k, _ in r.headers}
    assert {"reason", "source"} <= headers

    _wait_metric(worker, "crowdwatch_posts_consumed_total", len(lines))
    assert worker.metric("crowdwatch_posts_consumed_total") == len(lines)
    assert worker.metric("crowdwatch_posts_rejected_total") == len(lines) - 3
    status, _ = worker.get("/health")
    assert status == 200
    assert worker.proc is not None and worker.proc.poll() is None


def test_redelivered_posts_are_counted_once(worker_factory: object, tmp_path: Path) -> None:
    worker: Worker = worker_factory(event=PACKAGED_EVENT)  # type: ignore[operator]
    worker.start()
    worker.wait_ready()
    posts = [json.dumps({"id": f"r{i}", "text": f"Gedrang bij Centraal {i}"}).encode()
             for i in range(20)]
    path = tmp_path / "twice.posts.jsonl"
    path.write_bytes(b"\n".join(posts) + b"\n")
    for _ in range(2):  # the same posts twice, as after a consumer restart
        assert run_cli("replay", str(path), env=worker.env).returncode == 0
    _wait_metric(worker, "crowdwatch_posts_consumed_total", 40)
    assert worker.metric("crowdwatch_posts_duplicate_total") == 20
    counts = _redis_counts(worker)
    assert counts["posts"] == 20
    assert counts["area"] == {"Centraal Station": 20}
    assert worker.metric("crowdwatch_posts_by_area_total", {"area": "Centraal Station"}) == 20


def test_posts_are_scored_for_mood_on_real_kafka(worker_factory: object, tmp_path: Path) -> None:
    from tests.tiny_model import build_tiny_model

    model = build_tiny_model(tmp_path / "tiny")
    worker: Worker = worker_factory(event=PACKAGED_EVENT,  # type: ignore[operator]
                                    sentiment_model=str(model))
    worker.start()
    worker.wait_ready()
    texts = ["geweldig feest op de dam", "vreselijk bang op de dam", "de tram rijdt niet"]
    posts = [json.dumps({"id": f"m{i}", "text": texts[i % 3],
                         "created_at": f"2027-04-27T12:00:{i:02d}Z"}).encode() for i in range(30)]
    path = tmp_path / "mood.posts.jsonl"
    path.write_bytes(b"\n".join(posts) + b"\n")
    assert run_cli("replay", str(path), env=worker.env).returncode == 0
    s = worker.settings
    scored = [json.loads(r.value) for r in consume_all(s, [s.topic_scored], 30)]
    assert sorted(p["id"] for p in scored) == sorted(f"m{i}" for i in range(30))
    by_text = {p["text"]: p["sentiment"] for p in scored}
    assert by_text[texts[0]] == "positive" and by_text[texts[1]] == "negative"
    _wait_metric(worker, "crowdwatch_mood_score_count", 30)
    assert worker.metric("crowdwatch_mood_posts_total", {"area": "Dam", "class": "positive"}) == 10
    assert worker.metric("crowdwatch_mood_score_count", {"area": "Dam"}) == 20
