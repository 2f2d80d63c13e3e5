"""Point-in-polygon for GeoJSON Polygon / MultiPolygon geofences (lon/lat, planar).

Event areas are a few hundred metres to a few kilometres across, so planar
ray casting on lon/lat is exact enough; holes (inner rings) are honoured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Ring = tuple[tuple[float, float], ...]


def _in_ring(lon: float, lat: float, ring: Ring) -> bool:
    inside = False
    n = len(ring)
    j = n - 1
    for i in range(n):
        xi, yi = ring[i]
        xj, yj = ring[j]
        if (yi > lat) != (yj > lat):
            x_cross = (xj - xi) * (lat - yi) / (yj - yi) + xi
            if lon < x_cross:
                inside = not inside
        j = i
    return inside


@dataclass(frozen=True, slots=True)
class Polygon:
    """One polygon: an outer ring and optional holes."""

    outer: Ring
    holes: tuple[Ring, ...] = ()

    def contains(self, lon: float, lat: float) -> bool:
        if not _in_ring(lon, lat, self.outer):
            return False
        return not any(_in_ring(lon, lat, hole) for hole in self.holes)


@dataclass(frozen=True, slots=True)
class Geofence:
    """A named area made of one or more polygons, with a bounding box pre-check."""

    name: str
    polygons: tuple[Polygon, ...]
    bbox: tuple[float, float, float, float]  # min_lon, min_lat, max_lon, max_lat

    @classmethod
    def from_polygons(cls, name: str, polygons: Sequence[Polygon]) -> Geofence:
        lons = [p[0] for poly in polygons for p in poly.outer]
        lats = [p[1] for poly in polygons for p in poly.outer]
        return cls(name, tuple(polygons), (min(lons), min(lats), max(lons), max(lats)))

    def contains(self, lon: float, lat: float) -> bool:
        min_lon, min_lat, max_lon, max_lat = self.bbox
        if not (min_lon <= lon <= max_lon and min_lat <= lat <= max_lat):
            return False
        return any(poly.contains(lon, lat) for poly in self.polygons)
