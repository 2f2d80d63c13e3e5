"""The enrich agent on Faust's test context: no broker, real models, real metrics."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from models.event import load_event
from streams.app import Pipeline
from streams.runtime import PACKAGED_EVENT
from streams.settings import Settings
from streams.state import MemoryStore


@pytest.fixture
def pipeline(tmp_path: Path) -> Pipeline:
    settings = Settings(kafka_bootstrap="127.0.0.1:1", app_id=f"test-{tmp_path.name}",
                        data_dir=tmp_path, batch_size=10, batch_within=0.05,
                        agent_concurrency=1)  # test_context feeds every actor the same events
    return Pipeline(settings, store=MemoryStore(), registry=CollectorRegistry(),
                    event=load_event(PACKAGED_EVENT), web_enabled=False)


def _post(i: int, text: str, **extra: Any) -> bytes:
    return json.dumps({"id": f"p{i}", "text": text, "platform": "twitter", **extra}).encode()


async def _run(pipeline: Pipeline, values: list[bytes], agent: str = "crowdwatch.enrich",
               until_topic: str | None = None) -> list[tuple[str, bytes | None, bytes]]:
    """Feed ``values`` to an agent's test context; return what it sent (topic, key, value)
    once ``len(values)`` records went out (to ``until_topic`` when given)."""
    sent: list[tuple[str, bytes | None, bytes]] = []

    async def capture(outputs: Any) -> None:  # the producer needs a broker; keep the outputs
        sent.extend((topic, key, value) for topic, key, value, _ in outputs)

    pipeline.emit = capture  # type: ignore[method-assign]
    async with pipeline.app.agents[agent].test_context() as agent_ctx:
        for value in values:
            await agent_ctx.put(value)
        # take_events flushes on batch size or batch_within; wait until everything came out
        for _ in range(300):
            if sum(until_topic in (None, t) for t, _, _ in sent) >= len(values):
                break
            await asyncio.sleep(0.02)
    return sent


@pytest.mark.asyncio
async def test_agent_enriches_and_dead_letters(pipeline: Pipeline) -> None:
    values = [
        _post(1, "Wat een drukte op de Dam! #koningsdag"),
        _post(2, "Amazing vibes at Museumplein #kingsday"),
        b"not json",
        b'{"id": "x"}',
        _post(3, "Gedrang bij Centraal, mensen onwel",
              geo={"lat": 52.3787, "lon": 4.9000}),
    ]
    sent = await _run(pipeline, values)
    enriched = [json.loads(v) for t, _, v in sent if t == pipeline.settings.topic_enriched]
    dead = [json.loads(v) for t, _, v in sent if t == pipeline.settings.topic_deadletter]
    assert {p["id"] for p in enriched} == {"p1", "p2", "p3"}
    assert sorted(d["reason"] for d in dead) == ["missing_text", "not_json"]
    assert all(d["source"]["topic"] == pipeline.settings.topic_raw for d in dead)
    by_id = {p["id"]: p for p in enriched}
    assert by_id["p1"]["areas"] == ["Dam"] and "crowd" in by_id["p1"]["topics"]
    assert by_id["p3"]["area_source"] == "geo" and by_id["p3"]["areas"] == ["Centraal Station"]
    assert by_id["p2"]["lang"] == "en" and by_id["p1"]["lang"] == "nl"

    reg = pipeline.registry
    assert reg.get_sample_value("crowdwatch_posts_consumed_total") == 5
    assert reg.get_sample_value("crowdwatch_posts_accepted_total") == 3
    assert reg.get_sample_value("crowdwatch_posts_rejected_total", {"reason": "not_json"}) == 1
    assert reg.get_sample_value("crowdwatch_posts_by_area_total",
                                {"event": "koningsdag-amsterdam", "area": "Dam"}) == 1
    assert reg.get_sample_value("crowdwatch_processing_latency_seconds_count") == 5
    counts = await pipeline.store.counts("koningsdag-amsterdam")
    assert counts["posts"] == 3 and counts["area"]["Dam"] == 1


@pytest.mark.asyncio
async def test_redelivery_never_double_counts(pipeline: Pipeline) -> None:
    values = [_post(i, f"Drukte bij de Dam nummer {i}") for i in range(6)]
    await _run(pipeline, values + values)  # the same records delivered twice
    reg = pipeline.registry
    assert reg.get_sample_value("crowdwatch_posts_consumed_total") == 12
    assert reg.get_sample_value("crowdwatch_posts_duplicate_total") == 6
    assert reg.get_sample_value("crowdwatch_posts_by_area_total",
                                {"event": "koningsdag-amsterdam", "area": "Dam"}) == 6
    counts = await pipeline.store.counts("koningsdag-amsterdam")
    assert counts["posts"] == 6


@pytest.fixture
def mood_pipeline(tmp_path: Path) -> Pipeline:
    from models.mood import ShiftConfig
    from models.sentiment import CachedScorer, TransformerSentimentScorer
    from tests.tiny_model import build_tiny_model

    scorer = CachedScorer(TransformerSentimentScorer(build_tiny_model(tmp_path / "tiny")))
    settings = Settings(kafka_bootstrap="127.0.0.1:1", app_id=f"test-{tmp_path.name}",
                        data_dir=tmp_path, batch_size=10, batch_within=0.05,
                        sentiment_batch_size=4, agent_concurrency=1)
    return Pipeline(settings, store=MemoryStore(), registry=CollectorRegistry(),
                    event=load_event(PACKAGED_EVENT), scorer=scorer,
                    shift=ShiftConfig(window_minutes=2, baseline_minutes=20, sigma=2,
                                      min_posts=5, min_baseline_minutes=5))


def _enriched(i: int, text: str, minute: int, area: str = "Dam") -> bytes:
    return json.dumps({"id": f"s{i}", "text": text, "lang": "nl", "areas": [area],
                       "topics": ["crowd"], "created_at": f"2027-04-27T12:{minute:02d}:00Z"}
                      ).encode()


@pytest.mark.asyncio
async def test_sentiment_agent_scores_counts_once_and_signals_a_shift(
        mood_pipeline: Pipeline) -> None:
    calm = [_enriched(i, "geweldig feest op de dam", i // 6) for i in range(150)]  # 25 minutes
    crush = [_enriched(1000 + i, "vreselijk bang op de dam", 25 + i // 6) for i in range(18)]
    values = calm + crush
    topics = mood_pipeline.settings
    sent = await _run(mood_pipeline, values + calm[:10],  # the last 10 are re-delivered
                      agent="crowdwatch.sentiment", until_topic=topics.topic_scored)
    scored = [json.loads(v) for t, _, v in sent if t == topics.topic_scored]
    signals = [json.loads(v) for t, _, v in sent if t == topics.topic_signals]
    assert len(scored) == len(values) + 10
    assert {p["sentiment"] for p in scored[:150]} == {"positive"}
    assert scored[-11]["sentiment"] == "negative" and scored[-11]["sentiment_score"] < 0
    reg = mood_pipeline.registry
    labels = {"event": "koningsdag-amsterdam", "area": "Dam", "topic": "crowd", "lang": "nl"}
    assert reg.get_sample_value("crowdwatch_mood_posts_total", {**labels, "class": "positive"}) \
        == 150
    assert reg.get_sample_value("crowdwatch_mood_posts_total", {**labels, "class": "negative"}) \
        == 18
    dam = {"event": "koningsdag-amsterdam", "area": "Dam"}
    assert reg.get_sample_value("crowdwatch_mood_score_count", dam) == 168
    positive = reg.get_sample_value("crowdwatch_mood_positive_total", dam)
    negative = reg.get_sample_value("crowdwatch_mood_negative_total", dam)
    assert positive > 100 and negative > 10  # 150 happy posts, 18 frightened ones
    # identical texts are scored once: everything after the first of each text is a cache hit
    assert reg.get_sample_value("crowdwatch_sentiment_cache_hits_total") == len(values) + 10 - 2
    started = [s for s in signals if s["state"] == "started"]
    assert {(s["scope"], s["name"]) for s in started} == {("area", "Dam"), ("topic", "crowd")}
    assert all(s["zscore"] <= -2 for s in started)
    assert reg.get_sample_value("crowdwatch_mood_shift_active",
                                {"event": "koningsdag-amsterdam", "scope": "area",
                                 "name": "Dam"}) == 1


@pytest.mark.asyncio
async def test_a_quiet_stream_ends_the_mood_shift_of_an_area_nobody_posts_about(
        mood_pipeline: Pipeline) -> None:
    """After the crush no post comes at all: the timer checks the detector at the last
    minute plus the quiet time, so the shift ends (reason "quiet") and its gauge drops,
    instead of holding until the next post (until 2026-12-08)."""
    calm = [_enriched(i, "geweldig feest op de dam", i // 6) for i in range(150)]
    crush = [_enriched(1000 + i, "vreselijk bang op de dam", 25 + i // 6) for i in range(18)]
    topics = mood_pipeline.settings
    await _run(mood_pipeline, calm + crush, agent="crowdwatch.sentiment",
               until_topic=topics.topic_scored)
    reg, dam = mood_pipeline.registry, {"event": "koningsdag-amsterdam", "scope": "area",
                                        "name": "Dam"}
    assert reg.get_sample_value("crowdwatch_mood_shift_active", dam) == 1
    assert mood_pipeline.mood_tick(time.monotonic() + 10) == []  # not quiet yet
    ended = [json.loads(v) for t, _, v, _ in mood_pipeline.mood_tick(time.monotonic() + 180)
             if t == topics.topic_signals]
    assert {(s["scope"], s["name"], s["state"], s["reason"]) for s in ended} == {
        ("area", "Dam", "ended", "quiet"), ("topic", "crowd", "ended", "quiet")}
    assert reg.get_sample_value("crowdwatch_mood_shift_active", dam) == 0
    assert mood_pipeline.mood_tick(time.monotonic() + 240) == []  # reported once


@pytest.mark.asyncio
async def test_a_post_dated_9999_does_not_end_the_shifts_of_a_busy_stream(
        mood_pipeline: Pipeline) -> None:
    """The mood timer goes on from the last batch's minute: a batch holding a post dated
    9999 followed by ordinary batches does not hold its checks at 9999 (where the Dam's
    window is empty and its shift would end as quiet)."""
    from models.mood import MoodRow
    from streams.batch import ScoredBatch

    def batch(minute: int, score: float, n: int, tag: str, area: str = "Dam") -> ScoredBatch:
        return ScoredBatch([], [MoodRow(f"{tag}{i}", minute, "nl", (area,), (), "x", score)
                                for i in range(n)], 0)

    p = mood_pipeline
    for minute in range(25):
        p.observe_mood(batch(minute, 0.8, 6, f"c{minute}-"), [True] * 6)
    signals = [json.loads(v) for _, _, v, _ in p.observe_mood(
        batch(25, -0.9, 10, "x"), [True] * 10)]
    assert [(s["name"], s["state"]) for s in signals] == [("Dam", "started")]
    now = time.monotonic()
    p.observe_mood(batch(253402297199 // 60, 0.0, 1, "far", "Leidseplein"), [True])
    p.observe_mood(batch(26, -0.9, 10, "y"), [True] * 10)  # the stream goes on
    # 90 s later: judged from minute 26, where the Dam still has posts, not from 9999
    assert p.mood_tick(now + 90) == []
    assert p.detector.active() == [("area", "Dam")]
