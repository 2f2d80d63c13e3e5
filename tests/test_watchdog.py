"""The stall watchdog (streams/watchdog.py): the pure per-partition decision with plain
values in and out (and a reference model under hypothesis), its metrics read back from a
per-test registry, the /health decision and page of a real Pipeline (no Kafka reached), and
the self-restart; one slow test runs ``crowdwatch worker`` against the embedded broker and
checks that the watchdog really ends the process with exit code 1."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from streams.app import Pipeline
from streams.metrics import PipelineMetrics
from streams.settings import Settings
from streams.state import MemoryStore
from streams.watchdog import (
    PartitionSample,
    PartitionStatus,
    StallWatchdog,
    WorkerStalledError,
    health_body,
)

RAW = "posts.raw"


def sample(partition: int = 0, committed: int | None = 10, processed: int | None = 9,
           highwater: int | None = 50, topic: str = RAW) -> PartitionSample:
    return PartitionSample(topic, partition, committed, processed, highwater)


def verdicts(out: list[PartitionStatus]) -> list[tuple[str, bool, float]]:
    return [(s.name, s.stalled, s.idle_s) for s in out]


# ---------------------------------------------------------------- the pure decision


def test_sample_lag_and_position() -> None:
    assert sample(committed=10, processed=9, highwater=50).lag == 40
    assert sample(committed=10, processed=19, highwater=50).lag == 30  # processed, not committed
    assert sample(committed=None, processed=None, highwater=5).lag == 5
    assert sample(committed=60, processed=None, highwater=50).lag == 0  # never negative
    assert sample(highwater=None).lag is None


def test_lag_without_movement_stalls_after_the_window() -> None:
    wd = StallWatchdog(stall_after_s=60)
    assert verdicts(wd.observe([sample()], 1000.0)) == [("posts.raw/0", False, 0.0)]
    assert verdicts(wd.observe([sample()], 1059.5)) == [("posts.raw/0", False, 59.5)]
    out = wd.observe([sample()], 1060.0)
    assert verdicts(out) == [("posts.raw/0", True, 60.0)]
    assert out[0].lag == 40 and not out[0].restart
    assert wd.stalled == out and wd.statuses == out


@pytest.mark.parametrize("moved", [sample(committed=11), sample(processed=10),
                                   sample(committed=5)])  # a seek back is movement too
def test_any_offset_movement_restarts_the_clock(moved: PartitionSample) -> None:
    wd = StallWatchdog(stall_after_s=60)
    wd.observe([sample()], 0.0)
    assert wd.observe([sample()], 100.0)[0].stalled
    assert verdicts(wd.observe([moved], 101.0)) == [("posts.raw/0", False, 0.0)]
    assert verdicts(wd.observe([moved], 150.0)) == [("posts.raw/0", False, 49.0)]
    assert wd.observe([moved], 161.0)[0].stalled


def test_caught_up_partitions_never_stall_and_the_clock_starts_when_lag_appears() -> None:
    wd = StallWatchdog(stall_after_s=60)
    idle = sample(committed=50, processed=49, highwater=50)
    for t in range(0, 10_001, 500):
        (status,) = wd.observe([idle], float(t))
        assert status.lag == 0 and not status.stalled and status.idle_s == 0.0
    # new records arrive at the end while the worker does nothing: stalled 60 s after the
    # last look at the caught-up partition, not since the offsets last moved hours ago
    grown = sample(committed=50, processed=49, highwater=80)
    assert verdicts(wd.observe([grown], 10_002.0)) == [("posts.raw/0", False, 2.0)]
    assert not wd.observe([grown], 10_059.0)[0].stalled
    assert wd.observe([grown], 10_060.0)[0].stalled


def test_unknown_end_offset_is_not_a_stall() -> None:
    wd = StallWatchdog(stall_after_s=10)
    for t in (0.0, 100.0, 1000.0):
        (status,) = wd.observe([sample(highwater=None)], t)
        assert status.lag is None and not status.stalled and status.idle_s == 0.0
    # once the end is known the partition has had no progress since it was assigned
    assert wd.observe([sample(highwater=50)], 1001.0)[0].stalled


def test_partitions_are_independent_and_sorted() -> None:
    wd = StallWatchdog(stall_after_s=30)
    wd.observe([sample(2), sample(0), sample(1, committed=50, processed=None)], 0.0)
    out = wd.observe([sample(2, committed=12), sample(0),
                      sample(1, committed=50, processed=None)], 45.0)
    assert verdicts(out) == [("posts.raw/0", True, 45.0), ("posts.raw/1", False, 0.0),
                             ("posts.raw/2", False, 0.0)]
    assert [s.name for s in wd.stalled] == ["posts.raw/0"]


def test_revoked_partitions_drop_out_and_start_afresh_when_assigned_again() -> None:
    wd = StallWatchdog(stall_after_s=30)
    wd.observe([sample(0), sample(1)], 0.0)
    assert len(wd.observe([sample(0), sample(1)], 40.0)) == 2 and len(wd.stalled) == 2
    out = wd.observe([sample(1)], 41.0)
    assert [s.name for s in out] == ["posts.raw/1"] and wd.revoked == [(RAW, 0)]
    assert [s.name for s in wd.stalled] == ["posts.raw/1"]
    wd.observe([sample(1)], 42.0)
    assert wd.revoked == []  # reported once
    assert verdicts(wd.observe([sample(0), sample(1)], 43.0)) == [
        ("posts.raw/0", False, 0.0), ("posts.raw/1", True, 43.0)]
    assert wd.observe([], 44.0) == [] and wd.revoked == [(RAW, 0), (RAW, 1)]
    assert wd.stalled == [] and wd.statuses == []


def test_restart_threshold() -> None:
    wd = StallWatchdog(stall_after_s=60, restart_after_s=120)
    wd.observe([sample()], 0.0)
    assert wd.observe([sample()], 60.0)[0].stalled and wd.restart_due == []
    assert not wd.observe([sample()], 119.0)[0].restart
    (status,) = wd.observe([sample()], 120.0)
    assert status.restart and wd.restart_due == [status]
    # 0 never restarts; a restart time below the stall time acts as the stall time
    never = StallWatchdog(stall_after_s=60, restart_after_s=0)
    never.observe([sample()], 0.0)
    assert never.observe([sample()], 1e6)[0].stalled and never.restart_due == []
    early = StallWatchdog(stall_after_s=60, restart_after_s=5)
    early.observe([sample()], 0.0)
    assert early.observe([sample()], 30.0)[0].restart is False
    assert early.observe([sample()], 60.0)[0].restart is True


@pytest.mark.parametrize(("stall", "restart"), [(0, 0), (-1, 0), (10, -1)])
def test_invalid_thresholds(stall: float, restart: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        StallWatchdog(stall, restart)


# a step: the time advances by dt, then some partitions are sampled (None = not assigned)
offsets = st.one_of(st.none(), st.integers(0, 6))
step = st.tuples(st.floats(0, 40, allow_nan=False),
                 st.lists(st.one_of(st.none(), st.tuples(offsets, offsets, offsets)),
                          min_size=3, max_size=3))


@given(st.lists(step, max_size=40), st.sampled_from([1.0, 15.0, 60.0]),
       st.sampled_from([0.0, 30.0, 90.0]))
@settings(max_examples=300, deadline=None)
def test_matches_a_reference_model(steps: list[tuple[float, list[Any]]], stall_after: float,
                                   restart_after: float) -> None:
    """Against a brute-force model over the whole history of each partition: since it was
    (re)assigned, when did its offsets last change or was it last caught up?"""
    wd = StallWatchdog(stall_after, restart_after)
    history: dict[int, list[tuple[float, PartitionSample]]] = {}
    now = 0.0
    for dt, parts in steps:
        now += dt
        samples = [sample(p, *offs) for p, offs in enumerate(parts) if offs is not None]
        for p, offs in enumerate(parts):
            if offs is None:
                history.pop(p, None)
        for s in samples:
            history.setdefault(s.partition, []).append((now, s))
        out = wd.observe(samples, now)
        assert [s.partition for s in out] == sorted(s.partition for s in samples)
        for status in out:
            seen = history[status.partition]
            last = seen[-1][1]
            since = seen[0][0]
            for (_, a), (t, b) in itertools.pairwise(seen):
                if (a.committed, a.processed) != (b.committed, b.processed):
                    since = t
            for t, s in seen:
                if s.lag == 0:
                    since = max(since, t)
            idle = now - since if last.lag else 0.0
            assert status.lag == last.lag
            assert status.idle_s == pytest.approx(idle)
            assert status.stalled == (bool(last.lag) and idle >= stall_after)
            assert status.restart == (status.stalled and restart_after > 0
                                      and idle >= max(restart_after, stall_after))
            if last.lag == 0 or last.lag is None:
                assert not status.stalled


# ---------------------------------------------------------------- metrics


def _value(reg: CollectorRegistry, name: str, partition: int | None = None) -> float | None:
    labels = {} if partition is None else {"topic": RAW, "partition": str(partition)}
    return reg.get_sample_value(name, labels)


def test_partition_metrics_and_removal_of_revoked_series() -> None:
    reg = CollectorRegistry()
    metrics = PipelineMetrics(reg, "ev")
    wd = StallWatchdog(stall_after_s=60)
    wd.observe([sample(0), sample(1, committed=50, processed=None), sample(2, highwater=None)],
               0.0)
    metrics.observe_partitions(wd.observe(
        [sample(0), sample(1, committed=50, processed=None), sample(2, highwater=None)], 75.5),
        wd.revoked)
    assert _value(reg, "crowdwatch_consumer_stalled", 0) == 1
    assert _value(reg, "crowdwatch_consumer_stalled_seconds", 0) == 75.5
    assert _value(reg, "crowdwatch_consumer_lag", 0) == 40
    assert _value(reg, "crowdwatch_consumer_stalled", 1) == 0
    assert _value(reg, "crowdwatch_consumer_stalled_seconds", 1) == 0
    assert _value(reg, "crowdwatch_consumer_lag", 1) == 0
    assert _value(reg, "crowdwatch_consumer_stalled", 2) == 0
    assert _value(reg, "crowdwatch_consumer_lag", 2) is None  # end unknown: no lag series
    assert _value(reg, "crowdwatch_watchdog_restarts_total") == 0
    metrics.committed.labels(RAW, "0").set(10)
    # partition 0 goes to another worker: its series disappear here
    metrics.observe_partitions(wd.observe([sample(1, committed=50, processed=None)], 76.0),
                               wd.revoked)
    for name in ("crowdwatch_consumer_stalled", "crowdwatch_consumer_stalled_seconds",
                 "crowdwatch_consumer_lag", "crowdwatch_consumer_committed_offset"):
        assert _value(reg, name, 0) is None, name
    assert _value(reg, "crowdwatch_consumer_stalled", 1) == 0
    metrics.observe_partitions([], [(RAW, 7)])  # removing a series never set is fine


# ---------------------------------------------------------------- /health and self-restart


def test_health_body_names_stalled_partitions() -> None:
    stalled = [PartitionStatus(RAW, 3, 120, True, 75.04)]
    body = health_body(False, event="ev", store_ok=True, lags={(RAW, 3): 120, (RAW, 1): 0},
                       stalled=stalled, stall_after_s=60.0, since_last_batch=80.123456)
    assert body == {
        "status": "unhealthy", "event": "ev", "store": "ok",
        "assigned_partitions": ["posts.raw/1", "posts.raw/3"], "lag": 120,
        "seconds_since_last_batch": 80.123, "stalled": True, "stall_after_s": 60.0,
        "stalled_partitions": [{"partition": "posts.raw/3", "lag": 120,
                                "seconds_without_progress": 75.0}]}
    quiet = health_body(True, event="ev", store_ok=True, lags={}, stalled=[],
                        stall_after_s=60.0, since_last_batch=None)
    assert quiet["status"] == "ok" and quiet["stalled"] is False
    assert quiet["stalled_partitions"] == [] and quiet["seconds_since_last_batch"] is None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    """A real Pipeline (Kafka never contacted) whose partition samples and clock the test
    sets."""
    settings = Settings(kafka_bootstrap="127.0.0.1:1", app_id=f"test-wd-{tmp_path.name}",
                        data_dir=tmp_path, stall_after_s=60, stall_restart_s=120,
                        _env_file=None)  # type: ignore[call-arg]
    p = Pipeline(settings, store=MemoryStore(), registry=CollectorRegistry(), event=None)
    p.watchdog_clock = Clock()
    p.samples = [sample(0), sample(1, committed=50, processed=None)]  # type: ignore[attr-defined]
    p.partition_samples = lambda: p.samples  # type: ignore[attr-defined,method-assign]
    yield p
    p.executor.shutdown(wait=False)
    p.score_executor.shutdown(wait=False)


def _health(p: Pipeline, steps: list[Callable[[], None]]) -> list[tuple[int, dict[str, Any]]]:
    """GET /health after each step (one event loop: Faust's web app is bound to it)."""
    async def run() -> list[tuple[int, dict[str, Any]]]:
        web: Any = p.app.web
        out = []
        async with TestClient(TestServer(web.web_app)) as client:
            for prepare in steps:
                prepare()
                resp = await client.get("/health")
                out.append((resp.status, await resp.json()))
        return out

    return asyncio.run(run())


def test_health_page_fails_while_a_partition_is_stalled(pipeline: Pipeline) -> None:
    clock = pipeline.watchdog_clock
    assert isinstance(clock, Clock)
    reg = pipeline.registry
    seen: list[dict[str, float | None]] = []

    def wait(seconds: float) -> Callable[[], None]:
        def step() -> None:
            clock.now += seconds
        return step

    def move() -> None:  # read the metrics; then the worker finishes a batch on partition 0
        seen.append({name: _value(reg, name, 0) for name in (
            "crowdwatch_consumer_stalled", "crowdwatch_consumer_stalled_seconds",
            "crowdwatch_consumer_committed_offset")})
        pipeline.samples[0] = sample(0, processed=12)  # type: ignore[attr-defined]
        clock.now += 2

    (ok, stalled, moving) = _health(pipeline, [wait(0), wait(61), move])
    status, body = ok
    assert status == 200 and body["status"] == "ok" and body["stalled"] is False
    assert body["lag"] == 40 and body["assigned_partitions"] == ["posts.raw/0", "posts.raw/1"]
    status, body = stalled
    assert status == 503 and body["status"] == "unhealthy" and body["stalled"] is True
    assert body["stalled_partitions"] == [
        {"partition": "posts.raw/0", "lag": 40, "seconds_without_progress": 61.0}]
    assert seen == [{"crowdwatch_consumer_stalled": 1,
                     "crowdwatch_consumer_stalled_seconds": 61,
                     "crowdwatch_consumer_committed_offset": 10}]
    # the worker moves again: healthy at once
    status, body = moving
    assert status == 200 and body["stalled_partitions"] == [] and body["lag"] == 37
    assert _value(reg, "crowdwatch_consumer_stalled", 0) == 0


def test_restart_after_stall_restart_s_crashes_the_app(
        pipeline: Pipeline, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    crashes: list[BaseException] = []

    async def crash(reason: BaseException) -> None:
        crashes.append(reason)

    monkeypatch.setattr(pipeline.app, "crash", crash)
    clock = pipeline.watchdog_clock
    assert isinstance(clock, Clock)

    def check(after_s: float) -> bool:
        clock.now += after_s
        pipeline.update_lag_metrics()
        return asyncio.run(pipeline.check_restart())

    assert not check(0) and not check(119) and pipeline.watchdog.stalled
    assert check(1) and [s.name for s in pipeline.watchdog.restart_due] == ["posts.raw/0"]
    assert len(crashes) == 1 and isinstance(crashes[0], WorkerStalledError)
    assert "posts.raw/0 (lag 40, no progress for 120 s)" in str(crashes[0])
    assert "stall watchdog: posts.raw/0" in caplog.text and "exit code 1" in caplog.text
    assert _value(pipeline.registry, "crowdwatch_watchdog_restarts_total") == 1


def test_no_restart_while_the_store_is_unreachable(
        pipeline: Pipeline, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The agents wait for Redis by design: restarting cannot help then."""
    crashes: list[BaseException] = []
    up = [False]

    async def crash(reason: BaseException) -> None:
        crashes.append(reason)

    async def ping() -> bool:
        return up[0]

    monkeypatch.setattr(pipeline.app, "crash", crash)
    monkeypatch.setattr(pipeline.store, "ping", ping)
    clock = pipeline.watchdog_clock
    assert isinstance(clock, Clock)
    pipeline.update_lag_metrics()
    clock.now += 500
    pipeline.update_lag_metrics()
    assert not asyncio.run(pipeline.check_restart())
    assert not asyncio.run(pipeline.check_restart())
    assert crashes == [] and caplog.text.count("state store is unreachable") == 1
    up[0] = True
    assert asyncio.run(pipeline.check_restart()) and len(crashes) == 1


def test_settings_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (s.stall_after_s, s.stall_restart_s) == (60.0, 120.0)
    monkeypatch.setenv("CROWDWATCH_STALL_AFTER_S", "30")
    monkeypatch.setenv("CROWDWATCH_STALL_RESTART_S", "0")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (s.stall_after_s, s.stall_restart_s) == (30.0, 0.0)
    for bad in ({"stall_after_s": 0}, {"stall_restart_s": -1}):
        with pytest.raises(ValueError, match="greater than"):
            Settings(_env_file=None, **bad)  # type: ignore[call-arg,arg-type]


WORKER = textwrap.dedent("""
    import sys
    from streams import cli
    from streams.app import Pipeline
    from streams.watchdog import PartitionSample

    # one partition that never moves, whatever the broker says
    Pipeline.partition_samples = lambda self: [PartitionSample("posts.raw", 0, 10, 9, 50)]
    sys.argv = ["crowdwatch", "worker", "--web-port", sys.argv[1], "--app-id", "wd-exit"]
    cli.main()
""")


@pytest.mark.slow
def test_worker_process_exits_non_zero_when_the_watchdog_restarts_it(tmp_path: Path) -> None:
    """The real ``crowdwatch worker`` (Faust) against the demo's embedded broker: the
    watchdog's ``app.crash`` must end the process with a non-zero exit code, which is what
    makes systemd / compose (``restart: unless-stopped``) / Kubernetes restart it."""
    from streams.embedded import EmbeddedBroker, EmbeddedBrokerError, free_port

    env = {**os.environ, "CROWDWATCH_DATA_DIR": str(tmp_path),
           "CROWDWATCH_STACK_FILE": str(tmp_path / "none.env"),
           "CROWDWATCH_STALL_AFTER_S": "1", "CROWDWATCH_STALL_RESTART_S": "2",
           "CROWDWATCH_SENTIMENT_MODEL": "off", "CROWDWATCH_RUMOURS_ENABLED": "false",
           "CROWDWATCH_REDIS_URL": "", "CROWDWATCH_BROKER_SESSION_TIMEOUT": "6"}
    try:
        broker = EmbeddedBroker()
        bootstrap = broker.start()
    except EmbeddedBrokerError as exc:
        pytest.skip(f"embedded broker unavailable: {exc}")
    try:
        proc = subprocess.run([sys.executable, "-c", WORKER, str(free_port())],
                              env={**env, "CROWDWATCH_KAFKA_BOOTSTRAP": bootstrap},
                              capture_output=True, text=True, timeout=240, check=False)
    finally:
        broker.stop()
    log = proc.stdout + proc.stderr
    assert proc.returncode == 1, log[-3000:]
    assert "stall watchdog: posts.raw/0" in log
    assert "WorkerStalledError" in log
