from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.evaluation import classification_report

LABELS = ("negative", "neutral", "positive")


def test_known_numbers() -> None:
    gold = ["negative", "negative", "neutral", "positive", "positive", "positive"]
    pred = ["negative", "neutral", "neutral", "positive", "positive", "negative"]
    rep = classification_report(gold, pred, LABELS)
    assert rep.recall == {"negative": 0.5, "neutral": 1.0, "positive": 2 / 3}
    assert rep.precision["negative"] == 0.5 and rep.precision["neutral"] == 0.5
    assert rep.confusion["positive"] == {"negative": 1, "neutral": 0, "positive": 2}
    assert rep.macro_recall == pytest.approx((0.5 + 1 + 2 / 3) / 3)
    assert rep.accuracy == pytest.approx(4 / 6)


def test_flagging_everything_as_one_class() -> None:
    rep = classification_report(["a", "b", "b", "a"], ["a"] * 4, ("a", "b"))
    assert rep.f1["b"] == 0 and rep.macro_recall == 0.5


@given(st.lists(st.tuples(st.sampled_from(LABELS), st.sampled_from(LABELS)), min_size=1))
def test_confusion_adds_up(pairs: list[tuple[str, str]]) -> None:
    gold, pred = zip(*pairs, strict=True)
    rep = classification_report(gold, pred, LABELS)
    assert sum(sum(row.values()) for row in rep.confusion.values()) == len(pairs)
    assert 0 <= rep.macro_f1 <= 1 and 0 <= rep.macro_recall <= 1


def test_unknown_labels_are_refused() -> None:
    with pytest.raises(ValueError, match="not one of"):
        classification_report(["joy"], ["negative"], LABELS)
