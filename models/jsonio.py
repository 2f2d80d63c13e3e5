"""JSON encoding of outputs: orjson when it can, the standard library when it cannot."""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(obj: Any) -> bytes:
    """UTF-8 JSON bytes. orjson is ~5x faster but refuses integers beyond 64 bits (legal in
    an input post's unknown extra fields), which the standard library writes as they are."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        return json.dumps(obj, ensure_ascii=False).encode("utf-8")
