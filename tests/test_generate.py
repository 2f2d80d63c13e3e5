"""Tests of the synthetic event-traffic generator (models/generate.py)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.event import EventConfig, load_event, parse_event
from models.generate import (
    DEFAULT_EVENT_PATH,
    SCENARIOS,
    Traffic,
    generate,
    iter_generate,
    write_traffic,
)
from models.post import Post, decode_post_text

ROOT = Path(__file__).resolve().parent.parent
DEMO_POSTS = ROOT / "streams" / "data" / "demo-koningsdag.synthetic.posts.jsonl"
DEMO_TRUTH = ROOT / "streams" / "data" / "demo-koningsdag.synthetic.truth.json"
REF_FIELDS = ("reply_to", "repost_of", "quote_of")
KIND = {"reply_to": "replies", "repost_of": "reposts", "quote_of": "quotes"}


@pytest.fixture(scope="module")
def event() -> EventConfig:
    return load_event(DEFAULT_EVENT_PATH)


@pytest.fixture(scope="module")
def full() -> Traffic:
    return generate("rumour-rebuttal", seed=11, n_posts=5000)


@pytest.fixture(scope="module")
def quiet() -> Traffic:
    return generate("quiet", seed=11, n_posts=5000)


def _dump(traffic: Traffic) -> bytes:
    lines = [json.dumps(p, ensure_ascii=False) for p in traffic.posts]
    lines.append(json.dumps(traffic.truth, ensure_ascii=False, sort_keys=True))
    return "\n".join(lines).encode("utf-8")


def _ref(post: dict[str, Any]) -> tuple[str, str] | None:
    for name in REF_FIELDS:
        if name in post:
            return name, post[name]
    return None


def check_invariants(traffic: Traffic, event: EventConfig, n_posts: int) -> None:
    """Everything that must hold for any scenario, seed and size."""
    posts, truth = traffic.posts, traffic.truth
    assert len(posts) == n_posts == truth["n_posts"]
    by_id: dict[str, dict[str, Any]] = {}
    position: dict[str, int] = {}
    for i, p in enumerate(posts):
        decoded = decode_post_text(json.dumps(p), max_text_chars=10000)
        assert isinstance(decoded, Post), decoded
        assert isinstance(p["text"], str)
        assert p["synthetic"] is True
        assert p["platform"] in ("twitter", "bluesky", "mastodon")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", p["created_at"])
        assert p["id"] not in by_id, f"duplicate id {p['id']}"
        assert sum(name in p for name in REF_FIELDS) <= 1
        by_id[p["id"]] = p
        position[p["id"]] = i
    stamps = [p["created_at"] for p in posts]
    assert stamps == sorted(stamps)
    if posts:
        assert truth["start"] <= stamps[0] and stamps[-1] <= truth["end"]

    # references point to earlier posts on the same platform; official engagement counted
    recount: dict[str, Counter[str]] = {o["id"]: Counter() for o in truth["official_posts"]}
    for i, p in enumerate(posts):
        ref = _ref(p)
        if ref is None:
            continue
        name, target = ref
        assert target in by_id, f"{p['id']} refers to unknown {target}"
        assert position[target] < i
        assert by_id[target]["platform"] == p["platform"]
        if name == "repost_of" and p["platform"] == "twitter":
            assert p["text"].startswith("RT @" + by_id[target]["author"]["handle"] + ": ")
        if name == "repost_of" and p["platform"] != "twitter":
            assert p["text"] == ""
        if target in recount:
            recount[target][KIND[name]] += 1
    handles = {a.handle for a in event.official_accounts}
    for o in truth["official_posts"]:
        post = by_id[o["id"]]
        assert post["author"]["handle"] == o["account"] in handles
        assert (o["reposts"], o["replies"], o["quotes"]) == (
            recount[o["id"]]["reposts"], recount[o["id"]]["replies"], recount[o["id"]]["quotes"])
    official_authored = {p["id"] for p in posts if p["author"]["handle"] in handles}
    assert official_authored == {o["id"] for o in truth["official_posts"]}

    # counts
    counts = truth["counts"]
    assert counts["by_platform"] == dict(Counter(p["platform"] for p in posts))
    assert counts["by_lang"] == dict(Counter(p.get("lang", "missing") for p in posts))
    assert counts["geotagged"] == sum("geo" in p for p in posts)
    assert sum(counts["by_kind"].values()) == sum(counts["by_mood"].values()) == n_posts

    # the rumour
    rumour = set(truth["rumour_posts"])
    assert len(rumour) == len(truth["rumour_posts"]) and rumour <= set(by_id)
    assert set(truth["rumour_roots"]) <= rumour
    for pid in truth["rumour_roots"]:
        assert _ref(by_id[pid]) is None
    for pid in rumour - set(truth["rumour_roots"]):
        ref = _ref(by_id[pid])
        assert ref is not None and ref[1] in rumour
    if rumour:
        assert truth["rumour_roots"][0] == truth["rumour_posts"][0]
    for rb in truth["rebuttals"]:
        post = by_id[rb["official_post"]]
        assert rb["official_post"] in {o["id"] for o in truth["official_posts"]}
        assert set(rb["rumour_posts"]) <= rumour and rb["rumour_posts"]
        if rb["kind"] == "reply":
            assert post["reply_to"] == rb["rumour_posts"][0]
        else:
            assert position[rb["official_post"]] > position[truth["rumour_posts"][0]]
    assert set(truth["rebuttal_posts"]) <= set(by_id)
    assert not rumour & set(truth["rebuttal_posts"])

    # questions to officials, answered by a reply from the addressed account
    for q in truth["questions"]:
        post = by_id[q["id"]]
        assert q["to_account"] in handles
        target = ("@" + q["to_account"]) in post["text"] or (
            "reply_to" in post and by_id[post["reply_to"]]["author"]["handle"] == q["to_account"])
        assert target, post
        if q["answered_by"] is not None:
            answer = by_id[q["answered_by"]]
            assert answer["reply_to"] == q["id"]
            assert answer["author"]["handle"] == q["to_account"]
            assert position[q["answered_by"]] > position[q["id"]]

    # the crowd-safety burst: one area, geotagged inside it or naming it
    burst = truth["safety_burst"]
    if burst is not None:
        fence = next(f for f in event.geofences() if f.name == burst["area"])
        area = next(a for a in event.areas if a.name == burst["area"])
        names = [n.lower() for n in area.place_names]
        assert burst["post_ids"] and set(burst["post_ids"]) <= set(by_id)
        for pid in burst["post_ids"]:
            post = by_id[pid]
            assert burst["start"] <= post["created_at"] <= burst["end"]
            if "geo" in post:
                assert fence.contains(post["geo"]["lon"], post["geo"]["lat"])
            else:
                assert any(n in post["text"].lower() for n in names), post["text"]
        assert burst["geotagged"] == sum("geo" in by_id[pid] for pid in burst["post_ids"])

    # every geotag lies inside one of the event's areas
    fences = event.geofences()
    for p in posts:
        if "geo" in p:
            assert any(f.contains(p["geo"]["lon"], p["geo"]["lat"]) for f in fences)

    if truth["scenario"] == "quiet":
        assert truth["rumour_posts"] == truth["rumour_roots"] == truth["rebuttals"] == []
        assert truth["questions"] == [] and truth["safety_burst"] is None


# --- API and determinism -----------------------------------------------------------------
def test_unknown_scenario_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown scenario") as info:
        generate("riot", seed=1)
    for name in SCENARIOS:
        assert name in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_posts": -1},
        {"duration_minutes": 0.5},
        {"duration_minutes": float("nan")},
        {"start": datetime(2027, 4, 27, 12, 0)},  # naive # noqa: DTZ001
        {"start": datetime(2012, 4, 27, 12, 0, tzinfo=UTC)},
    ],
)
def test_invalid_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        generate("quiet", seed=1, **kwargs)


def test_scenarios_are_described() -> None:
    assert {"quiet", "rumour-rebuttal", "rumour-only", "crowd-safety"} <= set(SCENARIOS)
    assert all(isinstance(d, str) and d for d in SCENARIOS.values())


def test_same_seed_same_bytes() -> None:
    a = generate("rumour-rebuttal", seed=5, n_posts=1500)
    b = generate("rumour-rebuttal", seed=5, n_posts=1500)
    assert _dump(a) == _dump(b)


def test_deterministic_across_processes() -> None:
    code = (
        "import hashlib, json; from models.generate import generate; "
        "t = generate('rumour-rebuttal', seed=3, n_posts=800); "
        "print(hashlib.sha256((json.dumps(t.posts, ensure_ascii=False) "
        "+ json.dumps(t.truth, sort_keys=True)).encode()).hexdigest())"
    )
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True,
                             capture_output=True, text=True)
        digests.add(out.stdout.strip())
    t = generate("rumour-rebuttal", seed=3, n_posts=800)
    local = hashlib.sha256((json.dumps(t.posts, ensure_ascii=False)
                            + json.dumps(t.truth, sort_keys=True)).encode()).hexdigest()
    assert digests == {local}


def test_different_seeds_differ() -> None:
    a = generate("rumour-rebuttal", seed=1, n_posts=500)
    b = generate("rumour-rebuttal", seed=2, n_posts=500)
    assert [p["text"] for p in a.posts] != [p["text"] for p in b.posts]
    assert {p["id"] for p in a.posts} != {p["id"] for p in b.posts}


def test_iter_generate_matches_generate() -> None:
    stream = iter_generate("rumour-rebuttal", seed=9, n_posts=700)
    first = next(stream)
    with pytest.raises(RuntimeError):
        _ = stream.truth
    rest = list(stream)
    traffic = generate("rumour-rebuttal", seed=9, n_posts=700)
    assert [first, *rest] == traffic.posts
    assert stream.done and stream.truth == traffic.truth


def test_zero_posts() -> None:
    traffic = generate("rumour-rebuttal", seed=1, n_posts=0)
    assert traffic.posts == [] and traffic.truth["n_posts"] == 0
    assert traffic.truth["rumour_posts"] == [] and traffic.truth["safety_burst"] is None


def test_default_start_is_event_window_start(event: EventConfig) -> None:
    traffic = generate("quiet", seed=1, n_posts=300)
    start = event.window.start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert traffic.truth["start"] == start
    begin = datetime(2027, 4, 27, 13, 0, tzinfo=UTC)
    later = generate("quiet", seed=1, n_posts=300, start=begin, duration_minutes=30)
    assert later.truth["end"] == (begin + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert all("2027-04-27T13:00:00Z" <= p["created_at"] <= "2027-04-27T13:30:00Z"
               for p in later.posts)


# --- invariants, as properties -------------------------------------------------------------
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scenario=st.sampled_from(sorted(SCENARIOS)),
    seed=st.integers(min_value=-(2**40), max_value=2**40),
    n_posts=st.integers(min_value=0, max_value=600),
    duration=st.floats(min_value=1.0, max_value=300.0),
)
def test_invariants_hold_for_any_input(scenario: str, seed: int, n_posts: int,
                                       duration: float) -> None:
    event = load_event(DEFAULT_EVENT_PATH)
    traffic = generate(scenario, seed=seed, n_posts=n_posts, duration_minutes=duration)
    check_invariants(traffic, event, n_posts)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_invariants_at_realistic_size(scenario: str, event: EventConfig) -> None:
    check_invariants(generate(scenario, seed=2, n_posts=5000), event, 5000)


# --- the scenarios ------------------------------------------------------------------------
def test_quiet_is_a_clean_control(quiet: Traffic, event: EventConfig) -> None:
    truth = quiet.truth
    assert truth["rumour_posts"] == [] and truth["questions"] == []
    assert truth["safety_burst"] is None and truth["rebuttals"] == []
    assert truth["official_posts"], "official accounts post routine info"
    handles = {"@" + a.handle for a in event.official_accounts}
    for p in quiet.posts:
        if "?" in p["text"] and not p["text"].startswith("RT @"):
            assert not any(h in p["text"] for h in handles), p["text"]
    safety = re.compile(r"schiet|steek|bommelding|verdrukking|paniek|onwel|crush|stampede")
    assert not [p["text"] for p in quiet.posts if safety.search(p["text"].lower())]


def test_rumour_spreads_and_rebuttal_follows(full: Traffic, event: EventConfig) -> None:
    truth = full.truth
    by_id = {p["id"]: p for p in full.posts}
    rumour = [by_id[i] for i in truth["rumour_posts"]]
    assert len(rumour) >= 100
    kinds = Counter(next((k for k in REF_FIELDS if k in p), "root") for p in rumour)
    assert kinds["repost_of"] and kinds["reply_to"] and kinds["quote_of"]
    assert len(truth["rumour_roots"]) >= 3  # the claim and independent paraphrases
    texts = " ".join(p["text"].lower() for p in rumour)
    assert re.search(r"klopt dit|is dit waar|bron\?|source\?|is this true", texts)
    assert re.search(r"nepnieuws|fake|klopt niet", texts)
    assert len({p["lang"] for p in rumour if "lang" in p}) >= 2
    police = {a.handle for a in event.official_accounts if a.role.value == "police"}
    broadcast = [rb for rb in truth["rebuttals"] if rb["kind"] == "broadcast"]
    assert broadcast
    first = by_id[broadcast[0]["official_post"]]
    assert first["author"]["handle"] in police
    # the rumour leads: several minutes pass before the rebuttal
    lead = (datetime.fromisoformat(first["created_at"].replace("Z", "+00:00"))
            - datetime.fromisoformat(rumour[0]["created_at"].replace("Z", "+00:00")))
    assert lead >= timedelta(minutes=4)
    official = {o["id"]: o for o in truth["official_posts"]}
    assert official[first["id"]]["reposts"] > 0
    assert official[first["id"]]["replies"] + official[first["id"]]["quotes"] > 0
    assert len(truth["rebuttal_posts"]) > 20


def test_questions_to_officials(full: Traffic) -> None:
    questions = full.truth["questions"]
    assert len(questions) >= 20
    answered = [q for q in questions if q["answered_by"]]
    assert 0 < len(answered) < len(questions)
    by_id = {p["id"]: p for p in full.posts}
    langs = Counter(by_id[q["id"]].get("lang") for q in questions)
    assert langs["nl"] and langs["en"]
    assert len({q["to_account"] for q in questions}) >= 3
    assert any("reply_to" in by_id[q["id"]] for q in questions)
    assert any(by_id[q["id"]]["text"].startswith("@") for q in questions)


def test_safety_burst_is_short_and_local(full: Traffic) -> None:
    burst = full.truth["safety_burst"]
    assert burst is not None and len(burst["post_ids"]) >= 50
    span = (datetime.fromisoformat(burst["end"].replace("Z", "+00:00"))
            - datetime.fromisoformat(burst["start"].replace("Z", "+00:00")))
    assert timedelta(minutes=1) <= span <= timedelta(minutes=10)
    share = burst["geotagged"] / len(burst["post_ids"])
    assert 0.2 <= share <= 0.7
    by_id = {p["id"]: p for p in full.posts}
    texts = " ".join(by_id[i]["text"].lower() for i in burst["post_ids"])
    assert re.search(r"gedrang|verdrukking|paniek|onwel|ehbo|crush|faint", texts)
    assert burst["official_response"] in {o["id"] for o in full.truth["official_posts"]}


def test_optional_scenarios() -> None:
    only = generate("rumour-only", seed=4, n_posts=3000).truth
    assert only["rumour_posts"] and only["rebuttals"] == [] and only["safety_burst"] is None
    assert all(q["answered_by"] is None for q in only["questions"])
    crowd = generate("crowd-safety", seed=4, n_posts=3000).truth
    assert crowd["safety_burst"] is not None and crowd["rumour_posts"] == []
    assert crowd["questions"] == []


# --- realism ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["quiet", "full"])
def test_language_mix(name: str, request: pytest.FixtureRequest) -> None:
    traffic: Traffic = request.getfixturevalue(name)
    langs = Counter(p["lang"] for p in traffic.posts if "lang" in p)
    labelled = sum(langs.values())
    assert labelled / len(traffic.posts) >= 0.75  # most posts carry lang
    assert 0.62 <= langs["nl"] / labelled <= 0.78
    assert 0.18 <= langs["en"] / labelled <= 0.32
    assert 0.02 <= (langs["de"] + langs["fr"]) / labelled <= 0.09


def test_platforms_kinds_geo_and_mood(quiet: Traffic) -> None:
    posts = quiet.posts
    platforms = Counter(p["platform"] for p in posts)
    assert platforms["twitter"] > platforms["bluesky"] > platforms["mastodon"] > 0
    kinds = Counter(next((k for k in REF_FIELDS if k in p), "original") for p in posts)
    assert kinds["original"] > kinds["repost_of"] > kinds["reply_to"] > kinds["quote_of"] > 0
    geotagged = sum("geo" in p for p in posts) / len(posts)
    assert 0.10 <= geotagged <= 0.20
    mood = quiet.truth["counts"]["by_mood"]
    assert mood["positive"] > mood["neutral"] and mood["positive"] > mood["negative"]
    texts = [p["text"] for p in posts]
    assert any("#koningsdag" in t or "#kingsday" in t for t in texts)
    assert any(re.search("[🧡🎉🍻😍🥳]", t) for t in texts)
    assert len(set(texts)) > len(texts) / 4  # varied


def test_authors_are_fake_repeat_and_heavy_tailed(quiet: Traffic, event: EventConfig) -> None:
    officials = {a.handle for a in event.official_accounts}
    authors = [p["author"] for p in quiet.posts if p["author"]["handle"] not in officials]
    pattern = re.compile(r"[a-z]+[_-]\d+(\.bsky\.example|@mastodon\.example)?")
    assert all(pattern.fullmatch(a["handle"]) for a in authors)
    per_author = Counter(a["handle"] for a in authors)
    assert len(per_author) < len(authors) / 2  # repeat authors
    assert per_author.most_common(1)[0][1] >= 20  # a few very active ones
    followers = {a["handle"]: a["followers"] for a in authors}
    values = sorted(followers.values())
    assert max(values) > 50 * statistics.median(values)  # heavy tail
    ids_by_handle: dict[str, set[str]] = {}
    for a in authors:
        ids_by_handle.setdefault(a["handle"], set()).add(a["id"])
    assert all(len(ids) == 1 for ids in ids_by_handle.values())
    assert len({a["id"] for a in authors}) == len(per_author)


def test_custom_event_without_officials() -> None:
    event = parse_event(
        """
