"""Event times: ISO 8601 strings (``created_at``) to epoch seconds."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any


def parse_time(value: Any) -> float | None:
    """Epoch seconds of an ISO 8601 time (``Z`` or offset; naive means UTC), else None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    ts = dt.timestamp()
    return ts if math.isfinite(ts) else None
