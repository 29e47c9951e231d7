"""Coordinate reference systems and geodetic transforms (pyproj, no file I/O).

The working frame of a reconstruction is a projected CRS: ``auto`` picks the
UTM zone of the flight; any EPSG code is accepted, including CGCS2000
geographic (EPSG:4490) and its 3-degree Gauss-Krueger zones (EPSG:4513-4554).
When the requested CRS is geographic, the working frame is the matching
projected one (UTM, or the CGCS2000 3-degree GK zone) and outputs say so.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyproj
from numpy.typing import NDArray
from pyproj.exceptions import CRSError as PyprojCRSError

from models.errors import CRSError

FloatArray = NDArray[np.float64]

WGS84_GEOGRAPHIC_3D = "EPSG:4979"


class HeightRef(str, enum.Enum):
    """What a height is measured from."""

    ELLIPSOIDAL = "ellipsoidal"  # above the WGS84/CGCS2000 ellipsoid (GNSS native)
    ORTHOMETRIC = "orthometric"  # above mean sea level / the geoid (EXIF GPSAltitude by spec)
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class LonLat:
    """A geographic position in degrees (WGS84)."""

    lon: float
    lat: float

    @property
    def xy(self) -> tuple[float, float]:
        return (self.lon, self.lat)


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS84 UTM zone containing a point."""
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        raise CRSError(f"position lon={lon}, lat={lat} is not a valid WGS84 coordinate")
    zone = int(math.floor((lon + 180.0) / 6.0)) % 60 + 1
    return (32600 if lat >= 0 else 32700) + zone


def cgcs2000_gk3_epsg(lon: float) -> int:
    """EPSG code of the CGCS2000 3-degree Gauss-Krueger zone (CM only, no false-easting prefix)."""
    cm = int(round(lon / 3.0)) * 3
    if not 75 <= cm <= 135:
        raise CRSError(f"longitude {lon} is outside the CGCS2000 3-degree GK zones (CM 75E-135E)")
    # EPSG:4534 is CGCS2000 / 3-degree Gauss-Kruger CM 75E ... EPSG:4554 is CM 135E.
    return 4534 + (cm - 75) // 3


@lru_cache(maxsize=64)
def _crs_from_user_input(spec: str) -> pyproj.CRS:
    try:
        return pyproj.CRS.from_user_input(spec)
    except PyprojCRSError as exc:
        raise CRSError(
            f"unknown CRS '{spec}': use 'auto' or an EPSG code such as EPSG:32649 (UTM 49N) "
            f"or EPSG:4547 (CGCS2000 3-degree GK CM 114E)"
        ) from exc


def parse_crs(spec: str) -> pyproj.CRS:
    """Parse an EPSG code, PROJ string or WKT; raises :class:`CRSError` naming the input."""
    text = spec.strip()
    if text.isdigit():
        text = f"EPSG:{text}"
    return _crs_from_user_input(text)


def check_crs_spec(spec: str) -> None:
    """Fail fast on an unusable ``--crs`` value, before any image is read."""
    if spec.strip().lower() == "auto":
        return
    crs = parse_crs(spec)
    if not (crs.is_projected or crs.is_geographic):
        raise CRSError(
            f"CRS '{spec}' ({crs.name}) is neither projected nor geographic; "
            "choose a projected EPSG code, a geographic one, or 'auto'"
        )


def _is_cgcs2000(crs: pyproj.CRS) -> bool:
    datum = (crs.datum.name if crs.datum else "").lower()
    return "china geodetic coordinate system 2000" in datum or "china 2000" in datum or crs.to_epsg() == 4490


def _metric_counterpart(crs: pyproj.CRS, lon: float, lat: float) -> pyproj.CRS:
    """The projected metre CRS that stands in for a geographic (or non-metre) one."""
    if _is_cgcs2000(crs):
        return parse_crs(f"EPSG:{cgcs2000_gk3_epsg(lon)}")
    return parse_crs(f"EPSG:{utm_epsg(lon, lat)}")


def _horizontal_unit(crs: pyproj.CRS) -> str:
    axes = crs.axis_info
    return axes[0].unit_name if axes else ""


def resolve_working_crs(spec: str, lon: float, lat: float) -> pyproj.CRS:
    """The projected metre CRS to work in, from a user spec ('auto', 'EPSG:N', ...) and the flight centre.

    - ``auto``: the WGS84 UTM zone of the flight centre.
    - a projected CRS in metres (EPSG:32649, EPSG:4547, a compound projected +
      vertical CRS, a PROJ string): itself.
    - a geographic CRS: the matching projected one; CGCS2000 (EPSG:4490) gives
      its 3-degree Gauss-Krueger zone (EPSG:4534-4554), others the UTM zone.
    - a projected CRS in feet: the same stand-in (the frame must be metric);
      :func:`working_crs_note` says so for the logs and the report.
    """
    if spec.strip().lower() == "auto":
        return parse_crs(f"EPSG:{utm_epsg(lon, lat)}")
    crs = parse_crs(spec)
    if crs.is_projected:
        if _horizontal_unit(crs) in ("metre", "meter"):
            return crs
        return _metric_counterpart(crs, lon, lat)
    if crs.is_geographic:
        return _metric_counterpart(crs, lon, lat)
    raise CRSError(f"CRS '{spec}' ({crs.name}) is neither projected nor geographic; choose a projected EPSG code")


