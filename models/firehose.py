"""Live firehose frames -> canonical posts: Bluesky Jetstream (v1 and v2) and Mastodon streaming.

Pure functions and small in-memory structures only (no sockets, Kafka or metrics): the
connectors in ``streams/ingest`` feed raw frames in and send what comes out. Every frame
ends up as exactly one of:

- a :class:`Mapped` event with a canonical ``post`` to produce (posts, replies, quotes,
  reposts, likes, and delete tombstones when asked for),
- a :class:`Mapped` event without a post (``control`` says why: identity/account/sync/info
  frames, unsupported collections), which the connector counts as filtered,
- a :class:`FrameReject` (malformed: not JSON, wrong shape, missing fields), dead-lettered.

Jetstream v1 (``/subscribe``) frames look like
``{"did", "time_us", "kind": "commit"|"identity"|"account", "commit": {"rev", "operation",
"collection", "rkey", "record", "cid"}}``; Jetstream v2
(``/xrpc/network.bsky.jetstream.subscribeEvents``, subprotocol ``xrpc.v1.json``) wraps each
lexicon message in ``{"$type": "message", "payload": {"$type":
"network.bsky.jetstream.subscribeEvents#commit", "seq", "did", "time", "witnessedAt"?,
"rev", "operation", "collection", "rkey", "record"?, "cid"?}}`` and sends
``{"$type": "error", "error", "message"}`` before closing. See docs/ingest.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any, Final

import orjson

from models.tagging import TermMatcher
from models.text import fold

# --- fixed label sets (metric labels: never extend them with data) -------------------------

KINDS: Final = ("post", "reply", "quote", "repost", "like", "delete", "identity", "account",
                "other")
FILTER_REASONS: Final = (
    "duplicate",    # replayed after a reconnect/restart: already produced
    "control",      # identity/account/sync/info/error frames: not posts
    "delete",       # a delete that is not emitted (no --deletes, or not a post we produced)
    "unsupported",  # another collection or operation, a non-public or unknown event
    "language",     # post languages outside the wanted ones
    "keyword",      # has text, matches no keyword
    "account",      # only accounts wanted, not one of them
    "unrelated",    # like/repost of a post that is neither matched nor by a watched account
)
MALFORMED_REASONS: Final = ("invalid_utf8", "not_json", "not_object", "unknown_envelope",
                            "missing_field", "wrong_type", "decompress_failed", "too_large")

POST = "app.bsky.feed.post"
REPOST = "app.bsky.feed.repost"
LIKE = "app.bsky.feed.like"
BLUESKY_COLLECTIONS: Final = (POST, REPOST, LIKE)
V2_TYPE_PREFIX: Final = "network.bsky.jetstream.subscribeEvents#"
_EMBED_RECORD = "app.bsky.embed.record"
_EMBED_RECORD_WITH_MEDIA = "app.bsky.embed.recordWithMedia"
_FUTURE_SKEW_US = 10 * 60 * 1_000_000  # a createdAt later than this past the event time is a lie
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class FrameReject:
    """A malformed frame: ``reason`` is one of :data:`MALFORMED_REASONS`."""

    reason: str
    detail: str


@dataclass(slots=True)
class Mapped:
    """One well-formed frame, mapped.

    ``post`` is the canonical record to produce (None: nothing to produce, ``control`` says
    why). ``time_us`` is the event time used for the cursor and the lag (Jetstream: when the
    server saw it; Mastodon: the status time), ``seq`` the Jetstream v2 sequence number.
    """

    kind: str
    time_us: int | None = None
    seq: int | None = None
    post: dict[str, Any] | None = None
    key: str | None = None  # de-duplication key of this event (id + revision)
    control: str | None = None  # identity/account/sync/info/error/unsupported
    detail: str | None = None  # error frames: the server's message
    author: str | None = None  # did (Bluesky) or qualified acct (Mastodon)
    refs: tuple[str, ...] = ()  # ids this event points at (reply parent/root, quote, subject)
    ref_authors: tuple[str, ...] = ()  # authors of those (did from an at-uri, acct)
    match_text: str | None = None  # text keywords are matched on; None: no text (like/repost)
    langs: tuple[str, ...] = ()
    handle: str | None = None  # identity events: the did's (new) handle
    local_id: str | None = None  # Mastodon: the status id on this instance
    local_ids: tuple[tuple[str, str], ...] = ()  # Mastodon: (local id, uri) pairs to remember


# --- time ------------------------------------------------------------------------------------


def iso_from_us(time_us: int) -> str:
    """ISO 8601 UTC with Z (milliseconds when not whole seconds)."""
    dt = _EPOCH + timedelta(microseconds=time_us)
    return _format(dt)


def _format(dt: datetime) -> str:
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{dt.microsecond // 1000:03d}Z" if dt.microsecond else base + "Z"


def parse_time_us(value: Any) -> int | None:
    """Unix microseconds of an ISO 8601 time (naive = UTC); None when unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return (dt - _EPOCH) // _US
    except OverflowError:  # pragma: no cover - datetime arithmetic stays in range
        return None


