"""Tests of the enrichment step (models/enrich.py)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from models import jsonio
from models.enrich import (
    BatchResult,
    Enricher,
    RawRecord,
    Tally,
    epoch_minute,
    minute_bucket,
)
from models.event import EventConfig
from models.lang import HybridDetector
from models.times import event_time, in_time_order, parse_time


class FixedDetector:
    """A stand-in language detector: the hint when there is one, else 'nl'."""

    def detect_batch(self, texts: Sequence[str], hints: Sequence[str | None]) -> list[str]:
        assert len(texts) == len(hints)
        return [hint or "nl" for hint in hints]


@pytest.fixture(scope="module")
def enricher(event: EventConfig, detector: HybridDetector) -> Enricher:
    return Enricher(event, detector=detector)


def _rec(value: bytes | None, n: int = 0) -> RawRecord:
    return RawRecord(value, {"file": "test.jsonl", "line": n})


def _post(**fields: Any) -> bytes:
    return json.dumps(fields, ensure_ascii=False).encode()


GOOD = [
    _post(id="1", text="Het is ontzettend druk op de Dam, geen doorkomen meer aan #Koningsdag",
          platform="twitter"),
    _post(id="2", text="Tram 2 rijdt niet, omleiding via Leidseplein", lang="nl",
          geo={"lat": 52.3585, "lon": 4.8680}),
    _post(id=3, text="Lovely weather for King's Day in Amsterdam, packed streets!",
          platform="bluesky", author={"handle": "tourist", "followers": 5}),
    _post(id="4", text="", platform="mastodon", repost_of="3"),
]
BAD = [
    None,
    b"",
    b"not json",
    b"[1, 2]",
    b'{"text": "no id"}',
    b'{"id": "", "text": "empty id"}',
    b'{"id": "9"}',
    b'{"id": "9", "text": 5}',
    b'{"id": "9", "text": "caf\xe9"}',
    rb'{"id": "9", "text": "\ud800"}',
    b'{"id": "9", "text": "a", "x": NaN}',
    _post(id="9", text="x" * 10_001),
]


# --------------------------------------------------------------------------- process


def test_counts_reconcile_with_malformed_records(enricher: Enricher) -> None:
    records = [_rec(v, i) for i, v in enumerate(GOOD + BAD)]
    result = enricher.process(records)
    assert len(result.enriched) + len(result.dead) == len(records)
    assert [p.id for p in result.enriched] == ["1", "2", "3", "4"]
    assert sorted(d.reason for d in result.dead) == sorted([
        "not_json", "not_json", "not_json", "not_object", "missing_id", "empty_id",
        "missing_text", "wrong_type", "invalid_utf8", "invalid_utf8", "not_json",
        "text_too_long",
    ])
    # every dead letter knows where it came from and keeps the original bytes
    assert [d.source["line"] for d in result.dead] == list(range(len(GOOD), len(records)))
    assert [d.original for d in result.dead] == BAD


def test_enriched_output(enricher: Enricher) -> None:
    result = enricher.process([_rec(v, i) for i, v in enumerate(GOOD)])
    first, second, third, fourth = (p.to_dict() for p in result.enriched)
    for out in (first, second, third, fourth):
        assert {"id", "text", "lang", "source_lang", "areas", "area_source", "keywords",
                "topics", "hashtags", "mentions"} <= out.keys()
        json.loads(jsonio.dumps(out))
    assert first["id"] == "1" and first["lang"] == "nl" and first["source_lang"] is None
    assert first["areas"] == ["Dam"] and first["area_source"] == "text"
    assert first["keywords"] == ["druk", "#koningsdag"]
    assert first["topics"] == ["crowd", "event"]
    assert first["hashtags"] == ["koningsdag"]
    assert first["platform"] == "twitter"
    # geo wins over the place name in the text
    assert second["areas"] == ["Vondelpark"] and second["area_source"] == "geo"
    assert second["topics"] == ["transport"] and second["source_lang"] == "nl"
    assert second["geo"] == {"lat": 52.3585, "lon": 4.8680}
    assert third["id"] == "3" and third["lang"] == "en"
    assert third["keywords"] == ["king's day", "packed"]
    assert third["author"] == {"handle": "tourist", "followers": 5}
    # an empty repost: no text to judge, nothing to tag
    assert fourth["lang"] == "und" and fourth["repost_of"] == "3"
    assert fourth["areas"] == [] and fourth["keywords"] == [] and fourth["area_source"] is None


def test_text_is_normalised_and_extra_fields_kept(enricher: Enricher) -> None:
    raw = _post(id="1", text="  Druk\u200b op\n\nde   Dam ", retweets=3)
    (post,) = enricher.process([_rec(raw)]).enriched
    out = post.to_dict()
    assert out["text"] == "Druk op de Dam"
    assert post.post.text == "  Druk\u200b op\n\nde   Dam "  # the original stays on the post
    assert out["retweets"] == 3


def test_enricher_without_an_event() -> None:
    enricher = Enricher(detector=FixedDetector())
    result = enricher.process([_rec(v) for v in GOOD])
    assert len(result.enriched) == len(GOOD)
    for post in result.enriched:
        assert post.areas == () and post.keywords == () and post.topics == ()
        assert post.area_source is None
    assert result.enriched[0].hashtags == ("koningsdag",)
    assert [p.lang for p in result.enriched] == ["nl", "nl", "nl", "nl"]


def test_empty_batch(enricher: Enricher) -> None:
    result = enricher.process([])
    assert result.enriched == [] and result.dead == []


def test_max_text_chars_is_honoured() -> None:
    enricher = Enricher(max_text_chars=10, detector=FixedDetector())
    result = enricher.process([_rec(_post(id="1", text="a" * 10)),
                               _rec(_post(id="2", text="a" * 11))])
    assert [p.id for p in result.enriched] == ["1"]
    assert [d.reason for d in result.dead] == ["text_too_long"]


def test_dead_letter_to_dict() -> None:
    enricher = Enricher(detector=FixedDetector())
    (bad_utf8,) = enricher.process([_rec(b'{"id": "1", "text": "caf\xe9"}', 7)]).dead
    out = bad_utf8.to_dict()
    assert out["reason"] == "invalid_utf8" and out["source"] == {"file": "test.jsonl", "line": 7}
    assert out["original"] is None
    assert base64.b64decode(out["original_b64"]) == b'{"id": "1", "text": "caf\xe9"}'
    json.loads(jsonio.dumps(out))
    (no_value,) = enricher.process([_rec(None)]).dead
    assert no_value.to_dict()["original"] is None and no_value.to_dict()["original_b64"] is None
    (not_json,) = enricher.process([_rec(b"nope")]).dead
    assert not_json.to_dict()["original"] == "nope"


# --------------------------------------------------------------------------- Tally


def test_tally_adds_up(enricher: Enricher) -> None:
    tally = Tally()
    tally.add(enricher.process([_rec(v) for v in GOOD + BAD]))
    tally.add(enricher.process([_rec(GOOD[0]), _rec(b"x")]))
    assert tally.consumed == len(GOOD) + len(BAD) + 2
    assert tally.accepted == len(GOOD) + 1
    assert tally.rejected == len(BAD) + 1
    assert tally.consumed == tally.accepted + tally.rejected
    assert tally.duplicates == 0
    out = tally.to_dict()
    assert out["by_reject_reason"]["not_json"] == 5
    assert out["by_platform"] == {"twitter": 2, "bluesky": 1, "mastodon": 1, "unknown": 1}
    assert out["by_area"] == {"Dam": 2, "Vondelpark": 1}
    assert out["by_topic"]["crowd"] == 3  # "druk" twice, "packed" once
    assert sum(out["by_lang"].values()) == tally.accepted
    json.loads(jsonio.dumps(out))


def test_tally_counts_a_redelivered_post_once(enricher: Enricher) -> None:
    tally = Tally()
    result = enricher.process([_rec(GOOD[0]), _rec(GOOD[0]), _rec(GOOD[1])])
    tally.add(result, fresh=[True, False, True])
    assert tally.accepted == 3  # consumed == accepted + rejected still holds
    assert tally.duplicates == 1
    assert tally.by_area == {"Dam": 1, "Vondelpark": 1}
    assert tally.by_lang == {"nl": 2}
    assert tally.by_keyword["druk"] == 1
    # the same post re-delivered in a later batch
    tally.add(enricher.process([_rec(GOOD[0])]), fresh=[False])
    assert tally.duplicates == 2
    assert tally.by_area == {"Dam": 1, "Vondelpark": 1}
    assert tally.consumed == tally.accepted + tally.rejected == 4


def test_tally_of_an_empty_batch() -> None:
    tally = Tally()
    tally.add(BatchResult())
    assert tally.to_dict()["consumed"] == 0 and tally.rejected == 0


# --------------------------------------------------------------------------- minute bucket


@pytest.mark.parametrize(
    ("created_at", "expected"),
    [
        ("2027-04-27T10:05:59Z", "202704271005"),
        ("2027-04-27T12:05:00+02:00", "202704271005"),
        ("2027-04-27T10:05:00", "202704271005"),  # naive: taken as UTC
        ("yesterday", "197001010001"),  # unreadable: processing time
        (None, "197001010001"),
        ("", "197001010001"),
    ],
)
def test_minute_bucket(created_at: str | None, expected: str) -> None:
    assert minute_bucket(created_at, now=60.0) == expected


ZONES = [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-9, minutes=-30))]
FIRST, LAST = datetime(1000, 1, 1), datetime(9998, 12, 31)  # noqa: DTZ001 - hypothesis bounds


@given(when=st.datetimes(min_value=FIRST, max_value=LAST, timezones=st.sampled_from(ZONES)),
       naive=st.booleans(), now=st.floats(0, 4e9))
# found by CI on 2026-12-07: in UTC this is 999-12-31 22:00, which strftime("%Y") wrote as
# an 11-character key
@example(when=datetime(1000, 1, 1, tzinfo=timezone(timedelta(hours=2))), naive=False, now=0.0)
def test_epoch_minute_is_the_minute_bucket(when: datetime, naive: bool, now: float) -> None:
    """The sentiment stage's epoch minute (one parse) is the minute bucket's minute."""
    text = (when.replace(tzinfo=None) if naive else when).isoformat()
    bucket = datetime.strptime(minute_bucket(text, now), "%Y%m%d%H%M").replace(tzinfo=UTC)
    assert epoch_minute(text, now) == int(bucket.timestamp()) // 60
    fallback = datetime.strptime(minute_bucket(None, now), "%Y%m%d%H%M").replace(tzinfo=UTC)
    assert epoch_minute("yesterday", now) == int(fallback.timestamp()) // 60


# --------------------------------------------------------------------------- property


_bad_values = st.sampled_from(BAD) | st.binary(max_size=40)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.tuples(st.just("good"), st.text(max_size=40)),
                          st.tuples(st.just("bad"), _bad_values)), max_size=25))
def test_every_record_is_accounted_for_once(items: list[tuple[str, Any]]) -> None:
    enricher = _PROPERTY_ENRICHER
    records: list[RawRecord] = []
    good_ids: list[str] = []
    for n, (kind, value) in enumerate(items):
        if kind == "good":
            good_ids.append(f"p{n}")
            records.append(_rec(_post(id=f"p{n}", text=value), n))
        else:
            records.append(_rec(value, n))
    result = enricher.process(records)
    assert len(result.enriched) + len(result.dead) == len(records)
    assert [p.id for p in result.enriched] == good_ids  # valid posts keep their order
    dead_lines = [d.source["line"] for d in result.dead]
    assert dead_lines == sorted(dead_lines)
    accounted = {p.post.id for p in result.enriched} | {f"p{n}" for n in dead_lines}
    assert len(accounted) == len(records)
    tally = Tally()
    tally.add(result)
    assert tally.consumed == tally.accepted + tally.rejected == len(records)


def _property_enricher() -> Enricher:
    return Enricher(detector=FixedDetector())


_PROPERTY_ENRICHER = _property_enricher()


def test_a_created_at_far_after_the_clock_is_processing_time() -> None:
    """9999 (or 2099) is no event time: the minute is the processing time's, as for an
    unreadable created_at, so one such post cannot put its area's mood series there."""
    now = time.time()
    assert epoch_minute("9999-12-31T23:00:00Z", now) == int(now // 60)
    assert minute_bucket("2099-01-01T00:00:00Z", 60.0) == minute_bucket(None, 60.0)
    soon = datetime.fromtimestamp(now + 200 * 86400, UTC).isoformat()  # months ahead: kept
    assert epoch_minute(soon, now) == int((now + 200 * 86400) // 60)
    assert event_time("9999-12-31T23:00:00Z") is None
    assert event_time("2027-04-27T12:00:00Z", now=1.8e9) == parse_time("2027-04-27T12:00:00Z")
    assert event_time("2030-01-01T00:00:00Z", now=1.8e9) is None  # 1.8e9: January 2027


def test_in_time_order_is_stable_and_keeps_untimed_items_in_place() -> None:
    """The one ordering of ``crowdwatch replay`` and ``crowdwatch score --sort``: by time,
    stable; an item without a time follows the item before it in its run (file), and the
    first untimed items of a run go first."""
    runs = [[(None, "a0"), (5.0, "a1"), (None, "a2"), (1.0, "a3"), (5.0, "a4")],
            [(None, "b0"), (3.0, "b1"), (float("nan"), "b2")]]
    assert in_time_order(runs) == ["a0", "b0", "a3", "b1", "b2", "a1", "a2", "a4"]
