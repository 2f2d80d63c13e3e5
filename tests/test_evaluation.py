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


def test_pooled_report_weighs_every_item_the_same() -> None:
    from models.evaluation import pooled_report

    big = classification_report(["a"] * 90 + ["b"] * 10, ["a"] * 90 + ["a"] * 10, ["a", "b"])
    small = classification_report(["a", "b"], ["a", "b"], ["a", "b"])
    pooled = pooled_report([big, small])
    assert pooled.n == 102 and pooled.confusion["b"] == {"a": 10, "b": 1}
    assert pooled == classification_report(["a"] * 90 + ["b"] * 10 + ["a", "b"],
                                            ["a"] * 100 + ["a", "b"], ["a", "b"])
    assert pooled.macro_f1 < (big.macro_f1 + small.macro_f1) / 2  # the mean flatters here
    with pytest.raises(ValueError, match="labels differ"):
        pooled_report([big, classification_report(["x"], ["x"], ["x"])])
    with pytest.raises(ValueError, match="no reports"):
        pooled_report([])
