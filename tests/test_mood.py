"""The negative-shift detector on plain lists of (minute, score)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from models.mood import MoodShiftDetector, ShiftConfig, signal_dict


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


def test_a_shift_ends_when_its_area_goes_quiet() -> None:
    """No posts about the area in the window: the shift ends (reason "quiet") at the next
    check, which posts elsewhere trigger; it stayed active, its gauge and alert with it,
    until posts about the area came back (until 2026-12-08)."""
    rng = random.Random(3)
    det = MoodShiftDetector(ShiftConfig(window_minutes=5, baseline_minutes=60, sigma=3,
                                        min_posts=20))
    _feed(det, range(0, 60), 0.4, 10, rng)
    assert len(_feed(det, range(60, 64), -0.5, 10, rng)) == 1
    assert det.active() == [("area", "Dam")]
    # the crowd leaves the Dam; the stream goes on about the Museumplein
    signals = []
    for minute in range(64, 72):
        det.observe("area", "Museumplein", minute, 0.3)
        signals += det.check(minute)
    assert [(s.name, s.state, s.reason, s.posts) for s in signals] == [
        ("Dam", "ended", "quiet", 0)]
    assert signals[0].minute == 68  # the first check whose 5-minute window is empty
    assert det.active() == []
    record = signal_dict(signals[0], "koningsdag")
    assert (record["reason"], record["posts_in_window"]) == ("quiet", 0)
    assert abs(float(record["current_mood"]) - 0.4) < 0.1  # reads as the baseline


def test_a_recovery_says_so() -> None:
    rng = random.Random(1)
    det = MoodShiftDetector(ShiftConfig(min_posts=20))
    _feed(det, range(0, 60), 0.4, 10, rng)
    _feed(det, range(60, 66), -0.5, 10, rng)
    for minute in range(66, 90):
        for _ in range(10):
            det.observe("area", "Dam", minute, 0.4)
        ended = [s for s in det.check(minute) if s.state == "ended"]
        if ended:
            break
    assert [s.reason for s in ended] == ["recovered"]
    assert signal_dict(ended[0], "koningsdag")["reason"] == "recovered"


def test_a_check_at_an_older_minute_does_not_end_a_shift_as_quiet() -> None:
    """A batch of late posts is checked at its own, older minute: an empty window there,
    with the area's posts after it, is not a quiet area."""
    rng = random.Random(3)
    det = MoodShiftDetector(ShiftConfig(window_minutes=5, baseline_minutes=60, sigma=3,
                                        min_posts=20))
    _feed(det, range(0, 50), 0.4, 10, rng)
    _feed(det, range(58, 60), 0.4, 10, rng)  # minutes 50-57: no posts about the Dam
    assert len(_feed(det, range(60, 64), -0.5, 10, rng)) == 1
    det.observe("area", "Museumplein", 56, 0.3)  # a late post elsewhere
    assert det.check(56) == []  # the Dam window 52-56 is empty, but posts came after it
    assert det.active() == [("area", "Dam")]
