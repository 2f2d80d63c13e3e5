"""The canonical post format and its validation.

The wire format of topic ``posts.raw`` and of ``*.posts.jsonl`` files is one JSON
object per post (see README "Canonical post format"). :func:`decode_post` turns the
raw bytes of one record into a :class:`Post` or a :class:`Reject` with a reason —
never an exception — so that every input is accounted for.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class RejectReason(StrEnum):
    """Why a record was dead-lettered. Values are stable: they are metric labels."""

    INVALID_UTF8 = "invalid_utf8"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    MISSING_ID = "missing_id"
    MISSING_TEXT = "missing_text"
    WRONG_TYPE = "wrong_type"
    TEXT_TOO_LONG = "text_too_long"
    EMPTY_ID = "empty_id"


@dataclass(frozen=True, slots=True)
class Author:
    id: str | None = None
    handle: str | None = None
    followers: int | None = None
    verified: bool | None = None


@dataclass(frozen=True, slots=True)
class GeoPoint:
    lon: float
    lat: float


@dataclass(frozen=True, slots=True)
class Post:
    id: str
    text: str
    platform: str | None = None
    created_at: str | None = None
    lang: str | None = None
    author: Author | None = None
    reply_to: str | None = None
    repost_of: str | None = None
    quote_of: str | None = None
    geo: GeoPoint | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The canonical JSON object of this post (unknown extra fields kept)."""
        out: dict[str, Any] = dict(self.extra)
        out["id"] = self.id
        out["text"] = self.text
        for name in ("platform", "created_at", "lang", "reply_to", "repost_of", "quote_of"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.author is not None:
            out["author"] = {
                k: v
                for k, v in (
                    ("id", self.author.id),
                    ("handle", self.author.handle),
                    ("followers", self.author.followers),
                    ("verified", self.author.verified),
                )
                if v is not None
            }
        if self.geo is not None:
            out["geo"] = {"lat": self.geo.lat, "lon": self.geo.lon}
        return out


@dataclass(frozen=True, slots=True)
class Reject:
    reason: RejectReason
    detail: str

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.detail}"


_KNOWN = frozenset(
    ("id", "text", "platform", "created_at", "lang", "author", "reply_to", "repost_of",
     "quote_of", "geo")
)
#: above any real audience; bigger JSON integers (10**400) overflow float maths downstream
MAX_FOLLOWERS = 10**15
_OPTIONAL_STR = ("platform", "created_at", "lang", "reply_to", "repost_of", "quote_of")


