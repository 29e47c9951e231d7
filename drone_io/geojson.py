"""Write ``cameras.geojson``: image centres and ground footprints (RFC 7946).

One FeatureCollection in WGS84 longitude/latitude (EPSG:4326, x = longitude),
with two kinds of feature, told apart by the ``kind`` property:

- ``camera``: a Point at the image centre (camera position), one per image with a position;
- ``footprint``: a Polygon, the image's estimated ground footprint (counter-clockwise
  exterior ring, closed), with the centre repeated as ``center_lon``/``center_lat``.

QGIS (OGR's GeoJSON driver) offers the two geometry types as two layers when the
file is added. Coordinates carry no height: RFC 7946 heights are ellipsoidal, and
camera altitudes are usually orthometric, so altitudes are properties, with
``height_reference`` saying which.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from models.image import ImageRecord

FloatArray = NDArray[np.float64]

_DEGREE_DECIMALS = 8  # ~1 mm


def iso_utc(t: float | None) -> str | None:
    """POSIX seconds as ISO 8601 UTC with milliseconds, e.g. 2016-06-23T16:31:59.000Z."""
    if t is None or not math.isfinite(t):
        return None
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _num(v: float | None, decimals: int = 3) -> float | None:
    if v is None or not math.isfinite(v):
        return None
    return round(float(v), decimals)


def camera_properties(rec: ImageRecord) -> dict[str, Any]:
    """The properties of one image, shared by its point and its footprint."""
    gps = rec.gps
    props: dict[str, Any] = {
        "image": rec.name,
        "camera": rec.camera_id,
        "time": iso_utc(rec.capture_time),
        "time_zone_known": rec.time_zone_known,
        "position_source": rec.position_source.value,
        "altitude_m": _num(gps.alt) if gps else None,
        "height_reference": gps.height_ref.value if gps else None,
        "relative_altitude_m": _num(rec.relative_altitude_m),
        "gimbal_yaw": _num(rec.gimbal.yaw, 2) if rec.gimbal else None,
        "gimbal_pitch": _num(rec.gimbal.pitch, 2) if rec.gimbal else None,
        "gimbal_roll": _num(rec.gimbal.roll, 2) if rec.gimbal else None,
        "flight_yaw": _num(rec.flight.yaw, 2) if rec.flight else None,
        "flight_pitch": _num(rec.flight.pitch, 2) if rec.flight else None,
        "flight_roll": _num(rec.flight.roll, 2) if rec.flight else None,
    }
    if gps is not None and (gps.std_horizontal_m is not None or gps.rtk_fixed is not None):
        props["std_horizontal_m"] = _num(gps.std_horizontal_m)
        props["std_vertical_m"] = _num(gps.std_vertical_m)
        props["rtk_fixed"] = gps.rtk_fixed
    return props


def _ring(lonlat: FloatArray) -> list[list[float]]:
    p = np.asarray(lonlat, dtype=np.float64)[:, :2]
    x, y = p[:, 0], p[:, 1]
    if float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) < 0:  # make it counter-clockwise
        p = p[::-1]
    ring = [[round(float(a), _DEGREE_DECIMALS), round(float(b), _DEGREE_DECIMALS)] for a, b in p]
    return ring + [ring[0]]


def cameras_feature_collection(
    records: Sequence[ImageRecord],
    footprints_lonlat: Mapping[str, FloatArray],
    footprint_properties: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The FeatureCollection of image centres and footprints (lon/lat degrees)."""
    features: list[dict[str, Any]] = []
    extra = footprint_properties or {}
    for rec in records:
        if rec.gps is None:
            continue
        centre = [round(rec.gps.lon, _DEGREE_DECIMALS), round(rec.gps.lat, _DEGREE_DECIMALS)]
        props = camera_properties(rec)
        features.append(
            {
                "type": "Feature",
                "id": rec.name,
                "geometry": {"type": "Point", "coordinates": centre},
                "properties": {"kind": "camera", **props},
            }
        )
        ring = footprints_lonlat.get(rec.name)
        if ring is not None:
            features.append(
                {
                    "type": "Feature",
                    "id": f"footprint:{rec.name}",
                    "geometry": {"type": "Polygon", "coordinates": [_ring(ring)]},
                    "properties": {
                        "kind": "footprint",
                        **props,
                        "center_lon": centre[0],
                        "center_lat": centre[1],
                        **dict(extra.get(rec.name, {})),
                    },
                }
            )
    return {"type": "FeatureCollection", "features": features}


def write_geojson(path: Path, collection: Mapping[str, Any]) -> None:
    """Write a GeoJSON object to ``path`` (the caller makes the write atomic)."""
    Path(path).write_text(json.dumps(collection, indent=1, allow_nan=False), encoding="utf-8")
