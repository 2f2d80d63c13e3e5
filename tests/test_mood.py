"""The negative-shift detector on plain lists of (minute, score)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from models.mood import MoodShiftDetector, ShiftConfig


def _feed(det: MoodShiftDetector, minutes: range, mean: float, per_minute: int,
          rng: random.Random, name: str = "Dam") -> list[str]:
    states = []
    for minute in minutes:
        for _ in range(per_minute):
            det.observe("area", name, minute, max(-1.0, min(1.0, rng.gauss(mean, 0.3))))
        states += [f"{s.state}@{s.minute}" for s in det.check(minute)]
    return states


def test_a_sharp_drop_starts_once_and_ends_after_recovery() -> None:
    rng = random.Random(1)
    det = MoodShiftDetector(ShiftConfig(window_minutes=5, baseline_minutes=60, sigma=3,
                                        min_posts=20))
    assert _feed(det, range(0, 60), 0.4, 10, rng) == []  # calm festival mood
    started = _feed(det, range(60, 70), -0.5, 10, rng)  # a crush: mood collapses
    assert len(started) == 1 and started[0].startswith("started@")
    ended = _feed(det, range(70, 90), 0.4, 10, rng)
    assert len(ended) == 1 and ended[0].startswith("ended@")
    assert det.active() == []


def test_normal_fluctuation_and_thin_windows_stay_silent() -> None:
    rng = random.Random(2)
    det = MoodShiftDetector(ShiftConfig(min_posts=20))
    assert _feed(det, range(0, 180), 0.3, 8, rng) == []
    # a drop carried by too few posts does not fire
    det2 = MoodShiftDetector(ShiftConfig(min_posts=50))
    _feed(det2, range(0, 60), 0.3, 8, rng)
    assert _feed(det2, range(60, 62), -0.9, 8, rng) == []


def test_no_baseline_no_signal() -> None:
    det = MoodShiftDetector()
    for minute in range(3):
        for _ in range(50):
            det.observe("topic", "safety", minute, -1.0)
    assert det.check(2) == []


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 300), st.floats(-1, 1)), max_size=400))
def test_memory_is_bounded_by_the_horizon(points: list[tuple[int, float]]) -> None:
    cfg = ShiftConfig(window_minutes=5, baseline_minutes=30)
    det = MoodShiftDetector(cfg)
    for minute, score in sorted(points):
        det.observe("area", "Dam", minute, score)
        det.check(minute)
    for series in det._series.values():
        assert len(series.buckets) <= cfg.window_minutes + cfg.baseline_minutes
