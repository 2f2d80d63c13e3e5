"""Negative mood shifts: an area's or topic's mood falls N sigma below its trailing baseline.

Posts are aggregated per key (e.g. ``("area", "Dam")``) into one-minute buckets of
(sum of scores, count). At each check the *current* mean over the last ``window``
minutes is compared with the distribution of per-minute means over the ``baseline``
minutes before it: a shift starts when ``current < mean - sigma * std`` (with a floor
on std so a perfectly flat baseline does not fire on noise) and at least ``min_posts``
posts are in the window; it ends when the mean recovers above ``mean - sigma/2 * std``
(hysteresis, so a signal does not flap), or when the window holds no posts of the key
any more (reason ``quiet``: the area went quiet; there is no mood left to judge, so the
shift is not held up forever; until 2026-12-08 it stayed active, its gauge at 1 and its
alert firing, until posts about the key came back). Each start and end is reported once.
Memory per key is bounded by ``window + baseline`` buckets.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class MoodRow:
    """One scored post as the mood aggregates need it."""

    id: str
    minute: int  # epoch minute of created_at (else processing time)
    lang: str
    areas: tuple[str, ...]
    topics: tuple[str, ...]
    label: str
    score: float


@dataclass(frozen=True, slots=True)
class MoodSignal:
    scope: str  # "area" | "topic"
    name: str
    state: str  # "started" | "ended"
    minute: int  # epoch minute of the check
    current: float  # mean score over the window
    baseline: float  # mean of the baseline minute means
    std: float
    zscore: float
    posts: int  # posts in the window
    # why a shift ended: "recovered" (mood back near the baseline) or "quiet" (no posts in
    # the window: ``current`` then reads as the baseline); "" when it started
    reason: str = ""


@dataclass
class _Series:
    buckets: deque[tuple[int, float, int]] = field(default_factory=deque)  # (minute, sum, n)
    active: bool = False


@dataclass(frozen=True, slots=True)
class ShiftConfig:
    window_minutes: int = 5
    baseline_minutes: int = 60
    sigma: float = 3.0
    min_posts: int = 20
    min_baseline_minutes: int = 10
    min_std: float = 0.05


class MoodShiftDetector:
    def __init__(self, config: ShiftConfig | None = None) -> None:
        self.config = config or ShiftConfig()
        self._series: dict[tuple[str, str], _Series] = {}

    def observe(self, scope: str, name: str, minute: int, score: float) -> None:
        """Add one post's score to ``(scope, name)`` at epoch minute ``minute``."""
        series = self._series.setdefault((scope, name), _Series())
        buckets = series.buckets
        if buckets and buckets[-1][0] == minute:
            m, s, n = buckets[-1]
            buckets[-1] = (m, s + score, n + 1)
        elif not buckets or buckets[-1][0] < minute:
            buckets.append((minute, score, 1))
        else:  # late post: add to its bucket if still held
            for i, (m, s, n) in enumerate(buckets):
                if m == minute:
                    buckets[i] = (m, s + score, n + 1)
                    break
        horizon = self.config.window_minutes + self.config.baseline_minutes
        while buckets and buckets[0][0] <= buckets[-1][0] - horizon:
            buckets.popleft()

    def check(self, now_minute: int) -> list[MoodSignal]:
        """Signals that started or ended at ``now_minute`` (epoch minutes)."""
        cfg = self.config
        out = []
        for (scope, name), series in self._series.items():
            window_start = now_minute - cfg.window_minutes + 1
            base_start = window_start - cfg.baseline_minutes
            cur_sum = cur_n = 0.0
            base_means = []
            for minute, s, n in series.buckets:
                if window_start <= minute <= now_minute:
                    cur_sum += s
                    cur_n += n
                elif base_start <= minute < window_start and n > 0:
                    base_means.append(s / n)
            # quiet: nothing in the window and nothing after it (a check at an older minute,
            # for a batch of late posts, sees an empty window with newer posts beyond it)
            if cur_n == 0 and series.active and series.buckets \
                    and series.buckets[-1][0] < window_start:
                series.active = False
                base = sum(base_means) / len(base_means) if base_means else 0.0
                out.append(MoodSignal(scope, name, "ended", now_minute, base, base,
                                      cfg.min_std, 0.0, 0, "quiet"))
                continue
            if cur_n == 0 or len(base_means) < cfg.min_baseline_minutes:
                continue
            mean = sum(base_means) / len(base_means)
            var = sum((x - mean) ** 2 for x in base_means) / max(1, len(base_means) - 1)
            std = max(math.sqrt(var), cfg.min_std)
            current = cur_sum / cur_n
            z = (current - mean) / std
            if not series.active and z <= -cfg.sigma and cur_n >= cfg.min_posts:
                series.active = True
                out.append(MoodSignal(scope, name, "started", now_minute, current, mean, std, z,
                                      int(cur_n)))
            elif series.active and z > -cfg.sigma / 2:
                series.active = False
                out.append(MoodSignal(scope, name, "ended", now_minute, current, mean, std, z,
                                      int(cur_n), "recovered"))
        return out

    def observe_rows(self, rows: list[MoodRow]) -> None:
        """Each row's score counts for each of its areas and topics."""
        for row in rows:
            for area in row.areas:
                self.observe("area", area, row.minute, row.score)
            for topic in row.topics:
                self.observe("topic", topic, row.minute, row.score)

    def active(self) -> list[tuple[str, str]]:
        return [key for key, s in self._series.items() if s.active]


def signal_dict(signal: MoodSignal, event: str) -> dict[str, object]:
    """The JSON record of a signal on the ``signals`` topic."""
    return {
        "type": "mood_shift",
        "event": event,
        "scope": signal.scope,
        "name": signal.name,
        "state": signal.state,
        "at": signal.minute * 60,
        "current_mood": round(signal.current, 4),
        "baseline_mood": round(signal.baseline, 4),
        "baseline_std": round(signal.std, 4),
        "zscore": round(signal.zscore, 2),
        "posts_in_window": signal.posts,
        **({"reason": signal.reason} if signal.reason else {}),
    }
