"""The batched transformers scorer through the real from_pretrained path, on a tiny model;
the torch backend and the ONNX Runtime export of the same checkpoint."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from models.sentiment import (
    CachedScorer,
    Sentiment,
    TransformerSentimentScorer,
    cache_key,
    map_labels,
    model_text,
)
from tests.tiny_model import build_random_encoder, build_tiny_model

HAVE_ORT = (importlib.util.find_spec("onnxruntime") is not None
            and importlib.util.find_spec("onnx") is not None)
needs_ort = pytest.mark.skipif(not HAVE_ORT, reason="onnxruntime / onnx are not installed")
TEXTS = ["geweldig feest op de dam !", "vreselijk", "de tram rijdt niet", "love",
         "hate hate hate the weer", "", "mooi weer , leuk feest maar de tram is slecht ."]


@pytest.fixture(autouse=True)
def _onnx_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX exports of the test models go to a temporary cache, not ~/.cache/crowdwatch."""
    import models.sentiment_base

    monkeypatch.setattr(models.sentiment_base, "DEFAULT_CACHE",
                        tmp_path_factory.getbasetemp() / "cache")


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

    def score(self, texts: Sequence[str]) -> list[Sentiment]:
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


@pytest.mark.parametrize(("text", "seen"), [
    ("@Ajax wat een goal!! https://t.co/x1Yz #koningsdag", "@user wat een goal!! http #koningsdag"),
    ("RT @jan_b: @piet.bsky.social en @a@mastodon.social: zie www.nu.nl/x",
     "RT @user: @user en @user: zie http"),
    ("Bel @politie_amsterdam.", "Bel @user."),
    ("mail info@politie.nl, 5@10 of @ los", "mail info@politie.nl, 5@10 of @ los"),
    ("HTTPS://EXAMPLE.ORG/a?b=c!", "http"),
])
def test_the_model_reads_handles_and_links_as_its_training_data_writes_them(
        text: str, seen: str) -> None:
    assert model_text(text) == seen


def test_posts_differing_only_in_handles_and_links_are_scored_once(tiny: Path) -> None:
    inner = _Counting()
    cached = CachedScorer(inner, maxsize=10)
    cached.score(["@jan wat een drukte! https://t.co/a", "@piet Wat een drukte! https://t.co/b"])
    assert inner.seen == ["@jan wat een drukte! https://t.co/a"]
    scorer = TransformerSentimentScorer(tiny, threads=1)
    a, b = scorer.logits(["@jan vreselijk https://t.co/a", "@piet_2 vreselijk http://x.nl/b"])
    assert a.tolist() == b.tolist()


def test_cache_is_bounded() -> None:
    cached = CachedScorer(_Counting(), maxsize=3)
    cached.score([f"post {i}" for i in range(10)])
    assert cached.stats()["size"] == 3


def test_backend_is_validated(tiny: Path) -> None:
    with pytest.raises(ValueError, match="backend"):
        TransformerSentimentScorer(tiny, backend="tensorrt")
    assert TransformerSentimentScorer(tiny, backend="torch").backend == "torch"


@needs_ort
@pytest.mark.parametrize("quantize", [False, True])
def test_onnx_backend_agrees_with_torch(tiny: Path, tmp_path: Path, quantize: bool) -> None:
    torch_scorer = TransformerSentimentScorer(tiny, backend="torch", quantize=quantize,
                                              batch_size=3)
    onnx_scorer = TransformerSentimentScorer(tiny, backend="onnx", quantize=quantize,
                                             batch_size=3, cache_dir=tmp_path)
    assert onnx_scorer.backend == "onnx" and onnx_scorer.model is None
    assert onnx_scorer.onnx is not None
    assert onnx_scorer.onnx.path.parent.name.endswith("int8" if quantize else "fp32")
    want, got = torch_scorer.score(TEXTS), onnx_scorer.score(TEXTS)
    assert [s.label for s in got] == [s.label for s in want]
    tolerance = 0.05 if quantize else 1e-3
    assert all(abs(a.score - b.score) < tolerance for a, b in zip(got, want, strict=True))
    # batches of one (no padding) give the same answers as padded batches
    single = [onnx_scorer.score([t])[0] for t in TEXTS]
    assert all(abs(a.score - b.score) < 1e-3 for a, b in zip(single, got, strict=True))
    assert onnx_scorer.score([]) == []


