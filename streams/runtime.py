"""Building the pieces a process needs from settings: event, store, pipeline."""

from __future__ import annotations

import logging
from pathlib import Path

from models.event import EventConfig, load_event
from streams.settings import Settings
from streams.state import MemoryStore, RedisStore, StateStore

log = logging.getLogger(__name__)

PACKAGED_EVENT = Path(__file__).resolve().parent / "data" / "koningsdag-amsterdam.yaml"


def event_from(settings: Settings, path: Path | None) -> EventConfig | None:
    chosen = path or settings.event_file
    return load_event(chosen) if chosen else None


def store_from(settings: Settings) -> StateStore:
    if settings.redis_configured:
        return RedisStore(settings.redis_url.get_secret_value(), dedupe_ttl_s=settings.dedupe_ttl_s,
                          prefix=settings.redis_prefix)
    log.warning("CROWDWATCH_REDIS_URL not set: keeping state in memory (lost on restart)")
    return MemoryStore()
