"""Keyword/topic and area tagging.

Terms are matched on the folded text (case- and accent-insensitive) on word
boundaries; a term written with ``#`` matches only the hashtag, a term without
``#`` matches the word and the hashtag (``koningsdag`` matches ``#Koningsdag``).
Multi-word terms ("dam square") match across any run of whitespace. Areas come
from the geotag when the post has one inside a geofence, else from place names
mentioned in the text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from models.event import EventConfig
from models.geo import Geofence
from models.post import GeoPoint
from models.text import fold


@dataclass(frozen=True, slots=True)
class Match:
    term: str  # canonical (folded) form of the configured term
    group: str  # topic name or area name


class TermMatcher:
    """Matches many terms in one regex pass; each term belongs to one or more groups."""

    def __init__(self, terms: Iterable[tuple[str, str]]) -> None:
        groups: dict[str, list[str]] = {}
        for term, group in terms:
            key = self.canonical(term)
            if key and group not in groups.setdefault(key, []):
                groups[key].append(group)
        self._groups = groups
        self._regex: re.Pattern[str] | None = None
        if groups:
            parts = []
            for key in sorted(groups, key=len, reverse=True):  # longest first wins
                body = r"\s+".join(re.escape(w) for w in key.split())
                parts.append(body if key.startswith("#") else "#?" + body)
            self._regex = re.compile(r"(?<![\w#])(?:" + "|".join(parts) + r")(?!\w)")

    @staticmethod
    def canonical(term: str) -> str:
        return " ".join(fold(term).split())

    @property
    def empty(self) -> bool:
        return self._regex is None

    def find(self, folded_text: str) -> list[Match]:
        """All distinct (term, group) matches, in order of first appearance."""
        if self._regex is None:
            return []
        found: dict[tuple[str, str], None] = {}
        for m in self._regex.finditer(folded_text):
            key = " ".join(m.group(0).split())
            # '#koningsdag' matches the term '#koningsdag' and the plain term 'koningsdag'
            # (the plain one only for groups the hashtag term does not already cover)
            keys = (key, key[1:]) if key.startswith("#") else (key,)
            covered: set[str] = set()
            for term in keys:
                for group in self._groups.get(term, ()):
                    if group not in covered:
                        covered.add(group)
                        found.setdefault((term, group), None)
        return [Match(term, group) for term, group in found]


class Tagger:
    """Tags posts with the event's topics/keywords and areas."""

    def __init__(self, event: EventConfig | None) -> None:
        self.event = event
        topics = event.topics if event else []
        areas = event.areas if event else []
        self.keywords = TermMatcher((t, topic.name) for topic in topics for t in topic.terms)
        self.places = TermMatcher(
            (name, area.name) for area in areas for name in [area.name, *area.place_names]
        )
        self.geofences: list[Geofence] = event.geofences() if event else []

    def areas_for(self, folded_text: str, geo: GeoPoint | None) -> tuple[list[str], str | None]:
        """(areas, source) where source is ``geo``, ``text`` or None."""
        if geo is not None:
            inside = [g.name for g in self.geofences if g.contains(geo.lon, geo.lat)]
            if inside:
                return inside, "geo"
        named: dict[str, None] = {}
        for m in self.places.find(folded_text):
            named.setdefault(m.group, None)
        return (list(named), "text") if named else ([], None)

    def keywords_for(self, folded_text: str) -> tuple[list[str], list[str]]:
        """(matched keywords, their topics), each deduplicated in order."""
        keywords: dict[str, None] = {}
        topics: dict[str, None] = {}
        for m in self.keywords.find(folded_text):
            keywords.setdefault(m.term, None)
            topics.setdefault(m.group, None)
        return list(keywords), list(topics)
