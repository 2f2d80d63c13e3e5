"""The enrich agent on Faust's test context: no broker, real models, real metrics."""

from __future__ import annotations

import json
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


async def _run(pipeline: Pipeline, values: list[bytes]) -> list[tuple[str, bytes | None, bytes]]:
    sent: list[tuple[str, bytes | None, bytes]] = []

    async def capture(outputs: Any) -> None:  # the producer needs a broker; keep the outputs
        sent.extend((topic, key, value) for topic, key, value, _ in outputs)

    pipeline.emit = capture  # type: ignore[method-assign]
    agent = pipeline.app.agents["crowdwatch.enrich"]
    async with agent.test_context() as agent_ctx:
        for value in values:
            await agent_ctx.put(value)
        # take_events flushes on batch_size or batch_within; wait until everything came out
        for _ in range(200):
            if len(sent) >= len(values):
                break
            import asyncio

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
