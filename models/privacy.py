"""Pseudonymisation of author ids and handles (keyed HMAC-SHA256).

The same key gives the same pseudonym for the same account, so "top spreaders" can be
compared and followed up through the platform by someone who holds the key, while the
stored state never names a citizen. Without a configured key a random per-process key
is used: pseudonyms then change on every restart and differ between workers.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets


class Pseudonymiser:
    def __init__(self, key: bytes | str | None = None) -> None:
        if isinstance(key, str):
            key = key.encode("utf-8")
        self._key = key or secrets.token_bytes(32)
        self.stable = bool(key)

    def __call__(self, value: str) -> str:
        digest = hmac.new(self._key, value.encode("utf-8"), hashlib.sha256).hexdigest()
        return "u_" + digest[:16]
