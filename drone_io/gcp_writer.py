"""Write ground control points in OpenDroneMap's ``gcp_list.txt`` format.

Line 1 is the CRS of the coordinates (``EPSG:N``, a PROJ string, or ``WGS84 UTM 49N``);
every further line is one observation: ``x y z px py image_name gcp_name``.
Pixel coordinates follow Aerobase's convention: the centre of the top-left
pixel is (0, 0). Checkpoints are ordinary lines; their names say what they are.
"""

from __future__ import annotations

from pathlib import Path

from models.errors import InputError
from models.gcp import GcpSet


def format_odm_gcp_list(gcps: GcpSet, xy_decimals: int = 4, z_decimals: int = 4, px_decimals: int = 3) -> str:
    """The file text (with a trailing newline)."""
    points = {p.name: p for p in gcps.points}
    lines = [gcps.crs.strip()]
    for obs in gcps.observations:
        p = points.get(obs.point)
        if p is None:
            raise InputError(f"observation of '{obs.point}' in {obs.image} has no ground point in the set")
        for name in (obs.image, obs.point):
            if not name or any(ch.isspace() for ch in name):
                raise InputError(f"name '{name}' cannot be written to gcp_list.txt: names must be non-empty without spaces")
        lines.append(
            f"{p.x:.{xy_decimals}f} {p.y:.{xy_decimals}f} {p.z:.{z_decimals}f} "
            f"{obs.px:.{px_decimals}f} {obs.py:.{px_decimals}f} {obs.image} {obs.point}"
        )
    return "\n".join(lines) + "\n"


def write_odm_gcp_list(path: Path, gcps: GcpSet) -> None:
    """Write ``gcps`` to ``path`` in ODM format."""
    Path(path).write_text(format_odm_gcp_list(gcps), encoding="utf-8")
