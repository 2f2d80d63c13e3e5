"""Sentiment (crowd mood) scoring with transformers + torch.

:class:`TransformerSentimentScorer` loads any sequence-classification checkpoint from a
local directory through ``from_pretrained`` with the hub offline, maps its labels onto
``negative | neutral | positive`` and scores batches: texts are tokenised once, sorted by
token length, cut into batches padded only to their own longest text, and run under
``torch.inference_mode()`` with an explicit thread count (GPU when available). The score
is ``P(positive) - P(negative)`` in [-1, 1].

:class:`CachedScorer` wraps a scorer with a bounded LRU keyed by the normalised text, so
reposts ("RT @x: ...") and duplicates are scored once.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from models.hf import load_local, quantize_int8, sorted_batches
from models.text import fold, normalize

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


def cache_key(text: str) -> str:
    """What makes two posts the same for sentiment: case/accents, whitespace, 'RT @x:'."""
    return _RT.sub("", fold(normalize(text)))


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
    ) -> None:
        """``max_length`` / ``quantize`` None: the model's own recommendation (the
        ``crowdwatch`` block of its config.json), else 128 tokens / fp32."""
        torch, self.tokenizer, model, self.device = load_local(
            model_path, "AutoModelForSequenceClassification", what="sentiment model",
            threads=threads, device=device)
        self._torch = torch
        path = Path(model_path)
        advice = getattr(model.config, "crowdwatch", None) or {}
        if max_length is None:
            max_length = int(advice.get("max_length", 128))
        if quantize is None:
            quantize = bool(advice.get("quantize", False))
        self.quantized = bool(quantize and self.device == "cpu")
        if self.quantized:
            model = quantize_int8(torch, model)
        self.model = model.to(self.device)
        self.labels = map_labels({int(k): v for k, v in model.config.id2label.items()})
        self._pos = self.labels.index("positive")
        self._neg = self.labels.index("negative")
        self.batch_size = batch_size
        self.max_length = max_length
        self.path = path

    def score(self, texts: Sequence[str]) -> list[Sentiment]:
        if not texts:
            return []
        torch = self._torch
        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_length,
                                 padding=False)["input_ids"]
        out: list[Sentiment | None] = [None] * len(texts)
        pad_id = self.tokenizer.pad_token_id or 0
        with torch.inference_mode():
            for idx, ids, mask in sorted_batches(torch, encoded, self.batch_size, pad_id):
                logits = self.model(input_ids=ids.to(self.device),
                                    attention_mask=mask.to(self.device)).logits
                probs = torch.softmax(logits.float(), dim=-1).cpu().tolist()
                for row, i in enumerate(idx):
                    p = probs[row]
                    best = max(range(len(p)), key=p.__getitem__)
                    out[i] = Sentiment(self.labels[best], round(p[self._pos] - p[self._neg], 4))
        return [s for s in out if s is not None]


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
