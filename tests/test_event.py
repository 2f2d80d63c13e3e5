"""Tests of the event configuration (models/event.py)."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from models.event import EventConfig, EventConfigError, Role, load_event, parse_event

SRC = "ev.yaml"
HEAD = """\
name: test-event
window: {start: 2027-04-26T18:00:00+02:00, end: 2027-04-28T02:00:00+02:00}
"""
SQUARE = "[[[4.0, 52.0], [4.1, 52.0], [4.1, 52.1], [4.0, 52.1], [4.0, 52.0]]]"


def _area(coordinates: str, name: str = "A", kind: str = "Polygon") -> str:
    return f"  - name: {name}\n    geometry: {{type: {kind}, coordinates: {coordinates}}}\n"


def _areas(*areas: str) -> str:
    return HEAD + "areas:\n" + "".join(areas)


def _error(text: str) -> str:
    with pytest.raises(EventConfigError) as info:
        parse_event(text, SRC)
    return str(info.value)


# --------------------------------------------------------------------------- the example


def test_example_event_loads(event: EventConfig) -> None:
    assert event.name == "koningsdag-amsterdam"
    assert event.timezone == "Europe/Amsterdam"
    assert event.languages == ["nl", "en"]
    assert event.window.start.utcoffset() == timedelta(hours=2)
    assert event.window.end > event.window.start
    assert [a.name for a in event.areas] == [
        "Dam", "Centraal Station", "Jordaan", "Leidseplein", "Museumplein", "Vondelpark",
        "Rembrandtplein",
    ]
    assert [t.name for t in event.topics] == ["event", "crowd", "safety", "transport", "weather"]
    assert "koningsdag" in event.topics[0].terms and "#koningsdag" in event.topics[0].terms
    assert len(event.official_accounts) == 8
    police = [o for o in event.official_accounts if o.role is Role.POLICE]
    assert {(o.platform, o.handle) for o in police} == {
        ("twitter", "politie_amsterdam"), ("bluesky", "politie-amsterdam.bsky.social"),
    }


def test_example_geofences(event: EventConfig) -> None:
    fences = {g.name: g for g in event.geofences()}
    assert len(fences) == 7
    assert fences["Dam"].contains(4.8920, 52.3731)
    assert not fences["Dam"].contains(4.8800, 52.3600)
    assert fences["Vondelpark"].contains(4.8680, 52.3585)
    for fence in fences.values():  # the example's areas do not overlap
        min_lon, min_lat, max_lon, max_lat = fence.bbox
        centre = ((min_lon + max_lon) / 2, (min_lat + max_lat) / 2)
        assert [n for n, f in fences.items() if f.contains(*centre)] == [fence.name]


def test_load_event_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "mini.yaml"
    path.write_text(HEAD, encoding="utf-8")
    config = load_event(path)
    assert config.name == "test-event"
    assert config.languages == ["nl", "en"]  # defaults
    assert config.areas == [] and config.topics == [] and config.official_accounts == []
    assert load_event(str(path)) == config


def test_official_accounts_are_normalised() -> None:
    config = parse_event(HEAD + "official_accounts:\n"
                         "  - {platform: Twitter, handle: '@Politie_Amsterdam', role: police}\n")
    account = config.official_accounts[0]
    assert (account.platform, account.handle, account.role) == (
        "twitter", "politie_amsterdam", Role.POLICE,
    )


def test_config_is_frozen(event: EventConfig) -> None:
    with pytest.raises(ValidationError):
        event.name = "other"  # type: ignore[misc]


# --------------------------------------------------------------------------- mistakes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(HEAD + "topcs: []\n", "ev.yaml: topcs: unknown field (typo?)", id="typo"),
        pytest.param(HEAD + "window_end: x\n", "ev.yaml: window_end: unknown field",
                     id="typo-2"),
        pytest.param(HEAD + "areas:\n" + _area(SQUARE).replace("geometry", "geometri"),
                     "ev.yaml: areas[0].geometri: unknown field", id="nested-typo"),
        pytest.param("title: x\n", "ev.yaml: name: required field is missing",
                     id="missing-name"),
        pytest.param("name: a\n", "ev.yaml: window: required field is missing",
                     id="missing-window"),
        pytest.param("name: a\nwindow: {start: 2027-04-26T18:00:00+02:00}\n",
                     "ev.yaml: window.end: required field is missing", id="missing-end"),
        pytest.param(HEAD.replace("test-event", "Koningsdag 2027"),
                     "ev.yaml: name: event name is lowercase letters", id="name-slug"),
        pytest.param(HEAD.replace("test-event", "-dash-first"),
                     "ev.yaml: name: event name is lowercase letters", id="name-dash"),
        pytest.param(HEAD.replace("test-event", "a" * 64),
                     "ev.yaml: name: event name is lowercase letters", id="name-too-long"),
        pytest.param(HEAD.replace("test-event", "2027"), "ev.yaml: name: ", id="name-number"),
        pytest.param("name: a\nwindow: {start: 2027-04-26T18:00:00, "
                     "end: 2027-04-28T02:00:00+02:00}\n",
                     "ev.yaml: window.start: needs a UTC offset or Z", id="naive-start"),
        pytest.param("name: a\nwindow: {start: 2027-04-26, end: 2027-04-28T02:00:00Z}\n",
                     "ev.yaml: window.start: needs a UTC offset or Z", id="date-only"),
        pytest.param("name: a\nwindow: {start: 2027-04-28T18:00:00+02:00, "
                     "end: 2027-04-28T02:00:00+02:00}\n",
                     "ev.yaml: window: window.end must be after window.start",
                     id="end-before-start"),
        pytest.param("name: a\nwindow: {start: 2027-04-28T18:00:00+02:00, "
                     "end: 2027-04-28T16:00:00Z}\n",
                     "ev.yaml: window: window.end must be after window.start",
                     id="end-equals-start"),
        pytest.param(HEAD + "languages: [nl, english]\n",
                     "ev.yaml: languages: 'english' is not an ISO 639-1 code", id="language"),
        pytest.param(HEAD + "languages: [NL]\n",
                     "ev.yaml: languages: 'NL' is not an ISO 639-1 code", id="language-case"),
        pytest.param(HEAD + "languages: []\n", "ev.yaml: languages: ", id="no-languages"),
        pytest.param(_areas(_area("[[[4.0, 52.0], [4.1, 52.0], [4.1, 52.1], [4.0, 52.1]]]")),
                     "ring is not closed (first position [4.0, 52.0] != last [4.0, 52.1])",
                     id="unclosed-ring"),
        pytest.param(_areas(_area("[[[4.0, 52.0], [4.1, 52.0], [4.0, 52.0]]]")),
                     "coordinates[0]: a ring needs at least 4 positions", id="too-few"),
        pytest.param(_areas(_area("[[[4.0, 52.0], [200, 52.0], [4.1, 52.1], [4.0, 52.0]]]")),
                     "coordinates[0][1]: longitude 200 outside -180..180", id="lon-range"),
        pytest.param(_areas(_area("[[[4.0, 52.0], [4.1, 95.0], [4.1, 52.1], [4.0, 52.0]]]")),
                     "coordinates[0][1]: latitude 95.0 outside -90..90", id="lat-range"),
        pytest.param(_areas(_area("[[[4.0, 52.0], [4.1, 52.0], [4.1, 52.1], [.nan, 52.0]]]")),
                     "coordinates[0][3]: longitude nan outside -180..180", id="nan"),
        pytest.param(_areas(_area("[[[4.0, 52.0], [east, 52.0], [4.1, 52.1], [4.0, 52.0]]]")),
                     "coordinates[0][1]: lon/lat must be numbers", id="non-numeric"),
        pytest.param(_areas(_area("[[[4.0, 52.0], ['4.1', '52.0'], [4.1, 52.1], "
                                  "[4.0, 52.0]]]")),
                     "coordinates[0][1]: lon/lat must be numbers", id="quoted-numbers"),
        pytest.param(_areas(_area("[[[4.0, 52.0], [true, 52.0], [4.1, 52.1], [4.0, 52.0]]]")),
                     "coordinates[0][1]: lon/lat must be numbers", id="boolean"),
        pytest.param(_areas(_area("[[[4.0, 52.0], [4.1], [4.1, 52.1], [4.0, 52.0]]]")),
                     "coordinates[0][1]: a position is [lon, lat]", id="short-position"),
        pytest.param(_areas(_area("[]")), "coordinates: a Polygon is a non-empty list of rings",
                     id="empty-polygon"),
        pytest.param(_areas(_area("[]", kind="MultiPolygon")),
                     "coordinates: a MultiPolygon needs at least one polygon",
                     id="empty-multipolygon"),
        pytest.param(_areas(_area("[4.0, 52.0]", kind="Point")),
                     "ev.yaml: areas[0].geometry.type: Input should be 'Polygon' or "
                     "'MultiPolygon'", id="point"),
        pytest.param(_areas(_area(SQUARE), _area(SQUARE, name="a")),
                     "ev.yaml: areas: area 'a' is listed twice", id="duplicate-area"),
        pytest.param(HEAD + "topics: [{name: a, terms: [x]}, {name: a, terms: [y]}]\n",
                     "ev.yaml: topics: topic 'a' is listed twice", id="duplicate-topic"),
        pytest.param(HEAD + "topics: [{name: Crowd Safety, terms: [x]}]\n",
                     "ev.yaml: topics[0].name: topic names are lowercase", id="topic-slug"),
        pytest.param(HEAD + "topics: [{name: a, terms: []}]\n", "ev.yaml: topics[0].terms: ",
                     id="no-terms"),
        pytest.param(HEAD + "topics: [{name: a, terms: [ok, '#']}]\n",
                     "ev.yaml: topics[0].terms: empty keyword", id="empty-term"),
        pytest.param(HEAD + "official_accounts: [{platform: twitter, handle: x, "
                     "role: sheriff}]\n",
                     "ev.yaml: official_accounts[0].role: Input should be 'police'",
                     id="unknown-role"),
        pytest.param(HEAD + "official_accounts: [{platform: twitter, handle: '@X', role: fire},"
                     " {platform: Twitter, handle: x, role: police}]\n",
                     "ev.yaml: official_accounts: official account 'twitter:x' is listed twice",
                     id="duplicate-account"),
        pytest.param(HEAD + "official_accounts: [{platform: twitter, role: fire}]\n",
                     "ev.yaml: official_accounts[0].handle: required field is missing",
                     id="account-without-handle"),
        pytest.param(HEAD + "timezone: Europe/Amsterdm\n",
                     "ev.yaml: timezone: unknown time zone 'Europe/Amsterdm'", id="timezone"),
        pytest.param(HEAD + "timezone: ../../etc/passwd\n",
                     "ev.yaml: timezone: unknown time zone", id="timezone-path"),
        pytest.param(HEAD + "timezone: ''\n", "ev.yaml: timezone: unknown time zone ''",
                     id="timezone-empty"),
        pytest.param("name: a\nwindow: tomorrow\n", "ev.yaml: window: ", id="window-string"),
    ],
)
def test_each_mistake_gives_a_precise_message(text: str, expected: str) -> None:
    message = _error(text)
    assert expected in message
    assert message.startswith(f"{SRC}:")


def test_invalid_yaml_gives_the_line() -> None:
    message = _error(HEAD + "topics: [\n  - name: x\n")
    assert message.startswith("ev.yaml: line 4, column 3: invalid YAML: ")
    message = _error("name: a\n\twindow: x\n")
    assert message.startswith("ev.yaml: line 2, column 1: invalid YAML: ")
    assert "'\\t'" in message


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n", "", "# comment\n"])
def test_yaml_that_is_not_a_mapping(text: str) -> None:
    assert _error(text) == "ev.yaml: expected a mapping with name, window, areas, ..."


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(EventConfigError, match="no such file") as info:
        load_event(path)
    assert str(info.value) == f"{path}: no such file"


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(EventConfigError, match="cannot read"):
        load_event(tmp_path)  # a directory
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(HEAD.replace("test-event", "caf\xe9").encode("latin-1"))
    with pytest.raises(EventConfigError, match="cannot read"):
        load_event(latin1)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(HEAD + "topcs: []\n", encoding="utf-8")
    with pytest.raises(EventConfigError) as info:
        load_event(path)
    assert str(info.value) == f"{path}: topcs: unknown field (typo?)"


def test_event_config_error_is_a_value_error() -> None:
    assert issubclass(EventConfigError, ValueError)


def test_all_problems_are_reported_at_once() -> None:
    text = textwrap.dedent("""\
        name: Bad Name
        foo: 1
        timezone: Mars/Base
        window: {start: 2027-04-26T18:00:00, end: 2027-04-28T02:00:00+02:00}
        languages: [english]
        topics:
          - {name: ok, terms: ['#']}
        areas:
          - name: A
            geometry: {type: Polygon, coordinates: [[[4.0, 52.0], [4.1, 52.0], [4.1, 52.1]]]}
          - name: B
            geometry: {type: Polygon, coordinates: [[[4.0, 52.0], [4.1, 52.0], [4.1, 52.1],
                                                     [4.0, 52.1]]]}
        official_accounts: [{platform: twitter, handle: x, role: sheriff}]
        """)
    lines = _error(text).splitlines()
    expected = [
        "ev.yaml: name: event name is lowercase",
        "ev.yaml: foo: unknown field (typo?)",
        "ev.yaml: timezone: unknown time zone 'Mars/Base'",
        "ev.yaml: window.start: needs a UTC offset",
        "ev.yaml: languages: 'english' is not an ISO 639-1 code",
        "ev.yaml: topics[0].terms: empty keyword",
        "ev.yaml: areas[0].geometry: coordinates[0]: a ring needs at least 4 positions",
        "ev.yaml: areas[1].geometry: coordinates[0]: ring is not closed",
        "ev.yaml: official_accounts[0].role: ",
    ]
    for prefix in expected:
        assert [line for line in lines if line.startswith(prefix)], (prefix, lines)
    assert len(lines) == len(expected)


def test_duplicate_areas_are_reported_together_with_other_problems() -> None:
    message = _error(_areas(_area(SQUARE), _area(SQUARE)).replace("test-event", "Bad Name"))
    assert "event name is lowercase" in message
    assert "ev.yaml: areas: area 'A' is listed twice" in message


def test_geometry_location_matches_the_documented_format() -> None:
    message = _error(_areas(_area("[[[4.0, 52.0], [4.1, 52.0], [4.1, 52.1], [4.0, 52.1]]]")))
    # as in the module docstring: "areas[2].geometry: coordinates[0]: ring is not closed ..."
    assert message.startswith("ev.yaml: areas[0].geometry: coordinates[0]: ring is not closed")


# --------------------------------------------------------------------------- geometry kinds


def test_polygon_with_a_hole() -> None:
    outer = "[[4.0, 52.0], [4.4, 52.0], [4.4, 52.4], [4.0, 52.4], [4.0, 52.0]]"
    hole = "[[4.1, 52.1], [4.1, 52.3], [4.3, 52.3], [4.3, 52.1], [4.1, 52.1]]"
    config = parse_event(_areas(_area(f"[{outer}, {hole}]")))
    (fence,) = config.geofences()
    (polygon,) = fence.polygons
    assert len(polygon.holes) == 1
    assert fence.contains(4.05, 52.05)
    assert not fence.contains(4.2, 52.2)  # in the hole
    assert not fence.contains(4.5, 52.2)


def test_multipolygon_with_a_hole_and_altitude() -> None:
    first = "[[[4.0, 52.0], [4.1, 52.0], [4.1, 52.1], [4.0, 52.1], [4.0, 52.0]]]"
    second = ("[[[5.0, 53.0, 1.0], [5.4, 53.0, 1.0], [5.4, 53.4, 1.0], [5.0, 53.4, 1.0], "
              "[5.0, 53.0, 1.0]], "
              "[[5.1, 53.1], [5.3, 53.1], [5.3, 53.3], [5.1, 53.3], [5.1, 53.1]]]")
    config = parse_event(_areas(_area(f"[{first}, {second}]", kind="MultiPolygon")))
    (fence,) = config.geofences()
    assert len(fence.polygons) == 2
    assert fence.bbox == (4.0, 52.0, 5.4, 53.4)
    assert fence.contains(4.05, 52.05)
    assert fence.contains(5.05, 53.05)
    assert not fence.contains(5.2, 53.2)  # in the second polygon's hole
    assert not fence.contains(4.5, 52.5)  # between the two polygons, inside the bbox


def test_multipolygon_errors_name_the_polygon() -> None:
    good = "[[[4.0, 52.0], [4.1, 52.0], [4.1, 52.1], [4.0, 52.1], [4.0, 52.0]]]"
    bad = "[[[4.0, 52.0], [4.1, 52.0], [4.1, 52.1], [4.0, 52.1]]]"
    message = _error(_areas(_area(f"[{good}, {bad}]", kind="MultiPolygon")))
    assert "areas[0].geometry: coordinates[1][0]: ring is not closed" in message
