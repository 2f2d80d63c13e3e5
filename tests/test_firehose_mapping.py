"""models.firehose: Jetstream v1/v2 and Mastodon frames -> canonical posts (pure, no I/O).

The frames under tests/fixtures/firehose are synthetic, written from the public schemas:
Jetstream v1 (bluesky-social/jetstream pkg/models: did, time_us, kind, commit|identity|
account) and v2 (lexicon network.bsky.jetstream.subscribeEvents in the xrpc.v1.json framing:
{"$type": "message", "payload": {...}} and {"$type": "error", ...}), and Mastodon's
streaming events (update, status.update, delete with status entities).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from models.event import EventConfig
from models.firehose import (
    FILTER_REASONS,
    KINDS,
    MALFORMED_REASONS,
    BoundedMap,
    ContentFilter,
    FrameReject,
    Mapped,
    RecentIds,
    html_to_text,
    iso_from_us,
    map_jetstream,
    map_jetstream_frame,
    map_mastodon,
    map_mastodon_status,
    normalize_created_at,
    parse_time_us,
    qualified_acct,
)
from models.post import Post, validate_post

FIXTURES = Path(__file__).parent / "fixtures" / "firehose"
ANNA = "did:plc:fakeanna2koningsdag7aaaa"
BOB = "did:plc:fakebob22dam2square7bbbb"
CARL = "did:plc:fakecarl2vrijmarkt7ccccc"
POL = "did:plc:fakepolitie2amsterdam7pp"
P1 = f"at://{ANNA}/app.bsky.feed.post/3ltest2aaaa22"
P2 = f"at://{BOB}/app.bsky.feed.post/3ltest2bbbb22"
PP = f"at://{POL}/app.bsky.feed.post/3ltest2pppp22"
HOST = "social.fictief.test"
INSTANCE = "https://social.fictief.test"


def _named(stem: str) -> dict[str, str]:
    names = json.loads((FIXTURES / f"{stem}.names.json").read_text())
    lines = (FIXTURES / f"{stem}.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(names) == len(lines)
    return dict(zip(names, lines, strict=True))


V1 = _named("jetstream_v1")
V2 = _named("jetstream_v2")


def v1(name: str, handles: dict[str, str] | None = None) -> Mapped:
    result = map_jetstream_frame(V1[name].encode("utf-8"), handles)
    assert isinstance(result, Mapped), result
    return result


def v2(name: str, handles: dict[str, str] | None = None) -> Mapped:
    result = map_jetstream_frame(V2[name], handles)
    assert isinstance(result, Mapped), result
    return result


def post_of(m: Mapped) -> dict[str, Any]:
    assert m.post is not None
    return m.post


def as_post(record: dict[str, Any]) -> Post:
    """What the worker does with it: the canonical validation must accept every record."""
    result = validate_post(json.loads(json.dumps(record)), max_text_chars=10_000)
    assert isinstance(result, Post), result
    return result


# ---------------------------------------------------------------- Jetstream v1


def test_v1_post() -> None:
    m = v1("post_nl")
    p = post_of(m)
    assert m.kind == "post" and m.control is None
    assert p["id"] == P1 and p["platform"] == "bluesky"
    assert p["text"].startswith("Wat een drukte op het Museumplein!")
    assert p["created_at"] == "2027-04-27T08:15:03.100Z"
    assert p["observed_at"] == "2027-04-27T08:15:03.412Z"
    assert p["lang"] == "nl" and p["author"] == {"id": ANNA} and p["kind"] == "post"
    assert m.time_us == 1808813703412000 and m.seq is None
    assert m.key == f"{P1}@3lrev03412000"
    assert {"reply_to", "quote_of", "repost_of"}.isdisjoint(p)
    post = as_post(p)
    assert post.author is not None and post.author.id == ANNA
    assert post.extra["kind"] == "post"


def test_v1_created_at_with_offset_is_normalised_to_z() -> None:
    assert post_of(v1("post_en"))["created_at"] == "2027-04-27T08:15:04Z"


def test_v1_reply_points_at_the_parent() -> None:
    m = v1("reply")
    p = post_of(m)
    assert m.kind == "reply" and p["kind"] == "reply"
    assert p["reply_to"] == P1
    assert "reply_root" not in p  # root == parent
    assert m.refs == (P1,) and m.ref_authors == (ANNA,)
    assert as_post(p).reply_to == P1


def test_v1_quotes_with_and_without_media() -> None:
    for name in ("quote", "quote_with_media"):
        m = v1(name)
        p = post_of(m)
        assert m.kind == "quote" and p["quote_of"] == P2, name
        assert m.ref_authors == (BOB,)
        assert as_post(p).quote_of == P2


def test_v1_reply_that_quotes_is_a_reply_with_both_refs() -> None:
    m = v1("reply_with_quote")
    p = post_of(m)
    assert m.kind == "reply"
    assert p["reply_to"] == P2 and p["quote_of"] == PP
    assert set(m.refs) == {P2, PP} and set(m.ref_authors) == {BOB, POL}


def test_v1_repost_carries_the_subject_and_no_text() -> None:
    m = v1("repost")
    p = post_of(m)
    assert m.kind == "repost" and m.match_text is None
    assert p["id"] == f"at://{BOB}/app.bsky.feed.repost/3ltest2ffff22"
    assert p["repost_of"] == P1 and p["text"] == "" and p["kind"] == "repost"
    assert as_post(p).repost_of == P1


def test_v1_like_is_a_canonical_record_of_kind_like() -> None:
    m = v1("like")
    p = post_of(m)
    assert m.kind == "like" and m.match_text is None
    assert p["kind"] == "like" and p["like_of"] == P2 and p["text"] == ""
    assert p["id"] == f"at://{ANNA}/app.bsky.feed.like/3ltest2gggg22"
    assert m.refs == (P2,) and m.ref_authors == (BOB,)
    assert as_post(p).extra["like_of"] == P2


def test_v1_delete_maps_to_a_tombstone_with_its_own_id() -> None:
    m = v1("delete")
    p = post_of(m)
    assert m.kind == "delete" and m.refs == (P2,)
    assert p == {"id": P2 + "#delete", "platform": "bluesky", "text": "", "kind": "delete",
                 "delete_of": P2, "created_at": "2027-04-27T08:15:10.412Z",
                 "author": {"id": BOB}}
    assert m.key is not None and m.key.startswith(P2 + "@")
    as_post(p)
    like_delete = v1("like_delete")
    assert like_delete.kind == "delete"
    assert post_of(like_delete)["delete_of"] == f"at://{ANNA}/app.bsky.feed.like/3ltest2gggg22"


def test_v1_update_keeps_the_id_and_marks_the_operation() -> None:
    created, updated = v1("post_nl"), v1("update")
    assert post_of(updated)["id"] == post_of(created)["id"]
    assert post_of(updated)["operation"] == "update"
    assert "(update:" in post_of(updated)["text"]
    assert updated.key != created.key  # a different commit, not a replay


def test_v1_identity_and_account_are_control_events() -> None:
    ident = v1("identity")
    assert ident.kind == "identity" and ident.control == "identity" and ident.post is None
    assert ident.author == POL and ident.handle == "politie-fictief.bsky.test"
    acct = v1("account")
    assert acct.kind == "account" and acct.control == "account" and acct.post is None


def test_v1_other_collections_are_unsupported() -> None:
    m = v1("follow_other_collection")
    assert m.kind == "other" and m.control == "unsupported" and m.post is None


def test_v1_handles_fill_the_author() -> None:
    m = v1("official_post", handles={POL: "politie-fictief.bsky.test"})
    assert post_of(m)["author"] == {"id": POL, "handle": "politie-fictief.bsky.test"}


def test_v1_times_langs_and_outline_tags() -> None:
    naive = post_of(v1("naive_time_regional_lang"))
    assert naive["created_at"] == "2027-04-27T08:15:15Z"  # no offset: UTC
    assert naive["lang"] == "en"  # en-GB -> en
    future = v1("future_created_at")
    fp = post_of(future)
    assert fp["created_at"] == iso_from_us(future.time_us or 0)  # a 2099 date is not trusted
    assert fp["claimed_created_at"] == "2099-01-01T00:00:00Z"
    tagged = v1("outline_tags")
    assert post_of(tagged)["tags"] == ["koningsnacht", "amsterdam"]
    assert tagged.match_text is not None and "#koningsnacht" in tagged.match_text
    empty = v1("empty_text_image_post")
    assert post_of(empty)["text"] == "" and "lang" not in post_of(empty)


# ---------------------------------------------------------------- Jetstream v2


def test_v2_commits_map_to_the_same_posts_as_v1() -> None:
    names = [n for n in V1 if n not in ("identity", "account", "follow_other_collection")]
    assert len(names) >= 15
    for name in names:
        one, two = v1(name), v2(name)
        assert one.kind == two.kind, name
        assert one.post == two.post, name
        assert one.key == two.key, name
        assert two.seq is not None and two.time_us == one.time_us, name


def test_v2_seq_and_witness_time() -> None:
    m = v2("post_nl")
    assert m.seq == 81000001 and m.time_us == 1808813703412000
    no_witness = v2("post_en")  # a server predating witnessedAt: 'time' is the position
    assert no_witness.time_us == 1808813704612000


def test_v2_identity_account_sync_info_and_error_frames() -> None:
    ident = v2("identity")
    assert ident.control == "identity" and ident.handle == "politie-fictief.bsky.test"
    assert ident.seq == 81000011
    assert v2("account").control == "account"
    sync = v2("sync")
    assert sync.kind == "other" and sync.control == "sync" and sync.seq == 81000021
    info = v2("info_outdated_cursor")
    assert info.control == "info" and info.seq is None and info.time_us is None
    assert info.detail is not None and "OutdatedCursor" in info.detail
    error = v2("error_consumer_too_slow")
    assert error.control == "error" and error.detail == \
        "ConsumerTooSlow: client fell behind the live tip"


def test_v2_envelope_from_the_framing_proposal_and_unknown_payloads() -> None:
    frame = json.loads(V2["post_nl"])
    frame["$type"] = "event"  # proposal 0015's draft wording
    result = map_jetstream(frame)
    assert isinstance(result, Mapped) and result.kind == "post"
    foreign = map_jetstream({"$type": "message", "payload": {"$type": "com.example.x#y"}})
    assert isinstance(foreign, Mapped) and foreign.control == "unsupported"
    newer = map_jetstream({"$type": "message", "payload": {
        "$type": "network.bsky.jetstream.subscribeEvents#somethingNew", "seq": 9,
        "did": ANNA, "time": "2027-04-27T08:00:00.000000Z"}})
    assert isinstance(newer, Mapped) and newer.control == "unsupported" and newer.seq == 9


# ---------------------------------------------------------------- malformed


MALFORMED = json.loads((FIXTURES / "malformed.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", MALFORMED, ids=[c["name"] for c in MALFORMED])
def test_malformed_frames_are_rejected_with_a_reason(case: dict[str, Any]) -> None:
    raw: bytes | str = base64.b64decode(case["frame_b64"]) if "frame_b64" in case \
        else case["frame"]
    result = map_jetstream_frame(raw)
    assert isinstance(result, FrameReject), result
    assert result.reason == case["reason"]
    assert result.reason in MALFORMED_REASONS
    assert result.detail


def test_mapping_never_raises_on_odd_shapes() -> None:
    odd: list[Any] = [
        None, 5, "x", [], {}, {"did": ANNA, "time_us": 5, "kind": "commit", "commit": []},
        {"did": ANNA, "time_us": 5, "kind": "commit",
         "commit": {"rev": 1, "operation": "create", "collection": "app.bsky.feed.post",
                    "rkey": "a", "record": {"text": "x", "langs": "nl", "reply": "r",
                                            "embed": {"$type": "app.bsky.embed.record",
                                                      "record": 5}}}},
        {"did": ANNA, "time_us": True, "kind": "commit"},
        {"did": ANNA, "time_us": 5, "kind": "wat"},
        {"$type": "message", "payload": {"$type": 7}},
        {"$type": "message", "payload": {"$type": "network.bsky.jetstream.subscribeEvents#commit",
                                         "seq": -1, "did": ANNA, "time": "x"}},
    ]
    for obj in odd:
        result = map_jetstream(obj)
        assert isinstance(result, Mapped | FrameReject)
        if isinstance(result, Mapped):
            assert result.kind in KINDS


# ---------------------------------------------------------------- Mastodon


EVENTS = json.loads((FIXTURES / "mastodon_events.json").read_text(encoding="utf-8"))


def mastodon_stream() -> list[Mapped | FrameReject]:
    """Map the fixture events in order, remembering ids -> uris like the connector does."""
    uris: dict[str, str] = {}
    out: list[Mapped | FrameReject] = []
    for e in EVENTS:
        data = e["data"] if isinstance(e["data"], str) else json.dumps(e["data"])
        m = map_mastodon(e["event"], data, host=HOST, uris=uris, instance=INSTANCE)
        if isinstance(m, Mapped):
            uris.update(dict(m.local_ids))
        out.append(m)
    return out


def test_mastodon_status() -> None:
    m = mastodon_stream()[0]
    assert isinstance(m, Mapped) and m.kind == "post"
    p = post_of(m)
    assert p["id"] == f"{INSTANCE}/users/anne_fictief/statuses/112233445566778801"
    assert p["platform"] == "mastodon" and p["lang"] == "nl"
    assert p["created_at"] == "2027-04-27T09:01:02Z"
    assert p["author"] == {"id": f"{INSTANCE}/users/anne_fictief",
                           "handle": "anne_fictief@social.fictief.test", "followers": 340}
    assert p["text"] == ("Wat een drukte bij de #Koningsdag vrijmarkt!\n\n"
                         "Tram 2 & 12 rijden niet > neem de pont.\n"
                         "Zie https://example.test/gvb/omleidingen")
    assert p["tags"] == ["koningsdag"] and p["kind"] == "post"
    assert m.local_id == "112233445566778801"
    as_post(p)


def test_mastodon_reply_resolves_the_parent_uri_from_earlier_statuses() -> None:
    m = mastodon_stream()[1]
    assert isinstance(m, Mapped) and m.kind == "reply"
    p = post_of(m)
    assert p["reply_to"] == f"{INSTANCE}/users/anne_fictief/statuses/112233445566778801"
    assert p["reply_to_local_id"] == "112233445566778801"
    assert p["author"]["handle"] == "bram_fictief@other.fictief.test"  # remote: already qualified
    assert p["text"].startswith("@anne_fictief klopt") and "'t is niet leuk" in p["text"]
    # without the parent in memory: an id on this instance that resolves to it
    alone = map_mastodon_status(EVENTS[1]["data"], host=HOST, uris={}, instance=INSTANCE)
    assert isinstance(alone, Mapped)
    assert post_of(alone)["reply_to"] == f"{INSTANCE}/api/v1/statuses/112233445566778801"


def test_mastodon_reblog_is_a_repost_matched_on_the_subject() -> None:
    m = mastodon_stream()[3]
    assert isinstance(m, Mapped) and m.kind == "repost"
    p = post_of(m)
    subject = f"{INSTANCE}/users/gemeente_fictief/statuses/112233445566778803"
    assert p["repost_of"] == subject and p["text"] == "" and p["kind"] == "repost"
    assert p["id"].endswith("/112233445566778804/activity")
    assert p["author_bot"] is True
    assert m.match_text is not None and "Museumplein is vol" in m.match_text
    assert m.ref_authors == ("gemeente_fictief@social.fictief.test",)
    as_post(p)


def test_mastodon_quote_edit_spoiler_and_languages() -> None:
    out = mastodon_stream()
    quote = out[4]
    assert isinstance(quote, Mapped) and quote.kind == "quote"
    assert post_of(quote)["quote_of"] == \
        f"{INSTANCE}/users/gemeente_fictief/statuses/112233445566778803"
    cw = out[5]
    assert isinstance(cw, Mapped) and post_of(cw)["spoiler_text"] == "crowds"
    assert post_of(cw)["lang"] == "en" and post_of(cw)["text"].startswith("Lovely sunny King's")
    assert cw.match_text is not None and cw.match_text.startswith("crowds\n")
    edit = out[6]
    assert isinstance(edit, Mapped) and post_of(edit)["operation"] == "update"
    first = out[0]
    assert isinstance(first, Mapped)
    assert post_of(edit)["id"] == post_of(first)["id"] and edit.key != first.key


def test_mastodon_delete_and_other_events() -> None:
    out = mastodon_stream()
    known, unknown, notification, filters = out[8], out[9], out[10], out[11]
    assert isinstance(known, Mapped) and known.kind == "delete"
    assert post_of(known)["delete_of"].endswith("/statuses/9112233445566778807")
    assert isinstance(unknown, Mapped) and unknown.kind == "delete" and unknown.post is None
    for other in (notification, filters):
        assert isinstance(other, Mapped) and other.kind == "other"
        assert other.control == "unsupported"


def test_mastodon_malformed_events() -> None:
    assert isinstance(map_mastodon("update", "{not json", host=HOST), FrameReject)
    no_uri = dict(EVENTS[0]["data"])
    del no_uri["uri"]
    r = map_mastodon("update", json.dumps(no_uri), host=HOST)
    assert isinstance(r, FrameReject) and r.reason == "missing_field"
    bad_account = dict(EVENTS[0]["data"], account={"id": "1"})
    r = map_mastodon("update", json.dumps(bad_account), host=HOST)
    assert isinstance(r, FrameReject) and r.reason == "wrong_type"
    r = map_mastodon("update", "[]", host=HOST)
    assert isinstance(r, FrameReject) and r.reason == "not_object"
    r = map_mastodon("delete", "  ", host=HOST)
    assert isinstance(r, FrameReject) and r.reason == "missing_field"


@pytest.mark.parametrize(("html", "text"), [
    ("<p>Hallo</p><p>wereld</p>", "Hallo\n\nwereld"),
    ("regel 1<br>regel 2<br/>regel 3", "regel 1\nregel 2\nregel 3"),
    ("<p>A &amp; B &lt;3 &quot;x&quot; &#39;y&#39; &euro;5&nbsp;nu</p>",
     "A & B <3 \"x\" 'y' €5 nu"),
    ('<p><a href="https://x.test/tags/dam" class="mention hashtag">#<span>Dam</span></a></p>',
     "#Dam"),
    ("plain text, no tags", "plain text, no tags"),
    ("<p>one</p>\n<p>two<br />\nthree</p>", "one\n\ntwo\nthree"),
    ("<blockquote><p>quoted</p></blockquote><p>reply</p>", "quoted\n\nreply"),
    ("", ""),
])
def test_html_to_text(html: str, text: str) -> None:
    assert html_to_text(html) == text


def test_qualified_acct() -> None:
    assert qualified_acct("Anne", "Social.Example") == "anne@social.example"
    assert qualified_acct("@bram@other.example", "x") == "bram@other.example"


# ---------------------------------------------------------------- time


@pytest.mark.parametrize(("value", "expected"), [
    ("2027-04-27T08:15:03.100Z", "2027-04-27T08:15:03.100Z"),
    ("2027-04-27T10:15:03+02:00", "2027-04-27T08:15:03Z"),
    ("2027-04-27T08:15:03.123456789Z", "2027-04-27T08:15:03.123Z"),
    ("2027-04-27T08:15:03", "2027-04-27T08:15:03Z"),
])
def test_created_at_normalisation(value: str, expected: str) -> None:
    assert normalize_created_at(value, None) == (expected, None)


def test_created_at_falls_back_to_the_event_time() -> None:
    event_us = parse_time_us("2027-04-27T08:00:00Z")
    assert event_us is not None
    assert normalize_created_at("not a date", event_us) == ("2027-04-27T08:00:00Z", "not a date")
    assert normalize_created_at(None, event_us) == ("2027-04-27T08:00:00Z", None)
    early = normalize_created_at("2027-04-27T08:05:00Z", event_us)  # 5 min skew: believed
    assert early == ("2027-04-27T08:05:00Z", None)
    assert normalize_created_at(5, None) == (None, None)


# ---------------------------------------------------------------- filter


def test_no_criteria_pass_everything() -> None:
    f = ContentFilter()
    assert f.passthrough
    assert f.reason(v1("like")) is None and f.reason(v1("post_en")) is None


def test_keywords_are_case_and_accent_insensitive_hashtag_aware() -> None:
    f = ContentFilter(keywords=["KONINGSDÁG", "#kingsday", "dam square"])
    assert f.reason(v1("post_nl")) is None  # "#Koningsdag"
    assert f.reason(v1("post_en")) is None  # "Dam Square" and "#kingsday"
    assert f.reason(v1("reply")) == "keyword"
    assert f.reason(v1("outline_tags")) == "keyword"
    assert ContentFilter(keywords=["koningsnacht"]).reason(v1("outline_tags")) is None
    hashtag_only = ContentFilter(keywords=["#dam"])
    assert hashtag_only.reason(v1("official_post")) == "keyword"  # "de Dam." is not "#dam"


def test_languages() -> None:
    f = ContentFilter(languages=["en"])
    assert f.reason(v1("post_nl")) == "language"
    assert f.reason(v1("post_en")) is None
    assert f.reason(v1("naive_time_regional_lang")) is None  # en-GB
    assert f.reason(v1("empty_text_image_post")) is None  # no language given: kept
    both = ContentFilter(keywords=["tram"], languages=["nl"])
    assert both.reason(v1("post_en")) == "language"
    assert both.reason(v1("reply")) is None


def test_accounts_and_interactions_with_them() -> None:
    f = ContentFilter(keywords=["koningsdag"], accounts=[POL])
    assert f.reason(v1("official_post")) is None  # the account itself
    assert f.reason(v1("like_official")) is None  # a like of its post
    assert f.reason(v1("reply_with_quote")) is None  # quotes its post
    assert f.reason(v1("like")) == "unrelated"
    only_accounts = ContentFilter(accounts=["politie-fictief.bsky.test"])
    assert only_accounts.reason(v1("official_post")) == "account"  # handle not known yet
    handles = BoundedMap(10)
    handles.put(POL, "politie-fictief.bsky.test")
    assert only_accounts.reason(v1("official_post"), None, handles) is None
    assert only_accounts.reason(v1("like_official"), None, handles) is None
    assert only_accounts.reason(v1("post_en"), None, handles) == "account"
    resolved = ContentFilter(accounts=["politie-fictief.bsky.test"]).with_accounts([POL])
    assert resolved.reason(v1("official_post")) is None


def test_replies_quotes_and_likes_of_produced_posts_pass() -> None:
    f = ContentFilter(keywords=["koningsdag"])
    produced = RecentIds(100)
    assert f.reason(v1("post_nl"), produced) is None
    produced.add(P1)
    assert f.reason(v1("reply"), produced) is None  # no keyword, replies to a matched post
    assert f.reason(v1("repost"), produced) is None
    assert f.reason(v1("like"), produced) == "unrelated"  # likes P2, never matched


def test_mastodon_filter_on_reblogged_content_and_accounts() -> None:
    out = mastodon_stream()
    reblog = out[3]
    assert isinstance(reblog, Mapped)
    assert ContentFilter(keywords=["museumplein"]).reason(reblog) is None
    assert ContentFilter(keywords=["koningsdag"]).reason(reblog) == "keyword"
    assert ContentFilter(accounts=["gemeente_fictief@social.fictief.test"]).reason(reblog) is None
    spoiler = out[5]
    assert isinstance(spoiler, Mapped)
    assert ContentFilter(keywords=["crowds"]).reason(spoiler) is None


def test_filter_from_the_event_file(event: EventConfig) -> None:
    from streams.ingest.common import build_filter

    bluesky = build_filter(["extra"], [], [], event, "bluesky")
    assert "politie-amsterdam.bsky.social" in bluesky.accounts
    assert "gemeenteamsterdam@social.amsterdam.nl" not in bluesky.accounts
    assert bluesky.languages == frozenset(event.languages)
    assert bluesky.reason(v1("post_nl")) is None  # koningsdag is a topic term
    mastodon = build_filter([], [], [], event, "mastodon")
    assert "gemeenteamsterdam@social.amsterdam.nl" in mastodon.accounts


def test_fixed_label_sets() -> None:
    assert len(set(KINDS)) == len(KINDS) == 9
    assert "duplicate" in FILTER_REASONS and "delete" in FILTER_REASONS


def test_bounded_structures_forget_the_oldest() -> None:
    ids = RecentIds(3, ["a", "b", "c"])
    ids.add("d")
    ids.add("b")  # already there: no reordering, no growth
    assert "a" not in ids and {"b", "c", "d"} == {x for x in "abcd" if x in ids}
    assert len(ids) == 3
    m = BoundedMap(2)
    m.put("x", "1")
    m.put("y", "2")
    m.put("x", "3")  # refreshed: y is now the oldest
    m.put("z", "4")
    assert m == {"x": "3", "z": "4"}
