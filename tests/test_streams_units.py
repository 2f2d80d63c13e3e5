"""Pure parts of streams/: pacing and ordering of replays, JSON Lines splitting, the memory
store, metrics (each test with its own registry)."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from models.enrich import PostSummary, minute_bucket
from streams.jsonl import iter_lines
from streams.metrics import PipelineMetrics, platform_label
from streams.replay import Line, Pacer, ReplaySummary, load_lines
from streams.state import MemoryStore, parse_counts


def test_iter_lines_splits_on_newline_only() -> None:
    data = b'{"a": 1}\r\n\n{"b": "x\xe2\x80\xa8y"}\n{"c": 3}'
    assert list(iter_lines(io.BytesIO(data))) == [b'{"a": 1}\r', b"", b'{"b": "x\xe2\x80\xa8y"}',
                                                  b'{"c": 3}']
    assert list(iter_lines(io.BytesIO(b"a\n"))) == [b"a"]
    assert list(iter_lines(io.BytesIO(b""))) == []


@given(st.lists(st.binary().filter(lambda b: b"\n" not in b), max_size=30))
def test_iter_lines_round_trips(lines: list[bytes]) -> None:
    data = b"\n".join(lines)
    got = list(iter_lines(io.BytesIO(data)))
    expected = lines if not (lines and lines[-1] == b"") else lines[:-1]
    assert got == (expected if data else [])


def test_pacer_keeps_relative_timing_scaled_and_cuts_gaps() -> None:
    pacer = Pacer(speed=10.0, max_rate=None, max_gap=5.0)
    due = [pacer.due(Line(ts, None, b"")) for ts in (0.0, 10.0, 20.0, None, 1000.0)]
    assert due == [0.0, 1.0, 2.0, 2.0, 7.0]  # 980 s / 10 = 98 s cut to 5
    rate = Pacer(speed=None, max_rate=4.0, max_gap=60)
    assert [rate.due(Line(None, None, b"")) for _ in range(3)] == [0.0, 0.25, 0.5]
    fast = Pacer(None, None, 60)
    assert fast.due(Line(5.0, None, b"")) == 0.0
    with pytest.raises(ValueError, match="not both"):
        Pacer(1.0, 1.0, 60)
    with pytest.raises(ValueError, match="> 0"):
        Pacer(0.0, None, 60)


def test_load_lines_merges_files_in_created_at_order(tmp_path: Path) -> None:
    a = tmp_path / "a.jsonl"
    b = tmp_path / "b.jsonl"
    a.write_text("\n".join([
        json.dumps({"id": "a1", "text": "x", "created_at": "2027-04-27T10:00:00Z"}),
        "garbage",  # keeps its place after a1
        json.dumps({"id": "a2", "text": "x", "created_at": "2027-04-27T10:02:00Z"}),
    ]))
    b.write_text(json.dumps({"id": "b1", "text": "x", "created_at": "2027-04-27T10:01:00Z"}))
    summary = ReplaySummary(files=[])
    lines = load_lines([a, b], summary)
    assert [ln.value for ln in lines] == [
        a.read_bytes().split(b"\n")[0], b"garbage", b.read_bytes(),
        a.read_bytes().split(b"\n")[2]]
    assert [ln.key for ln in lines] == [b"a1", None, b"b1", b"a2"]
    assert summary.lines == 4 and summary.unreadable == 1 and summary.without_time == 1
    assert summary.first_created_at == "2027-04-27T10:00:00Z"


def _summary(pid: str, areas: tuple[str, ...] = ("Dam",), lang: str = "nl") -> PostSummary:
    return PostSummary(id=pid, minute="202704271000", lang=lang, platform="twitter",
                       areas=areas, topics=("crowd",), keywords=("drukte",))


def test_memory_store_counts_each_id_once() -> None:
    store = MemoryStore()

    async def run() -> tuple[list[bool], list[bool], dict[str, object], dict[str, object]]:
        first = await store.record_batch("e", [_summary("1"), _summary("2", ("Vondelpark",))])
        again = await store.record_batch("e", [_summary("1"), _summary("3", lang="en")])
        recent = await store.recent_counts(
            "e", 5, now=datetime(2027, 4, 27, 10, 2, tzinfo=UTC))
        return first, again, await store.counts("e"), recent

    first, again, counts, recent = asyncio.run(run())
    assert first == [True, True] and again == [False, True]
    assert counts == {"posts": 3, "area": {"Dam": 2, "Vondelpark": 1}, "topic": {"crowd": 3},
                      "keyword": {"drukte": 3}, "lang": {"nl": 2, "en": 1},
                      "kind": {"post": 3}}
    assert recent == counts


def test_minute_bucket_uses_created_at_else_now() -> None:
    assert minute_bucket("2027-04-27T08:15:59+02:00", 0) == "202704270615"
    assert minute_bucket("not a time", 0) == "197001010000"
    assert minute_bucket(None, 60) == "197001010001"


def test_parse_counts_sorts_by_count() -> None:
    got = parse_counts({"posts": 3, "area:B": 1, "area:A": 2, "weird": 9})
    assert list(got["area"]) == ["A", "B"] and got["posts"] == 3


def test_metrics_count_fresh_posts_and_reasons() -> None:
    registry = CollectorRegistry()
    m = PipelineMetrics(registry, "ev", areas=["Dam", "Vondelpark"], topics=["crowd"])
    # pre-created series read 0, not "no data"
    assert registry.get_sample_value("crowdwatch_posts_by_area_total",
                                     {"event": "ev", "area": "Vondelpark"}) == 0
    assert registry.get_sample_value("crowdwatch_posts_rejected_total",
                                     {"reason": "text_too_long"}) == 0
    posts = [_summary("1"), _summary("2", ()), _summary("1")]
    m.observe_batch(posts, ["not_json", "not_json"], [True, True, False])
    get = registry.get_sample_value
    assert get("crowdwatch_posts_consumed_total") == 5
    assert get("crowdwatch_posts_accepted_total") == 3
    assert get("crowdwatch_posts_rejected_total", {"reason": "not_json"}) == 2
    assert get("crowdwatch_posts_duplicate_total") == 1
    assert get("crowdwatch_posts_by_area_total", {"event": "ev", "area": "Dam"}) == 1
    assert get("crowdwatch_posts_by_area_total", {"event": "ev", "area": "none"}) == 1
    assert get("crowdwatch_posts_by_lang_total", {"event": "ev", "lang": "nl"}) == 2


def test_platform_label_is_bounded() -> None:
    assert platform_label("Bluesky") == "bluesky"
    assert platform_label("my-own-platform-123") == "other"
    assert platform_label(None) == "unknown"


def test_likes_and_deletions_count_by_kind_only() -> None:
    registry = CollectorRegistry()
    m = PipelineMetrics(registry, "ev")
    like = PostSummary(id="l1", minute="202704271000", lang="und", platform="bluesky",
                       areas=(), topics=(), keywords=(), kind="like")
    assert like.count_fields() == ["kind:like"]
    m.observe_batch([like, _summary("p1")], [], [True, True])
    get = registry.get_sample_value
    assert get("crowdwatch_posts_by_kind_total", {"event": "ev", "kind": "like"}) == 1
    assert get("crowdwatch_posts_by_lang_total", {"event": "ev", "lang": "und"}) is None
    assert get("crowdwatch_posts_by_lang_total", {"event": "ev", "lang": "nl"}) == 1


def test_kafka_credentials_from_settings() -> None:
    import faust

    from streams.app import _credentials
    from streams.settings import Settings

    assert _credentials(Settings()) is None
    sasl = _credentials(Settings(kafka_security_protocol="SASL_SSL",
                                 kafka_sasl_mechanism="SCRAM-SHA-512",
                                 kafka_sasl_username="cw", kafka_sasl_password="s3cret"))
    assert isinstance(sasl, faust.SASLCredentials) and sasl.ssl_context is not None
    assert "s3cret" not in repr(Settings(kafka_sasl_password="s3cret"))
    assert isinstance(_credentials(Settings(kafka_security_protocol="SSL")),
                      faust.SSLCredentials)


def test_the_worker_leaves_the_root_logger_at_the_level_asked_for() -> None:
    """faust's own Worker, at WARNING, turns the logger it is given to DEBUG for its
    terminal spinner (every debug() call in every library then builds a record); ours
    keeps the level and adds no handler."""
    import logging

    import faust

    from streams.app import Worker

    app = faust.App("cw-unit-logging", broker="kafka://127.0.0.1:1", web_enabled=False)
    for cls, debug_after in ((faust.Worker, True), (Worker, False)):
        logger = logging.getLogger(f"cw-unit-root-{cls.__module__}")
        logger.handlers = [logging.NullHandler()]
        logger.setLevel(logging.WARNING)
        worker = cls(app, loglevel="WARNING", quiet=True)
        worker.on_setup_root_logger(logger, logging.WARNING)
        assert logger.isEnabledFor(logging.DEBUG) is debug_after
        assert len(logger.handlers) == (2 if debug_after else 1)
