"""Fuzzing every input path with malformed and adversarial posts (issue 9, item 3).

Bad input never crashes anything and is never silently dropped: every raw record ends up
enriched or dead-lettered with a :class:`~models.post.RejectReason` (and its original
bytes); the enriched posts then go through the rumour tracker and the official tracker,
whose invariants must hold.

* ``test_fuzz_property`` (normal run): a hypothesis property over the same generators
  (seeded, a few hundred examples, shrinks on failure).
* ``test_fuzz_bulk`` (``slow``): >= 100,000 records from a deterministic
  ``random.Random(seed)`` generator loop, in batches, through validation, language,
  tagging, areas, safety, the rumour tracker and the official tracker. Prints the counts
  tried per kind and the rejects per reason (``pytest -s`` to see them).
* ``test_fuzz_sentiment_sample`` (``slow``): the real default sentiment scorer on a sample
  of 2,000 adversarial texts.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from models.clusters import ClusterSettings, OnlineClusterer
from models.embed import HashingEmbedder
from models.enrich import KINDS, DeadLetter, Enricher, RawRecord, summarize
from models.event import load_event
from models.generate import generate
from models.lang import HybridDetector
from models.official import OfficialRegistry
from models.official_tracker import OfficialTracker
from models.post import Post, Reject, RejectReason, decode_post, decode_post_text
from models.privacy import Pseudonymiser
from models.rumour import RumourScorer, RumourSettings, load_default_claim_classifier
from models.rumour_tracker import TRACKED_KINDS, RumourTracker
from models.safety import CATEGORIES, classify
from models.stance import load_default_stance
from models.text import fold, hashtags, mentions, normalize, strip_for_language
from models.times import parse_time

ROOT = Path(__file__).resolve().parents[1]
PACKAGED_EVENT = ROOT / "streams" / "data" / "koningsdag-amsterdam.yaml"  # = runtime's
REPLAY = Path(__file__).resolve().parents[2] / "shared" / "data" / "replay"
MAX_TEXT = 10_000
BULK_RECORDS = 100_000
BATCH = 1_000
REASONS = {r.value for r in RejectReason}

# ---------------------------------------------------------------------------- ingredients

ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f"
CONTROL = "".join(chr(c) for c in (*range(0, 32), 127, *range(0x80, 0xA0)))
EMOJI_ZWJ = ("👨\u200d👩\u200d👧\u200d👦", "🏳️\u200d🌈", "👩🏽\u200d🚒", "🧑\u200d🤝\u200d🧑",
             "🇳🇱", "❤️\u200d🔥")
SNIPPETS = (
    "'; DROP TABLE posts; --", "\" OR 1=1 --", "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>", "{{7*7}}", "${jndi:ldap://x/a}", "../../etc/passwd",
    "%s%s%s%n", "\\u0000", "\\ud800", "<!--", "]]>", "\x00\x00", "null", "NaN", "-Infinity",
)
PHRASES = (
    "Steekpartij bij het Rijksmuseum, iemand ligt op de grond",
    "Er is een schietpartij op de Dam!! Klopt dit?",
    "Dit is nepnieuws, er is niks gebeurd", "Gedrang bij Centraal, mensen vallen",
    "Huge crowd crush near Museumplein, people fainting", "Is this true? source?",
    "Politie: er is geen aanslag, blijf kalm", "إطلاق نار في الساحة الرئيسية",
    "踩踏事件 阿姆斯特丹",
    "Koningsdag 🍊🇳🇱 gezellig op de grachten", "GVB: tram 2 rijdt niet, gebruik de metro",
    "Brand in de Jordaan? Rook boven de Westerkerk", "gewonden gewond ambulance politie",
)
URLS = ("https://t.co/abc", "http://x.y/z?q=1&a=%00", "www.example.nl",
        "https://" + "a" * 300 + ".nl")
OFFICIAL_HANDLES = ("politie_amsterdam", "gemeenteamsterdam", "brandweer_adam",
                    "POLITIE_AMSTERDAM", "@politie_amsterdam", "politie-amsterdam.bsky.social")
PLATFORMS = ("twitter", "bluesky", "mastodon", "reddit", "telegram", "", "TWITTER", "x" * 500)
FIELDS = ("id", "text", "platform", "created_at", "lang", "author", "reply_to", "repost_of",
          "quote_of", "geo", "kind")
WEIRD_VALUES: tuple[Any, ...] = (
    None, True, False, 0, -1, 2**63, 2**64 + 1, 10**30, 1.5, -0.0, 1e308, "", " ", "\t\n",
    [], [1, 2], {}, {"a": {"b": []}}, "x" * 1000, "\u202e", "\x00",
)
TIMES: tuple[Any, ...] = (
    "2027-04-27T12:00:00Z", "2027-04-27T12:00:00+02:00", "2027-04-27 12:00:00",
    "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00+14:00", "2027-02-30T25:61:61Z", "yesterday", "", "Z", "T",
    "2027-04-27T12:00:00.123456789Z", "2027-W17-2", "1e10", "-2027-01-01T00:00:00Z",
    "2027-04-27T12:00:00ZZ", "+275760-09-13T00:00:00Z", "2027-04-27T12:00:00\x00",
    "٢٠٢٧-٠٤-٢٧T12:00:00Z", "2100-01-01T00:00:00Z", "1970-01-01T00:00:00Z",
    "1969-12-31T23:59:59Z", 1714219200, 1.7e9, -1, [], {},
)
LANGS: tuple[Any, ...] = ("nl", "en", "ar", "zh", "NL", "nl-NL", "en_GB", "und", "", "xx",
                          "zz-ZZ-ZZ", "klingon", "\u202enl", 5, None)


def _load_seed_posts() -> list[dict[str, Any]]:
    """Real posts (a slice of each replay file, when the shared data is present) and
    generated traffic of every scenario, as the mutation corpus."""
    out: list[dict[str, Any]] = []
    if REPLAY.is_dir():
        for path in sorted(REPLAY.glob("*.posts.jsonl")):
            with path.open(encoding="utf-8") as fh:
                for i, line in enumerate(fh):
                    if i >= 150:
                        break
                    obj = json.loads(line)
                    if isinstance(obj, dict):
                        out.append(obj)
    for n, scenario in enumerate(("rumour-rebuttal", "quiet")):
        out += generate(scenario, seed=7 + n, n_posts=1500).posts
    return out


SEED_POSTS = _load_seed_posts()


# ---------------------------------------------------------------------------- generators
# Each takes a random.Random and returns one raw record (bytes, or None for a tombstone).

def _dump(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


def _base(rng: random.Random) -> dict[str, Any]:
    return dict(rng.choice(SEED_POSTS))


def _adv_text(rng: random.Random) -> str:
    pick = rng.randrange(20)
    phrase = rng.choice(PHRASES)
    if pick == 0:
        return "".join(rng.choice(CONTROL) for _ in range(rng.randrange(1, 50))) + phrase
    if pick == 1:
        return ZERO_WIDTH.join(phrase) if rng.random() < 0.5 else rng.choice(ZERO_WIDTH) * 200
    if pick == 2:
        return rng.choice(BIDI) + phrase[::-1] + rng.choice(BIDI) + phrase
    if pick == 3:
        return " ".join(rng.choice(EMOJI_ZWJ) for _ in range(rng.randrange(1, 60)))
    if pick == 4:
        return "a" + "\u0301" * 1000 + phrase + "".join(chr(0x300 + i % 112) for i in range(1000))
    if pick == 5:  # ~100 KB: over the limit (rejected) or just under it (accepted)
        n = rng.choice((100_000, MAX_TEXT, MAX_TEXT + 1, MAX_TEXT - 1))
        return (phrase + " ") * (n // (len(phrase) + 1)) + "x" * (n % (len(phrase) + 1))
    if pick == 6:
        return rng.choice(("", " ", "\t\n\r", "\u00a0\u2003\u3000", "\n" * 500, " " * 9000))
    if pick == 7:
        return " ".join(rng.choice(URLS) for _ in range(rng.randrange(1, 20)))
    if pick == 8:
        return " ".join("@" + rng.choice((*OFFICIAL_HANDLES, "a", "_", "x" * 80))
                        for _ in range(rng.randrange(1, 30)))
    if pick == 9:
        return rng.choice(SNIPPETS) + " " + phrase + " " + rng.choice(SNIPPETS)
    if pick == 10:
        return " ".join(rng.choice(PHRASES) for _ in range(rng.randrange(2, 6)))
    if pick == 11:
        return "#" * rng.randrange(1, 50) + " ".join("#" + w for w in phrase.split())
    if pick == 12:
        return "".join(chr(rng.randrange(0x20, 0x10FFFF)) for _ in range(rng.randrange(1, 80))
                       ).encode("utf-8", "ignore").decode("utf-8", "ignore")
    if pick == 13:
        return "".join(rng.choice((chr(0xFFFD), chr(0xFFFF), chr(0x10FFFF), "\U000e0001",
                                   "\U000e0041", "\ufdd0")) for _ in range(40)) + phrase
    if pick == 14:
        return phrase.upper() + "!!!!!!" * rng.randrange(1, 200)
    if pick == 15:
        return "?" * rng.randrange(1, 500)
    if pick == 16:
        return "geen " * 50 + phrase + " niet" * 50
    if pick == 17:
        return "RT @politie_amsterdam: " + phrase
    if pick == 18:
        return "ﷺ" * 100 + "𒐫" * 100 + "ǅ" * 50 + "ﬃ" * 50 + "İ" * 50
    return phrase


def g_random_bytes(rng: random.Random) -> bytes | None:
    return rng.randbytes(rng.randrange(0, 300))


def g_invalid_utf8(rng: random.Random) -> bytes | None:
    raw = bytearray(_dump(_base(rng)))
    bad = rng.choice((b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf",
                      b"\x80", b"\xe2\x82"))
    pos = rng.randrange(len(raw) + 1)
    raw[pos:pos] = bad
    return bytes(raw)


def g_truncated(rng: random.Random) -> bytes | None:
    raw = _dump(_base(rng))
    return raw[: rng.randrange(len(raw))]


def g_deep_nesting(rng: random.Random) -> bytes | None:
    depth = rng.choice((100, 1000, 10_000))
    opener, closer = rng.choice((("[", "]"), ('{"a":', "}")))
    nested = opener * depth + "1" + closer * depth
    where = rng.randrange(3)
    if where == 0:
        return nested.encode()
    if where == 1:  # as an extra field of an otherwise valid post
        return f'{{"id": "deep-{rng.randrange(10**6)}", "text": "diep", "x": {nested}}}'.encode()
    return f'{{"id": "deep", "text": {nested}}}'.encode()


def g_huge_numbers(rng: random.Random) -> bytes | None:
    big = rng.choice(("1" + "0" * 400, "-" + "9" * 5000, "1e400", "-1e400", "1e-400",
                      "123456789012345678901234567890", "0.0000000000000000000001"))
    field = rng.choice(("id", "text", "followers", "lat", "lon", "reply_to", "extra"))
    if field == "followers":
        return f'{{"id": "n1", "text": "x", "author": {{"followers": {big}}}}}'.encode()
    if field in ("lat", "lon"):
        return f'{{"id": "n2", "text": "x", "geo": {{"lat": {big}, "lon": {big}}}}}'.encode()
    if field == "extra":
        return f'{{"id": "n3", "text": "x", "score": {big}}}'.encode()
    return f'{{"id": "n4", "text": "x", "{field}": {big}}}'.replace(
        '"id": "n4", ', "" if field == "id" else '"id": "n4", ').encode()


def g_nan_inf(rng: random.Random) -> bytes | None:
    lit = rng.choice(("NaN", "Infinity", "-Infinity", "nan", "inf"))
    field = rng.choice(("lat", "followers", "id", "extra"))
    if field == "lat":
        return f'{{"id": "f1", "text": "x", "geo": {{"lat": {lit}, "lon": 4.9}}}}'.encode()
    if field == "followers":
        return f'{{"id": "f2", "text": "x", "author": {{"followers": {lit}}}}}'.encode()
    if field == "id":
        return f'{{"id": {lit}, "text": "x"}}'.encode()
    return f'{{"id": "f3", "text": "x", "sentiment": {lit}}}'.encode()


def g_wrong_types(rng: random.Random) -> bytes | None:
    post = _base(rng)
    for _ in range(rng.randrange(1, 3)):
        post[rng.choice(FIELDS)] = rng.choice(WEIRD_VALUES)
    if rng.random() < 0.3:
        author = {"id": rng.choice(WEIRD_VALUES), "handle": rng.choice(WEIRD_VALUES),
                  "followers": rng.choice(WEIRD_VALUES), "verified": rng.choice(WEIRD_VALUES)}
        post["author"] = {k: v for k, v in author.items() if rng.random() < 0.7}
    return _dump(post)


def g_weird_ids(rng: random.Random) -> bytes | None:
    post = _base(rng)
    post["id"] = rng.choice((0, -5, 2**70, "", " ", "\u200b", "\n", "x" * 100_000, "🔥",
                             "id with spaces", "../../x", "a\x00b", 1.0, True, [1], {"id": 1},
                             str(rng.randrange(10**6)), "\u202eevil"))
    return _dump(post)


def g_adversarial_text(rng: random.Random) -> bytes | None:
    post = _base(rng)
    post["text"] = _adv_text(rng)
    post["id"] = f"adv-{rng.randrange(10**9)}"
    if rng.random() < 0.3:
        post["lang"] = rng.choice(LANGS)
    return _dump(post)


def g_created_at(rng: random.Random) -> bytes | None:
    post = _base(rng)
    post["created_at"] = rng.choice(TIMES)
    return _dump(post)


def g_reply_graph(rng: random.Random) -> bytes | None:
    """Replies/reposts/quotes to self, to unknown ids and in cycles (a -> b -> a)."""
    n = rng.randrange(50)
    a, b = f"cyc-a-{n}", f"cyc-b-{n}"
    shape = rng.randrange(5)
    text = rng.choice(PHRASES)
    post: dict[str, Any]
    if shape == 0:
        post = {"id": a, "text": text, "reply_to": a, "kind": "reply"}
    elif shape == 1:
        post = {"id": a, "text": text, "reply_to": b, "kind": "reply"}
    elif shape == 2:
        post = {"id": b, "text": text, "reply_to": a, "kind": "reply"}
    elif shape == 3:
        post = {"id": a, "text": text, "repost_of": a, "quote_of": a, "reply_to": a}
    else:
        post = {"id": f"orphan-{rng.randrange(10**6)}", "text": text,
                rng.choice(("reply_to", "repost_of", "quote_of")): f"unknown-{rng.random()}",
                "kind": rng.choice([*sorted(KINDS), "other", "", "REPLY"])}
    post["created_at"] = rng.choice(TIMES[:8])
    post["platform"] = "twitter"
    post["author"] = {"handle": rng.choice((*OFFICIAL_HANDLES, "jan", "piet"))}
    return _dump(post)


def g_author(rng: random.Random) -> bytes | None:
    post = _base(rng)
    post["author"] = {
        "id": rng.choice((None, "", "u1", 7, "x" * 5000)),
        "handle": rng.choice((*OFFICIAL_HANDLES, None, "", "\u202epolitie")),
        "followers": rng.choice((-1, -(2**63), 0, 1, 2**31, 2**63, 10**40, None, 1.0, "10")),
        "verified": rng.choice((True, False, None, "true", 1)),
    }
    post["platform"] = rng.choice(PLATFORMS)
    return _dump(post)


def g_geo(rng: random.Random) -> bytes | None:
    post = _base(rng)
    lat = rng.choice((52.37, 90, 90.0001, -91, 1e308, -0.0, 0))
    lon = rng.choice((4.89, 180, 180.5, -181, -1e308, 0))
    post["geo"] = rng.choice((
        {"lat": lat, "lon": lon}, {"type": "Point", "coordinates": [lon, lat]},
        {"type": "Point", "coordinates": [lon]}, {"type": "Point", "coordinates": "4,52"},
        {"type": "Polygon", "coordinates": [[0, 0]]}, {"lat": "52", "lon": "4"},
        {"lat": True, "lon": False}, [lat, lon], "52.37,4.89", {"lat": lat},
        {"type": "Point", "coordinates": [lon, lat, 12345, "x"]},
    ))
    return _dump(post)


def g_lone_surrogate(rng: random.Random) -> bytes | None:
    sur = rng.choice(("\\ud800", "\\udfff", "\\ud83d", "\\ud83d\\ud83d", "\\udc00\\ud800"))
    where = rng.choice(("text", "id", "extra"))
    if where == "extra":
        return f'{{"id": "s1", "text": "x", "note": "{sur}"}}'.encode()
    other = "text" if where == "id" else "id"
    return f'{{"{where}": "a{sur}b", "{other}": "s2"}}'.encode()


def g_not_object(rng: random.Random) -> bytes | None:
    return rng.choice((b"[]", b"null", b"1", b'"post"', b"true", b"[{\"id\":\"1\",\"text\":\"x\"}]",
                       b"", b"   ", b"\n", b"\xef\xbb\xbf{}", None, b"{}", b"{}{}", b'{"id":"1"} x',
                       b'{"id":"1","text":"x"}\n{"id":"2","text":"y"}', b"\x00"))


def g_duplicate_keys(rng: random.Random) -> bytes | None:
    return rng.choice((
        b'{"id": "d1", "text": "x", "id": 5}', b'{"id": "d2", "text": 5, "text": "ok"}',
        b'{"id": "d3", "text": "x", "author": {}, "author": []}',
        b'\xef\xbb\xbf{"id": "bom", "text": "x"}', b'{"id":"ws"   ,  "text"  :"\\t"  }',
        b'{"id": "esc", "text": "\\u0000\\u001f\\u202e\\ufeff"}',
    ))


def _mutate_bytes(rng: random.Random, raw: bytes) -> bytes:
    buf = bytearray(raw)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(5)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:  # flip a byte
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif op == 1:  # delete a range
            del buf[pos:pos + rng.randrange(1, 20)]
        elif op == 2:  # insert JSON punctuation
            buf[pos:pos] = rng.choice((b'"', b"{", b"}", b"[", b"]", b",", b":", b"\\", b"null"))
        elif op == 3:  # duplicate a range
            buf[pos:pos] = buf[pos:pos + rng.randrange(1, 40)]
        else:  # swap two bytes
            if len(buf) > 1:
                j = rng.randrange(len(buf))
                k = min(pos, len(buf) - 1)
                buf[j], buf[k] = buf[k], buf[j]
    return bytes(buf)


def g_mutated_real(rng: random.Random) -> bytes | None:
    return _mutate_bytes(rng, _dump(_base(rng)))


def g_field_mutation(rng: random.Random) -> bytes | None:
    """A real or generated post with one field swapped for a value of another field."""
    post = _base(rng)
    donor = _base(rng)
    key = rng.choice(list(donor))
    post[rng.choice(FIELDS)] = donor[key]
    if rng.random() < 0.2:
        post.pop(rng.choice(list(post)), None)
    return _dump(post)


def g_valid(rng: random.Random) -> bytes | None:
    """An untouched real/generated post (the tracker needs a sane background too)."""
    return _dump(_base(rng))


GENERATORS: dict[str, Callable[[random.Random], bytes | None]] = {
    "random_bytes": g_random_bytes, "invalid_utf8": g_invalid_utf8, "truncated": g_truncated,
    "deep_nesting": g_deep_nesting, "huge_numbers": g_huge_numbers, "nan_inf": g_nan_inf,
    "wrong_types": g_wrong_types, "weird_ids": g_weird_ids,
    "adversarial_text": g_adversarial_text, "created_at": g_created_at,
    "reply_graph": g_reply_graph, "author": g_author, "geo": g_geo,
    "lone_surrogate": g_lone_surrogate, "not_object": g_not_object,
    "duplicate_keys": g_duplicate_keys, "mutated_real": g_mutated_real,
    "field_mutation": g_field_mutation, "valid": g_valid,
}
#: relative frequencies (the expensive generators are rarer)
WEIGHTS = {name: 1.0 for name in GENERATORS} | {
    "deep_nesting": 0.1, "adversarial_text": 3.0, "mutated_real": 2.0, "field_mutation": 2.0,
    "valid": 2.0, "wrong_types": 1.5, "reply_graph": 1.5,
}


def records(rng: random.Random, n: int) -> Iterator[tuple[str, bytes | None]]:
    names = list(GENERATORS)
    weights = [WEIGHTS[k] for k in names]
    for _ in range(n):
        kind = rng.choices(names, weights)[0]
        yield kind, GENERATORS[kind](rng)


# ---------------------------------------------------------------------------- the pipeline


class Pipeline:
    """Enricher -> RumourTracker (real stance + claim models) -> OfficialTracker."""

    def __init__(self, detector: HybridDetector | None = None) -> None:
        event = load_event(PACKAGED_EVENT)
        self.enricher = Enricher(event, max_text_chars=MAX_TEXT, detector=detector)
        stance, claims = load_default_stance(), load_default_claim_classifier()
        registry = OfficialRegistry.from_event(event)

        def tracker() -> RumourTracker:
            return RumourTracker(
                OnlineClusterer(ClusterSettings(), HashingEmbedder()),
                RumourScorer(RumourSettings()), stance=stance, claims=claims,
                pseudonymise=Pseudonymiser(b"fuzz-key"), clock=lambda: 1.8e9)

        # every enriched post; a post dated 9999 moves the event-time watermark there, after
        # which later posts are "late" and their clusters expire at once (see
        # docs/reliability.md), so a second pair of trackers sees only posts dated
        # 2000-2100 (or undated) and keeps clustering and racing under adversarial text
        self.rumours = tracker()
        self.official = OfficialTracker(registry)
        self.sane_rumours = tracker()
        self.sane_official = OfficialTracker(registry)
        self.reasons: Counter[str] = Counter()
        self.enriched = 0
        self.late = 0

    def run(self, raws: Sequence[bytes | None]) -> None:
        batch = [RawRecord(v, {"file": "fuzz", "line": i}) for i, v in enumerate(raws)]
        result = self.enricher.process(batch)
        # counts add up: nothing silently dropped
        assert len(result.enriched) + len(result.dead) == len(batch)
        originals = Counter(raws)
        for dead in result.dead:
            assert isinstance(dead, DeadLetter)
            assert dead.reason in REASONS, dead
            assert dead.detail
            assert originals[dead.original] > 0, "a dead letter lost its original bytes"
            originals[dead.original] -= 1
            dead.to_dict()  # serialisable whatever the bytes
            json.dumps(dead.to_dict())
            self.reasons[dead.reason] += 1
        for e in result.enriched:  # the accepted ones are exactly the decodable ones
            assert isinstance(e.post, Post)
            assert len(e.post.text) <= MAX_TEXT
            assert e.safety is None or e.safety.category in CATEGORIES
            summary = summarize(e, 1.8e9)  # what state and metrics keep of it
            assert summary.minute.isdigit() and summary.count_fields()
        self.enriched += len(result.enriched)
        dicts = [e.to_dict() for e in result.enriched]
        for d in dicts:
            json.dumps(d, ensure_ascii=False).encode("utf-8")  # what the agents publish
        self._track(self.rumours, self.official, dicts)
        self._track(self.sane_rumours, self.sane_official,
                    [d for d in dicts if _sane_time(d.get("created_at"))])

    def _track(self, rumours: RumourTracker, official: OfficialTracker,
               dicts: list[dict[str, Any]]) -> None:
        tracked = rumours.process(dicts)
        ann_ids = {a.id for a in tracked.annotations}
        want = {d["id"] for d in dicts if str(d.get("kind") or "") in TRACKED_KINDS}
        assert ann_ids <= want
        # every tracked post is answered: a post older than the TTL as "late", one whose
        # cluster a later post of the batch expired with that cluster (until 2026-12-07 the
        # latter got no annotation; this test let it pass when the batch expired clusters)
        missing = want - ann_ids
        assert not missing, f"tracked posts without annotation: {sorted(missing)[:5]}"
        if rumours is self.rumours:
            self.late += sum(a.how == "late" for a in tracked.annotations)
        for a in tracked.annotations:
            assert 0.0 <= a.rumour_score <= 1.0 and math.isfinite(a.rumour_score), a
        for c in tracked.changed:
            assert 0.0 <= c.score <= 1.0, c.id
            assert c.reach >= 0 and c.size >= 1
            snap = rumours.snapshot(c)
            json.dumps(snap)
        for ev in tracked.events:
            json.dumps(ev.to_dict("fuzz"))
        off = official.process(dicts, rumours, tracked)
        for row in off.changed_posts:
            for key, value in row.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    assert value >= 0, (key, row)
        json.dumps(official.summary(), default=str)
        json.dumps(rumours.tick().events and [e.to_dict("fuzz") for e in rumours.tick().events])
        for s in off.suggestions:
            assert 0.0 <= s["confidence"] <= 1.0


def _sane_time(value: Any) -> bool:
    ts = parse_time(value)
    return value is None or (ts is not None and 946_684_800 <= ts <= 4_102_444_800)


def _check_helpers(text: str) -> None:
    """models.text / models.safety / models.lang helpers on a raw string."""
    norm = normalize(text)
    folded = fold(norm)
    strip_for_language(norm)
    hashtags(norm)
    mentions(norm)
    res = classify(text)
    assert res.category is None or res.category in CATEGORIES
    assert isinstance(folded, str)


# ---------------------------------------------------------------------------- regressions

REGRESSIONS: list[bytes | None] = [
    None, b"", b"\xff", b"[" * 10_000 + b"]" * 10_000, b'{"id": NaN, "text": "x"}',
    b'{"id": "s", "text": "a\\ud800b"}', b'{"id": 1e400, "text": "x"}',
    b'{"id": "g", "text": "x", "geo": {"lat": 1e400, "lon": 0}}',
    b'{"id": "a", "text": "x", "reply_to": "a", "repost_of": "a", "quote_of": "a"}',
    b'{"id": "t", "text": "x", "created_at": "9999-12-31T23:59:59-14:00"}',
    b'{"id": "t0", "text": "x", "created_at": "0001-01-01T00:00:00+14:00"}',
    # crashes found by this fuzzer (fixed in models/): OverflowError in post._parse_geo
    b'{"id": "n2", "text": "x", "geo": {"lat": 1' + b"0" * 400 + b', "lon": 1}}',
    b'{"id": "n5", "text": "x", "author": {"followers": 1' + b"0" * 400 + b"}}",
    # ... and in rumour_tracker._iso / enrich.minute_bucket (times beyond year 9999 in UTC)
    b'{"id": "t9", "text": "x", "created_at": "9999-12-31T23:59:59-14:00"}',
    # ... and in reach.minute_iso -> race.to_minute (glibc writes year 1 as "1-01-01")
    b'{"id": "t1", "text": "x", "created_at": "0001-01-01T00:00:00Z"}',
]


def test_far_future_post_does_not_hang_a_linked_race() -> None:
    """Regression: one post dated 9999 moved the official tracker's watermark ~4e9 minutes
    on and RebuttalRace.advance looped (and kept a history row) for each: OOM."""
    pipe = Pipeline()
    raws = [_dump(p) for p in generate("rumour-rebuttal", seed=1, n_posts=3000).posts]
    for i in range(0, len(raws), 1000):
        pipe.run(raws[i:i + 1000])
    assert pipe.official.races, "the scenario should link at least one race"
    start = time.perf_counter()
    mark = pipe.official.watermark
    pipe.run([b'{"id": "late", "text": "x", "created_at": "9999-12-31T23:00:00Z"}'])
    # no event time since 2026-12-08 (models.times.MAX_AHEAD_S): the clock stays put
    assert pipe.official.watermark == mark
    assert pipe.official.reach.watermark is None or pipe.official.reach.watermark <= mark
    pipe.run(raws[:500])
    pipe.run([b'{"id": "early", "text": "x", "created_at": "0001-01-01T00:00:00Z"}'])
    assert time.perf_counter() - start < 30
    assert all(len(r.history) < 100_000 for r in pipe.official.races.values())


@pytest.fixture(scope="module")
def pipeline(detector: HybridDetector) -> Pipeline:
    return Pipeline(detector)


def test_regressions(pipeline: Pipeline) -> None:
    pipeline.run(REGRESSIONS)


def test_decode_never_raises_on_text_lines() -> None:
    rng = random.Random(3)
    for kind, raw in records(rng, 2_000):
        if raw is None:
            continue
        line = raw.decode("utf-8", "surrogateescape")
        result = decode_post_text(line, max_text_chars=MAX_TEXT)
        assert isinstance(result, Post | Reject), kind


@seed(20270427)
@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(
    st.one_of(
        st.binary(max_size=200),
        st.builds(lambda s: _dump(s), st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
            lambda inner: st.lists(inner, max_size=4)
            | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=5), inner, max_size=6),
            max_leaves=12)),
        st.builds(lambda i, t, k, r, f: _dump({"id": i, "text": t, "kind": k, "reply_to": r,
                                              "author": {"followers": f, "handle": "jan"}}),
                  st.text(max_size=8) | st.integers(), st.text(max_size=200),
                  st.sampled_from([*sorted(KINDS), "other"]), st.none() | st.text(max_size=4),
                  st.integers()),
        st.builds(lambda s, n: GENERATORS[n](random.Random(s)),
                  st.integers(0, 2**32), st.sampled_from(sorted(GENERATORS))),
    ),
    min_size=1, max_size=20))
def test_fuzz_property(raws: list[bytes | None]) -> None:
    """Any batch of raw records: every one accounted for, no exception anywhere."""
    for raw in raws:
        result = decode_post(raw, max_text_chars=MAX_TEXT)
        assert isinstance(result, Post | Reject)
        if isinstance(result, Post):
            _check_helpers(result.text)
    _PROPERTY_PIPELINE.run(raws)


_PROPERTY_PIPELINE = Pipeline()


@pytest.mark.slow
def test_fuzz_bulk(detector: HybridDetector) -> None:
    pipeline = Pipeline(detector)
    rng = random.Random(9_3)
    tried: Counter[str] = Counter()
    start = time.perf_counter()
    batch: list[bytes | None] = []
    for kind, raw in records(rng, BULK_RECORDS):
        tried[kind] += 1
        batch.append(raw)
        if len(batch) == BATCH:
            pipeline.run(batch)
            batch = []
    if batch:
        pipeline.run(batch)
    elapsed = time.perf_counter() - start
    total = sum(tried.values())
    assert total >= 100_000
    assert pipeline.enriched + sum(pipeline.reasons.values()) == total
    report = {
        "records": total, "enriched": pipeline.enriched,
        "dead_lettered": sum(pipeline.reasons.values()), "crashes": 0,
        "seconds": round(elapsed, 1), "tried_by_kind": dict(tried.most_common()),
        "rejected_by_reason": dict(pipeline.reasons.most_common()),
        "clusters_active": len(pipeline.rumours.clusterer.clusters),
        "clusters_expired": pipeline.rumours.clusterer.expired_total,
        "tracked_posts_late": pipeline.late,
        "rumour_watermark": pipeline.rumours.clusterer.watermark,
        "sane_clusters_active": len(pipeline.sane_rumours.clusterer.clusters),
        "sane_clusters_flagged": len(pipeline.sane_rumours.flagged()),
        "sane_races": len(pipeline.sane_official.races),
    }
    sys.stdout.write("\nFUZZ " + json.dumps(report, indent=1) + "\n")
    from tests.reliability_report import record

    record("fuzz", report)


@pytest.mark.slow
def test_fuzz_sentiment_sample() -> None:
    """The real default sentiment scorer on 2,000 adversarial texts: one finite score each."""
    from streams.runtime import sentiment_scorer_from
    from streams.settings import Settings

    scorer = sentiment_scorer_from(Settings())
    if scorer is None:
        pytest.skip("sentiment model is off in this environment")
    rng = random.Random(11)
    texts = [_adv_text(rng)[:MAX_TEXT] for _ in range(2_000)]
    start = time.perf_counter()
    scores = []
    for i in range(0, len(texts), 64):
        scores += scorer.score(texts[i:i + 64])
    assert len(scores) == len(texts)
    for s in scores:
        assert s.label in ("negative", "neutral", "positive")
        assert math.isfinite(s.score) and -1.0 <= s.score <= 1.0
    sys.stdout.write(f"\nFUZZ sentiment: {len(texts)} texts in "
                     f"{time.perf_counter() - start:.1f} s\n")
