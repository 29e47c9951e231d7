"""``cameras.geojson`` with solved camera positions (RFC 7946: WGS84 lon/lat, height in metres).

A minimal writer for the SfM stage. The ingest engineer's ``drone_io/geojson.py``
writes the pre-SfM camera file; when it lands this can move there.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from models.geo import Projector
from models.pose import gimbal_from_rotation
from models.reconstruction import Reconstruction


@dataclass(frozen=True)
class CameraFeature:
    """One image as a GeoJSON point: solved position (or GPS when unregistered) and properties."""

    name: str
    lon: float
    lat: float
    height: float
    properties: dict[str, Any] = field(default_factory=dict)


def solved_camera_features(
    rec: Reconstruction,
    extra: dict[str, dict[str, Any]] | None = None,
    convergence_deg: float = 0.0,
) -> list[CameraFeature]:
    """Features for every registered image: solved centre in lon/lat, CRS coordinates, orientation."""
    proj = Projector(rec.crs if rec.crs.startswith(("PROJCRS", "PROJCS")) else _wkt(rec.crs))
    names = sorted(rec.images)
    if not names:
        return []
    centers = np.array([rec.images[n].pose.center for n in names])
    lonlat = proj.inverse(centers)
    out = []
    for i, n in enumerate(names):
        yaw, pitch, roll = gimbal_from_rotation(rec.images[n].pose.R)
        props: dict[str, Any] = {
            "image": n,
            "registered": True,
            "x": float(centers[i, 0]),
            "y": float(centers[i, 1]),
            "z": float(centers[i, 2]),
            # Yaw from true north: grid yaw plus the grid convergence.
            "yaw_deg": float((yaw + convergence_deg) % 360.0),
            "pitch_deg": float(pitch),
            "roll_deg": float(roll),
        }
        props.update((extra or {}).get(n, {}))
        out.append(CameraFeature(n, float(lonlat[i, 0]), float(lonlat[i, 1]), float(centers[i, 2]), props))
    return out


def _wkt(crs: str) -> str:
    from models.geo import parse_crs

    return parse_crs(crs).to_wkt()


def write_cameras_geojson(path: Path, features: Sequence[CameraFeature], crs_label: str) -> None:
    """Write a FeatureCollection of camera points (atomic)."""
    doc = {
        "type": "FeatureCollection",
        "name": "cameras",
        "properties": {"crs_xyz": crs_label},
        "features": [
            {
                "type": "Feature",
                "id": f.name,
                "geometry": {"type": "Point", "coordinates": [f.lon, f.lat, f.height]},
                "properties": f.properties,
            }
            for f in features
        ],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{uuid.uuid4().hex[:12]}-{path.name}"
    try:
        tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
