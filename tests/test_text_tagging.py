"""Tests of text normalisation (models/text.py) and keyword/area tagging (models/tagging.py)."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.event import EventConfig
from models.post import GeoPoint
from models.tagging import Match, Tagger, TermMatcher
from models.text import fold, hashtags, mentions, normalize, strip_for_language

ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
C0_CONTROLS = "".join(chr(c) for c in [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])

# --------------------------------------------------------------------------- normalize


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Druk   op\tde\n\nDam  ", "Druk op de Dam"),
        ("a\r\nb", "a b"),
        ("a\u00a0\u2003b", "a b"),  # no-break space, em space
        ("a\u2028b\u2029c", "a b c"),  # line/paragraph separators
        ("bel\x07l\x00 \x1b[31mrood\x7f", "bell [31mrood"),
        ("zero\u200bwidth\u200c\u200d\u2060\ufeff!", "zerowidth!"),
        ("\ufeffBOM at the start", "BOM at the start"),
        ("cafe\u0301", "café"),  # NFC
        ("", ""),
        (" \t\n ", ""),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_normalize_keeps_emoji_and_non_latin_text() -> None:
    assert normalize("Feest 🎉🇳🇱 в Амстердаме 東京") == "Feest 🎉🇳🇱 в Амстердаме 東京"


def test_normalize_removes_c1_controls() -> None:
    assert normalize("a\x80b\x9bc\x9fd") == "abcd"


def test_normalize_output_is_nfc_even_after_removing_zero_width() -> None:
    out = normalize("e\u200b\u0301")
    assert unicodedata.is_normalized("NFC", out)
    assert normalize(out) == out


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_normalize_properties(raw: str) -> None:
    out = normalize(raw)
    assert out == out.strip()
    assert "  " not in out
    assert not any(ch in out for ch in C0_CONTROLS + ZERO_WIDTH + "\t\n\r")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=["Mn", "Mc", "Me"]), max_size=80))
def test_normalize_is_idempotent(raw: str) -> None:
    assert normalize(normalize(raw)) == normalize(raw)


# --------------------------------------------------------------------------- fold


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("KONINGSDAG", "koningsdag"),
        ("Café", "cafe"),
        ("ČESKÁ", "ceska"),
        ("één Ångström naïef", "een angstrom naief"),
        ("Straße", "strasse"),
        ("ＤＡＭ", "dam"),  # full-width
        ("Dam 🎉", "dam 🎉"),
    ],
)
def test_fold(raw: str, expected: str) -> None:
    assert fold(raw) == expected


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_fold_has_no_combining_marks(raw: str) -> None:
    assert not any(unicodedata.combining(ch) for ch in fold(raw))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=0xFF), max_size=60))
def test_fold_is_case_insensitive_on_latin_text(raw: str) -> None:
    assert fold(raw.upper()) == fold(raw.lower())


def test_fold_lowercases_styled_letters() -> None:
    assert fold("𝐊𝐎𝐍𝐈𝐍𝐆𝐒𝐃𝐀𝐆 𝑫𝒂𝒎") == "koningsdag dam"
    assert TermMatcher([("koningsdag", "event")]).find(fold("𝐊𝐨𝐧𝐢𝐧𝐠𝐬𝐝𝐚𝐠!"))


# --------------------------------------------------------------------------- hashtags, mentions


def test_hashtags() -> None:
    text = "#Koningsdag op de #Dam! #koningsdag #Café_2027 a#b ##x #😀 (#oranje)"
    assert hashtags(text) == ["koningsdag", "dam", "cafe_2027", "oranje"]


def test_mentions() -> None:
    text = ("@Politie_Amsterdam @politie_amsterdam, @gemeenteamsterdam@social.amsterdam.nl "
            "@politie-amsterdam.bsky.social mail info@politie.nl")
    assert mentions(text) == [
        "politie_amsterdam", "gemeenteamsterdam@social.amsterdam.nl",
        "politie-amsterdam.bsky.social",
    ]


def test_mentions_do_not_take_trailing_punctuation() -> None:
    assert mentions("Bedankt @politie_amsterdam.") == ["politie_amsterdam"]
    assert mentions("Zie @gemeenteamsterdam@social.amsterdam.nl.") == [
        "gemeenteamsterdam@social.amsterdam.nl"
    ]


def test_strip_for_language() -> None:
    text = ("RT @bbc_news: Heel druk op de #Dam https://t.co/AbCdEf www.example.com/x "
            "met @politie_amsterdam")
    assert strip_for_language(text) == "Heel druk op de Dam met"


# --------------------------------------------------------------------------- TermMatcher


def _find(matcher: TermMatcher, text: str) -> list[str]:
    return [m.term for m in matcher.find(fold(text))]


PLACES = TermMatcher([("dam", "Dam"), ("damrak", "Dam"), ("dam square", "Dam"),
                      ("de dam", "Dam")])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Amsterdam is vol", []),
        ("damwand en dammen", []),
        ("Op de Damrak", ["damrak"]),
        ("Druk op de Dam!", ["de dam"]),
        ("Dam, Damrak en dam.", ["dam", "damrak"]),
        ("dam-square", ["dam"]),  # '-' is a word boundary
        ("dam_square", []),  # '_' is a word character
        ("dam2027", []),
        ("#dam", ["dam"]),
        ("x#dam", []),
        ("op de DAM", ["de dam"]),
    ],
)
def test_word_boundaries(text: str, expected: list[str]) -> None:
    assert _find(PLACES, text) == expected


@pytest.mark.parametrize("gap", [" ", "   ", "\t", "\n", " \n\t "])
def test_multi_word_terms_match_across_whitespace(gap: str) -> None:
    assert _find(PLACES, f"iedereen naar dam{gap}square nu") == ["dam square"]


def test_multi_word_term_does_not_match_glued() -> None:
    assert _find(PLACES, "damsquare") == []


def test_hashtag_terms_match_only_the_hashtag() -> None:
    matcher = TermMatcher([("#kingsday", "event")])
    assert _find(matcher, "Happy #KingsDay") == ["#kingsday"]
    assert _find(matcher, "Happy KingsDay") == []
    assert _find(matcher, "Happy ##kingsday") == []


def test_plain_terms_also_match_their_hashtag() -> None:
    matcher = TermMatcher([("koningsdag", "event")])
    assert _find(matcher, "Fijne #Koningsdag") == ["koningsdag"]
    assert _find(matcher, "Fijne Koningsdag") == ["koningsdag"]


def test_plain_term_and_hashtag_term_in_different_groups_both_match() -> None:
    matcher = TermMatcher([("koningsdag", "event"), ("#koningsdag", "hashtags")])
    assert {m.group for m in matcher.find("#koningsdag")} == {"event", "hashtags"}


def test_matching_is_accent_and_case_insensitive() -> None:
    matcher = TermMatcher([("café", "food"), ("EHBO", "safety")])
    assert _find(matcher, "CAFE vol, Café leeg, cafe dicht, ehbo post") == ["cafe", "ehbo"]


def test_apostrophe_terms() -> None:
    matcher = TermMatcher([("king's day", "event")])
    assert _find(matcher, "Happy King's  Day!") == ["king's day"]


def test_terms_in_several_groups_and_order_of_first_appearance() -> None:
    matcher = TermMatcher([("tram", "transport"), ("tram", "crowd"), ("regen", "weather"),
                           ("Tram", "transport")])
    assert matcher.find("regen en tram en regen") == [
        Match("regen", "weather"), Match("tram", "transport"), Match("tram", "crowd"),
    ]


def test_empty_matcher() -> None:
    assert TermMatcher([]).empty
    assert TermMatcher([("   ", "x")]).empty
    assert TermMatcher([]).find("anything") == []


def test_regex_special_characters_are_literal() -> None:
    matcher = TermMatcher([("a.b", "x"), ("(c)", "y")])
    assert _find(matcher, "axb acb") == []
    assert _find(matcher, "a.b") == ["a.b"]


_TOKENS = ["dam", "Dam", "#dam", "damrak", "amsterdam", "square", "de", "dammen", "x#dam",
           "dam_", "Dám"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(_TOKENS), max_size=8),
       st.lists(st.sampled_from([" ", "  ", "\n", "\t"]), min_size=8, max_size=8))
def test_matches_are_whole_words(tokens: list[str], gaps: list[str]) -> None:
    text = "".join(t + g for t, g in zip(tokens, gaps, strict=False))
    words = [fold(t) for t in tokens]
    bare = [w[1:] if w.startswith("#") else w for w in words]
    found = PLACES.find(fold(text))
    for match in found:
        term = match.term.split()
        assert any(bare[i:i + len(term)] == term for i in range(len(bare))), (text, match)
    if "dam" in bare or "damrak" in bare:
        assert found, text
    else:
        assert not found, (text, found)


# --------------------------------------------------------------------------- Tagger


def test_tagger_keywords(event: EventConfig) -> None:
    tagger = Tagger(event)
    keywords, topics = tagger.keywords_for(fold("Druk op de Dam, geen TRAM meer! #Koningsdag"))
    assert keywords == ["druk", "tram", "#koningsdag"]
    assert topics == ["crowd", "transport", "event"]


def test_tagger_areas_from_text(event: EventConfig) -> None:
    tagger = Tagger(event)
    assert tagger.areas_for(fold("Druk op de Dam en bij Centraal Station"), None) == (
        ["Dam", "Centraal Station"], "text",
    )
    assert tagger.areas_for(fold("druk in amsterdam"), None) == ([], None)
    assert tagger.areas_for(fold("Rembrandtplein"), None) == (["Rembrandtplein"], "text")


def test_tagger_geo_wins_over_text(event: EventConfig) -> None:
    tagger = Tagger(event)
    in_vondelpark = GeoPoint(lon=4.8680, lat=52.3585)
    assert tagger.areas_for(fold("op weg naar de Dam"), in_vondelpark) == (["Vondelpark"], "geo")


def test_tagger_geo_outside_every_area_falls_back_to_text(event: EventConfig) -> None:
    tagger = Tagger(event)
    in_utrecht = GeoPoint(lon=5.1214, lat=52.0907)
    assert tagger.areas_for(fold("op weg naar de Dam"), in_utrecht) == (["Dam"], "text")
    assert tagger.areas_for(fold("mooi weer"), in_utrecht) == ([], None)


def test_tagger_without_event() -> None:
    tagger = Tagger(None)
    assert tagger.keywords_for("druk op de dam") == ([], [])
    assert tagger.areas_for("druk op de dam", GeoPoint(lon=4.892, lat=52.373)) == ([], None)