def _reject_constant(name: str) -> float:
    raise ValueError(f"non-standard JSON constant {name}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_geo(value: Any) -> GeoPoint | str:
    """Accept ``{"lat": .., "lon": ..}`` or a GeoJSON Point; return an error text otherwise."""
    lon: Any
    lat: Any
    if isinstance(value, dict) and value.get("type") == "Point":
        coords = value.get("coordinates")
        if not (isinstance(coords, list) and len(coords) >= 2):
            return "geo: GeoJSON Point needs coordinates [lon, lat]"
        lon, lat = coords[0], coords[1]
    elif isinstance(value, dict) and "lat" in value and "lon" in value:
        lon, lat = value["lon"], value["lat"]
    else:
        return "geo: expected {\"lat\", \"lon\"} or a GeoJSON Point"
    if isinstance(lon, bool) or isinstance(lat, bool) or not isinstance(lon, int | float) \
            or not isinstance(lat, int | float):
        return "geo: lat/lon must be numbers"
    # range first: math.isfinite(10**400) raises OverflowError (huge JSON integers are ints)
    if not (-180 <= lon <= 180 and -90 <= lat <= 90 and math.isfinite(lon)
            and math.isfinite(lat)):
        return "geo: lat/lon out of range"
    return GeoPoint(lon=float(lon), lat=float(lat))


def validate_post(obj: Any, *, max_text_chars: int) -> Post | Reject:
    """Validate an already-parsed JSON value as a canonical post."""
    if not isinstance(obj, dict):
        return Reject(RejectReason.NOT_OBJECT, f"expected a JSON object, got {type(obj).__name__}")
    if "id" not in obj or obj["id"] is None:
        return Reject(RejectReason.MISSING_ID, "field 'id' is required")
    post_id = obj["id"]
    if _is_int(post_id):  # some exports write numeric ids; they are unambiguous
        post_id = str(post_id)
    if not isinstance(post_id, str):
        return Reject(RejectReason.WRONG_TYPE,
                      f"'id' must be a string, got {type(post_id).__name__}")
    if not post_id.strip():
        return Reject(RejectReason.EMPTY_ID, "'id' is empty")
    if "text" not in obj or obj["text"] is None:
        return Reject(RejectReason.MISSING_TEXT, "field 'text' is required")
    text = obj["text"]
    if not isinstance(text, str):
        return Reject(RejectReason.WRONG_TYPE,
                      f"'text' must be a string, got {type(text).__name__}")
    if len(text) > max_text_chars:
        return Reject(
            RejectReason.TEXT_TOO_LONG, f"'text' has {len(text)} characters, limit {max_text_chars}"
        )
    values: dict[str, Any] = {}
    for name in _OPTIONAL_STR:
        value = obj.get(name)
        if value is None:
            continue
        if _is_int(value) and name in ("reply_to", "repost_of", "quote_of"):
            value = str(value)
        if not isinstance(value, str):
            return Reject(
                RejectReason.WRONG_TYPE, f"'{name}' must be a string, got {type(value).__name__}"
            )
        values[name] = value
    author = None
    raw_author = obj.get("author")
    if raw_author is not None:
        if not isinstance(raw_author, dict):
            return Reject(RejectReason.WRONG_TYPE, "'author' must be an object")
        a_id = raw_author.get("id")
        if _is_int(a_id):
            a_id = str(a_id)
        handle = raw_author.get("handle")
        followers = raw_author.get("followers")
        verified = raw_author.get("verified")
        if a_id is not None and not isinstance(a_id, str):
            return Reject(RejectReason.WRONG_TYPE, "'author.id' must be a string")
        if handle is not None and not isinstance(handle, str):
            return Reject(RejectReason.WRONG_TYPE, "'author.handle' must be a string")
        if followers is not None and not (_is_int(followers)
                                          and 0 <= followers <= MAX_FOLLOWERS):
            return Reject(RejectReason.WRONG_TYPE,
                          f"'author.followers' must be an int in [0, {MAX_FOLLOWERS:.0e}]")
        if verified is not None and not isinstance(verified, bool):
            return Reject(RejectReason.WRONG_TYPE, "'author.verified' must be a boolean")
        author = Author(id=a_id, handle=handle, followers=followers, verified=verified)
    geo = None
    if obj.get("geo") is not None:
        parsed = _parse_geo(obj["geo"])
        if isinstance(parsed, str):
            return Reject(RejectReason.WRONG_TYPE, parsed)
        geo = parsed
    extra = {k: v for k, v in obj.items() if k not in _KNOWN}
    return Post(id=post_id, text=text, author=author, geo=geo, extra=extra, **values)


def decode_post(raw: bytes | bytearray | memoryview | None, *,
                max_text_chars: int) -> Post | Reject:
    """Decode one wire record (UTF-8 JSON object) into a :class:`Post` or a :class:`Reject`."""
    if raw is None:
        return Reject(RejectReason.NOT_JSON, "empty record (no value)")
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        return Reject(RejectReason.INVALID_UTF8, f"invalid UTF-8 at byte {exc.start}")
    return _decode(text, max_text_chars=max_text_chars)


def decode_post_text(text: str, *, max_text_chars: int) -> Post | Reject:
    """Like :func:`decode_post` for an already-decoded line of text."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # e.g. read with errors="surrogateescape"
        return Reject(RejectReason.INVALID_UTF8, f"not encodable as UTF-8 at character {exc.start}")
    return _decode(text, max_text_chars=max_text_chars)


def _decode(text: str, *, max_text_chars: int) -> Post | Reject:
    """Parse and validate a line known to be valid Unicode text."""
    if not text.strip():
        return Reject(RejectReason.NOT_JSON, "empty line")
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        return Reject(RejectReason.NOT_JSON, _short(str(exc)))
    if "\\u" in text:
        # "\ud800" is a valid JSON escape but a lone surrogate is not encodable text
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return Reject(RejectReason.INVALID_UTF8, "a string contains a lone surrogate escape")
    return validate_post(obj, max_text_chars=max_text_chars)


def _short(message: str, limit: int = 200) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"
