"""Tests of point-in-polygon geofencing (models/geo.py)."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from models.geo import Geofence, Polygon, Ring


def _rect(min_lon: float, min_lat: float, max_lon: float, max_lat: float) -> Ring:
    return ((min_lon, min_lat), (max_lon, min_lat), (max_lon, max_lat), (min_lon, max_lat),
            (min_lon, min_lat))


SQUARE = _rect(4.0, 52.0, 4.4, 52.4)
HOLE = _rect(4.1, 52.1, 4.3, 52.3)
# a "U": the notch between the two arms (4.1..4.3, 52.1..52.4) is outside
U_SHAPE: Ring = ((4.0, 52.0), (4.4, 52.0), (4.4, 52.4), (4.3, 52.4), (4.3, 52.1), (4.1, 52.1),
                 (4.1, 52.4), (4.0, 52.4), (4.0, 52.0))


@pytest.mark.parametrize(
    ("lon", "lat", "inside"),
    [(4.2, 52.2, True), (4.01, 52.01, True), (4.39, 52.39, True),
     (3.9, 52.2, False), (4.5, 52.2, False), (4.2, 51.9, False), (4.2, 52.5, False),
     (-4.2, -52.2, False)],
)
def test_square(lon: float, lat: float, inside: bool) -> None:
    assert Polygon(SQUARE).contains(lon, lat) is inside
    assert Geofence.from_polygons("sq", [Polygon(SQUARE)]).contains(lon, lat) is inside


@pytest.mark.parametrize(
    ("lon", "lat", "inside"),
    [(4.05, 52.05, True), (4.35, 52.35, True), (4.2, 52.05, True), (4.2, 52.35, True),
     (4.2, 52.2, False), (4.15, 52.25, False)],
)
def test_inside_a_hole_is_outside(lon: float, lat: float, inside: bool) -> None:
    polygon = Polygon(SQUARE, holes=(HOLE,))
    assert polygon.contains(lon, lat) is inside
    assert Geofence.from_polygons("donut", [polygon]).contains(lon, lat) is inside


def test_two_holes() -> None:
    polygon = Polygon(SQUARE, holes=(_rect(4.05, 52.05, 4.15, 52.15),
                                     _rect(4.25, 52.25, 4.35, 52.35)))
    assert not polygon.contains(4.1, 52.1)
    assert not polygon.contains(4.3, 52.3)
    assert polygon.contains(4.2, 52.2)


@pytest.mark.parametrize(
    ("lon", "lat", "inside"),
    [(4.05, 52.3, True), (4.35, 52.3, True), (4.2, 52.05, True),
     (4.2, 52.3, False), (4.2, 52.15, False), (4.2, 52.39, False)],
)
def test_concave_polygon(lon: float, lat: float, inside: bool) -> None:
    assert Polygon(U_SHAPE).contains(lon, lat) is inside
    fence = Geofence.from_polygons("u", [Polygon(U_SHAPE)])
    assert fence.contains(lon, lat) is inside


def test_orientation_does_not_matter() -> None:
    clockwise = tuple(reversed(U_SHAPE))
    for lon, lat in [(4.05, 52.3), (4.2, 52.3), (4.2, 52.05), (4.5, 52.0)]:
        assert Polygon(clockwise).contains(lon, lat) == Polygon(U_SHAPE).contains(lon, lat)


def test_geofence_bbox_and_multipolygon() -> None:
    fence = Geofence.from_polygons(
        "two", [Polygon(_rect(4.0, 52.0, 4.1, 52.1)), Polygon(_rect(5.0, 53.0, 5.1, 53.1))]
    )
    assert fence.bbox == (4.0, 52.0, 5.1, 53.1)
    assert fence.contains(4.05, 52.05)
    assert fence.contains(5.05, 53.05)
    assert not fence.contains(4.5, 52.5)  # inside the bbox, in neither polygon


def test_bbox_pre_check_short_circuits() -> None:
    class Exploding(Polygon):
        __slots__ = ()

        def contains(self, lon: float, lat: float) -> bool:
            raise AssertionError("polygon test ran for a point outside the bbox")

    fence = Geofence("x", (Exploding(SQUARE),), (4.0, 52.0, 4.4, 52.4))
    assert not fence.contains(3.0, 52.2)
    assert not fence.contains(4.2, 60.0)
    with pytest.raises(AssertionError):
        fence.contains(4.2, 52.2)


# --------------------------------------------------------------------------- properties

_lon = st.floats(-180, 180, allow_nan=False)
_lat = st.floats(-90, 90, allow_nan=False)


@st.composite
def _polygons(draw: st.DrawFn) -> Polygon:
    """Random (possibly self-intersecting) closed rings, with an optional hole."""
    points = draw(st.lists(st.tuples(_lon, _lat), min_size=3, max_size=8))
    outer = (*points, points[0])
    holes: tuple[Ring, ...] = ()
    if draw(st.booleans()):
        hole = draw(st.lists(st.tuples(_lon, _lat), min_size=3, max_size=5))
        holes = ((*hole, hole[0]),)
    return Polygon(tuple(outer), holes)


@settings(max_examples=300, deadline=None)
@given(_polygons(), _lon, _lat)
def test_points_outside_the_bbox_are_never_inside(
    polygon: Polygon, lon: float, lat: float
) -> None:
    fence = Geofence.from_polygons("random", [polygon])
    min_lon, min_lat, max_lon, max_lat = fence.bbox
    outside = not (min_lon <= lon <= max_lon and min_lat <= lat <= max_lat)
    assume(outside)
    assert not fence.contains(lon, lat)
    # the ray-casting test agrees on its own, away from the bbox edge
    if lon < min_lon - 1e-9 or lon > max_lon + 1e-9 or lat < min_lat or lat > max_lat:
        assert not polygon.contains(lon, lat)


@settings(max_examples=300, deadline=None)
@given(
    st.floats(-170, 170), st.floats(-80, 80), st.floats(0.001, 5), st.floats(0.001, 5),
    st.floats(-0.5, 1.5), st.floats(-0.5, 1.5),
)
def test_rectangle_matches_the_analytic_answer(
    lon0: float, lat0: float, width: float, height: float, fx: float, fy: float
) -> None:
    assume(min(abs(fx), abs(fx - 1), abs(fy), abs(fy - 1)) > 1e-6)  # not on an edge
    lon, lat = lon0 + fx * width, lat0 + fy * height
    polygon = Polygon(_rect(lon0, lat0, lon0 + width, lat0 + height))
    assert polygon.contains(lon, lat) == (0 < fx < 1 and 0 < fy < 1)


@settings(max_examples=200, deadline=None)
@given(st.floats(4.1001, 4.2999), st.floats(52.1001, 52.2999))
def test_points_in_a_hole_are_never_inside(lon: float, lat: float) -> None:
    fence = Geofence.from_polygons("donut", [Polygon(SQUARE, holes=(HOLE,))])
    assert not fence.contains(lon, lat)
