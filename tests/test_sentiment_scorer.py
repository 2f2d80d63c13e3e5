"""The batched transformers scorer through the real from_pretrained path, on a tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.sentiment import (
    CachedScorer,
    Sentiment,
    TransformerSentimentScorer,
    cache_key,
    map_labels,
)
from tests.tiny_model import build_tiny_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


def test_scores_in_input_order_whatever_the_lengths(tiny: Path) -> None:
    scorer = TransformerSentimentScorer(tiny, batch_size=2, threads=1)
    texts = ["geweldig feest op de dam !", "vreselijk", "de tram rijdt niet", "love",
             "hate hate hate the weer", ""]
    got = scorer.score(texts)
    assert len(got) == len(texts)
    assert got[0].label == "positive" and got[0].score > 0.5
    assert got[1].label == "negative" and got[1].score < -0.5
    assert got[3].label == "positive" and got[4].label == "negative"
    assert all(-1.0 <= s.score <= 1.0 for s in got)
    # the same texts one by one give the same answers (padding does not leak)
    single = [scorer.score([t])[0] for t in texts]
    assert [s.label for s in single] == [s.label for s in got]
    assert all(abs(a.score - b.score) < 1e-3 for a, b in zip(single, got, strict=True))


def test_truncation_handles_long_texts(tiny: Path) -> None:
    scorer = TransformerSentimentScorer(tiny, max_length=16)
    [s] = scorer.score(["geweldig " * 500])
    assert s.label == "positive"


def test_label_mapping() -> None:
    assert map_labels({0: "Negative", 1: "Neutral", 2: "Positive"}) == list(
        ("negative", "neutral", "positive"))
    assert map_labels({0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"})[2] == "positive"
    assert map_labels({0: "positive", 1: "negative"}) == ["positive", "negative"]
    with pytest.raises(ValueError, match="cannot map"):
        map_labels({0: "joy", 1: "anger"})


def test_reordered_labels_are_honoured(tmp_path: Path) -> None:
    path = build_tiny_model(tmp_path / "m", labels=("positive", "negative", "neutral"))
    [s] = TransformerSentimentScorer(path).score(["geweldig"])
    assert s.label == "positive" and s.score > 0


def test_missing_model_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TransformerSentimentScorer(tmp_path / "nope")


def test_quantised_model_agrees(tiny: Path) -> None:
    plain = TransformerSentimentScorer(tiny).score(["geweldig", "vreselijk"])
    quant = TransformerSentimentScorer(tiny, quantize=True).score(["geweldig", "vreselijk"])
    assert [s.label for s in plain] == [s.label for s in quant]


class _Counting:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def score(self, texts: list[str]) -> list[Sentiment]:  # type: ignore[override]
        self.seen.extend(texts)
        return [Sentiment("neutral", 0.0) for _ in texts]


def test_cache_scores_reposts_and_duplicates_once() -> None:
    inner = _Counting()
    cached = CachedScorer(inner, maxsize=10)
    cached.score(["Wat een drukte!", "RT @iemand: Wat een drukte!", "wat  een DRUKTE!"])
    cached.score(["Wat een drukte!", "iets anders"])
    assert inner.seen == ["Wat een drukte!", "iets anders"]
    assert cached.stats()["hits"] == 3 and cached.stats()["misses"] == 2
    assert cache_key("RT @a_b: Café  OPEN") == "cafe open"


def test_cache_is_bounded() -> None:
    cached = CachedScorer(_Counting(), maxsize=3)
    cached.score([f"post {i}" for i in range(10)])
    assert cached.stats()["size"] == 3