def working_crs_note(spec: str, working: pyproj.CRS) -> str | None:
    """Why the working CRS differs from the one asked for, or None when it does not."""
    if spec.strip().lower() == "auto":
        return f"auto: the flight's UTM zone {crs_label(working)}"
    asked = parse_crs(spec)
    if asked == working:
        return None
    if asked.is_geographic:
        return f"{spec} is geographic; working in its projected counterpart {crs_label(working)} ({working.name})"
    return (
        f"{spec} is in {_horizontal_unit(asked)}; working in the metre CRS {crs_label(working)} "
        f"({working.name})"
    )


def vertical_reference(crs: pyproj.CRS, image_heights: HeightRef) -> str:
    """What heights in the working frame are measured from.

    A compound CRS with a vertical part names its vertical datum (orthometric).
    Otherwise heights are those of the images: EXIF GPSAltitude is defined
    above sea level, so 'orthometric' is nominal (consumer GNSS writes EGM96
    heights; RTK receivers may write ellipsoidal ones).
    """
    if crs.is_compound:
        for sub in crs.sub_crs_list:
            if sub.is_vertical:
                return f"orthometric ({sub.name})"
    return image_heights.value


def crs_label(crs: pyproj.CRS) -> str:
    """'EPSG:N' (or 'EPSG:H+V' for a compound CRS) when the CRS has codes, else its WKT."""
    code = crs.to_epsg()
    if code is not None:
        return f"EPSG:{code}"
    if crs.is_compound:
        codes = [sub.to_epsg() for sub in crs.sub_crs_list]
        if all(c is not None for c in codes):
            return "EPSG:" + "+".join(str(c) for c in codes)
    return crs.to_wkt()


@lru_cache(maxsize=64)
def _transformer(src: str, dst: str) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(src, dst, always_xy=True)


@dataclass(frozen=True)
class Projector:
    """WGS84 lon/lat/height <-> a projected CRS. Heights pass through unchanged."""

    crs_wkt: str

    @classmethod
    def for_crs(cls, crs: pyproj.CRS) -> "Projector":
        return cls(crs.to_wkt())

    @property
    def crs(self) -> pyproj.CRS:
        return _crs_from_user_input(self.crs_wkt)

    def forward(
        self, lon: FloatArray | float, lat: FloatArray | float, h: FloatArray | float | None = None
    ) -> FloatArray:
        """(lon, lat[, h]) degrees -> (N, 3) easting, northing, height."""
        lon_a = np.atleast_1d(np.asarray(lon, dtype=np.float64))
        lat_a = np.atleast_1d(np.asarray(lat, dtype=np.float64))
        h_a = np.zeros_like(lon_a) if h is None else np.atleast_1d(np.asarray(h, dtype=np.float64))
        x, y = _transformer("EPSG:4326", self.crs_wkt).transform(lon_a, lat_a)
        return np.stack([np.asarray(x), np.asarray(y), h_a], axis=-1)

    def inverse(self, xyz: FloatArray) -> FloatArray:
        """(N, 2 or 3) projected -> (N, 3) lon, lat, height."""
        a = np.atleast_2d(np.asarray(xyz, dtype=np.float64))
        lon, lat = _transformer(self.crs_wkt, "EPSG:4326").transform(a[:, 0], a[:, 1])
        h = a[:, 2] if a.shape[1] > 2 else np.zeros(len(a))
        return np.stack([np.asarray(lon), np.asarray(lat), h], axis=-1)

    def grid_convergence_deg(self, lon: float, lat: float) -> float:
        """Angle from true north to grid north at a point, degrees (pyproj's meridian convergence).

        A yaw measured from true north becomes ``yaw - convergence`` from grid north.
        """
        factors = pyproj.Proj(self.crs).get_factors(lon, lat)
        return float(factors.meridian_convergence)

    def scale_factor(self, lon: float, lat: float) -> float:
        """Point scale factor of the projection (grid distance / ellipsoid distance)."""
        return float(pyproj.Proj(self.crs).get_factors(lon, lat).meridional_scale)


def transform_points(xyz: FloatArray, src: pyproj.CRS | str, dst: pyproj.CRS | str) -> FloatArray:
    """Transform (N, 2 or 3) points between two CRSs; heights pass through."""
    a = np.atleast_2d(np.asarray(xyz, dtype=np.float64))
    s = src if isinstance(src, str) else src.to_wkt()
    d = dst if isinstance(dst, str) else dst.to_wkt()
    x, y = _transformer(s, d).transform(a[:, 0], a[:, 1])
    out = a.copy()
    out[:, 0] = np.asarray(x)
    out[:, 1] = np.asarray(y)
    return out
