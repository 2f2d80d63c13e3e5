"""The shared pending buffer of the reach tracker and the webcare queue."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from models.pending import PendingBuffer


def test_records_wait_for_their_parent_per_table() -> None:
    buf: PendingBuffer[str] = PendingBuffer(horizon_s=60, wall_s=0, max_items=10)
    assert buf.park("p1", "a", "A", 100.0, 100.0)
    assert not buf.park("p1", "a", "again", 100.0, 100.0)  # parked once per (table, parent)
    assert buf.park("p1", "a", "other table", 100.0, 100.0, table="t")
    assert len(buf) == 2
    assert buf.take("p1") == {"a": "A"}
    assert buf.take("p1") == {}
    assert buf.take("p1", table="t") == {"a": "other table"}
    assert len(buf) == 0 and buf.dropped == 0


def test_expiry_needs_both_event_time_and_processing_time() -> None:
    now = [0.0]
    buf: PendingBuffer[int] = PendingBuffer(horizon_s=60, wall_s=30, max_items=100,
                                            clock=lambda: now[0])
    buf.park("p", "old", 1, 0.0, 0.0)
    assert buf.expire(watermark=1_000.0) == 0  # far behind in event time, but just arrived
    now[0] = 31.0
    assert buf.expire(watermark=50.0) == 0  # old in processing time, within the horizon
    assert buf.expire(watermark=1_000.0) == 1
    assert len(buf) == 0 and buf.dropped == 1


def test_the_bound_drops_the_oldest_arrivals_first() -> None:
    buf: PendingBuffer[int] = PendingBuffer(horizon_s=1e9, wall_s=1e9, max_items=3)
    for i in range(5):
        buf.park(f"p{i}", f"r{i}", i, None, None)
    assert buf.expire(None) == 2
    assert len(buf) == 3 and buf.take("p0") == {} and buf.take("p4") == {"r4": 4}


ops = st.lists(st.tuples(st.sampled_from(["park", "take", "expire", "tick"]),
                         st.integers(0, 4), st.integers(0, 6), st.integers(0, 300)),
               max_size=80)


@settings(max_examples=200, deadline=None)
@given(ops, st.integers(1, 8))
def test_counts_add_up_and_the_bound_holds(steps: list[tuple[str, int, int, int]],
                                           cap: int) -> None:
    """parked = taken + dropped + waiting, after any sequence; never above the cap after
    an expiry."""
    now = [0.0]
    buf: PendingBuffer[str] = PendingBuffer(horizon_s=100, wall_s=10, max_items=cap,
                                            clock=lambda: now[0])
    parked = taken = 0
    watermark = 0.0
    for op, parent, rec, t in steps:
        if op == "park":
            watermark = max(watermark, float(t))
            parked += buf.park(f"p{parent}", f"r{rec}", "v", float(t), watermark)
        elif op == "take":
            taken += len(buf.take(f"p{parent}"))
        elif op == "expire":
            buf.expire(watermark)
            assert len(buf) <= cap
        else:
            now[0] += t
        assert parked == taken + buf.dropped + len(buf)
