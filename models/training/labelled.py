"""Labelled sets in the canonical format: ``BASE.posts.jsonl`` beside ``BASE.labels.jsonl``
(one ``{"id": ..., FIELD: ...}`` object a line), as the shared data and the project's own
sets in ``models/training/data`` keep them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_labelled(base: Path | str, field: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every post of ``BASE.posts.jsonl`` in file order (labelled or not: replies need their
    parents) and ``{post id: label[field]}`` from ``BASE.labels.jsonl``; blank lines are
    skipped."""
    posts = [json.loads(line) for line in Path(f"{base}.posts.jsonl").read_text(
        encoding="utf-8").splitlines() if line.strip()]
    labels: dict[str, Any] = {}
    for line in Path(f"{base}.labels.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            labels[str(row["id"])] = row[field]
    return posts, labels