@needs_ort
def test_onnx_export_is_cached(tiny: Path, tmp_path: Path) -> None:
    first = TransformerSentimentScorer(tiny, backend="onnx", cache_dir=tmp_path).onnx
    assert first is not None
    stamp = first.path.stat().st_mtime_ns
    second = TransformerSentimentScorer(tiny, backend="onnx", cache_dir=tmp_path).onnx
    assert second is not None and second.path == first.path
    assert second.path.stat().st_mtime_ns == stamp
    assert (first.path.parent / ".complete").exists()


def test_auto_falls_back_to_torch_when_export_fails(tiny: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import models.sentiment

    def broken(*args: object, **kwargs: object) -> Path:
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(models.sentiment, "ensure_onnx_classifier", broken)
    monkeypatch.setattr(models.sentiment, "onnx_export_available", lambda: True)
    monkeypatch.setattr(models.sentiment, "onnx_runtime_available", lambda: True)
    scorer = TransformerSentimentScorer(tiny)
    assert scorer.backend == "torch" and scorer.score(["geweldig"])[0].label == "positive"
    with pytest.raises(RuntimeError, match="exploded"):
        TransformerSentimentScorer(tiny, backend="onnx")


def test_auto_uses_torch_without_onnxruntime(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import models.sentiment

    monkeypatch.setattr(models.sentiment, "onnx_export_available", lambda: False)
    monkeypatch.setattr(models.sentiment, "onnx_runtime_available", lambda: False)
    assert TransformerSentimentScorer(tiny).backend == "torch"
    with pytest.raises(RuntimeError, match="onnxruntime"):
        TransformerSentimentScorer(tiny, backend="onnx")


def test_int8_counts_as_exact_only_with_32_bit_int8_accumulation(tmp_path: Path) -> None:
    from models.hf import cpu_flags, int8_is_exact

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 fma\n",
                    encoding="utf-8")
    assert cpu_flags(info) == {"fpu", "sse2", "avx2", "fma"}
    assert cpu_flags(tmp_path / "missing") == frozenset()
    assert not int8_is_exact(frozenset({"avx2", "avx512f"}), "x86_64")  # vpmaddubsw saturates
    assert int8_is_exact(frozenset({"avx2", "avx512f", "avx512_vnni"}), "x86_64")
    assert int8_is_exact(frozenset({"avx2", "avx_vnni"}), "AMD64")
    assert int8_is_exact(frozenset(), "aarch64")


def test_auto_precision_is_exact_int8_else_fp32_and_bf16_is_only_on_request() -> None:
    from models.hf import bf16_is_fast, encoder_precision

    amx = frozenset({"avx2", "avx512f", "avx512_vnni", "amx_bf16", "amx_int8"})
    assert bf16_is_fast(amx, "x86_64") and encoder_precision(amx, "x86_64") == "int8"
    assert bf16_is_fast(frozenset({"avx2", "avx512f", "avx512_bf16"}), "x86_64")  # Zen 4
    icelake = frozenset({"avx2", "avx512f", "avx512_vnni"})  # int8 exact, bf16 emulated
    assert not bf16_is_fast(icelake, "x86_64") and encoder_precision(icelake, "x86_64") == "int8"
    assert encoder_precision(frozenset({"avx2", "fma"}), "x86_64") == "fp32"  # old EPYC
    assert bf16_is_fast(frozenset({"asimd", "bf16"}), "aarch64")
    assert not bf16_is_fast(frozenset({"asimd"}), "aarch64")
    assert encoder_precision(frozenset({"asimd", "bf16"}), "aarch64") == "int8"


def test_the_embedder_runs_in_the_precision_the_cpu_suits(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import models.embed as embed

    texts = ["een korte tekst", "a somewhat longer text for the tiny model"]
    folder = build_random_encoder(tmp_path / "enc", " ".join(texts).split())
    for precision in ("bf16", "int8", "fp32"):
        monkeypatch.setattr(embed, "encoder_precision", lambda p=precision: p)
        e = embed.TransformerEmbedder(folder, device="cpu")
        assert e.precision == precision and e.quantized is (precision == "int8")
        vectors = e.embed(texts)
        assert vectors.shape == (2, e.dim) and vectors.dtype == np.float32
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embed.TransformerEmbedder(folder, device="cpu", precision="int8").quantized
    with pytest.raises(ValueError, match="precision must be one of"):
        embed.TransformerEmbedder(folder, device="cpu", precision="fp8")


def test_bf16_vectors_keep_fp32_and_do_not_depend_on_their_batch(tmp_path: Path) -> None:
    """What ``precision="bf16"`` offers: a text's vector is the same whatever batch it is
    embedded in (dynamic int8 scales activations per batch), so a replay gives the same
    clusters however its posts fall into batches."""
    from models.embed import TransformerEmbedder

    texts = ["brand bij het station , iedereen moet weg", "is dit waar ?", "ok",
             "police say the square is closed after reports of a stabbing near the stage",
             "geweldig feest op de dam", "HOAX ! ! ! niet delen", "de tram rijdt niet",
             " ".join(["lange"] * 30 + ["tekst"] * 30)]
    folder = build_random_encoder(tmp_path / "enc", " ".join(texts).split())
    bf16 = TransformerEmbedder(folder, device="cpu", precision="bf16", batch_size=8, prefix="")
    fp32 = TransformerEmbedder(folder, device="cpu", precision="fp32", batch_size=8, prefix="")
    together = bf16.embed(texts)
    alone = np.stack([bf16.embed([t])[0] for t in texts])
    assert np.min(np.sum(together * alone, axis=1)) > 0.9999
    assert np.min(np.sum(together * fp32.embed(texts), axis=1)) > 0.999


def test_the_embedder_benchmark_runs_with_tiny_sizes(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location(
        "bench_embed", Path(__file__).resolve().parent.parent / "benchmarks" / "bench_embed.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    words = " ".join(bench.texts(24)).split()
    folder = build_random_encoder(tmp_path / "enc", words)
    assert bench.main(["--model", str(folder), "--texts", "24", "--batch", "8",
                       "--other-batch", "3", "--threads", "1", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "24 distinct texts" in out and "auto picks" in out
    rows = {line.split(" | ")[0]: line.split(" | ") for line in out.splitlines() if " | " in line}
    assert set(rows) >= {"fp32", "int8", "bf16"}
    assert rows["fp32"][2] == "1.00x" and rows["fp32"][5] == "0"  # the baseline


@needs_ort
def test_a_rewritten_checkpoint_replaces_its_old_onnx_export(tmp_path: Path) -> None:
    """Exports are named by the checkpoint's fingerprint: a retrained (rewritten) model gets
    a new one, and the old export (100-400 MB for the real model) used to stay for good."""
    import os
    import shutil

    model = build_tiny_model(tmp_path / "model")
    cache = tmp_path / "cache"
    first = TransformerSentimentScorer(model, backend="onnx", cache_dir=cache).onnx
    assert first is not None
    other = build_tiny_model(tmp_path / "other")  # another checkpoint's export stays
    kept = TransformerSentimentScorer(other, backend="onnx", cache_dir=cache).onnx
    assert kept is not None and first.path.exists()
    config = model / "config.json"
    os.utime(config, ns=(config.stat().st_atime_ns, config.stat().st_mtime_ns + 10**9))
    second = TransformerSentimentScorer(model, backend="onnx", cache_dir=cache).onnx
    assert second is not None and second.path != first.path and second.path.exists()
    assert not first.path.parent.exists() and kept.path.exists()
    # an export whose checkpoint directory is gone goes with the next export as well
    shutil.rmtree(other)
    os.utime(config, ns=(config.stat().st_atime_ns, config.stat().st_mtime_ns + 10**9))
    third = TransformerSentimentScorer(model, backend="onnx", cache_dir=cache).onnx
    assert third is not None and third.path.exists()
    assert not kept.path.parent.exists() and not second.path.parent.exists()
    assert [d.name for d in cache.iterdir()] == [third.path.parent.name]


def test_build_once_removes_only_the_siblings_it_replaces(tmp_path: Path) -> None:
    import os
    import time

    from models.sentiment_base import STALE_BUILD_S, build_once

    def build(tmp: Path) -> None:
        (tmp / "weights").write_text("w", encoding="utf-8")

    old = build_once(tmp_path / "m-old", build, "same\n")
    other = build_once(tmp_path / "m-other", build, "other\n")
    dead = tmp_path / ".m-x-crashed"
    dead.mkdir()
    os.utime(dead, (time.time() - STALE_BUILD_S - 60,) * 2)
    running = tmp_path / ".m-y-building"
    running.mkdir()
    new = build_once(tmp_path / "m-new", build, "same\n", replaces="same\n".__eq__)
    assert sorted(d.name for d in tmp_path.iterdir()) == sorted(
        [new.name, other.name, running.name])
    assert not old.exists()
    # a finished target is returned as it is: nothing is built or removed
    again = build_once(tmp_path / "m-old", build, "same\n")
    assert (new / ".complete").exists() and (again / ".complete").exists()
    assert build_once(new, build, "same\n", replaces="same\n".__eq__) == new
    assert again.exists()
