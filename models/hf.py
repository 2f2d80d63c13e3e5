"""Shared transformers plumbing for the scorer and the embedder: loading a local
checkpoint with the hub offline, int8 dynamic quantisation on CPU, and length-sorted
batches padded only to their own longest text."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any


def load_local(path: str | Path, auto_class: str, *, what: str, threads: int | None = None,
               device: str | None = None) -> tuple[Any, Any, Any, str]:
    """``(torch, tokenizer, model in eval mode, device)`` from a local directory loaded with
    ``from_pretrained`` (``auto_class``: e.g. ``AutoModel``); the hub stays offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    import transformers

    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} directory {folder} does not exist")
    if threads:
        torch.set_num_threads(threads)
    chosen = device or ("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = getattr(transformers, auto_class).from_pretrained(folder, local_files_only=True)
    model.eval()
    return torch, tokenizer, model, chosen


def quantize_int8(torch: Any, model: Any) -> Any:
    """Dynamic int8 quantisation of the Linear layers (CPU inference)."""
    return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def sorted_batches(torch: Any, encoded: Sequence[Sequence[int]], batch_size: int,
                   pad_id: int) -> Iterator[tuple[list[int], Any, Any]]:
    """``(indices, input_ids, attention_mask)`` per batch, shortest texts first."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        width = max(len(encoded[i]) for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            seq = encoded[i]
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
        yield idx, ids, mask
