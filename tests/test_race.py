"""The rebuttal race and rebuttal suggestions (models/race.py)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.event import EventConfig
from models.generate import generate
from models.official import OfficialRegistry
from models.race import (
    HEDGE_CUES,
    RaceConfig,
    RebuttalRace,
    denial_cues,
    has_denial_cue,
    rebuttal_minutes,
    rebuttals_summary,
    similarity,
    suggest_rebuttals,
    to_minute,
)
from models.reach import ReachTracker

M0 = to_minute("2027-04-27T12:00:00Z")


def test_to_minute() -> None:
    assert to_minute("2027-04-27T12:00:59Z") == M0
    assert to_minute("2027-04-27T14:00:00+02:00") == M0
    assert to_minute(datetime(2027, 4, 27, 12, 0, 30, tzinfo=UTC)) == M0
    assert to_minute(M0 * 60.0 + 59.9) == M0
    assert to_minute(M0) == M0
    with pytest.raises(ValueError):
        to_minute("soon")
    with pytest.raises(ValueError):
        to_minute(datetime(2027, 4, 27, 12, 0))  # noqa: DTZ001  (naive on purpose)


def _race(rebuttal: dict[int, int], rumour: dict[int, int], **cfg: Any) -> RebuttalRace:
    race = RebuttalRace("o1", "c1", RaceConfig(**cfg))
    for m, c in rebuttal.items():
        race.add_rebuttal(M0 + m, c)
    for m, c in rumour.items():
        race.add_rumour(M0 + m, c)
    return race


def test_rumour_out_runs_then_rebuttal_catches_up() -> None:
    rumour = {m: 4 for m in range(0, 40)}
    rebuttal = {10: 1, **{m: 1 for m in range(11, 25)}, **{m: 8 for m in range(25, 40)}}
    race = _race(rebuttal, rumour)
    events = race.advance(M0 + 40)
    assert [e["event"] for e in events] == ["fired", "resolved"]
    # judged from minute 19 (rebuttal out for the whole 10-minute window), confirmed at 20
    assert events[0]["minute"] == "2027-04-27T12:20:00Z"
    assert events[0]["growth_rumour"] == 40 and events[0]["growth_rebuttal"] == 10
    assert race.episodes[0]["resolved"] == events[1]["minute"]
    assert race.summary()["state"] == "quiet"
    assert race.time_to_rebuttal_s() == 600.0
    hist = race.history[-1]
    assert hist["ratio_cumulative"] == pytest.approx(sum(rebuttal.values()) / 160)
    assert hist["ratio_window"] == pytest.approx(80 / 40)


def test_history_keeps_only_the_newest_minutes() -> None:
    """A race lives as long as its link: its per-minute log must not grow forever."""
    race = _race({m: 1 for m in range(0, 300)}, {m: 2 for m in range(0, 300)},
                 history_minutes=60)
    race.advance(M0 + 300)
    assert len(race.history) == 60
    assert race.history[0]["minute"] == "2027-04-27T16:00:00Z"  # minute 240
    assert race.history[-1]["minute"] == "2027-04-27T16:59:00Z"
    assert race.summary()["rumour_reach"] == 600  # totals are not windowed
    with pytest.raises(ValueError):
        RaceConfig(history_minutes=0)


def test_rebuttal_wins_signal_stays_silent() -> None:
    rumour = {m: 3 for m in range(0, 30)}
    rebuttal = {m: 6 for m in range(5, 30)}
    race = _race(rebuttal, rumour)
    assert race.advance(M0 + 30) == []
    assert not race.firing
    assert race.reach_ratio() == pytest.approx(150 / 90)


def test_no_judgement_before_the_rebuttal_has_been_out_for_the_window() -> None:
    race = _race({20: 1}, {m: 10 for m in range(0, 25)})
    assert race.advance(M0 + 29) == []  # minute 29 is the first judged one
    assert [e["event"] for e in race.advance(M0 + 31)] == ["fired"]
    # a rumour without a rebuttal is not a race
    assert _race({}, {m: 10 for m in range(30)}).advance(M0 + 30) == []


def test_small_rumours_do_not_fire() -> None:
    race = _race({0: 1}, {m: 1 for m in range(0, 60, 3)}, min_rumour_growth=5)
    assert race.advance(M0 + 60) == []


def test_no_flapping_near_the_threshold() -> None:
    # the rumour alternates just above and just below the rebuttal, minute by minute
    rebuttal = {0: 1, **{m: 2 for m in range(1, 80)}}
    rumour = {m: (4 if m % 2 else 0) for m in range(0, 80)}
    race = _race(rebuttal, rumour, confirm_minutes=2, clear_minutes=3)
    events = race.advance(M0 + 80)
    assert len(events) <= 2
    states = [h["state"] for h in race.history]
    changes = sum(1 for a, b in itertools.pairwise(states) if a != b)
    assert changes <= 2


def test_late_data_counts_in_totals_not_in_the_past_signal() -> None:
    race = _race({0: 1}, {0: 1})
    race.advance(M0 + 5)
    race.add_rumour(M0 + 2, 50)
    assert race.summary()["rumour_reach"] == 51
    assert race.history[2]["rumour"] == 0  # minute 2 was already judged


@settings(max_examples=80, deadline=None)
@given(rebuttal=st.dictionaries(st.integers(0, 50), st.integers(0, 9), max_size=40),
       rumour=st.dictionaries(st.integers(0, 50), st.integers(0, 9), max_size=40),
       window=st.integers(1, 12), confirm=st.integers(1, 3), clear=st.integers(1, 4),
       step=st.integers(1, 20))
def test_property_matches_brute_force(rebuttal: dict[int, int], rumour: dict[int, int],
                                      window: int, confirm: int, clear: int,
                                      step: int) -> None:
    cfg = {"window_minutes": window, "confirm_minutes": confirm, "clear_minutes": clear}
    race = _race(rebuttal, rumour, **cfg)
    events: list[dict[str, Any]] = []
    for until in range(0, 62, step):  # advancing in any steps gives the same result
        events += race.advance(M0 + until)
    events += race.advance(M0 + 62)
    # brute force
    first_reb = min((m for m, c in rebuttal.items() if c > 0), default=None)
    start = min([*rebuttal, *rumour], default=None)
    expected: list[tuple[str, int]] = []
    if start is not None:
        state, streak = "quiet", 0
        for m in range(start, 62):
            g_r = sum(rumour.get(k, 0) for k in range(m - window + 1, m + 1))
            g_b = sum(rebuttal.get(k, 0) for k in range(m - window + 1, m + 1))
            out = first_reb is not None and m >= first_reb + window - 1 and g_r >= 5 \
                and g_r > g_b
            if state == "quiet":
                streak = streak + 1 if out else 0
                if streak >= confirm:
                    state, streak = "firing", 0
                    expected.append(("fired", m))
            else:
                streak = streak + 1 if not out else 0
                if streak >= clear:
                    state, streak = "quiet", 0
                    expected.append(("resolved", m))
    assert [(e["event"], to_minute(e["minute"]) - M0) for e in events] == expected
    # each episode fires once; events alternate
    names = [e["event"] for e in events]
    assert all(a != b for a, b in itertools.pairwise(names))


# ---------------------------------------------------------------------------------------
# on generated traffic
# ---------------------------------------------------------------------------------------
def _race_from_traffic(event: EventConfig, traffic: Any) -> tuple[RebuttalRace, list[Any]]:
    truth = traffic.truth
    by_id = {p["id"]: p for p in traffic.posts}
    tracker = ReachTracker(OfficialRegistry.from_event(event))
    tracker.feed(traffic.posts)
    reb = truth["rebuttals"][0]["official_post"]
    race = RebuttalRace(reb, "rumour-1")
    row = tracker.get(reb)
    assert row is not None
    for minute, count in rebuttal_minutes(row):
        race.add_rebuttal(minute, count)
    for pid in truth["rumour_posts"]:
        race.add_rumour(by_id[pid]["created_at"])
    race.set_starts(rumour=by_id[truth["rumour_roots"][0]]["created_at"],
                    rebuttal=by_id[reb]["created_at"])
    return race, race.advance(truth["end"])


def test_race_fires_when_the_rumour_out_runs(event: EventConfig) -> None:
    traffic = generate("rumour-rebuttal", seed=0, n_posts=5000)
    race, events = _race_from_traffic(event, traffic)
    assert [e["event"] for e in events][:1] == ["fired"]
    fired = events[0]
    assert fired["growth_rumour"] > fired["growth_rebuttal"]
    by_id = {p["id"]: p for p in traffic.posts}
    t_root = datetime.fromisoformat(by_id[traffic.truth["rumour_roots"][0]]["created_at"])
    t_reb = datetime.fromisoformat(by_id[race.official_post]["created_at"])
    assert race.time_to_rebuttal_s() == (t_reb - t_root).total_seconds() > 0
    assert race.summary()["rumour_reach"] == len(traffic.truth["rumour_posts"])
    assert rebuttals_summary([race]) == [{
        "official_post": race.official_post, "cluster": "rumour-1",
        "reach_ratio": race.reach_ratio(), "time_to_rebuttal_s": race.time_to_rebuttal_s(),
        "out_running_fired": True}]


@pytest.mark.parametrize("seed", [2, 3, 7])
def test_race_silent_when_the_rebuttal_keeps_up(event: EventConfig, seed: int) -> None:
    traffic = generate("rumour-rebuttal", seed=seed, n_posts=5000)
    race, events = _race_from_traffic(event, traffic)
    assert events == []
    assert race.episodes == []
    # the rebuttal did reach people
    assert race.summary()["rebuttal_reach"] > 20


@pytest.mark.parametrize("seed", [1, 6])
def test_quiet_nothing_is_a_rebuttal_and_nothing_fires(event: EventConfig, seed: int) -> None:
    traffic = generate("quiet", seed=seed, n_posts=4000)
    by_id = {p["id"]: p for p in traffic.posts}
    claims = [("shooting", "Er is een schietpartij bij de Dam, iedereen rent weg!"),
              ("bomb", "Bomb threat at Central Station, they're evacuating everything!!"),
              ("crowd", "Het is erg druk bij de Dam, mensen worden verdrukt")]
    tracker = ReachTracker(OfficialRegistry.from_event(event))
    tracker.feed(traffic.posts)
    for row in tracker.summary():
        post = by_id[row["id"]]
        assert suggest_rebuttals(post["text"], post.get("lang"), claims) == []
        # and a race against an empty cluster never fires
        race = RebuttalRace(row["id"], "none")
        for minute, count in rebuttal_minutes(row):
            race.add_rebuttal(minute, count)
        assert race.advance(traffic.truth["end"]) == []


@pytest.mark.parametrize("seed", [0, 5, 13, 21])
def test_suggest_rebuttals_finds_exactly_the_planted_ones(event: EventConfig,
                                                          seed: int) -> None:
    traffic = generate("rumour-rebuttal", seed=seed, n_posts=4000)
    by_id = {p["id"]: p for p in traffic.posts}
    claim = by_id[traffic.truth["rumour_roots"][0]]["text"]
    want = {r["official_post"] for r in traffic.truth["rebuttals"]}
    got = set()
    for row in traffic.truth["official_posts"]:
        if row["kind"] == "repost":  # a partner's repost is reach of the original
            continue
        post = by_id[row["id"]]
        hits = suggest_rebuttals(post["text"], post.get("lang"), [("c1", claim)])
        if hits:
            assert hits[0][0] == "c1" and 0 < hits[0][1] <= 1
            got.add(row["id"])
    assert got == want


def test_suggest_rebuttals_units() -> None:
    claims = [("shoot", "Er is een schietpartij bij de Dam, iedereen rent weg!"),
              ("tram", "Tram 4 rijdt niet meer vandaag")]
    nl = "Er is GEEN schietpartij op de Dam. Berichten hierover kloppen niet."
    assert [c for c, _ in suggest_rebuttals(nl, "nl", claims)] == ["shoot"]
    en = "There has been NO shooting at Dam square. Reports about this are false."
    assert [c for c, _ in suggest_rebuttals(en, "en", claims)] == ["shoot"]  # cross-lingual
    # close to the claim but no denial: an update, not a rebuttal
    assert suggest_rebuttals("Politie onderzoekt schietpartij op de Dam", "nl", claims) == []
    # a denial about something else
    assert suggest_rebuttals("Het gerucht over de vrijmarkt klopt niet", "nl", claims) == []
    # the caller's similarity (e.g. embeddings) replaces the lexical one
    hits = suggest_rebuttals("Dit is nepnieuws.", "nl",
                             [("x", "anything", lambda a, b: 0.9), ("y", "b", lambda a, b: 0.1)])
    assert hits == [("x", 0.675)]
    assert denial_cues("Dit is een fabeltje en een gerucht") == ["gerucht", "fabeltje"]
    assert "no incident" in denial_cues("There was no incident at the Dam")
    assert "debunk" in denial_cues("Debunked: the video is from 2019")
    assert denial_cues("Tram 4 rijdt niet via de Dam") == []
    # the one-pass check agrees with the cue list, on real festival traffic and edge cases
    texts = [p["text"] for p in generate("rumour-rebuttal", seed=3, n_posts=3000).posts]
    texts += ["Dit is een fabeltje en een gerucht", "There was no incident at the Dam",
              "Debunked: the video is from 2019", "Tram 4 rijdt niet via de Dam", "", "#nep",
              "Er is GEEN bommelding bij Centraal Station", "@politie niet waar https://x.nl"]
    assert any(denial_cues(t) for t in texts) and not all(denial_cues(t) for t in texts)
    assert [has_denial_cue(t) for t in texts] == [bool(denial_cues(t)) for t in texts]
    texts += ["Gerucht: schoten op de Dam", "Rumours of a shooter at the Dam",
              "Onbevestigd bericht: brand bij Centraal", "Unconfirmed reports of a stabbing",
              "Het gerucht klopt niet", "The rumour is false"]
    assert [has_denial_cue(t, hedges=False) for t in texts] == \
        [bool(set(denial_cues(t)) - HEDGE_CUES) for t in texts]
    hedged = texts[-6:-2]  # each names the rumour with one of the four hedge cues
    assert {c for t in hedged for c in denial_cues(t)} == HEDGE_CUES
    assert not any(has_denial_cue(t, hedges=False) for t in hedged)
    assert all(has_denial_cue(t) for t in hedged)
    assert has_denial_cue("Het gerucht klopt niet", hedges=False)
    assert similarity("Er is geen bommelding", "Bomb threat at Dam") > 0.2
    assert similarity("Fijne Koningsdag!", "Bomb threat at Dam") < 0.2
