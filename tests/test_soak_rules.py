"""The soak benchmark's memory rule (benchmarks/bench_soak.py): a fill that levels off is
bounded, a steady leak is not."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from tests.reliability_report import _soak

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def soak() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_soak_rules",
                                                  ROOT / "benchmarks" / "bench_soak.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# the recorded 1M run of 2026-12-06 23:12 UTC (one sample a minute)
FILL_THEN_FLAT = [2319, 2271, 2344, 2395, 2436, 2474, 2539, 2581, 2618, 2652, 2681, 2718, 2787,
                  2783, 2795, 2794, 2771]


def test_a_fill_that_levels_off_is_bounded(soak: ModuleType) -> None:
    half, quarter = soak.memory_growth(FILL_THEN_FLAT)
    assert half == 153  # what the last-half rule (5 %: 131 MB) read as growing
    assert quarter == -16
    assert soak.memory_bounded(FILL_THEN_FLAT) is True


def test_too_few_samples_give_no_verdict(soak: ModuleType) -> None:
    assert soak.memory_bounded([2000.0] * 7) is None
    assert soak.memory_growth([2000.0]) == (0.0, 0.0)


@given(start=st.floats(500, 5000), leak=st.floats(0.05, 0.5), n=st.integers(16, 120))
def test_a_steady_leak_is_never_bounded(soak: ModuleType, start: float, leak: float,
                                        n: int) -> None:
    """A steady leak (``leak`` x the starting RSS over the run) that grows more than
    max(100 MB, 6 %) over the last half (what the earlier rule, 5 % over the last half,
    caught) is caught by the last-quarter rule too."""
    rss = [start + i * start * leak / (n - 1) for i in range(n)]
    half, _quarter = soak.memory_growth(rss)
    assume(half > max(100.0, 0.06 * rss[n // 2]))
    assert soak.memory_bounded(rss) is False


def test_process_usage_files_each_process_of_the_tree(soak: ModuleType) -> None:
    """The worker itself, and a child that carries a worker role (the rumour process) under
    that role; each with its RSS, the anonymous part of it and its CPU seconds, from /proc."""
    code = ("import time; x = bytearray(64 << 20); t = time.process_time()\n"
            "while time.process_time() - t < 0.3: pass\n"
            "time.sleep(30)")
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import os, subprocess, sys, time; "
         f"c = subprocess.Popen([sys.executable, '-c', {code!r}], "
         "env={**os.environ, 'CROWDWATCH_WORKER_ROLE': 'rumours'}); time.sleep(30)"])
    try:
        for _ in range(100):
            usage = soak.process_usage(parent.pid)
            if usage.get("rumours", (0.0, 0.0, 0.0))[2] >= 0.3:
                break
            time.sleep(0.1)
        assert set(usage) == {"worker", "rumours"}
        assert usage["rumours"][2] >= 0.3 > usage["worker"][2]  # CPU seconds: the child spun
        rss, anon, _cpu = usage["rumours"]
        assert 64 <= anon <= rss
        assert 0 < usage["worker"][1] <= usage["worker"][0]
        assert soak.process_usage(os.getpid())["worker"][0] > 0
    finally:
        parent.kill()
        parent.wait()


def test_the_report_shows_each_process_when_the_run_recorded_them() -> None:
    base = {"posts": 1000, "malformed": 1, "posts_per_s": 1000.0, "latency_p50_s": 0.2,
            "latency_p95_s": 0.5, "lost": 0, "done": [0, 500, 1000],
            "rss_mb": [300.0, 350.0, 360.0], "minutes": [0, 1, 1.5], "at": 1796522400.0}
    old = "\n".join(_soak([base]))
    assert "| minute | posts done | RSS MB |\n" in old + "\n"
    assert "| 1.5 | 1,000 | 360 |" in old
    new = "\n".join(_soak([{**base,
                            "rss_by_process_mb": {"worker": [200.0, 220.0, 225.0],
                                                  "rumours": [100.0, 130.0, 135.0]},
                            "anon_rss_by_process_mb": {"worker": [150.0, 170.0, 175.0],
                                                       "rumours": [90.0, 120.0, 125.0]}}]))
    assert "| minute | posts done | RSS MB | rumours RSS | rumours anon | worker RSS | " \
           "worker anon |" in new
    assert "| 1.5 | 1,000 | 360 | 135 | 125 | 225 | 175 |" in new
    assert "highest RSS read" not in new  # runs before 2026-12-07 read once per sample
    peaks = "\n".join(_soak([{**base, "rss_read_every_s": 2.0}]))
    assert "each the highest RSS read, every 2 s, since the sample before" in peaks


def test_cpu_percent_is_per_process_between_two_samples(soak: ModuleType) -> None:
    before = soak.Sample(60.0, 0.0, {}, {}, 0, cpu={"worker": 10.0, "rumours": 4.0})
    after = soak.Sample(120.0, 0.0, {}, {}, 0, cpu={"worker": 64.0, "rumours": 22.0})
    assert soak.cpu_percent(before, after) == {"rumours": 30.0, "worker": 90.0}
    assert soak.cpu_percent(after, after) == {}
    # a process that was not there at the first sample has no share for that interval
    late = soak.Sample(180.0, 0.0, {}, {}, 0, cpu={"worker": 82.0, "python 7": 30.0})
    assert soak.cpu_percent(after, late) == {"worker": 30.0}


def test_peak_memory_keeps_each_processs_highest_read_until_taken(soak: ModuleType) -> None:
    peaks = soak.PeakMemory()
    peaks.add({"worker": (1900.0, 1500.0, 1.0), "rumours": (900.0, 850.0, 1.0)})
    peaks.add({"worker": (1950.0, 1490.0, 2.0), "rumours": (880.0, 860.0, 2.0)})
    assert peaks.take({"worker": (1910.0, 1495.0, 3.0)}) == {
        "worker": (1950.0, 1500.0), "rumours": (900.0, 860.0)}
    assert peaks.take({"worker": (1905.0, 1480.0, 4.0)}) == {"worker": (1905.0, 1480.0)}


@given(st.floats(0, 60), st.floats(5, 59), st.floats(20, 60))
@example(0.0, 58.0, 60.0)  # minute samples at the floor, the end sample near the top
def test_a_trim_sawtooth_is_bounded_whatever_the_phase(soak: ModuleType, phase: float,
                                                       end: float, swing: float) -> None:
    """A flat process whose RSS climbs by ``swing`` MB between two malloc trims (every 60 s,
    as the worker does): with one read per sample the rule compared a trim's floor with a
    peak (the 2026-12-07 runs); with the peak of 2 s reads every sample sees the same top."""
    def rss(t: float) -> dict[str, tuple[float, float, float]]:
        v = 1870.0 + swing * (((t - phase) % 60.0) / 60.0)
        return {"worker": (v, v - 360.0, 0.0)}

    peaks = soak.PeakMemory()
    curve: list[float] = []
    t, stop = 0.0, 15 * 60.0 + end
    while True:
        sample_due = t % 60.0 == 0.0 or t >= stop
        if sample_due:
            curve.append(peaks.take(rss(t))["worker"][0])
            if t >= stop:
                break
        else:
            peaks.add(rss(t))
        t = min(t + soak.MEMORY_READ_EVERY_S, stop)
    assert soak.memory_bounded(curve) is True
