"""Pseudonymisation of author ids and handles (keyed HMAC-SHA256).

Two kinds of pseudonym, both keyed with the same secret (``CROWDWATCH_PSEUDONYM_KEY``):

* **authors of posts** (:meth:`Pseudonymiser.author_value`, :meth:`Pseudonymiser.author`):
  the enrich stage replaces ``author.id`` and ``author.handle`` of every post with
  ``p:`` + 16 hex characters of ``HMAC(key, "author" | platform | normalised value)``
  before the post is written to ``posts.enriched`` (and so to ``posts.scored``,
  ``posts.claims``, ``crowdwatch score`` output). The value is normalised like
  :func:`models.official.normalize_handle` (case, leading ``@``, profile URLs, trailing
  dots), so ``@Politie_Amsterdam`` and ``politie_amsterdam`` get the same pseudonym and
  :class:`models.official.OfficialRegistry` can recognise official accounts by computing
  the pseudonyms of the handles and ids it knows. Followers and ``verified`` are kept.
* **accounts in stored state** (:meth:`Pseudonymiser.__call__`): ``u_`` + 16 hex
  characters, for the top spreaders of a cluster and the accounts engaging with official
  posts in Redis (applied on top of the author pseudonym).

The same key gives the same pseudonym for the same account (distinct-account counts,
spreader ranking and official-account matching keep working, across workers and restarts);
another key gives unrelated pseudonyms. Whoever holds the key can test a guessed handle,
so the key is kept with the controller, not the operators.

Without a configured key one random key per *process* is used (:func:`process_key`): all
stages of one worker agree, but pseudonyms change on every restart and differ between
workers, so a deployment with more than one worker (or ``CROWDWATCH_CPU_PROCESSES`` with the
key not passed on) must configure the key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading

from models.official import normalize_handle, normalize_platform
from models.post import Author

__all__ = ["AUTHOR_PREFIX", "Pseudonymiser", "is_author_pseudonym", "process_key"]

#: prefix of author pseudonyms in posts (no platform allows ``:`` in handles)
AUTHOR_PREFIX = "p:"
_AUTHOR_PSEUDONYM = re.compile(r"^p:[0-9a-f]{16}$")
_CACHE_MAX = 100_000

_process_key: bytes | None = None
_process_lock = threading.Lock()


def process_key() -> bytes:
    """This process's random fallback key (the same for every caller in the process)."""
    global _process_key
    with _process_lock:
        if _process_key is None:
            _process_key = secrets.token_bytes(32)
        return _process_key


def is_author_pseudonym(value: object) -> bool:
    """True for a value :meth:`Pseudonymiser.author_value` produces (``p:`` + 16 hex)."""
    return isinstance(value, str) and _AUTHOR_PSEUDONYM.match(value) is not None


class Pseudonymiser:
    """Keyed pseudonyms. ``key`` empty or None: :func:`process_key` (``stable`` is False)."""

    def __init__(self, key: bytes | str | None = None) -> None:
        if isinstance(key, str):
            key = key.encode("utf-8")
        self.stable = bool(key)
        self._key: bytes = key or process_key()
        self._cache: dict[tuple[str, str], str] = {}

    @property
    def key(self) -> bytes:
        """The key itself (to hand to a child process; never log it)."""
        return self._key

    def __call__(self, value: str) -> str:
        """Pseudonym of an account in stored state (``u_`` + 16 hex)."""
        digest = hmac.new(self._key, value.encode("utf-8"), hashlib.sha256).hexdigest()
        return "u_" + digest[:16]

    def author_value(self, platform: str | None, value: str) -> str:
        """Pseudonym (``p:`` + 16 hex) of an author id or handle on ``platform``.

        Normalised first (see module doc); an existing author pseudonym is returned as it
        is, so pseudonymising twice changes nothing.
        """
        cache_key = (platform or "", value)
        hit = self._cache.get(cache_key)
        if hit is not None:
            return hit
        if is_author_pseudonym(value):
            return value
        p = normalize_platform(platform)
        msg = "\x1f".join(("author", p, normalize_handle(p, value))).encode("utf-8")
        out = AUTHOR_PREFIX + hmac.digest(self._key, msg, "sha256").hex()[:16]
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[cache_key] = out
        return out

    def author(self, platform: str | None, author: Author) -> Author:
        """``author`` with id and handle pseudonymised (empty ones dropped); followers and
        verified kept."""
        aid, handle = author.id, author.handle
        return Author(
            id=self.author_value(platform, aid) if aid and not aid.isspace() else None,
            handle=self.author_value(platform, handle)
            if handle and handle.strip().lstrip("@") else None,
            followers=author.followers, verified=author.verified,
        )