def normalize_created_at(value: Any, fallback_us: int | None) -> tuple[str | None, str | None]:
    """(created_at as ISO 8601 UTC with Z, the original when it was replaced).

    Falls back to ``fallback_us`` (the event time) when ``value`` is unreadable or more than
    ten minutes after the event time (client clocks and forged dates)."""
    us = parse_time_us(value)
    if us is not None and (fallback_us is None or us <= fallback_us + _FUTURE_SKEW_US):
        try:
            return _format(_EPOCH + timedelta(microseconds=us)), None
        except OverflowError:
            pass
    if fallback_us is None:
        return None, value if isinstance(value, str) else None
    return iso_from_us(fallback_us), value if isinstance(value, str) else None


# --- small helpers ---------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _lang(code: Any) -> str | None:
    """'nl', 'en-US' -> 'nl', 'en'; other values -> None."""
    if not isinstance(code, str) or not code:
        return None
    primary = code.split("-", 1)[0].strip().lower()
    return primary if primary.isalpha() and 2 <= len(primary) <= 3 else None


def did_of(uri: str) -> str | None:
    """The repo did of ``at://did/collection/rkey``."""
    if not uri.startswith("at://"):
        return None
    did = uri[5:].split("/", 1)[0]
    return did if did.startswith("did:") else None


def _strong_ref_uri(value: Any) -> str | None:
    if isinstance(value, dict):
        uri = value.get("uri")
        if isinstance(uri, str) and uri:
            return uri
    return None


# --- Jetstream -------------------------------------------------------------------------------


