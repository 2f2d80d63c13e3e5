"""Event configuration: one YAML file describes one monitored event.

See ``streams/data/koningsdag-amsterdam.yaml`` (``crowdwatch event example``) for a complete
example. Every mistake is reported with its location in the file, e.g.::

    koningsdag.yaml: areas[2].geometry: coordinates[0]: ring is not closed ...
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from models.geo import Geofence, Polygon, Ring

_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_LANG = re.compile(r"^[a-z]{2}$")


class EventConfigError(ValueError):
    """The event file is unreadable or invalid; the message lists every problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class TimeWindow(_Strict):
    start: datetime
    end: datetime

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("needs a UTC offset or Z, e.g. 2027-04-27T08:00:00+02:00")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> TimeWindow:
        if self.end <= self.start:
            raise ValueError("window.end must be after window.start")
        return self


def _check_position(pos: Any, where: str) -> tuple[float, float]:
    if not (isinstance(pos, list | tuple) and len(pos) in (2, 3)):
        raise ValueError(f"{where}: a position is [lon, lat]")
    lon, lat = pos[0], pos[1]
    if isinstance(lon, bool) or isinstance(lat, bool) or not isinstance(lon, int | float) \
            or not isinstance(lat, int | float):
        raise ValueError(f"{where}: lon/lat must be numbers")
    if not -180 <= lon <= 180:
        raise ValueError(f"{where}: longitude {lon} outside -180..180")
    if not -90 <= lat <= 90:
        raise ValueError(f"{where}: latitude {lat} outside -90..90")
    return float(lon), float(lat)


def _check_ring(ring: Any, where: str) -> Ring:
    if not isinstance(ring, list):
        raise ValueError(f"{where}: a ring is a list of [lon, lat] positions")
    points = tuple(_check_position(p, f"{where}[{i}]") for i, p in enumerate(ring))
    if len(points) < 4:
        raise ValueError(f"{where}: a ring needs at least 4 positions (first == last)")
    if points[0] != points[-1]:
        raise ValueError(
            f"{where}: ring is not closed (first position {list(points[0])} "
            f"!= last {list(points[-1])})"
        )
    return points


def _check_polygon(rings: Any, where: str) -> Polygon:
    if not isinstance(rings, list) or not rings:
        raise ValueError(f"{where}: a Polygon is a non-empty list of rings")
    checked = [_check_ring(r, f"{where}[{i}]") for i, r in enumerate(rings)]
    return Polygon(outer=checked[0], holes=tuple(checked[1:]))


class Geometry(_Strict):
    """A GeoJSON Polygon or MultiPolygon (lon, lat order, rings closed)."""

    type: Literal["Polygon", "MultiPolygon"]
    coordinates: list[Any]

    def polygons(self) -> tuple[Polygon, ...]:
        if self.type == "Polygon":
            return (_check_polygon(self.coordinates, "coordinates"),)
        if not self.coordinates:
            raise ValueError("coordinates: a MultiPolygon needs at least one polygon")
        return tuple(
            _check_polygon(p, f"coordinates[{i}]") for i, p in enumerate(self.coordinates)
        )

    @model_validator(mode="after")
    def _valid(self) -> Geometry:
        self.polygons()
        return self


class Area(_Strict):
    name: str = Field(min_length=1, max_length=80)
    geometry: Geometry
    place_names: list[str] = Field(
        default_factory=list,
        description="Names people use in text for this area (matched like keywords)",
    )

    def geofence(self) -> Geofence:
        return Geofence.from_polygons(self.name, self.geometry.polygons())


class Role(StrEnum):
    POLICE = "police"
    MUNICIPALITY = "municipality"
    FIRE = "fire"
    AMBULANCE = "ambulance"
    SAFETY_REGION = "safety_region"
    ORGANISER = "organiser"
    TRANSPORT = "transport"
    OTHER = "other"


class OfficialAccount(_Strict):
    platform: str = Field(min_length=1)
    handle: str = Field(min_length=1)
    role: Role
    name: str | None = None

    @field_validator("platform")
    @classmethod
    def _platform(cls, value: str) -> str:
        return value.lower()

    @field_validator("handle")
    @classmethod
    def _handle(cls, value: str) -> str:
        return value.lstrip("@").lower()


class Topic(_Strict):
    name: str
    terms: list[str] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _SLUG.match(value):
            raise ValueError("topic names are lowercase letters, digits, '-' or '_' (metric label)")
        return value

    @field_validator("terms")
    @classmethod
    def _terms(cls, value: list[str]) -> list[str]:
        for term in value:
            if not term.strip().lstrip("#@"):
                raise ValueError("empty keyword")
        return value


def _no_duplicates(kind: str, names: list[str]) -> None:
    seen: set[str] = set()
    for n in names:
        if n.lower() in seen:
            raise ValueError(f"{kind} {n!r} is listed twice")
        seen.add(n.lower())


class EventConfig(_Strict):
    name: str = Field(description="Short id, used as the `event` metric label")
    title: str | None = None
    timezone: str = "Europe/Amsterdam"
    window: TimeWindow
    languages: list[str] = Field(default_factory=lambda: ["nl", "en"], min_length=1)
    topics: list[Topic] = Field(default_factory=list)
    areas: list[Area] = Field(default_factory=list)
    official_accounts: list[OfficialAccount] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _SLUG.match(value):
            raise ValueError(
                "event name is lowercase letters, digits, '-' or '_' (max 63), e.g. koningsdag-2027"
            )
        return value

    @field_validator("languages")
    @classmethod
    def _langs(cls, value: list[str]) -> list[str]:
        for code in value:
            if not _LANG.match(code):
                raise ValueError(f"{code!r} is not an ISO 639-1 code such as 'nl' or 'en'")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    # field validators (not a model validator) so duplicates are reported together with
    # every other problem: pydantic skips "after" model validators once a field failed
    @field_validator("areas")
    @classmethod
    def _unique_areas(cls, value: list[Area]) -> list[Area]:
        _no_duplicates("area", [a.name for a in value])
        return value

    @field_validator("topics")
    @classmethod
    def _unique_topics(cls, value: list[Topic]) -> list[Topic]:
        _no_duplicates("topic", [t.name for t in value])
        return value

    @field_validator("official_accounts")
    @classmethod
    def _unique_accounts(cls, value: list[OfficialAccount]) -> list[OfficialAccount]:
        _no_duplicates("official account", [f"{o.platform}:{o.handle}" for o in value])
        return value

    def geofences(self) -> list[Geofence]:
        return [a.geofence() for a in self.areas]


def _format_errors(source: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ""
        for part in err["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (typo?)"
        elif err["type"] == "missing":
            msg = "required field is missing"
        lines.append(f"{source}: {loc or '(top level)'}: {msg}")
    return "\n".join(lines)


def parse_event(text: str, source: str = "<event>") -> EventConfig:
    """Parse and validate event YAML text; raise :class:`EventConfigError` listing every problem."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise EventConfigError(f"{source}:{where}: invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise EventConfigError(f"{source}: expected a mapping with name, window, areas, ...")
    try:
        return EventConfig.model_validate(data)
    except ValidationError as exc:
        raise EventConfigError(_format_errors(source, exc)) from None


def load_event(path: str | Path) -> EventConfig:
    """Read and validate an event YAML file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EventConfigError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EventConfigError(f"{p}: cannot read: {exc}") from None
    return parse_event(text, source=str(p))
