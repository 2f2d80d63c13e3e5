"""The soak benchmark's memory rule (benchmarks/bench_soak.py): a fill that levels off is
bounded, a steady leak is not."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

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