def loads_frame(raw: bytes | str) -> Any | FrameReject:
    """Parse one frame's JSON (orjson); a :class:`FrameReject` when it is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if isinstance(raw, bytes | bytearray | memoryview):
            try:
                bytes(raw).decode("utf-8")
            except UnicodeDecodeError as uexc:
                return FrameReject("invalid_utf8", f"invalid UTF-8 at byte {uexc.start}")
        return FrameReject("not_json", _short(str(exc)))


def map_jetstream_frame(raw: bytes | str, handles: Mapping[str, str] | None = None
                        ) -> Mapped | FrameReject:
    """Parse and map one Jetstream text frame (v1 or v2 envelope)."""
    obj = loads_frame(raw)
    if isinstance(obj, FrameReject):
        return obj
    return map_jetstream(obj, handles)


def map_jetstream(obj: Any, handles: Mapping[str, str] | None = None) -> Mapped | FrameReject:
    """Map one parsed Jetstream frame. ``handles``: did -> handle (learnt from identity
    events) to fill ``author.handle``."""
    if not isinstance(obj, dict):
        return FrameReject("not_object", f"expected a JSON object, got {type(obj).__name__}")
    envelope = obj.get("$type")
    if envelope is None:
        return _map_v1(obj, handles)
    if envelope in ("message", "event"):  # "event": the wording of the framing proposal draft
        payload = obj.get("payload")
        if not isinstance(payload, dict):
            return FrameReject("missing_field" if payload is None else "wrong_type",
                               "v2 frame: 'payload' must be an object")
        return _map_v2(payload, handles)
    if envelope == "error":
        error = obj.get("error")
        message = obj.get("message")
        return Mapped(kind="other", control="error",
                      detail=f"{error}: {message}" if message else str(error))
    return FrameReject("unknown_envelope", _short(f"unknown frame $type {envelope!r}"))


def _map_v1(obj: dict[str, Any], handles: Mapping[str, str] | None) -> Mapped | FrameReject:
    did = obj.get("did")
    time_us = obj.get("time_us")
    kind = obj.get("kind")
    if did is None or time_us is None or kind is None:
        missing = [n for n, v in (("did", did), ("time_us", time_us), ("kind", kind)) if v is None]
        return FrameReject("missing_field", f"v1 frame: missing {', '.join(missing)}")
    if not isinstance(did, str) or not did.startswith("did:"):
        return FrameReject("wrong_type", "v1 frame: 'did' must be a did string")
    if not _is_int(time_us) or time_us <= 0:
        return FrameReject("wrong_type", "v1 frame: 'time_us' must be a positive integer")
    if kind == "commit":
        commit = obj.get("commit")
        if not isinstance(commit, dict):
            return FrameReject("missing_field" if commit is None else "wrong_type",
                               "v1 commit: 'commit' must be an object")
        return _map_commit(did, time_us, None, commit, handles)
    if kind == "identity":
        identity = obj.get("identity")
        handle = identity.get("handle") if isinstance(identity, dict) else None
        return Mapped(kind="identity", time_us=time_us, control="identity", author=did,
                      handle=handle if isinstance(handle, str) and handle else None,
                      key=f"identity:{did}@{time_us}")
    if kind == "account":
        return Mapped(kind="account", time_us=time_us, control="account", author=did,
                      key=f"account:{did}@{time_us}")
    return Mapped(kind="other", time_us=time_us, control="unsupported", author=did)


def _map_v2(payload: dict[str, Any], handles: Mapping[str, str] | None) -> Mapped | FrameReject:
    ptype = payload.get("$type")
    if not isinstance(ptype, str):
        return FrameReject("missing_field", "v2 payload: missing '$type'")
    if not ptype.startswith(V2_TYPE_PREFIX):
        return Mapped(kind="other", control="unsupported")  # forward compatible: skip
    fragment = ptype[len(V2_TYPE_PREFIX):]
    if fragment == "info":
        name = payload.get("name")
        message = payload.get("message")
        return Mapped(kind="other", control="info",
                      detail=f"{name}: {message}" if message else str(name))
    seq = payload.get("seq")
    did = payload.get("did")
    if seq is None or did is None or payload.get("time") is None:
        missing = [n for n in ("seq", "did", "time") if payload.get(n) is None]
        return FrameReject("missing_field", f"v2 {fragment}: missing {', '.join(missing)}")
    if not _is_int(seq) or seq <= 0:
        return FrameReject("wrong_type", f"v2 {fragment}: 'seq' must be a positive integer")
    if not isinstance(did, str) or not did.startswith("did:"):
        return FrameReject("wrong_type", f"v2 {fragment}: 'did' must be a did string")
    # witnessedAt is the portable resume position; 'time' may be an imported display time
    time_us = parse_time_us(payload.get("witnessedAt")) or parse_time_us(payload.get("time"))
    if time_us is None:
        return FrameReject("wrong_type", f"v2 {fragment}: unreadable 'time'")
    if fragment == "commit":
        return _map_commit(did, time_us, seq, payload, handles)
    if fragment == "identity":
        identity = payload.get("identity")
        handle = identity.get("handle") if isinstance(identity, dict) else None
        return Mapped(kind="identity", time_us=time_us, seq=seq, control="identity", author=did,
                      handle=handle if isinstance(handle, str) and handle else None,
                      key=f"identity:{did}@{seq}")
    if fragment == "account":
        return Mapped(kind="account", time_us=time_us, seq=seq, control="account", author=did,
                      key=f"account:{did}@{seq}")
    return Mapped(kind="other", time_us=time_us, seq=seq, control="sync" if fragment == "sync"
                  else "unsupported", author=did)


def _map_commit(did: str, time_us: int, seq: int | None, commit: dict[str, Any],
                handles: Mapping[str, str] | None) -> Mapped | FrameReject:
    operation = commit.get("operation")
    collection = commit.get("collection")
    rkey = commit.get("rkey")
    if operation is None or collection is None or rkey is None:
        missing = [n for n, v in (("operation", operation), ("collection", collection),
                                  ("rkey", rkey)) if v is None]
        return FrameReject("missing_field", f"commit: missing {', '.join(missing)}")
    if not (isinstance(operation, str) and isinstance(collection, str) and isinstance(rkey, str)
            and rkey):
        return FrameReject("wrong_type", "commit: operation, collection and rkey must be strings")
    uri = f"at://{did}/{collection}/{rkey}"
    rev = commit.get("rev")
    key = f"{uri}@{rev}" if isinstance(rev, str) and rev else f"{uri}@{operation}:{time_us}"
    if collection not in BLUESKY_COLLECTIONS:
        return Mapped(kind="other", time_us=time_us, seq=seq, key=key, author=did,
                      control="unsupported")
    if operation == "delete":
        return Mapped(kind="delete", time_us=time_us, seq=seq, key=key, author=did, refs=(uri,),
                      post=_tombstone(uri, "bluesky", did, iso_from_us(time_us), handles))
    if operation not in ("create", "update"):
        return Mapped(kind="other", time_us=time_us, seq=seq, key=key, author=did,
                      control="unsupported")
    record = commit.get("record")
    if not isinstance(record, dict):
        return FrameReject("missing_field" if record is None else "wrong_type",
                           f"commit {operation} {collection}: 'record' must be an object")
    created_at, claimed = normalize_created_at(record.get("createdAt"), time_us)
    author: dict[str, Any] = {"id": did}
    handle = handles.get(did) if handles is not None else None
    if handle:
        author["handle"] = handle
    post: dict[str, Any] = {"id": uri, "platform": "bluesky", "text": "",
                            "created_at": created_at, "author": author,
                            "observed_at": iso_from_us(time_us)}
    if claimed is not None:
        post["claimed_created_at"] = claimed
    if operation == "update":
        post["operation"] = "update"
    if collection == POST:
        return _map_post(record, post, did, time_us, seq, key)
    subject = _strong_ref_uri(record.get("subject"))
    if subject is None:
        return FrameReject("missing_field", f"{collection}: 'subject.uri' is required")
    subject_did = did_of(subject)
    if collection == REPOST:
        kind = "repost"
        post["repost_of"] = subject
    else:
        kind = "like"
        post["like_of"] = subject
    post["kind"] = kind
    return Mapped(kind=kind, time_us=time_us, seq=seq, post=post, key=key, author=did,
                  refs=(subject,), ref_authors=(subject_did,) if subject_did else ())


def _map_post(record: dict[str, Any], post: dict[str, Any], did: str, time_us: int,
              seq: int | None, key: str) -> Mapped | FrameReject:
    text = record.get("text")
    if text is None:
        return FrameReject("missing_field", "post: 'text' is required")
    if not isinstance(text, str):
        return FrameReject("wrong_type", "post: 'text' must be a string")
    post["text"] = text
    langs_raw = record.get("langs")
    langs: tuple[str, ...] = ()
    if isinstance(langs_raw, list):
        langs = tuple(c for c in (_lang(v) for v in langs_raw) if c)
        if langs:
            post["lang"] = langs[0]
    refs: list[str] = []
    kind = "post"
    reply = record.get("reply")
    if isinstance(reply, dict):
        parent = _strong_ref_uri(reply.get("parent"))
        if parent is not None:
            post["reply_to"] = parent
            refs.append(parent)
            kind = "reply"
            root = _strong_ref_uri(reply.get("root"))
            if root is not None and root != parent:
                post["reply_root"] = root
                refs.append(root)
    embed = record.get("embed")
    if isinstance(embed, dict):
        etype = embed.get("$type")
        quoted = None
        if etype == _EMBED_RECORD:
            quoted = _strong_ref_uri(embed.get("record"))
        elif etype == _EMBED_RECORD_WITH_MEDIA:
            inner = embed.get("record")
            quoted = _strong_ref_uri(inner.get("record")) if isinstance(inner, dict) else None
        if quoted is not None:
            post["quote_of"] = quoted
            refs.append(quoted)
            if kind == "post":
                kind = "quote"
    tags = record.get("tags")  # "outline" hashtags, not part of the text
    match_text = text
    if isinstance(tags, list):
        clean = [t.lstrip("#") for t in tags if isinstance(t, str) and t.strip("# ")]
        if clean:
            post["tags"] = clean
            match_text = text + " " + " ".join("#" + t for t in clean)
    post["kind"] = kind
    ref_authors = tuple(d for d in (did_of(r) for r in refs) if d)
    return Mapped(kind=kind, time_us=time_us, seq=seq, post=post, key=key, author=did,
                  refs=tuple(refs), ref_authors=ref_authors, match_text=match_text, langs=langs)


def _tombstone(uri: str, platform: str, author_id: str | None, when: str | None,
               handles: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The canonical record of a deletion: its own id (``<uri>#delete``), ``delete_of``."""
    out: dict[str, Any] = {"id": f"{uri}#delete", "platform": platform, "text": "",
                           "kind": "delete", "delete_of": uri}
    if when is not None:
        out["created_at"] = when
    if author_id is not None:
        author: dict[str, Any] = {"id": author_id}
        handle = handles.get(author_id) if handles is not None else None
        if handle:
            author["handle"] = handle
        out["author"] = author
    return out


