"""Tests of the canonical post format and its validation (models/post.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import jsonio
from models.post import (
    Author,
    GeoPoint,
    Post,
    Reject,
    RejectReason,
    decode_post,
    decode_post_text,
    validate_post,
)

LIMIT = 280


def _decode(raw: bytes | None, limit: int = LIMIT) -> Post | Reject:
    return decode_post(raw, max_text_chars=limit)


def _obj(**fields: Any) -> bytes:
    base: dict[str, Any] = {"id": "1", "text": "hallo"}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not _DROP}).encode()


_DROP = object()


def _assert_reject(result: Post | Reject, reason: RejectReason, *needles: str) -> Reject:
    assert isinstance(result, Reject), f"expected a Reject({reason}), got {result!r}"
    assert result.reason is reason, str(result)
    assert result.detail.strip(), "a reject needs a readable detail"
    assert "\n" not in result.detail
    assert len(result.detail) <= 200
    for needle in needles:
        assert needle in result.detail, f"{needle!r} not in {result.detail!r}"
    return result


# --------------------------------------------------------------------------- reasons


def test_reject_reason_values_are_stable_metric_labels() -> None:
    assert {r.value for r in RejectReason} == {
        "invalid_utf8", "not_json", "not_object", "missing_id", "missing_text",
        "wrong_type", "text_too_long", "empty_id",
    }


def test_reject_str_has_reason_and_detail() -> None:
    assert str(Reject(RejectReason.MISSING_ID, "field 'id' is required")) == (
        "missing_id: field 'id' is required"
    )


# --------------------------------------------------------------------------- not JSON


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"not json", ""),
        (b"{", ""),
        (b'{"id": "1", "text": "a"', ""),
        (b'{"id": "1", "text": "a"} trailing', "Extra data"),
        (b"{'id': '1', 'text': 'a'}", ""),
        (b"", "empty"),
        (b"   \n\t ", "empty"),
        (b"\xef\xbb\xbf{}", "BOM"),
    ],
    ids=["garbage", "open-brace", "truncated", "trailing-data", "single-quotes", "empty",
         "blank", "bom"],
)
def test_not_json(raw: bytes, needle: str) -> None:
    _assert_reject(_decode(raw), RejectReason.NOT_JSON, needle)


def test_none_value_is_not_json() -> None:
    _assert_reject(_decode(None), RejectReason.NOT_JSON, "empty record")


@pytest.mark.parametrize(
    "literal", ["NaN", "Infinity", "-Infinity"],
)
def test_nan_and_infinity_literals_are_rejected(literal: str) -> None:
    for raw in (
        f'{{"id": "1", "text": "a", "score": {literal}}}',
        f'{{"id": "1", "text": "a", "geo": {{"lat": {literal}, "lon": 4.9}}}}',
    ):
        _assert_reject(_decode(raw.encode()), RejectReason.NOT_JSON, literal)


def test_deep_nesting_is_rejected_not_raised() -> None:
    raw = b'{"id": "1", "text": "a", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    _assert_reject(_decode(raw), RejectReason.NOT_JSON, "recursion")


def test_huge_integer_is_rejected_not_raised() -> None:
    raw = b'{"id": "1", "text": "a", "x": ' + b"9" * 5000 + b"}"
    _assert_reject(_decode(raw), RejectReason.NOT_JSON)


# --------------------------------------------------------------------------- not an object


@pytest.mark.parametrize(
    ("raw", "type_name"),
    [(b"[1, 2]", "list"), (b'"a string"', "str"), (b"42", "int"), (b"4.2", "float"),
     (b"null", "NoneType"), (b"true", "bool")],
)
def test_not_an_object(raw: bytes, type_name: str) -> None:
    _assert_reject(_decode(raw), RejectReason.NOT_OBJECT, "JSON object", type_name)


def test_validate_post_rejects_non_dict_directly() -> None:
    _assert_reject(validate_post(["id"], max_text_chars=LIMIT), RejectReason.NOT_OBJECT)


# --------------------------------------------------------------------------- id


def test_missing_id() -> None:
    _assert_reject(_decode(_obj(id=_DROP)), RejectReason.MISSING_ID, "'id'")


def test_null_id() -> None:
    _assert_reject(_decode(_obj(id=None)), RejectReason.MISSING_ID, "'id'")


@pytest.mark.parametrize("value", ["", " ", "\t\n"])
def test_empty_id(value: str) -> None:
    _assert_reject(_decode(_obj(id=value)), RejectReason.EMPTY_ID, "'id'")


@pytest.mark.parametrize(
    ("value", "type_name"),
    [(["1"], "list"), (1.0, "float"), (12.5, "float"), (True, "bool"), (False, "bool"),
     ({"id": "1"}, "dict")],
)
def test_id_of_wrong_type(value: Any, type_name: str) -> None:
    _assert_reject(_decode(_obj(id=value)), RejectReason.WRONG_TYPE, "'id'", type_name)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(123, "123"), (0, "0"), (1_234_567_890_123_456_789_012, "1234567890123456789012")],
)
def test_numeric_id_is_accepted_as_string(value: int, expected: str) -> None:
    post = _decode(_obj(id=value))
    assert isinstance(post, Post)
    assert post.id == expected
    assert post.to_dict()["id"] == expected


# --------------------------------------------------------------------------- text


def test_missing_text() -> None:
    _assert_reject(_decode(_obj(text=_DROP)), RejectReason.MISSING_TEXT, "'text'")


def test_null_text() -> None:
    _assert_reject(_decode(_obj(text=None)), RejectReason.MISSING_TEXT, "'text'")


@pytest.mark.parametrize(
    ("value", "type_name"),
    [(5, "int"), (["a"], "list"), ({"nl": "a"}, "dict"), (True, "bool"), (1.5, "float")],
)
def test_text_of_wrong_type(value: Any, type_name: str) -> None:
    _assert_reject(_decode(_obj(text=value)), RejectReason.WRONG_TYPE, "'text'", type_name)


def test_text_over_the_limit() -> None:
    _assert_reject(
        _decode(_obj(text="a" * (LIMIT + 1))), RejectReason.TEXT_TOO_LONG,
        str(LIMIT + 1), str(LIMIT),
    )


def test_text_at_the_limit_counts_characters_not_bytes() -> None:
    post = _decode(_obj(text="é" * LIMIT))  # 2 bytes each in UTF-8
    assert isinstance(post, Post)
    assert len(post.text) == LIMIT


def test_empty_text_is_a_post() -> None:  # reposts on bluesky/mastodon have no text
    post = _decode(_obj(text=""))
    assert isinstance(post, Post)
    assert post.text == ""


# --------------------------------------------------------------------------- encoding


@pytest.mark.parametrize(
    "raw",
    [b'{"id": "1", "text": "caf\xe9"}', b'{"id": "1", "text": "\xff\xfe"}',
     b'{"id": "1", "text": "\xc3"}', b'\xed\xa0\x80{"id": "1", "text": "a"}'],
    ids=["latin1", "ff-fe", "truncated-sequence", "encoded-surrogate"],
)
def test_invalid_utf8(raw: bytes) -> None:
    _assert_reject(_decode(raw), RejectReason.INVALID_UTF8, "byte")


def test_invalid_utf8_detail_gives_the_offset() -> None:
    raw = b'{"id": "1", "text": "caf\xe9"}'
    offset = raw.index(0xE9)
    _assert_reject(_decode(raw), RejectReason.INVALID_UTF8, f"byte {offset}")


@pytest.mark.parametrize(
    "raw",
    [
        r'{"id": "1", "text": "a\ud800b"}',
        r'{"id": "1", "text": "\udfff"}',
        r'{"id": "1", "text": "\ude00\ud83d"}',  # pair in the wrong order
        r'{"id": "1", "text": "a", "note": "\ud800"}',
        r'{"id": "1", "text": "a", "\udc00": 1}',
        r'{"id": "1", "text": "a", "author": {"handle": "\ud800"}}',
    ],
    ids=["text", "low", "swapped-pair", "extra-field", "key", "nested"],
)
def test_lone_surrogate_escape(raw: str) -> None:
    _assert_reject(_decode(raw.encode()), RejectReason.INVALID_UTF8, "surrogate")
    _assert_reject(decode_post_text(raw, max_text_chars=LIMIT), RejectReason.INVALID_UTF8)


def test_surrogate_pair_escape_is_fine() -> None:
    post = _decode(rb'{"id": "1", "text": "feest \ud83c\udf89 \u00e9"}')
    assert isinstance(post, Post)
    assert post.text == "feest 🎉 é"


def test_decode_post_text_rejects_a_raw_lone_surrogate() -> None:
    # a str can hold a lone surrogate (e.g. a file read with errors="surrogateescape");
    # such a post could never be written out as UTF-8
    result = decode_post_text('{"id": "1", "text": "a\ud800"}', max_text_chars=LIMIT)
    _assert_reject(result, RejectReason.INVALID_UTF8, "character 22")


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(categories=["Cs", "Ll"]), max_size=10))
def test_decode_post_text_output_is_always_encodable(text: str) -> None:
    result = decode_post_text(json.dumps({"id": "1", "text": "x"})[:-1] + f', "t": "{text}"}}',
                              max_text_chars=LIMIT)
    if isinstance(result, Post):
        jsonio.dumps(result.to_dict())  # never raises UnicodeEncodeError


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_decode_post_accepts_bytes_like(kind: type) -> None:
    post = _decode(kind(b'{"id": "1", "text": "hallo"}'))
    assert post == Post(id="1", text="hallo")


# --------------------------------------------------------------------------- optional fields


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"platform": 1}, "'platform'"),
        ({"platform": ["twitter"]}, "'platform'"),
        ({"created_at": 1_700_000_000}, "'created_at'"),
        ({"lang": ["nl"]}, "'lang'"),
        ({"reply_to": 1.5}, "'reply_to'"),
        ({"repost_of": True}, "'repost_of'"),
        ({"quote_of": {"id": "1"}}, "'quote_of'"),
        ({"author": "someone"}, "'author'"),
        ({"author": ["someone"]}, "'author'"),
        ({"author": 5}, "'author'"),
        ({"author": {"id": ["1"]}}, "'author.id'"),
        ({"author": {"id": 1.5}}, "'author.id'"),
        ({"author": {"handle": 5}}, "'author.handle'"),
        ({"author": {"followers": -1}}, "'author.followers'"),
        ({"author": {"followers": True}}, "'author.followers'"),
        ({"author": {"followers": False}}, "'author.followers'"),
        ({"author": {"followers": "100"}}, "'author.followers'"),
        ({"author": {"followers": 10.5}}, "'author.followers'"),
        ({"author": {"verified": "true"}}, "'author.verified'"),
        ({"author": {"verified": 1}}, "'author.verified'"),
        ({"author": {"verified": 0}}, "'author.verified'"),
    ],
)
def test_optional_field_of_wrong_type(fields: dict[str, Any], needle: str) -> None:
    _assert_reject(_decode(_obj(**fields)), RejectReason.WRONG_TYPE, needle)


@pytest.mark.parametrize(
    ("geo", "needle"),
    [
        ("52.37,4.89", "expected"),
        ([4.89, 52.37], "expected"),
        ({"lat": 52.37}, "expected"),
        ({"lon": 4.89}, "expected"),
        ({"lat": "52.37", "lon": "4.89"}, "numbers"),
        ({"lat": True, "lon": 4.89}, "numbers"),
        ({"lat": None, "lon": 4.89}, "numbers"),
        ({"lat": 91, "lon": 4.89}, "range"),
        ({"lat": -90.5, "lon": 4.89}, "range"),
        ({"lat": 52.37, "lon": 181}, "range"),
        ({"lat": 52.37, "lon": -180.01}, "range"),
        ({"type": "Point", "coordinates": [4.89]}, "coordinates"),
        ({"type": "Point", "coordinates": "4.89,52.37"}, "coordinates"),
        ({"type": "Point"}, "coordinates"),
        ({"type": "Point", "coordinates": [52.37, 104.89]}, "range"),
        ({"type": "Polygon", "coordinates": [[[4.8, 52.3]]]}, "expected"),
    ],
)
def test_bad_geo(geo: Any, needle: str) -> None:
    result = _assert_reject(_decode(_obj(geo=geo)), RejectReason.WRONG_TYPE, needle)
    assert result.detail.startswith("geo")


def test_geo_overflowing_to_infinity_is_out_of_range() -> None:
    raw = b'{"id": "1", "text": "a", "geo": {"lat": 1e400, "lon": 4.9}}'
    _assert_reject(_decode(raw), RejectReason.WRONG_TYPE, "range")


@pytest.mark.parametrize(
    "geo",
    [{"lat": 52.3731, "lon": 4.8926}, {"type": "Point", "coordinates": [4.8926, 52.3731]},
     {"type": "Point", "coordinates": [4.8926, 52.3731, 12.0]}],
    ids=["lat-lon", "geojson", "geojson-with-altitude"],
)
def test_good_geo_forms(geo: dict[str, Any]) -> None:
    post = _decode(_obj(geo=geo))
    assert isinstance(post, Post)
    assert post.geo == GeoPoint(lon=4.8926, lat=52.3731)
    assert post.to_dict()["geo"] == {"lat": 52.3731, "lon": 4.8926}


def test_integer_geo_becomes_float() -> None:
    post = _decode(_obj(geo={"lat": 52, "lon": 5}))
    assert isinstance(post, Post) and post.geo is not None
    assert isinstance(post.geo.lat, float) and isinstance(post.geo.lon, float)


def test_full_post_and_numeric_references() -> None:
    raw = _obj(
        id="1", text="Druk op de Dam", platform="twitter", created_at="2027-04-27T10:00:00Z",
        lang="nl", author={"id": 42, "handle": "jan", "followers": 0, "verified": False},
        reply_to=7, repost_of="8", quote_of=9,
    )
    post = _decode(raw)
    assert post == Post(
        id="1", text="Druk op de Dam", platform="twitter", created_at="2027-04-27T10:00:00Z",
        lang="nl", author=Author(id="42", handle="jan", followers=0, verified=False),
        reply_to="7", repost_of="8", quote_of="9",
    )


def test_nulls_are_treated_as_absent() -> None:
    post = _decode(_obj(platform=None, lang=None, author=None, geo=None, reply_to=None))
    assert post == Post(id="1", text="hallo")
    assert isinstance(post, Post)
    assert post.to_dict() == {"id": "1", "text": "hallo"}


def test_unknown_extra_fields_are_kept() -> None:
    extra = {"retweets": 12, "entities": {"urls": ["https://example.org"]}, "score": 0.5,
             "flag": None, "big": 2**70}
    post = _decode(_obj(**extra))
    assert isinstance(post, Post)
    assert post.extra == extra
    out = post.to_dict()
    assert {k: out[k] for k in extra} == extra
    # and the output stays valid JSON, even for integers orjson cannot write
    assert json.loads(jsonio.dumps(out)) == out


def test_extra_fields_do_not_override_known_fields_in_to_dict() -> None:
    post = Post(id="1", text="a", extra={"id": "evil", "text": "evil", "other": 1})
    assert post.to_dict() == {"id": "1", "text": "a", "other": 1}


# --------------------------------------------------------------------------- properties


_json_scalars = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)


@st.composite
def _json_ish_bytes(draw: st.DrawFn) -> bytes:
    """Mostly-valid JSON with a few corrupted bytes: reaches deeper than random bytes."""
    value = draw(st.dictionaries(
        st.sampled_from(["id", "text", "platform", "author", "geo", "lang", "x"]),
        _json_values, max_size=6,
    ))
    raw = bytearray(json.dumps(value, ensure_ascii=draw(st.booleans())).encode())
    for _ in range(draw(st.integers(0, 3))):
        if raw:
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
    return bytes(raw)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | _json_ish_bytes())
def test_decode_post_never_raises(raw: bytes) -> None:
    result = _decode(raw)
    assert isinstance(result, Post | Reject)
    if isinstance(result, Reject):
        assert isinstance(result.reason, RejectReason)
        assert result.detail


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_decode_post_text_never_raises(text: str) -> None:
    assert isinstance(decode_post_text(text, max_text_chars=LIMIT), Post | Reject)


_KNOWN = {"id", "text", "platform", "created_at", "lang", "author", "reply_to", "repost_of",
          "quote_of", "geo"}
_ref = st.text(min_size=1, max_size=20)


@st.composite
def _valid_post_dicts(draw: st.DrawFn) -> dict[str, Any]:
    post: dict[str, Any] = {
        "id": draw(st.text(min_size=1, max_size=30).filter(lambda s: s.strip() != "")),
        "text": draw(st.text(max_size=LIMIT)),
    }
    optional: dict[str, st.SearchStrategy[Any]] = {
        "platform": st.sampled_from(["twitter", "bluesky", "mastodon", "télégram"]),
        "created_at": st.just("2014-08-09T17:30:14Z"),
        "lang": st.sampled_from(["nl", "en", "de"]),
        "reply_to": _ref, "repost_of": _ref, "quote_of": _ref,
        "author": st.fixed_dictionaries({}, optional={
            "id": _ref, "handle": _ref, "followers": st.integers(0, 10**12),
            "verified": st.booleans(),
        }),
        "geo": st.fixed_dictionaries({
            "lat": st.floats(-90, 90), "lon": st.floats(-180, 180),
        }),
    }
    for name in draw(st.sets(st.sampled_from(sorted(optional)))):
        post[name] = draw(optional[name])
    extra = draw(st.dictionaries(
        st.text(max_size=10).filter(lambda k: k not in _KNOWN), _json_values, max_size=3,
    ))
    post.update(extra)
    return post


@settings(max_examples=200, deadline=None)
@given(_valid_post_dicts(), st.booleans())
def test_valid_post_round_trips(post: dict[str, Any], ascii_only: bool) -> None:
    raw = json.dumps(post, ensure_ascii=ascii_only).encode()
    decoded = _decode(raw)
    assert isinstance(decoded, Post), str(decoded)
    assert decoded.to_dict() == post
    again = _decode(jsonio.dumps(decoded.to_dict()))
    assert again == decoded
    assert isinstance(again, Post)
    assert again.extra == decoded.extra


# --------------------------------------------------------------------------- real data


def test_every_shared_data_post_decodes(shared_data: Path) -> None:
    files = sorted(shared_data.rglob("*.posts.jsonl"))
    assert files, f"no *.posts.jsonl under {shared_data}"
    count = 0
    failures: list[str] = []
    for path in files:
        for number, line in enumerate(path.read_bytes().splitlines(), start=1):
            result = decode_post(line, max_text_chars=10_000)
            count += 1
            if not isinstance(result, Post):
                failures.append(f"{path.relative_to(shared_data)}:{number}: {result}")
    assert not failures, f"{len(failures)} of {count} lines rejected:\n" + "\n".join(failures[:20])
    # ~50,000 posts in the release this was written against; guard against an empty copy
    assert count >= 1_000, count
    print(f"{count} posts in {len(files)} files decoded")  # noqa: T201
