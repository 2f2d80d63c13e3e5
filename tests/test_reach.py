"""Official accounts and the reach of their posts (models/official.py, models/reach.py)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.event import EventConfig, Role
from models.generate import generate
from models.official import OfficialRegistry, normalize_handle
from models.reach import (
    ReachTracker,
    author_key,
    engagement_edges,
    official_posts_summary,
    parse_time,
    record_kind,
)

SEEDS = [(3, 3000), (11, 6000)]


# ---------------------------------------------------------------------------------------
# OfficialRegistry
# ---------------------------------------------------------------------------------------
def test_registry_from_event_and_handle_spellings(event: EventConfig) -> None:
    reg = OfficialRegistry.from_event(event)
    assert len(reg) == len(event.official_accounts)
    police = reg.is_official("twitter", "@Politie_Amsterdam")
    assert police is not None and police.role is Role.POLICE
    assert reg.is_official("X", "https://x.com/politie_amsterdam/status/1") == police
    assert reg.is_official("twitter", "politie_amsterdam ") == police
    bsky = reg.is_official("bluesky", "@Politie-Amsterdam.bsky.social.")
    assert bsky is not None and bsky.handle == "politie-amsterdam.bsky.social"
    assert reg.is_official("bsky", "https://bsky.app/profile/politie-amsterdam.bsky.social") \
        == bsky
    masto = reg.is_official("mastodon", "@GemeenteAmsterdam@social.amsterdam.nl")
    assert masto is not None and masto.role is Role.MUNICIPALITY
    # a bare user name: unique among the registered Mastodon accounts
    assert reg.is_official("mastodon", "gemeenteamsterdam") == masto
    assert reg.is_official("mastodon", "gemeenteamsterdam", instance="social.amsterdam.nl") \
        == masto
    assert reg.is_official("mastodon", "gemeenteamsterdam", instance="mastodon.social") is None
    assert reg.is_official("mastodon", "https://social.amsterdam.nl/@gemeenteamsterdam") == masto
    assert reg.is_official("mastodon", "gemeenteamsterdam@other.example") is None
    # platform matters, and strangers are not official
    assert reg.is_official("bluesky", "politie_amsterdam") is None
    assert reg.is_official("twitter", "user_123") is None
    assert reg.is_official("twitter", None) is None


def test_registry_runtime_add_remove_and_ids(event: EventConfig) -> None:
    reg = OfficialRegistry.from_event(event)
    acc = reg.add("bluesky", "@Brandweer.bsky.social", "fire", name="Brandweer",
                  author_id="did:plc:abc123")
    assert acc.handle == "brandweer.bsky.social"
    assert reg.is_official("bluesky", "did:plc:abc123") == acc
    post = {"id": "1", "platform": "bluesky", "author": {"id": "did:plc:abc123"}}
    assert reg.author_of(post) == acc
    listed = reg.to_list()
    assert {"platform": "bluesky", "handle": "brandweer.bsky.social", "role": "fire",
            "name": "Brandweer", "author_ids": ["did:plc:abc123"]} in listed
    again = OfficialRegistry.from_list(listed)
    assert again.to_list() == listed
    assert reg.remove("bluesky", "brandweer.bsky.social")
    assert reg.is_official("bluesky", "did:plc:abc123") is None
    assert not reg.remove("bluesky", "brandweer.bsky.social")
    # removing an account from the event file hides it
    assert reg.remove("twitter", "@POLITIE_AMSTERDAM")
    assert reg.is_official("twitter", "politie_amsterdam") is None
    with pytest.raises(ValueError):
        reg.add("twitter", "@", "police")


def test_normalize_handle() -> None:
    assert normalize_handle("twitter", "@Foo") == "foo"
    assert normalize_handle("mastodon", "https://mastodon.example/users/Bar") \
        == "bar@mastodon.example"
    assert normalize_handle("bluesky", "Foo.Bsky.Social.") == "foo.bsky.social"


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------
def test_kinds_and_edges() -> None:
    assert record_kind({"id": "1"}) == "post"
    assert record_kind({"id": "1", "repost_of": "a"}) == "repost"
    assert record_kind({"id": "1", "kind": "like", "like_of": "a"}) == "like"
    assert record_kind({"id": "1", "kind": "weird"}) == "other"
    assert engagement_edges({"id": "1", "reply_to": "a"}) == [("a", "reply")]
    assert engagement_edges({"id": "1", "kind": "reply", "reply_to": "a", "quote_of": "b"}) \
        == [("a", "reply"), ("b", "quote")]
    assert engagement_edges({"id": "1", "kind": "like", "subject": "a"}) == [("a", "like")]
    assert engagement_edges({"id": "1", "kind": "delete", "delete_of": "a"}) == []
    assert author_key({"platform": "x", "author": {"handle": "@Foo"}}) == "x:@foo"
    assert author_key({"platform": "x"}) is None
    assert parse_time("2027-04-27T10:00:00Z") == parse_time("2027-04-27T12:00:00+02:00")
    assert parse_time("nonsense") is None


# ---------------------------------------------------------------------------------------
# against the generator's truth
# ---------------------------------------------------------------------------------------
def _truth_counts(truth: dict[str, Any]) -> dict[str, tuple[int, int, int]]:
    return {o["id"]: (o["reposts"], o["replies"], o["quotes"]) for o in truth["official_posts"]}


def _counts(tracker: ReachTracker) -> dict[str, tuple[int, int, int]]:
    return {s["id"]: (s["reposts"], s["replies"], s["quotes"]) for s in tracker.summary()}


def _brute_force(posts: list[dict[str, Any]], official_ids: set[str]) -> dict[str, Any]:
    """Distinct accounts, audience, per-minute curve and repost times, computed naively."""
    by_id = {p["id"]: p for p in posts}
    out: dict[str, Any] = {}
    for oid in official_ids:
        own = author_key(by_id[oid])
        kids = [p for p in posts if oid in (p.get("repost_of"), p.get("reply_to"),
                                            p.get("quote_of"))]
        accounts = {author_key(p) for p in kids} - {own}
        resharers: dict[str, int] = {}
        for p in kids:
            if p.get("repost_of") == oid or p.get("quote_of") == oid:
                key = author_key(p)
                assert key is not None
                resharers[key] = max(resharers.get(key, 0), p["author"]["followers"])
        resharers.pop(own or "", None)
        minutes: dict[str, int] = {}
        for p in kids:
            m = p["created_at"][:16] + ":00Z"
            minutes[m] = minutes.get(m, 0) + 1
        t0 = parse_time(by_id[oid]["created_at"])
        assert t0 is not None
        reposts = sorted(parse_time(p["created_at"]) or 0.0 for p in kids
                         if p.get("repost_of") == oid)
        ttr = {str(n): (max(0.0, reposts[n - 1] - t0) if len(reposts) >= n else None)
               for n in (10, 50, 100)}
        out[oid] = {"distinct_accounts": len(accounts),
                    "estimated_audience": sum(resharers.values()),
                    "curve": sorted([m, c] for m, c in minutes.items()),
                    "time_to_reposts": ttr}
    return out


@pytest.mark.parametrize(("seed", "n"), SEEDS)
def test_counts_equal_truth_rumour_rebuttal(event: EventConfig, seed: int, n: int) -> None:
    traffic = generate("rumour-rebuttal", seed=seed, n_posts=n)
    tracker = ReachTracker(OfficialRegistry.from_event(event))
    tracker.feed(traffic.posts)
    assert _counts(tracker) == _truth_counts(traffic.truth)
    assert len(traffic.truth["official_posts"]) > 10
    rows = {r["id"]: r for r in tracker.summary()}
    keys = ("role", "reposts", "replies", "quotes", "likes", "estimated_audience")
    assert sorted(tracker.totals(), key=repr) == sorted(  # what the gauges read
        ({k: r[k] for k in keys} for r in rows.values()), key=repr)
    truth_rows = {o["id"]: o for o in traffic.truth["official_posts"]}
    for oid, row in rows.items():
        assert row["account"] == truth_rows[oid]["account"]
        assert row["role"] == truth_rows[oid]["role"]
        assert row["likes"] == 0  # the generator makes no likes
        assert sum(c for _, c in row["curve"]) == row["engagements"]
    # the rebuttal spreads: its first reposts are timed
    reb = traffic.truth["rebuttals"][0]["official_post"]
    assert rows[reb]["time_to_reposts"]["10"] is not None
    expected = _brute_force(traffic.posts, set(rows))
    for oid, want in expected.items():
        got = rows[oid]
        assert {k: got[k] for k in want} == want, oid


@pytest.mark.parametrize("seed", [1, 8])
def test_counts_equal_truth_quiet(event: EventConfig, seed: int) -> None:
    traffic = generate("quiet", seed=seed, n_posts=4000)
    tracker = ReachTracker(OfficialRegistry.from_event(event))
    tracker.feed(traffic.posts)
    assert _counts(tracker) == _truth_counts(traffic.truth)
    assert official_posts_summary(tracker)[0].keys() >= {
        "id", "reposts", "replies", "quotes", "distinct_accounts", "estimated_audience"}


@pytest.mark.parametrize(("seed", "n"), SEEDS)
def test_redelivery_and_reordering_change_nothing(event: EventConfig, seed: int,
                                                  n: int) -> None:
    traffic = generate("rumour-rebuttal", seed=seed, n_posts=n)
    reg = OfficialRegistry.from_event(event)
    once = ReachTracker(reg)
    once.feed(traffic.posts)
    reference = once.summary()

    twice = ReachTracker(reg)
    for post in traffic.posts:  # every post delivered twice
        twice.feed([post, post])
    assert twice.summary() == reference

    rng = random.Random(seed)
    tail = list(traffic.posts[-n // 3:])
    rng.shuffle(tail)  # a shuffled re-delivery of the last third
    twice.feed(tail)
    assert twice.summary() == reference

    # out of order by a few seconds: shuffle inside windows of 15 posts, batches of 100
    jittered = list(traffic.posts)
    for i in range(0, len(jittered), 15):
        chunk = jittered[i:i + 15]
        rng.shuffle(chunk)
        jittered[i:i + 15] = chunk
    late = ReachTracker(reg)
    for i in range(0, len(jittered), 100):
        late.feed(jittered[i:i + 100])
    assert late.summary() == reference


def test_enriched_dicts(event: EventConfig, detector: Any) -> None:
    """The agents feed ``EnrichedPost.to_dict()``: same counts as the raw posts."""
    from models.enrich import Enricher, RawRecord

    traffic = generate("rumour-rebuttal", seed=5, n_posts=1500)
    enricher = Enricher(event, detector=detector)
    import json

    result = enricher.process([RawRecord(json.dumps(p).encode(), {"line": i})
                               for i, p in enumerate(traffic.posts)])
    assert not result.dead
    tracker = ReachTracker(OfficialRegistry.from_event(event))
    tracker.feed(e.to_dict() for e in result.enriched)
    assert _counts(tracker) == _truth_counts(traffic.truth)


# ---------------------------------------------------------------------------------------
# hand-made cases
# ---------------------------------------------------------------------------------------
T0 = "2027-04-27T12:00:00Z"


def _ts(sec: int) -> str:
    return f"2027-04-27T12:{sec // 60:02d}:{sec % 60:02d}Z"


def _official_post(pid: str = "o1", sec: int = 0) -> dict[str, Any]:
    return {"id": pid, "text": "Let op", "platform": "bluesky", "created_at": _ts(sec),
            "author": {"id": "did:plc:police", "handle": "politie-amsterdam.bsky.social",
                       "followers": 30000}}


def _eng(pid: str, kind: str, parent: str, sec: int, user: str,
         followers: int | None = 100) -> dict[str, Any]:
    post: dict[str, Any] = {"id": pid, "text": "", "platform": "bluesky", "created_at": _ts(sec),
                            "author": {"id": f"did:plc:{user}", "handle": f"{user}.bsky.social"}}
    if followers is not None:
        post["author"]["followers"] = followers
    ref = {"repost": "repost_of", "reply": "reply_to", "quote": "quote_of",
           "like": "like_of"}[kind]
    post[ref] = parent
    post["kind"] = kind
    return post


def test_likes_audience_and_milestones(event: EventConfig) -> None:
    tracker = ReachTracker(OfficialRegistry.from_event(event), milestones=(2, 3))
    posts = [_official_post(),
             _eng("r1", "repost", "o1", 30, "a", 1000),
             _eng("r2", "repost", "o1", 90, "a", 1500),  # same account: audience once (max)
             _eng("q1", "quote", "o1", 100, "b", None),  # unknown followers
             _eng("l1", "like", "o1", 5, "c"),
             _eng("p1", "reply", "o1", 70, "politie-amsterdam", 0)]
    posts[-1]["author"] = dict(posts[0]["author"])  # the police replying in its own thread
    changed = tracker.feed(posts)
    assert changed == ["o1", "p1"]  # the police's own reply is an official post too
    row = tracker.summary()[0]
    assert (row["reposts"], row["replies"], row["quotes"], row["likes"]) == (2, 1, 1, 1)
    assert row["distinct_accounts"] == 3  # a, b, c: the author itself not counted
    assert row["estimated_audience"] == 1500
    assert row["audience_unknown"] == 1
    assert row["time_to_reposts"] == {"2": 90.0, "3": None}
    assert row["curve"] == [["2027-04-27T12:00:00Z", 2], ["2027-04-27T12:01:00Z", 3]]
    assert row["first_seen"] == T0


def test_engagements_before_the_official_post(event: EventConfig) -> None:
    tracker = ReachTracker(OfficialRegistry.from_event(event))
    early = [_eng(f"r{i}", "repost", "o1", 10 + i, f"u{i}") for i in range(5)]
    assert tracker.feed(early) == []
    assert tracker.pending == 5
    tracker.feed(early)  # re-delivered while waiting
    assert tracker.pending == 5
    assert tracker.feed([_official_post(sec=8)]) == ["o1"]
    assert tracker.pending == 0
    tracker.feed(early)
    assert tracker.summary()[0]["reposts"] == 5


def test_pending_is_bounded(event: EventConfig) -> None:
    now = [0.0]
    tracker = ReachTracker(OfficialRegistry.from_event(event), pending_horizon_s=60,
                           pending_wall_s=30, max_pending=50, clock=lambda: now[0])
    tracker.feed([_eng(f"r{i}", "repost", f"p{i}", i, "u") for i in range(200)])
    assert tracker.pending <= 50
    tracker.feed([_eng("x", "reply", "nothing", 3000, "u")])  # watermark moves on ...
    assert tracker.pending == 50  # ... but they arrived less than 30 s ago (cap: 50)
    now[0] = 31.0
    tracker.feed([_eng("y", "reply", "nothing", 3001, "u")])
    assert tracker.pending == 2  # x and y: recent in processing time
    assert tracker.dropped_pending == 200
    # the dedupe window per post is bounded too
    small = ReachTracker(OfficialRegistry.from_event(event), max_ids_per_post=3)
    small.feed([_official_post()] + [_eng(f"r{i}", "repost", "o1", i, f"u{i}")
                                     for i in range(10)])
    assert len(small.posts["o1"].seen_ids) == 3


def test_only_official_posts_are_tracked(event: EventConfig) -> None:
    tracker = ReachTracker(OfficialRegistry.from_event(event), max_posts=2)
    citizen = {"id": "c1", "text": "hoi", "platform": "twitter", "created_at": T0,
               "author": {"id": "1", "handle": "someone"}}
    tracker.feed([citizen, _eng("r", "repost", "c1", 5, "u")])
    assert tracker.summary() == []
    tracker.feed([_official_post("o1", 0), _official_post("o2", 10), _official_post("o3", 20)])
    assert [r["id"] for r in tracker.summary()] == ["o2", "o3"]  # oldest evicted


# ---------------------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------------------
_events = st.lists(
    st.tuples(st.sampled_from(["repost", "reply", "quote", "like"]),
              st.sampled_from(["o1", "o2", "c9"]),
              st.integers(min_value=0, max_value=600),
              st.sampled_from(["a", "b", "c", "d"]),
              st.integers(min_value=0, max_value=5000)),
    max_size=40,
)


def _stream(events: list[tuple[str, str, int, str, int]]) -> list[dict[str, Any]]:
    posts = [_official_post("o1", 0), _official_post("o2", 30)]
    posts += [_eng(f"e{i}", kind, parent, sec, user, fol)
              for i, (kind, parent, sec, user, fol) in enumerate(events)]
    return posts


@settings(max_examples=60, deadline=None)
@given(events=_events, dup=st.lists(st.integers(min_value=0, max_value=60), max_size=30),
       seed=st.integers(min_value=0, max_value=10_000))
def test_property_redelivery_never_double_counts(event: EventConfig, events: list[Any],
                                                 dup: list[int], seed: int) -> None:
    reg = OfficialRegistry.from_event(event)
    posts = _stream(events)
    ref = ReachTracker(reg)
    ref.feed(posts)
    noisy = list(posts)
    for i in dup:  # insert re-deliveries anywhere after their first delivery
        if posts:
            j = i % len(posts)
            noisy.insert(min(len(noisy), j + 1 + seed % 5), posts[j])
    got = ReachTracker(reg)
    got.feed(noisy)
    assert got.summary() == ref.summary()
    want = {o: sum(1 for k, p, *_ in events if p == o) for o in ("o1", "o2")}
    assert {r["id"]: r["engagements"] for r in ref.summary()} == want


@settings(max_examples=60, deadline=None)
@given(events=_events, seed=st.integers(min_value=0, max_value=10_000),
       window=st.integers(min_value=2, max_value=8))
def test_property_local_permutations_keep_counts(event: EventConfig, events: list[Any],
                                                 seed: int, window: int) -> None:
    reg = OfficialRegistry.from_event(event)
    posts = _stream(events)
    ref = ReachTracker(reg)
    ref.feed(posts)
    rng = random.Random(seed)
    shuffled = list(posts)
    for i in range(0, len(shuffled), window):
        chunk = shuffled[i:i + window]
        rng.shuffle(chunk)
        shuffled[i:i + window] = chunk
    # the reordering here spans up to 10 minutes of event time: within the pending horizon
    got = ReachTracker(reg, pending_horizon_s=900)
    for post in shuffled:
        got.feed([post])
    assert got.summary() == ref.summary()


def test_a_backlog_read_out_of_order_still_counts_exactly(event: EventConfig) -> None:
    """After a crash the partitions' backlogs are read side by side: engagements can arrive
    many minutes of event time before their official post. They wait (processing-time
    grace) and are counted when it arrives."""
    tracker = ReachTracker(OfficialRegistry.from_event(event), pending_horizon_s=300)
    ahead = [_eng(f"r{i}", "repost", "o1", 3600 + i, f"u{i}") for i in range(20)]
    tracker.feed(ahead)  # an hour of event time ahead of the official post
    assert tracker.feed([_official_post(sec=8)]) == ["o1"]
    assert tracker.summary()[0]["reposts"] == 20
