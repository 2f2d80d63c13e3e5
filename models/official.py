"""Which accounts are official: the event's ``official_accounts`` plus runtime changes.

:class:`OfficialRegistry` answers :meth:`~OfficialRegistry.is_official` for a platform
and a handle *or* an author id, whatever spelling the connector used:

* case and a leading ``@`` never matter (``@Politie_Amsterdam`` == ``politie_amsterdam``);
* profile URLs are accepted (``https://x.com/politie_amsterdam``,
  ``https://bsky.app/profile/politie-amsterdam.bsky.social``,
  ``https://social.amsterdam.nl/@gemeenteamsterdam``);
* Mastodon accounts are ``user@instance``. A bare ``user`` (how Mastodon writes local
  accounts and how people often mention them) matches when exactly one registered
  Mastodon account has that user name, or when ``instance`` is given and agrees;
* Bluesky handles are domain names (a trailing dot is dropped); the account's DID
  (``did:plc:...``), which is what Jetstream sends as the author, is matched when it was
  registered as ``author_id`` (see :meth:`OfficialRegistry.add`);
* any platform: registered author ids (numeric twitter ids, Mastodon account URIs) match;
* pseudonymised authors (``p:`` + hex, see :mod:`models.privacy`) match when the registry
  was given the same keyed ``pseudonym`` function the enrich stage used: the registry
  computes the pseudonym of every handle and author id it knows (and of a Mastodon
  account's bare user name when that is unambiguous), so official accounts stay
  recognisable in pseudonymised topics while their handles remain in clear here.

The registry is plain data in, plain data out. The lead stores runtime additions and
removals (``crowdwatch official add|remove|list``) in Redis and replays them through
:meth:`add` / :meth:`remove`; :meth:`to_list` / :meth:`from_list` give that form.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from models.event import EventConfig, OfficialAccount, Role

__all__ = ["OfficialRegistry", "PseudonymFn", "normalize_handle", "normalize_platform"]

#: ``(platform, handle or author id) -> pseudonym`` (``models.privacy.Pseudonymiser.author_value``)
PseudonymFn = Callable[[str | None, str], str]

_PLATFORM_ALIASES = {
    "x": "twitter", "twitter.com": "twitter", "x.com": "twitter", "tweet": "twitter",
    "bsky": "bluesky", "bsky.app": "bluesky", "atproto": "bluesky",
    "fediverse": "mastodon",
}
_TWITTER_HOSTS = frozenset({"twitter.com", "www.twitter.com", "x.com", "www.x.com",
                            "mobile.twitter.com"})
_BSKY_PROFILE = re.compile(r"^/profile/([^/?#]+)")
_MASTODON_PROFILE = re.compile(r"^/@([^/?#@]+)(?:@([^/?#]+))?")
_MASTODON_USERS = re.compile(r"^/users/([^/?#]+)")


def normalize_platform(platform: str | None) -> str:
    """``"X"`` -> ``"twitter"``, ``"Bsky"`` -> ``"bluesky"``; other names lower-cased."""
    p = (platform or "").strip().lower()
    return _PLATFORM_ALIASES.get(p, p)


def normalize_handle(platform: str | None, handle: str) -> str:
    """The comparable form of a handle, profile URL or author id on ``platform``.

    Lower case, no leading ``@``; URLs reduced to the handle (Mastodon: ``user@instance``);
    Bluesky: trailing dot removed; DIDs and numeric ids are returned unchanged apart from
    case (a DID's method-specific part is lower case anyway).
    """
    p = normalize_platform(platform)
    h = handle.strip()
    if h.lower().startswith(("http://", "https://")):
        h = _from_url(p, h)
    h = h.strip().lstrip("@").lower()
    if p == "bluesky":
        h = h.rstrip(".")
    if p == "mastodon" and "@" in h:
        user, _, host = h.partition("@")
        h = f"{user}@{host.rstrip('.')}"
    return h


def _from_url(platform: str, url: str) -> str:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    path = parts.path or ""
    if host in _TWITTER_HOSTS:
        first = path.strip("/").split("/", 1)[0]
        return first or url
    if host == "bsky.app":
        m = _BSKY_PROFILE.match(path)
        return m.group(1) if m else url
    m = _MASTODON_PROFILE.match(path)
    if m:
        return f"{m.group(1)}@{m.group(2) or host}"
    m = _MASTODON_USERS.match(path)  # ActivityPub actor URI: https://host/users/name
    if m and platform in ("mastodon", ""):
        return f"{m.group(1)}@{host}"
    return url


class OfficialRegistry:
    """Official accounts by platform and handle (and optionally author id).

    Built from the event file (:meth:`from_event`); :meth:`add` / :meth:`remove` apply
    runtime changes (a removal also hides an account that came from the event file).
    """

    def __init__(self, accounts: Iterable[OfficialAccount] = (), *,
                 pseudonym: PseudonymFn | None = None) -> None:
        """``pseudonym``: also match authors pseudonymised with this function (the enrich
        stage's, same key)."""
        self._by_handle: dict[tuple[str, str], OfficialAccount] = {}
        self._by_id: dict[tuple[str, str], OfficialAccount] = {}
        self._ids_of: dict[tuple[str, str], set[str]] = {}
        self._pseudonym = pseudonym
        self._by_pseudonym: dict[tuple[str, str], OfficialAccount] | None = None
        for acc in accounts:
            self.add(acc.platform, acc.handle, acc.role, name=acc.name)

    @classmethod
    def from_event(cls, event: EventConfig | None, *,
                   pseudonym: PseudonymFn | None = None) -> OfficialRegistry:
        return cls(event.official_accounts if event is not None else (), pseudonym=pseudonym)

    @property
    def pseudonym(self) -> PseudonymFn | None:
        return self._pseudonym

    @pseudonym.setter
    def pseudonym(self, fn: PseudonymFn | None) -> None:
        self._pseudonym = fn
        self._by_pseudonym = None

    # -- changes ------------------------------------------------------------------------
    def add(self, platform: str, handle: str, role: Role | str, *, name: str | None = None,
            author_id: str | None = None) -> OfficialAccount:
        """Register (or update) an account; ``author_id`` also matches posts by that id
        (a Bluesky DID, a twitter user id, a Mastodon account URI)."""
        p = normalize_platform(platform)
        h = normalize_handle(p, handle)
        if not p or not h:
            raise ValueError("an official account needs a platform and a handle")
        acc = OfficialAccount(platform=p, handle=h, role=Role(role), name=name)
        key = (p, h)
        self._by_handle[key] = acc
        ids = self._ids_of.setdefault(key, set())
        for old in ids:  # role or name may have changed: repoint the ids
            self._by_id[(p, old)] = acc
        if author_id:
            aid = normalize_handle(p, author_id)
            ids.add(aid)
            self._by_id[(p, aid)] = acc
        self._by_pseudonym = None
        return acc

    def remove(self, platform: str, handle: str) -> bool:
        """Forget an account (and its author ids); False when it was not registered."""
        p = normalize_platform(platform)
        h = normalize_handle(p, handle)
        acc = self._by_handle.pop((p, h), None)
        if acc is None:
            resolved = self._lookup(p, h)
            if resolved is None:
                return False
            h = resolved.handle
            acc = self._by_handle.pop((p, h))
        for aid in self._ids_of.pop((p, h), set()):
            self._by_id.pop((p, aid), None)
        self._by_pseudonym = None
        return True

    # -- queries ------------------------------------------------------------------------
    def is_official(self, platform: str | None, handle_or_author_id: str | None, *,
                    instance: str | None = None) -> OfficialAccount | None:
        """The official account behind a handle or author id on ``platform``, else None.

        ``instance``: the Mastodon instance a bare user name is local to (optional).
        """
        if not handle_or_author_id:
            return None
        p = normalize_platform(platform)
        return self._lookup(p, normalize_handle(p, handle_or_author_id), instance)

    def _lookup(self, p: str, h: str, instance: str | None = None) -> OfficialAccount | None:
        acc = self._by_handle.get((p, h)) or self._by_id.get((p, h))
        if acc is None and self._pseudonym is not None and h.startswith("p:"):
            acc = self._pseudonyms().get((p, h))
        if acc is not None or p != "mastodon" or not h:
            return acc
        if "@" in h:  # user@instance not registered as such
            return None
        if instance:
            return self._by_handle.get((p, f"{h}@{instance.lower().rstrip('.')}"))
        hits = [a for (pp, hh), a in self._by_handle.items()
                if pp == p and hh.partition("@")[0] == h]
        return hits[0] if len(hits) == 1 else None

    def _pseudonyms(self) -> dict[tuple[str, str], OfficialAccount]:
        """(platform, pseudonym) -> account for every known handle and author id, built
        lazily after each change."""
        index = self._by_pseudonym
        fn = self._pseudonym
        if index is not None or fn is None:
            return index or {}
        index = {}
        for (p, value), acc in [*self._by_id.items(), *self._by_handle.items()]:
            index[(p, fn(p, value))] = acc
        users: dict[str, list[OfficialAccount]] = {}  # Mastodon: bare user names, if unique
        for (p, h), acc in self._by_handle.items():
            if p == "mastodon" and "@" in h:
                users.setdefault(h.partition("@")[0], []).append(acc)
        for user, accs in users.items():
            key = ("mastodon", fn("mastodon", user))
            if len(accs) == 1 and key not in index:
                index[key] = accs[0]
        self._by_pseudonym = index
        return index

    def author_of(self, post: Mapping[str, Any]) -> OfficialAccount | None:
        """The official account that wrote ``post`` (a canonical/enriched post dict)."""
        author = post.get("author")
        if not isinstance(author, Mapping):
            return None
        platform = post.get("platform")
        platform = platform if isinstance(platform, str) else None
        for field in ("handle", "id"):
            value = author.get(field)
            if isinstance(value, str) and value:
                acc = self.is_official(platform, value)
                if acc is not None:
                    return acc
        return None

    def accounts(self) -> list[OfficialAccount]:
        return sorted(self._by_handle.values(), key=lambda a: (a.platform, a.handle))

    def __len__(self) -> int:
        return len(self._by_handle)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, OfficialAccount):
            return self._by_handle.get((item.platform, item.handle)) is not None
        return False

    def to_list(self) -> list[dict[str, Any]]:
        """Plain dicts (``platform, handle, role, name, author_ids``) for storage/listing."""
        out = []
        for acc in self.accounts():
            ids = sorted(self._ids_of.get((acc.platform, acc.handle), ()))
            out.append({"platform": acc.platform, "handle": acc.handle, "role": acc.role.value,
                        "name": acc.name, "author_ids": ids})
        return out

    @classmethod
    def from_list(cls, items: Iterable[Mapping[str, Any]], *,
                  pseudonym: PseudonymFn | None = None) -> OfficialRegistry:
        reg = cls(pseudonym=pseudonym)
        for item in items:
            ids = item.get("author_ids") or [None]
            for aid in ids:
                reg.add(item["platform"], item["handle"], item["role"], name=item.get("name"),
                        author_id=aid)
        return reg