name: dance-valley
window: {start: "2027-08-01T12:00:00+02:00", end: "2027-08-01T23:00:00+02:00"}
topics: [{name: event, terms: ["#dancevalley", festival]}]
areas:
  - name: Main stage
    place_names: [main stage, hoofdpodium]
    geometry:
      type: Polygon
      coordinates: [[[4.70, 52.40], [4.71, 52.40], [4.71, 52.41], [4.70, 52.41], [4.70, 52.40]]]
"""
    )
    traffic = generate("rumour-rebuttal", seed=1, n_posts=1000, event=event)
    check_invariants(traffic, event, 1000)
    assert traffic.truth["rebuttals"] == [] and traffic.truth["official_posts"] == []
    assert traffic.truth["safety_burst"]["area"] == "Main stage"
    assert any("#dancevalley" in p["text"] for p in traffic.posts)


# --- files ----------------------------------------------------------------------------------
def test_write_traffic_roundtrip(tmp_path: Path) -> None:
    traffic = generate("rumour-rebuttal", seed=8, n_posts=400)
    posts_path, truth_path = write_traffic(traffic, tmp_path / "out")
    assert posts_path.name == "posts.jsonl" and truth_path.name == "truth.json"
    lines = posts_path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == traffic.posts
    assert json.loads(truth_path.read_text(encoding="utf-8")) == traffic.truth
    stream = iter_generate("rumour-rebuttal", seed=8, n_posts=400)
    p2, t2 = write_traffic(stream, tmp_path / "lazy", stem="x")
    assert p2.name == "x.posts.jsonl" and t2.name == "x.truth.json"
    assert p2.read_bytes() == posts_path.read_bytes()
    assert t2.read_bytes() == truth_path.read_bytes()


def test_bundled_demo_sample_is_reproducible() -> None:
    assert DEMO_POSTS.stat().st_size < 1_500_000
    traffic = generate("rumour-rebuttal", seed=2027, n_posts=4000, duration_minutes=60.0)
    lines = [json.dumps(p, ensure_ascii=False) for p in traffic.posts]
    assert DEMO_POSTS.read_text(encoding="utf-8").splitlines() == lines
    assert json.loads(DEMO_TRUTH.read_text(encoding="utf-8")) == traffic.truth
