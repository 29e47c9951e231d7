"""OpenDroneMap ``geo.txt``: image positions by file name, in any CRS.

First line: the CRS (``EPSG:4326``, another EPSG code, or a PROJ string). Each further
line: ``image_name x y [z] [yaw pitch roll] [horizontal_accuracy vertical_accuracy]``
with x/y in that CRS (longitude/latitude for EPSG:4326), angles in degrees, accuracies
in metres. ``#`` starts a comment.

The file has no times: the track is keyed by image name (``by_image_name=True``),
``positions.t`` is the line order and ``triggers.names`` holds the image names.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from drone_io.logs.common import LogReadOptions, attitude_series, build_track, fail, trigger_events
from models.errors import CRSError
from models.geo import WGS84_GEOGRAPHIC_3D, HeightRef, parse_crs, transform_points
from models.track import FlightTrack

FORMAT = "odm_geo_txt"


def read_geo_txt(path: Path, options: LogReadOptions | None = None) -> FlightTrack:
    options = options or LogReadOptions()
    lines = path.read_bytes().decode("utf-8-sig", errors="replace").splitlines()
    content = [(i, ln.split("#", 1)[0].strip()) for i, ln in enumerate(lines, start=1)]
    content = [(i, ln) for i, ln in content if ln]
    if not content:
        raise fail(path, "the file is empty", "the first line must be the CRS, e.g. EPSG:4326")
    crs_line, crs_text = content[0]
    try:
        crs = parse_crs(crs_text)
    except CRSError as exc:
        raise fail(path, f"line {crs_line}: '{crs_text}' is not a CRS", "the first line must be the CRS, e.g. EPSG:4326") from exc
    names: list[str] = []
    vals: list[list[float]] = []
    bad: list[int] = []
    for line_no, ln in content[1:]:
        parts = ln.split()
        try:
            nums = [float(p) for p in parts[1:10]]
        except ValueError:
            bad.append(line_no)
            continue
        if len(nums) < 2:
            bad.append(line_no)
            continue
        nums += [math.nan] * (8 - len(nums))
        names.append(parts[0])
        vals.append(nums[:8])
    warnings: list[str] = []
    if bad:
        warnings.append(f"{path.name}: skipped {len(bad)} malformed line(s), the first at line {bad[0]}")
    if not vals:
        raise fail(path, "no image lines (name x y [z] ...)", "list one image per line after the CRS line")
    a = np.asarray(vals, dtype=np.float64)
    xyz = np.stack([a[:, 0], a[:, 1], np.nan_to_num(a[:, 2])], axis=1)
    if crs.is_geographic and crs.to_epsg() in (4326, 4979, None):
        lon, lat = a[:, 0], a[:, 1]
    else:
        ll = transform_points(xyz, crs, WGS84_GEOGRAPHIC_3D)
        # EPSG:4979 is lat-first by authority, but the transform is built always_xy: x=lon, y=lat.
        lon, lat = ll[:, 0], ll[:, 1]
    order = np.arange(len(vals), dtype=np.float64)
    attitude = None
    if np.isfinite(a[:, 3:6]).all(axis=1).any():
        ok = np.isfinite(a[:, 3:6]).all(axis=1)
        attitude = attitude_series(order[ok], a[ok, 3], a[ok, 4], a[ok, 5])
    triggers = trigger_events(order, lat, lon, a[:, 2], a[:, 6], a[:, 7], names=names, sort=False)
    return build_track(
        path,
        FORMAT,
        order,
        lat,
        lon,
        a[:, 2],
        options=options,
        height_ref=HeightRef.UNKNOWN,
        attitude=attitude,
        triggers=triggers,
        warnings=warnings,
        absolute_time=False,
        by_image_name=True,
        what="image positions",
    )