# --- Mastodon --------------------------------------------------------------------------------


class _TextExtractor(HTMLParser):
    """Mastodon status HTML -> plain text: paragraphs as blank lines, <br> as newlines."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.parts.append("\n")
        elif tag in ("p", "blockquote", "li", "pre", "ul", "ol") and self.parts:
            self.parts.append("\n\n")
        if tag == "pre":
            self.pre += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre" and self.pre:
            self.pre -= 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_data(self, data: str) -> None:
        # as a browser renders it: source line breaks are spaces (except in <pre>)
        self.parts.append(data if self.pre else _WHITESPACE.sub(" ", data))


_BLANKS = re.compile(r"\n{3,}")
_WHITESPACE = re.compile(r"[ \t\r\n\f]+")
_LINE_SPACE = re.compile(r"[ \t]*\n[ \t]*")


def html_to_text(html: str) -> str:
    """Plain text of a status' HTML ``content``: tags removed, entities decoded, ``<br>`` ->
    newline, paragraphs separated by a blank line."""
    if "<" not in html and "&" not in html:
        return html.strip()
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts).replace("\xa0", " ")
    text = _LINE_SPACE.sub("\n", text)
    return _BLANKS.sub("\n\n", text).strip()


def qualified_acct(acct: str, host: str) -> str:
    """``user`` (local to ``host``) -> ``user@host``; ``user@other`` unchanged. Lower case."""
    acct = acct.lstrip("@").lower()
    return acct if "@" in acct else f"{acct}@{host.lower()}"


def map_mastodon(event: str, data: str, *, host: str, uris: Mapping[str, str] | None = None,
                 instance: str | None = None) -> Mapped | FrameReject:
    """Map one Mastodon streaming event (SSE ``event`` name and ``data``).

    ``host`` qualifies local accounts; ``uris`` maps status ids on this instance to their
    uris (statuses seen before) for replies and deletes; ``instance`` (base URL) builds a
    fallback reply id ``<instance>/api/v1/statuses/<id>`` for parents not seen."""
    if event in ("update", "status.update"):
        obj = loads_frame(data)
        if isinstance(obj, FrameReject):
            return obj
        return map_mastodon_status(obj, host=host, uris=uris, instance=instance,
                                   edited=event == "status.update")
    if event == "delete":
        local_id = data.strip().strip('"')
        if not local_id:
            return FrameReject("missing_field", "delete: empty status id")
        uri = uris.get(local_id) if uris is not None else None
        return Mapped(kind="delete", key=f"delete:{local_id}", local_id=local_id,
                      refs=(uri,) if uri else (),
                      post=_tombstone(uri, "mastodon", None, None) if uri else None)
    return Mapped(kind="other", control="unsupported", detail=event)


def map_mastodon_status(status: Any, *, host: str, uris: Mapping[str, str] | None = None,
                        instance: str | None = None, edited: bool = False
                        ) -> Mapped | FrameReject:
    """A Mastodon status entity -> canonical post (id = the status' ActivityPub ``uri``)."""
    if not isinstance(status, dict):
        return FrameReject("not_object", f"status: expected an object, got {type(status).__name__}")
    checked = _check_status(status)
    if checked is not None:
        return checked
    uri: str = status["uri"]
    local_id = str(status["id"])
    account: dict[str, Any] = status["account"]
    acct = qualified_acct(account["acct"], host)
    time_us = parse_time_us(status.get("created_at"))
    created_at, claimed = normalize_created_at(status.get("created_at"), None)
    author: dict[str, Any] = {"id": account.get("uri") or account.get("url") or acct,
                              "handle": acct}
    followers = account.get("followers_count")
    if isinstance(followers, int) and not isinstance(followers, bool) and followers >= 0:
        author["followers"] = followers
    post: dict[str, Any] = {"id": uri, "platform": "mastodon", "text": "", "author": author}
    if created_at is not None:
        post["created_at"] = created_at
    if claimed is not None:
        post["claimed_created_at"] = claimed
    if account.get("bot") is True:
        post["author_bot"] = True
    if isinstance(status.get("url"), str):
        post["url"] = status["url"]
    if edited:
        post["operation"] = "update"
    known: list[tuple[str, str]] = [(local_id, uri)]
    refs: list[str] = []
    ref_authors: list[str] = []
    reblog = status.get("reblog")
    if isinstance(reblog, dict):
        bad = _check_status(reblog)
        if bad is not None:
            return FrameReject(bad.reason, "reblog: " + bad.detail)
        subject: str = reblog["uri"]
        post["repost_of"] = subject
        post["kind"] = "repost"
        refs.append(subject)
        ref_authors.append(qualified_acct(reblog["account"]["acct"], host))
        known.append((str(reblog["id"]), subject))
        # a reblog's own content is empty: keywords and languages are those of the subject
        match_text = _match_text(reblog)
        lang = _lang(reblog.get("language"))
        return Mapped(kind="repost", time_us=time_us, post=post, key=_status_key(status),
                      author=acct, refs=tuple(refs), ref_authors=tuple(ref_authors),
                      match_text=match_text, langs=(lang,) if lang else (), local_id=local_id,
                      local_ids=tuple(known))
    post["text"] = html_to_text(status["content"])
    spoiler = status.get("spoiler_text")
    if isinstance(spoiler, str) and spoiler.strip():
        post["spoiler_text"] = spoiler
    lang = _lang(status.get("language"))
    if lang:
        post["lang"] = lang
    kind = "post"
    parent = status.get("in_reply_to_id")
    if isinstance(parent, str | int) and not isinstance(parent, bool) and str(parent):
        parent_id = str(parent)
        parent_uri = uris.get(parent_id) if uris is not None else None
        if parent_uri is None and instance:
            parent_uri = f"{instance.rstrip('/')}/api/v1/statuses/{parent_id}"
        if parent_uri is not None:
            post["reply_to"] = parent_uri
            refs.append(parent_uri)
        post["reply_to_local_id"] = parent_id
        kind = "reply"
    quoted = _quoted_status(status)
    if quoted is not None:
        post["quote_of"] = quoted["uri"]
        refs.append(quoted["uri"])
        quoted_account = quoted.get("account")
        if isinstance(quoted_account, dict) and isinstance(quoted_account.get("acct"), str):
            ref_authors.append(qualified_acct(quoted_account["acct"], host))
        if isinstance(quoted.get("id"), str | int):
            known.append((str(quoted["id"]), quoted["uri"]))
        if kind == "post":
            kind = "quote"
    tags = status.get("tags")
    if isinstance(tags, list):
        names = [t["name"] for t in tags if isinstance(t, dict) and isinstance(t.get("name"), str)]
        if names:
            post["tags"] = names
    post["kind"] = kind
    return Mapped(kind=kind, time_us=time_us, post=post, key=_status_key(status), author=acct,
                  refs=tuple(refs), ref_authors=tuple(ref_authors),
                  match_text=_match_text(status), langs=(lang,) if lang else (),
                  local_id=local_id, local_ids=tuple(known))


def _check_status(status: dict[str, Any]) -> FrameReject | None:
    for name in ("id", "uri", "account", "content"):
        if status.get(name) is None:
            return FrameReject("missing_field", f"status: missing '{name}'")
    if not isinstance(status["uri"], str) or not status["uri"]:
        return FrameReject("wrong_type", "status: 'uri' must be a non-empty string")
    if not isinstance(status["id"], str | int) or isinstance(status["id"], bool):
        return FrameReject("wrong_type", "status: 'id' must be a string")
    if not isinstance(status["content"], str):
        return FrameReject("wrong_type", "status: 'content' must be a string")
    account = status["account"]
    if not isinstance(account, dict) or not isinstance(account.get("acct"), str) \
            or not account["acct"]:
        return FrameReject("wrong_type", "status: 'account.acct' must be a non-empty string")
    return None


def _quoted_status(status: dict[str, Any]) -> dict[str, Any] | None:
    """Mastodon 4.5 quotes: ``quote: {state, quoted_status}``."""
    quote = status.get("quote")
    if isinstance(quote, dict):
        quoted = quote.get("quoted_status")
        if isinstance(quoted, dict) and isinstance(quoted.get("uri"), str) and quoted["uri"]:
            return quoted
    return None


def _match_text(status: dict[str, Any]) -> str:
    text = html_to_text(status["content"]) if isinstance(status.get("content"), str) else ""
    spoiler = status.get("spoiler_text")
    if isinstance(spoiler, str) and spoiler:
        text = spoiler + "\n" + text
    tags = status.get("tags")
    if isinstance(tags, list):
        names = [t["name"] for t in tags if isinstance(t, dict) and isinstance(t.get("name"), str)]
        if names:
            text += " " + " ".join("#" + n for n in names)
    return text


def _status_key(status: dict[str, Any]) -> str:
    edited = status.get("edited_at")
    return f"{status['uri']}@{edited}" if isinstance(edited, str) and edited else status["uri"]


# --- filtering -------------------------------------------------------------------------------


class RecentIds:
    """A bounded set that forgets its oldest members first (insertion order)."""

    def __init__(self, maxlen: int, items: Iterable[str] = ()) -> None:
        self.maxlen = maxlen
        self._items: dict[str, None] = {}
        for item in items:
            self.add(item)

    def add(self, item: str) -> None:
        items = self._items
        if item in items:
            return
        items[item] = None
        if len(items) > self.maxlen:
            del items[next(iter(items))]

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __len__(self) -> int:
        return len(self._items)


class BoundedMap(dict[str, str]):
    """A dict that forgets its oldest keys beyond ``maxlen`` (did -> handle, id -> uri)."""

    def __init__(self, maxlen: int) -> None:
        super().__init__()
        self.maxlen = maxlen

    def put(self, key: str, value: str) -> None:
        if key in self:
            del self[key]  # re-insert: most recent last
        self[key] = value
        if len(self) > self.maxlen:
            del self[next(iter(self))]


class ContentFilter:
    """Which mapped events to produce.

    No criteria: everything. Otherwise an event passes when its author is a watched account,
    when it points at (replies to, quotes, reposts, likes, deletes) a post this connector
    produced or a post by a watched account, or — for events with text — when its languages
    (if known) are wanted and its text matches a keyword (if keywords are given).
    Keywords match case- and accent-insensitively on word boundaries like the event file's
    topic terms (``#tag`` only the hashtag, ``tag`` the word and the hashtag).
    """

    def __init__(self, keywords: Iterable[str] = (), languages: Iterable[str] = (),
                 accounts: Iterable[str] = ()) -> None:
        kw = [k for k in keywords if k.strip().lstrip("#@")]
        self.keywords = TermMatcher((k, "keyword") for k in kw)
        self.languages = frozenset(c for c in (_lang(x) for x in languages) if c)
        self.accounts = frozenset(a.strip().lstrip("@").lower() for a in accounts if a.strip())
        self.passthrough = self.keywords.empty and not self.languages and not self.accounts

    def with_accounts(self, accounts: Iterable[str]) -> ContentFilter:
        """A copy that also watches ``accounts`` (e.g. dids resolved from handles)."""
        out = ContentFilter.__new__(ContentFilter)
        out.keywords = self.keywords
        out.languages = self.languages
        out.accounts = self.accounts | {a.strip().lstrip("@").lower() for a in accounts
                                        if a.strip()}
        out.passthrough = out.keywords.empty and not out.languages and not out.accounts
        return out

    def watched(self, author: str | None, handles: Mapping[str, str] | None = None) -> bool:
        if author is None or not self.accounts:
            return False
        if author.lower() in self.accounts:
            return True
        handle = handles.get(author) if handles is not None else None
        return handle is not None and handle.lower() in self.accounts

    def reason(self, m: Mapped, produced: RecentIds | None = None,
               handles: Mapping[str, str] | None = None) -> str | None:
        """None to produce ``m``, else the filter reason (one of :data:`FILTER_REASONS`)."""
        if self.passthrough:
            return None
        if self.watched(m.author, handles):
            return None
        if produced is not None and any(r in produced for r in m.refs):
            return None
        if any(self.watched(a, handles) for a in m.ref_authors):
            return None
        if m.match_text is None:
            return "unrelated"
        if self.languages and m.langs and not any(c in self.languages for c in m.langs):
            return "language"
        if not self.keywords.empty:
            return None if self.keywords.find(fold(m.match_text)) else "keyword"
        if self.accounts:
            return "account"
        return None


def _short(message: str, limit: int = 200) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"
