"""Author pseudonymisation (issue #9): no raw author id or handle of a citizen leaves the
enrich stage, pseudonyms are deterministic per key, official accounts stay recognisable
(reach, rebuttals, webcare exact on generated traffic), ``crowdwatch score`` does the same."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from typer.testing import CliRunner

from models.enrich import Enricher, RawRecord
from models.event import EventConfig
from models.generate import generate, write_traffic
from models.official import OfficialRegistry
from models.official_tracker import OfficialTracker
from models.post import Author
from models.privacy import Pseudonymiser, is_author_pseudonym, process_key
from models.reach import ReachTracker
from models.sentiment import Sentiment
from models.webcare import WebcareQueue
from streams.batch import BatchProcessor, author_pseudonymiser, score_values
from streams.settings import Settings

KEY = b"test-key"  # the key of tests.test_rumour_tracker._tracker
PSEUDONYM = re.compile(r"^p:[0-9a-f]{16}$")


@pytest.fixture(scope="module")
def traffic() -> Any:
    return generate("rumour-rebuttal", seed=5, n_posts=1500)


def _raw_authors(posts: Sequence[dict[str, Any]], event: EventConfig) -> set[str]:
    """Raw ids and handles of citizens (not of the event's official accounts)."""
    official = {a.handle.lower() for a in event.official_accounts}
    out: set[str] = set()
    for p in posts:
        a = p.get("author") or {}
        if str(a.get("handle") or "").lower() in official:
            continue
        out.update(str(a[k]) for k in ("id", "handle") if a.get(k))
    return out


def _enrich(posts: Sequence[dict[str, Any]], event: EventConfig, detector: Any,
            p: Pseudonymiser | None) -> list[dict[str, Any]]:
    enricher = Enricher(event, detector=detector, pseudonymiser=p)
    result = enricher.process([RawRecord(json.dumps(x).encode(), {"line": i})
                               for i, x in enumerate(posts)])
    assert not result.dead
    return [e.to_dict() for e in result.enriched]


# ---------------------------------------------------------------------------------------
# the pseudonyms
# ---------------------------------------------------------------------------------------

def test_same_key_same_pseudonym_other_key_other_pseudonym() -> None:
    a, b, other = Pseudonymiser(KEY), Pseudonymiser(KEY.decode()), Pseudonymiser(b"other")
    v = a.author_value("bluesky", "did:plc:abc")
    assert PSEUDONYM.match(v) and is_author_pseudonym(v)
    assert b.author_value("bluesky", "did:plc:abc") == v  # str and bytes keys agree
    assert other.author_value("bluesky", "did:plc:abc") != v
    assert a.author_value("mastodon", "did:plc:abc") != v  # platform is part of the input
    assert a.author_value("bluesky", "did:plc:abd") != v
    assert a("bluesky:did:plc:abc") != v and a("x").startswith("u_")  # state pseudonyms differ


def test_spellings_of_one_account_share_a_pseudonym() -> None:
    p = Pseudonymiser(KEY)
    v = p.author_value("twitter", "politie_amsterdam")
    for platform, spelling in (("twitter", "@Politie_Amsterdam"), ("X", " politie_amsterdam"),
                               ("twitter", "https://x.com/politie_amsterdam")):
        assert p.author_value(platform, spelling) == v
    assert p.author_value("bluesky", "Politie.bsky.social.") == \
        p.author_value("bluesky", "politie.bsky.social")
    assert p.author_value("mastodon", "https://social.example/@jan") == \
        p.author_value("mastodon", "jan@social.example")
    assert p.author_value("twitter", v) == v  # idempotent


def test_without_a_key_one_random_key_per_process() -> None:
    a, b = Pseudonymiser(), Pseudonymiser("")
    assert not a.stable and a.key == b.key == process_key()
    assert a.author_value("twitter", "jan") == b.author_value("twitter", "jan")
    assert Pseudonymiser(KEY).stable


def test_author_keeps_followers_and_verified_and_drops_empty_values() -> None:
    p = Pseudonymiser(KEY)
    got = p.author("twitter", Author(id="42", handle="@jan", followers=7, verified=True))
    assert got == Author(id=p.author_value("twitter", "42"),
                         handle=p.author_value("twitter", "jan"), followers=7, verified=True)
    assert p.author("twitter", Author(id=" ", handle="@", followers=1)) == Author(followers=1)


@given(st.from_regex(r"[a-z0-9_]{1,15}", fullmatch=True), st.sampled_from(
    ["twitter", "bluesky", "mastodon", None]))
def test_pseudonyms_are_case_and_at_insensitive(handle: str, platform: str | None) -> None:
    p = Pseudonymiser(KEY)
    v = p.author_value(platform, handle)
    assert PSEUDONYM.match(v)
    assert p.author_value(platform, "@" + handle.upper()) == v


def test_settings_switch_it_on_by_default() -> None:
    assert Settings().pseudonymise_authors is True
    on = author_pseudonymiser(Settings(pseudonym_key=SecretStr("k")))
    assert on is not None and on.key == b"k"
    assert author_pseudonymiser(Settings(pseudonymise_authors=False)) is None


# ---------------------------------------------------------------------------------------
# what leaves the enrich stage
# ---------------------------------------------------------------------------------------

def test_enriched_scored_and_claims_records_carry_no_raw_citizen_author(
        traffic: Any, event: EventConfig, detector: Any) -> None:
    raw = _raw_authors(traffic.posts, event)
    assert len(raw) > 500
    proc = BatchProcessor(event, max_text_chars=10_000, topic_enriched="posts.enriched",
                          topic_deadletter="posts.deadletter", topic_claims="posts.claims",
                          pseudonymiser=Pseudonymiser(KEY))
    proc.enricher.detector = detector
    bad = [b'{"id": "x1", "text": 5, "author": {"id": "99", "handle": "geheim_persoon"}}',
           b'{"id": "x2", "text": "a", "author": {"handle": ["lijst_persoon"]}}',
           b'{"id": "x3", "text": "a", "author": {"id": 77, "followers": "veel"}}']
    batch = proc([RawRecord(json.dumps(p).encode(), {"topic": "posts.raw", "offset": i})
                  for i, p in enumerate(traffic.posts)]
                 + [RawRecord(b, {"topic": "posts.raw", "offset": -1}) for b in bad])
    topics = {t for t, _, _, _ in batch.outputs}
    assert topics == {"posts.enriched", "posts.claims", "posts.deadletter"}

    class Fixed:
        def score(self, texts: Sequence[str]) -> list[Sentiment]:
            return [Sentiment("neutral", 0.0) for _ in texts]

    enriched = [v for t, _, v, _ in batch.outputs if t == "posts.enriched"]
    scored = score_values(enriched, Fixed(), "posts.scored", "posts.claims")
    records = [json.loads(v) for t, _, v, _ in [*batch.outputs, *scored.outputs]
               if t != "posts.deadletter"]
    assert len(records) > 2 * len(traffic.posts)
    for rec in records:
        author = rec["author"]
        assert set(author) <= {"id", "handle", "followers", "verified"}
        assert all(PSEUDONYM.match(author[k]) for k in ("id", "handle") if k in author), author
        assert "followers" in author  # kept: reach and audience need it
    # no raw citizen id or handle anywhere outside the post texts
    for rec in records:
        for key, value in rec.items():
            if key not in ("text", "mentions"):
                assert not (raw & set(re.findall(r"[\w.@:-]+", json.dumps(value)))), (key, value)
    dead = [json.loads(v) for t, _, v, _ in batch.outputs if t == "posts.deadletter"]
    assert len(dead) == 3
    for d in dead:
        assert not re.search(r"geheim_persoon|lijst_persoon|\b99\b|\b77\b", d["original"])
    first = json.loads(dead[0]["original"])["author"]
    assert first == {"id": Pseudonymiser(KEY).author_value(None, "99"),
                     "handle": Pseudonymiser(KEY).author_value(None, "geheim_persoon")}
    assert json.loads(dead[1]["original"])["author"] == {"handle": "p:redacted"}


def test_enrichment_is_the_same_apart_from_the_author(traffic: Any, event: EventConfig,
                                                      detector: Any) -> None:
    posts = traffic.posts[:300]
    clear = _enrich(posts, event, detector, None)
    pseudo = _enrich(posts, event, detector, Pseudonymiser(KEY))
    again = _enrich(posts, event, detector, Pseudonymiser(KEY))
    other = _enrich(posts, event, detector, Pseudonymiser(b"other"))
    assert pseudo == again  # deterministic by key
    for c, p, o in zip(clear, pseudo, other, strict=True):
        assert {k: v for k, v in c.items() if k != "author"} == \
            {k: v for k, v in p.items() if k != "author"}
        assert c["author"]["followers"] == p["author"]["followers"]
        assert p["author"]["id"] != c["author"]["id"] and p["author"]["id"] != o["author"]["id"]
    # distinct accounts are preserved one to one
    assert len({c["author"]["id"] for c in clear}) == len({p["author"]["id"] for p in pseudo})


# ---------------------------------------------------------------------------------------
# official accounts stay recognisable
# ---------------------------------------------------------------------------------------

def _reach_counts(tracker: ReachTracker) -> dict[str, tuple[int, int, int]]:
    return {r["id"]: (r["reposts"], r["replies"], r["quotes"]) for r in tracker.summary()}


def test_reach_and_webcare_exact_on_pseudonymised_posts(traffic: Any, event: EventConfig,
                                                       detector: Any) -> None:
    p = Pseudonymiser(KEY)
    records = _enrich(traffic.posts, event, detector, p)
    truth = {o["id"]: (o["reposts"], o["replies"], o["quotes"])
             for o in traffic.truth["official_posts"]}

    blind = ReachTracker(OfficialRegistry.from_event(event))  # no key: officials unknown
    blind.feed(records)
    assert blind.summary() == []

    registry = OfficialRegistry.from_event(event, pseudonym=p.author_value)
    reach = ReachTracker(registry)
    reach.feed(records)
    assert _reach_counts(reach) == truth
    handles = {a.handle for a in event.official_accounts}
    assert {r["account"] for r in reach.summary()} <= handles  # officials shown in clear

    queue = WebcareQueue(registry)
    items = {}
    for i in range(0, len(records), 200):
        for change in queue.feed(records[i:i + 200]):
            items[change["id"]] = change
    assert set(items) == {q["id"] for q in traffic.truth["questions"]}
    raw = _raw_authors(traffic.posts, event)
    for item in items.values():
        assert item["to_account"] in handles
        assert is_author_pseudonym(item["asker_handle"])
        assert item["asker"].split(":", 1)[1] not in raw
    answered = {q["id"]: q.get("answered_by") for q in traffic.truth["questions"]}
    assert {k: v["answered_by"] for k, v in items.items()} == answered


def test_registry_matches_pseudonyms_of_runtime_accounts_and_ids() -> None:
    p = Pseudonymiser(KEY)
    reg = OfficialRegistry(pseudonym=p.author_value)
    post = {"platform": "bluesky", "author": {"id": p.author_value("bluesky", "did:plc:pol"),
                                              "handle": p.author_value("bluesky", "pol.bsky")}}
    assert reg.author_of(post) is None
    reg.add("bluesky", "politie.bsky.social", "police", author_id="did:plc:pol")
    acc = reg.author_of(post)
    assert acc is not None and acc.handle == "politie.bsky.social"
    assert reg.is_official("bluesky", p.author_value("bluesky", "@Politie.bsky.social")) == acc
    # a Mastodon account by its bare user name (unambiguous) or user@instance
    reg.add("mastodon", "https://social.amsterdam.nl/@gemeente", "municipality")
    m = reg.is_official("mastodon", p.author_value("mastodon", "gemeente"))
    assert m is not None and m.handle == "gemeente@social.amsterdam.nl"
    assert reg.is_official("mastodon", p.author_value("mastodon", "gemeente@social.amsterdam.nl"))
    reg.add("mastodon", "gemeente@other.example", "municipality")  # now ambiguous
    assert reg.is_official("mastodon", p.author_value("mastodon", "gemeente")) is None
    # removal, other keys and other platforms do not match
    assert reg.remove("bluesky", "politie.bsky.social")
    assert reg.author_of(post) is None
    again = OfficialRegistry.from_list(reg.to_list(), pseudonym=Pseudonymiser(b"x").author_value)
    assert again.is_official("mastodon", p.author_value("mastodon", "gemeente@other.example")) \
        is None
    assert reg.is_official("twitter", p.author_value("mastodon", "gemeente@other.example")) \
        is None


def test_rumour_stage_recognises_officials_in_pseudonymised_posts(
        traffic: Any, event: EventConfig, detector: Any) -> None:
    from agents.annotations import EventAnnotations
    from streams.metrics import OfficialMetrics, RumourMetrics
    from streams.rumours import OFFICIALS, RumourStage
    from streams.state import MemoryStore
    from tests.test_rumour_tracker import _tracker

    records = _enrich(traffic.posts, event, detector, Pseudonymiser(KEY))
    # the first official post is written by an account the stage learns only at run time
    first = traffic.truth["official_posts"][0]
    late = next(a for a in event.official_accounts if a.handle == first["account"])
    others = [a for a in event.official_accounts if a.handle != late.handle]
    base = OfficialRegistry(others)
    registry = CollectorRegistry()
    store = MemoryStore()
    stage = RumourStage(_tracker(), event=event.name, store=store,
                        metrics=RumourMetrics(registry, event.name, top_k=3),
                        topic_events="clusters.events", state_ttl_s=600,
                        officials=OfficialTracker(base),
                        official_metrics=OfficialMetrics(registry, event.name, top_k=3),
                        base_registry=base)
    ann = EventAnnotations(event.name)
    stage.annotations = ann
    values = [json.dumps(r).encode() for r in records]

    async def run() -> None:
        await store.put_docs(event.name, OFFICIALS, {f"{late.platform}:{late.handle}": {
            "platform": late.platform, "handle": late.handle, "role": late.role.value,
            "name": None, "author_ids": []}})
        await stage.tick()  # picks up the account added with `crowdwatch official add`
        for i in range(0, len(values), 300):
            await stage.process(values[i:i + 300])

    asyncio.run(run())
    stage.close()
    assert stage.officials is not None
    got = {r["id"]: (r["reposts"], r["replies"], r["quotes"])
           for r in stage.officials.reach.summary()}
    assert got == {o["id"]: (o["reposts"], o["replies"], o["quotes"])
                   for o in traffic.truth["official_posts"]}
    assert {k for k in (a.key for a in ann.queue) if k.startswith("official:")} == {
        f"official:{o['id']}" for o in traffic.truth["official_posts"]}
    # official posts open their own clusters (never part of a rumour), also the late account's
    for o in traffic.truth["official_posts"]:
        a = stage.tracker.annotation(o["id"])
        if a is not None and o["kind"] == "original":
            assert stage.tracker.clusterer.clusters[a.cluster].official_root, o


def test_official_matcher_recognises_pseudonymised_officials(
        traffic: Any, event: EventConfig, detector: Any) -> None:
    from streams.rumours import official_matcher

    records = _enrich(traffic.posts, event, detector, Pseudonymiser(KEY))
    ids = {o["id"] for o in traffic.truth["official_posts"]}
    match = official_matcher(event, Pseudonymiser(KEY))
    assert {r["id"] for r in records if match(r)} >= ids
    assert not any(official_matcher(event)(r) for r in records)  # without the key: none
    assert not any(official_matcher(None, Pseudonymiser(KEY))(r) for r in records)


# ---------------------------------------------------------------------------------------
# crowdwatch score
# ---------------------------------------------------------------------------------------

def _score(posts: Path, out: Path, *extra: str) -> list[dict[str, Any]]:
    from streams.cli import app

    res = CliRunner().invoke(app, ["score", str(posts), "--out", str(out),
                                   "--sentiment-model", "off", "--no-rumours", *extra])
    assert res.exit_code == 0, res.output
    return [json.loads(x) for x in out.read_text().splitlines()]


def test_score_pseudonymises_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        event: EventConfig) -> None:
    monkeypatch.delenv("CROWDWATCH_EVENT_FILE", raising=False)
    monkeypatch.delenv("CROWDWATCH_PSEUDONYMISE_AUTHORS", raising=False)
    monkeypatch.setenv("CROWDWATCH_STACK_FILE", str(tmp_path / "none.env"))
    t = generate("rumour-rebuttal", seed=3, n_posts=400)
    posts, _ = write_traffic(t, tmp_path)
    raw = _raw_authors(t.posts, event)
    monkeypatch.setenv("CROWDWATCH_PSEUDONYM_KEY", "k1")
    one = _score(posts, tmp_path / "a.jsonl")
    assert len(one) == len(t.posts)
    for row in one:
        assert all(PSEUDONYM.match(row["author"][k]) for k in ("id", "handle"))
        assert not ({row["author"]["id"], row["author"]["handle"]} & raw)
    assert _score(posts, tmp_path / "b.jsonl") == one  # same key: same output
    monkeypatch.setenv("CROWDWATCH_PSEUDONYM_KEY", "k2")
    two = _score(posts, tmp_path / "c.jsonl")
    assert [r["author"]["id"] for r in two] != [r["author"]["id"] for r in one]
    monkeypatch.setenv("CROWDWATCH_PSEUDONYMISE_AUTHORS", "false")
    clear = _score(posts, tmp_path / "d.jsonl")
    assert [r["author"] for r in clear] == [p["author"] for p in t.posts]
