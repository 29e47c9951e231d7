"""Put solved camera positions into the ``cameras.geojson`` collection that ingest wrote.

Camera points move from their GPS position to the solved one (WGS84 lon/lat,
as :mod:`drone_io.geojson` writes them); their properties gain the solved
working-CRS coordinates and orientation and the GPS residual, or, for images
that did not register, the reason. Registered images without a GPS point
(GCP-only flights) get one.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Mapping

_DEGREE_DECIMALS = 8  # ~1 mm, as drone_io.geojson


@dataclass(frozen=True)
class SolvedCamera:
    """One registered image: solved centre (lon/lat and working CRS) and orientation."""

    name: str
    lon: float
    lat: float
    x: float
    y: float
    z: float
    yaw_deg: float  # from true north, DJI convention
    pitch_deg: float
    roll_deg: float
    properties: dict[str, Any] = field(default_factory=dict)

    def props(self) -> dict[str, Any]:
        return {
            "registered": True,
            "position_source": "sfm",
            "solved_x": round(self.x, 4),
            "solved_y": round(self.y, 4),
            "solved_z": round(self.z, 4),
            "solved_yaw": round(self.yaw_deg, 3),
            "solved_pitch": round(self.pitch_deg, 3),
            "solved_roll": round(self.roll_deg, 3),
            **self.properties,
        }


def update_camera_collection(
    collection: Mapping[str, Any] | None,
    solved: Mapping[str, SolvedCamera],
    unregistered: Mapping[str, Mapping[str, Any]],
    crs: str,
) -> dict[str, Any]:
    """A copy of ``collection`` with solved positions; ``unregistered`` maps image -> properties to add."""
    fc: dict[str, Any] = copy.deepcopy(dict(collection)) if collection else {"type": "FeatureCollection", "features": []}
    features: list[dict[str, Any]] = fc.setdefault("features", [])
    seen: set[str] = set()
    for feat in features:
        props = feat.setdefault("properties", {})
        name = props.get("image")
        kind = props.get("kind")
        if name in solved:
            if kind == "camera":
                cam = solved[name]
                feat["geometry"] = {"type": "Point", "coordinates": [round(cam.lon, _DEGREE_DECIMALS), round(cam.lat, _DEGREE_DECIMALS)]}
                props.update(cam.props())
                seen.add(name)
            else:
                props["registered"] = True
        elif name is not None:
            props["registered"] = False
            props.update(unregistered.get(name, {}))
    for name in sorted(set(solved) - seen):
        cam = solved[name]
        features.append(
            {
                "type": "Feature",
                "id": name,
                "geometry": {"type": "Point", "coordinates": [round(cam.lon, _DEGREE_DECIMALS), round(cam.lat, _DEGREE_DECIMALS)]},
                "properties": {"kind": "camera", "image": name, **cam.props()},
            }
        )
    fc.setdefault("properties", {})["solved_crs"] = crs
    return fc
