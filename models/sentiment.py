"""Sentiment (crowd mood) scoring with transformers + torch.

:class:`TransformerSentimentScorer` loads any sequence-classification checkpoint from a
local directory through ``from_pretrained`` with the hub offline, maps its labels onto
``negative | neutral | positive`` and scores batches: texts (handles and links written as
the training data writes them, :func:`model_text`) are tokenised once, sorted by
token length, cut into batches padded only to their own longest text, and run under
``torch.inference_mode()`` with an explicit thread count (GPU when available). The score
is ``P(positive) - P(negative)`` in [-1, 1].

On CPU the scorer prefers ONNX Runtime (``backend="auto"``): the checkpoint loaded with
``from_pretrained`` is exported once into the cache (:func:`models.hf.ensure_onnx_classifier`,
keyed by the checkpoint), with ORT's transformer fusions and, where int8 is asked for,
dynamic int8 weights.  It falls back to the torch path when onnxruntime is missing or the
export fails (``backend="torch"`` forces torch, ``backend="onnx"`` makes failure an error).

:class:`CachedScorer` wraps a scorer with a bounded LRU keyed by the normalised text, so
reposts ("RT @x: ...") and duplicates are scored once.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from models.hf import (
    OnnxClassifier,
    ensure_onnx_classifier,
    load_local,
    offline_transformers,
    onnx_export_available,
    onnx_runtime_available,
    padded_batches,
    quantize_int8,
)
from models.text import fold, mask_handles_and_links, normalize

log = logging.getLogger(__name__)
BACKENDS = ("auto", "torch", "onnx")
LABELS = ("negative", "neutral", "positive")
_RT = re.compile(r"^rt @[\w.\-]+:\s*")

_ALIASES = {
    "negative": "negative", "neg": "negative", "label_0": "negative", "0": "negative",
    "neutral": "neutral", "neu": "neutral", "label_1": "neutral", "1": "neutral",
    "positive": "positive", "pos": "positive", "label_2": "positive", "2": "positive",
    "1 star": "negative", "2 stars": "negative", "3 stars": "neutral", "4 stars": "positive",
    "5 stars": "positive",
}


@dataclass(frozen=True, slots=True)
class Sentiment:
    label: str  # negative | neutral | positive
    score: float  # P(positive) - P(negative), in [-1, 1]


class SentimentScorer(Protocol):
    def score(self, texts: Sequence[str]) -> list[Sentiment]:
        """One :class:`Sentiment` per text, in order."""
        ...


def map_labels(id2label: dict[int, str]) -> list[str]:
    """Canonical label per class index; raise ValueError for a head we cannot interpret."""
    out = []
    for idx in sorted(id2label):
        name = str(id2label[idx]).strip().lower()
        if name not in _ALIASES:
            raise ValueError(f"cannot map model label {id2label[idx]!r} to negative/neutral/"
                             "positive; set id2label in the model's config.json")
        out.append(_ALIASES[name])
    if "negative" not in out or "positive" not in out:
        raise ValueError(f"model labels {out} lack negative or positive")
    return out


def model_text(text: str) -> str:
    """The text a sentiment model reads: every @handle as ``@user`` and every link as
    ``http``, the convention of the data the models are trained on (TweetEval, UMSAB; the
    default model's training set has "@user" in ~30 % of its posts and other handles in
    ~1 %). A reply's handles then say nothing to the model, as in training, and posts
    that differ only in them share one cache entry."""
    return mask_handles_and_links(text)


def cache_key(text: str) -> str:
    """What makes two posts the same for sentiment: case/accents, whitespace, 'RT @x:',
    which account is mentioned and which link is shared (:func:`model_text`)."""
    return _RT.sub("", fold(normalize(model_text(text))))


class TransformerSentimentScorer:
    """Batched scorer over a local transformers checkpoint (thread-safe for ``score``)."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        batch_size: int = 64,
        max_length: int | None = None,
        threads: int | None = None,
        device: str | None = None,
        quantize: bool | None = None,
        backend: str = "auto",
        cache_dir: str | Path | None = None,
    ) -> None:
        """``max_length`` / ``quantize`` None: the model's own recommendation (the
        ``crowdwatch`` block of its config.json), else 128 tokens / fp32.  ``backend``:
        ``auto`` (ONNX Runtime on CPU when installed, else torch), ``torch`` or ``onnx``;
        ``cache_dir`` is where ONNX exports go (default ``~/.cache/crowdwatch/onnx``)."""
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        torch, transformers, path = offline_transformers(model_path, "sentiment model")
        self._torch = torch
        if threads:
            torch.set_num_threads(threads)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
        advice = getattr(config, "crowdwatch", None) or {}
        if max_length is None:
            max_length = int(advice.get("max_length", 128))
        if quantize is None:
            quantize = bool(advice.get("quantize", False))
        self.quantized = bool(quantize and self.device == "cpu")
        self.labels = map_labels({int(k): v for k, v in config.id2label.items()})
        self._pos = self.labels.index("positive")
        self._neg = self.labels.index("negative")
        self.batch_size = batch_size
        self.max_length = max_length
        self.path = path
        self.model: Any = None
        self.onnx: OnnxClassifier | None = None
        if self._wants_onnx(backend):
            try:
                onnx_path = ensure_onnx_classifier(path, quantize=self.quantized,
                                                   cache_dir=cache_dir)
                self.onnx = OnnxClassifier(onnx_path, threads=threads)
            except Exception as exc:
                if backend == "onnx":
                    raise
                log.warning("ONNX Runtime path unavailable for %s (%s); using torch", path, exc)
        if self.onnx is not None:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(path,
                                                                        local_files_only=True)
            self.backend = "onnx"
        else:
            _, self.tokenizer, model, _ = load_local(path, "AutoModelForSequenceClassification",
                                                     what="sentiment model", device=self.device)
            if self.quantized:
                model = quantize_int8(torch, model)
            self.model = model.to(self.device)
            self.backend = "torch"

    def _wants_onnx(self, backend: str) -> bool:
        if backend == "torch" or self.device != "cpu":
            if backend == "onnx":
                raise ValueError(f"the ONNX backend runs on the CPU, not {self.device!r}")
            return False
        if backend == "onnx":
            if not onnx_runtime_available():
                raise RuntimeError("backend 'onnx' needs the onnxruntime package")
            return True
        return onnx_export_available()

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Raw class logits (rows in input order, columns in ``self.labels`` order)."""
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        if not texts:
            return out
        encoded = self.tokenizer([model_text(t) for t in texts], truncation=True,
                                 max_length=self.max_length,
                                 padding=False)["input_ids"]
        pad_id = self.tokenizer.pad_token_id or 0
        batches = padded_batches(encoded, self.batch_size, pad_id)
        if self.onnx is not None:
            for idx, ids, mask in batches:
                out[idx] = self.onnx.logits(ids, mask)
            return out
        torch = self._torch
        with torch.inference_mode():
            for idx, ids, mask in batches:
                logits = self.model(input_ids=torch.from_numpy(ids).to(self.device),
                                    attention_mask=torch.from_numpy(mask).to(self.device)).logits
                out[idx] = logits.float().cpu().numpy()
        return out

    def score(self, texts: Sequence[str]) -> list[Sentiment]:
        if not texts:
            return []
        logits = self.logits(texts)
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        best = probs.argmax(axis=1).tolist()
        scores = (probs[:, self._pos] - probs[:, self._neg]).tolist()
        return [Sentiment(self.labels[b], round(float(sc), 4))
                for b, sc in zip(best, scores, strict=True)]


class CachedScorer:
    """LRU cache in front of a scorer, keyed by :func:`cache_key`; thread-safe."""

    def __init__(self, inner: SentimentScorer, maxsize: int = 100_000) -> None:
        self.inner = inner
        self.maxsize = maxsize
        self._cache: OrderedDict[str, Sentiment] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def score(self, texts: Sequence[str]) -> list[Sentiment]:
        keys = [cache_key(t) for t in texts]
        out: list[Sentiment | None] = [None] * len(texts)
        todo: dict[str, list[int]] = {}
        with self._lock:
            for i, key in enumerate(keys):
                hit = self._cache.get(key)
                if hit is not None:
                    self._cache.move_to_end(key)
                    out[i] = hit
                    self.hits += 1
                else:
                    todo.setdefault(key, []).append(i)
            self.misses += len(todo)  # scored once each; repeats within the batch are hits
            self.hits += sum(len(v) - 1 for v in todo.values())
        if todo:
            firsts = [texts[idx[0]] for idx in todo.values()]
            scored = self.inner.score(firsts)
            with self._lock:
                for (key, idx), sentiment in zip(todo.items(), scored, strict=True):
                    self._cache[key] = sentiment
                    for i in idx:
                        out[i] = sentiment
                while len(self._cache) > self.maxsize:
                    self._cache.popitem(last=False)
        return [s for s in out if s is not None]

    def stats(self) -> dict[str, Any]:
        return {"hits": self.hits, "misses": self.misses, "size": len(self._cache)}
