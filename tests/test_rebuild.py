"""Rebuilding lost state from Kafka, and waiting out an unreachable store (no services:
the Kafka side runs in tests/integration/test_faults.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from models.enrich import Enricher, RawRecord, summarize
from models.event import load_event
from streams.rebuild import (
    RebuildMetrics,
    RebuildResult,
    StateGuard,
    scored_id,
    summary_from_enriched,
)
from streams.runtime import PACKAGED_EVENT
from streams.settings import Settings
from streams.state import MemoryStore, RetryingStore

POSTS = [
    {"id": "a1", "text": "Enorme drukte op de Dam, ik kan geen kant op #koningsdag",
     "created_at": "2027-04-27T12:01:30Z", "platform": "bluesky",
     "author": {"id": "u1", "handle": "piet.bsky.social"}},
    {"id": "a2", "text": "Gezellig in de Jordaan!", "lang": "nl"},  # no created_at
    {"id": "a3", "text": "", "kind": "like", "repost_of": "a1",
     "created_at": "2027-04-27T12:02:00Z"},
    {"id": "a4", "text": "Mensen worden verdrukt bij de ingang van het Museumplein, help",
     "created_at": "2027-04-27T12:03:00+02:00"},
    {"id": "a5", "text": "RT Enorme drukte op de Dam", "repost_of": "a1"},
]


def _enriched() -> list[tuple[Any, bytes]]:
    enricher = Enricher(load_event(PACKAGED_EVENT))
    records = [RawRecord(json.dumps(p).encode(), {"topic": "t", "partition": 0, "offset": i})
               for i, p in enumerate(POSTS)]
    result = enricher.process(records)
    assert not result.dead
    return [(e, json.dumps(e.to_dict()).encode()) for e in result.enriched]


def test_an_enriched_record_gives_back_the_summary_the_enrich_stage_counted() -> None:
    now = 1_800_000_000.0
    pairs = _enriched()
    assert any(e.safety is not None for e, _ in pairs)  # the crowd-safety path is covered
    for post, value in pairs:
        assert summary_from_enriched(value, int(now * 1000)) == summarize(post, now)


@pytest.mark.parametrize("value", [None, b"", b"{nope", b"[1,2]", b'{"id": 5}', b'{"id": ""}',
                                   b'"text"'])
def test_records_that_are_not_enriched_posts_are_skipped(value: bytes | None) -> None:
    assert summary_from_enriched(value, 0) is None


def test_odd_field_types_never_raise() -> None:
    s = summary_from_enriched(b'{"id": "x", "areas": "Dam", "topics": [1, "drukte"], '
                              b'"kind": 3, "safety": "crush", "text": 7, "created_at": 5}', 0)
    assert s is not None
    assert (s.areas, s.topics, s.kind, s.safety) == ((), ("drukte",), "post", None)


def test_scored_ids() -> None:
    assert scored_id(b'{"id": "p1", "sentiment": "neutral"}') == "p1"
    assert scored_id(b"{") is None and scored_id(b'{"id": 1}') is None and scored_id(None) is None


class FlakyStore(MemoryStore):
    """A MemoryStore that is unreachable for its first ``failures`` calls."""

    def __init__(self, failures: int, error: type[BaseException] = ConnectionError) -> None:
        super().__init__()
        self.failures = failures
        self.error = error
        self.calls = 0

    async def record_batch(self, event: str, posts: Any) -> list[bool]:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error("down")
        return await super().record_batch(event, posts)


def test_the_retrying_store_waits_for_the_store_and_loses_nothing() -> None:
    errors: list[BaseException] = []
    inner = FlakyStore(failures=3)
    store = RetryingStore(inner, on_error=errors.append, first_delay_s=0.001, max_delay_s=0.002)
    posts = [summarize(e, 0.0) for e, _ in _enriched()]
    fresh = asyncio.run(store.record_batch("ev", posts))
    assert fresh == [True] * len(posts)
    assert len(errors) == 3 and inner.calls == 4
    assert asyncio.run(store.counts("ev"))["posts"] == 4  # the like is not a post


def test_redis_connection_errors_are_retried_too() -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    store = RetryingStore(FlakyStore(2, RedisConnectionError), first_delay_s=0.001)
    assert asyncio.run(store.record_batch("ev", [])) == []


def test_other_errors_and_shutdown_are_not_retried() -> None:
    store = RetryingStore(FlakyStore(1, ValueError), first_delay_s=0.001)
    with pytest.raises(ValueError):
        asyncio.run(store.record_batch("ev", []))
    stopping = RetryingStore(FlakyStore(5), first_delay_s=0.001, stopping=lambda: True)
    with pytest.raises(ConnectionError):
        asyncio.run(stopping.record_batch("ev", []))


def _guard(store: MemoryStore, rebuild: Any) -> tuple[StateGuard, CollectorRegistry]:
    registry = CollectorRegistry()
    guard = StateGuard(Settings(), store, "ev", RebuildMetrics(registry, "ev"), rebuild=rebuild)
    return guard, registry


def test_the_guard_rebuilds_once_per_lost_marker() -> None:
    store = MemoryStore()
    runs: list[int] = []

    async def rebuild() -> RebuildResult:
        runs.append(1)
        return RebuildResult(records=10, posts=9, recounted=4)

    guard, registry = _guard(store, rebuild)

    async def scenario() -> None:
        assert (await guard.check()) is not None  # first start: marker missing
        assert (await guard.check()) is None      # marker present
        await store.release_state("ev")           # Redis lost everything
        assert (await guard.check()) is not None
        assert (await guard.check()) is None

    asyncio.run(scenario())
    assert len(runs) == 2
    assert registry.get_sample_value("crowdwatch_state_rebuilds_total",
                                     {"event": "ev", "outcome": "done"}) == 2
    assert registry.get_sample_value("crowdwatch_state_rebuild_posts_total",
                                     {"event": "ev"}) == 8
    assert registry.get_sample_value("crowdwatch_state_rebuild_running", {"event": "ev"}) == 0


def test_a_failed_rebuild_is_retried_at_the_next_check() -> None:
    store = MemoryStore()
    outcomes = iter([RuntimeError("kafka down"), RebuildResult()])

    async def rebuild() -> RebuildResult:
        out = next(outcomes)
        if isinstance(out, Exception):
            raise out
        return out

    guard, registry = _guard(store, rebuild)

    async def scenario() -> None:
        assert (await guard.check()) is None
        assert (await guard.check()) is not None

    asyncio.run(scenario())
    assert registry.get_sample_value("crowdwatch_state_rebuilds_total",
                                     {"event": "ev", "outcome": "failed"}) == 1
    assert registry.get_sample_value("crowdwatch_state_rebuilds_total",
                                     {"event": "ev", "outcome": "done"}) == 1
