"""Building the pieces a process needs from settings: event, store, pipeline."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform
from pathlib import Path

from pydantic import SecretStr

from models.event import EventConfig, load_event
from models.mood import ShiftConfig
from models.sentiment import CachedScorer, SentimentScorer, TransformerSentimentScorer
from streams.settings import Settings
from streams.state import MemoryStore, RedisStore, StateStore

log = logging.getLogger(__name__)

PACKAGED_EVENT = Path(__file__).resolve().parent / "data" / "koningsdag-amsterdam.yaml"


def event_from(settings: Settings, path: Path | None) -> EventConfig | None:
    chosen = path or settings.event_file
    return load_event(chosen) if chosen else None


def redis_store(settings: Settings) -> RedisStore:
    """The Redis store of ``settings`` (URL with ACL user, TLS files, prefix, dedupe TTL)."""
    return RedisStore(settings.redis_url.get_secret_value(), dedupe_ttl_s=settings.dedupe_ttl_s,
                      prefix=settings.redis_prefix,
                      client_kwargs=settings.redis_client_kwargs())


def store_from(settings: Settings) -> StateStore:
    if settings.redis_configured:
        return redis_store(settings)
    log.warning("CROWDWATCH_REDIS_URL not set: keeping state in memory (lost on restart)")
    return MemoryStore()


def with_shared_pseudonym_key(settings: Settings) -> Settings:
    """``settings`` with a pseudonym key every worker of the deployment shares.

    Author pseudonyms must be the same in every worker and across restarts: the rumour
    stage recognises official accounts and counts distinct accounts by pseudonym, in posts
    that any worker (or an earlier run of this one) wrote. ``CROWDWATCH_PSEUDONYM_KEY`` is
    the right way; without it, a random key is created once in Redis
    (``{CROWDWATCH_REDIS_PREFIX}:pseudonym_key``, ``SET NX``) and read by every worker.
    Without Redis, or when pseudonymisation is off, nothing changes (one process: its own
    random key is consistent)."""
    if (settings.pseudonym_key.get_secret_value() or not settings.pseudonymise_authors
            or not settings.redis_configured):
        return settings
    import secrets

    import redis

    name = f"{settings.redis_prefix}:pseudonym_key"
    client = redis.Redis.from_url(settings.redis_url.get_secret_value(), decode_responses=True,
                                  **settings.redis_client_kwargs())
    try:
        client.set(name, secrets.token_hex(32), nx=True)
        key = client.get(name)
    finally:
        client.close()
    if not key:  # pragma: no cover - set NX then get cannot both miss
        return settings
    log.warning("CROWDWATCH_PSEUDONYM_KEY not set: using the deployment's generated key in "
                "Redis (%s); set the key to keep pseudonyms stable if Redis is lost", name)
    return settings.model_copy(update={"pseudonym_key": SecretStr(str(key))})


def sentiment_scorer_from(settings: Settings) -> SentimentScorer | None:
    """The configured scorer (cached), or None when ``CROWDWATCH_SENTIMENT_MODEL=off``."""
    choice = settings.sentiment_model.strip()
    if choice.lower() == "off":
        return None
    if choice.lower() == "default":
        from models.sentiment_default import build_default_model_dir

        path = build_default_model_dir()
    else:
        path = Path(choice).expanduser()
    scorer = TransformerSentimentScorer(
        path, batch_size=settings.sentiment_batch_size, max_length=settings.sentiment_max_length,
        threads=settings.sentiment_threads, quantize=settings.sentiment_quantize,
        backend=settings.sentiment_backend)
    if settings.sentiment_cache_size:
        return CachedScorer(scorer, maxsize=settings.sentiment_cache_size)
    return scorer


M_ARENA_MAX = -8  # glibc malloc.h


def limit_malloc_arenas(arenas: int) -> bool:
    """Cap glibc's malloc arenas for this process (``mallopt(M_ARENA_MAX, arenas)``); call
    it before the worker starts its threads. True when the cap was set; False for 0 (keep
    glibc's default) or where the C library is not glibc."""
    if arenas < 0:
        raise ValueError("arenas must be >= 0")
    libc = _glibc() if arenas else None
    if libc is None:
        return False
    return bool(libc.mallopt(ctypes.c_int(M_ARENA_MAX), ctypes.c_int(arenas)))


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name) if name else None


def resident_bytes() -> int | None:
    """This process's resident set size (``/proc/self/statm``), or None off Linux."""
    try:
        pages = int(Path("/proc/self/statm").read_text(encoding="ascii").split()[1])
    except (OSError, ValueError, IndexError):
        return None
    import os

    return pages * os.sysconf("SC_PAGE_SIZE")


def trim_malloc() -> int | None:
    """Hand the memory glibc's malloc holds free back to the OS (``malloc_trim(0)``: the top
    of each heap and, since glibc 2.8, whole free pages inside it). Returns the resident
    bytes released (0 or more), or None where the C library is not glibc. Holds malloc's
    arena locks while it walks the free lists: run it off the event loop."""
    libc = _glibc()
    if libc is None:
        return None
    before = resident_bytes()
    libc.malloc_trim(ctypes.c_size_t(0))
    after = resident_bytes()
    return max(0, before - after) if before is not None and after is not None else 0


def shift_config_from(settings: Settings) -> ShiftConfig:
    return ShiftConfig(window_minutes=settings.mood_window_minutes,
                       baseline_minutes=settings.mood_baseline_minutes,
                       sigma=settings.mood_sigma, min_posts=settings.mood_min_posts)
