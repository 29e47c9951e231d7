"""DJI/Autel RTK camera-event files (``*_Timestamp.MRK``): one line per shutter event.

Line layout (tab separated): index, GPS seconds of week, ``[week]``, antenna-to-camera
offsets ``n,N e,E v,V`` (mm, already applied by DJI to the coordinates that follow),
``lat,Lat lon,Lon h,Ellh`` (WGS84, ellipsoidal height), per-axis 1-sigma ``sN, sE, sV`` (m)
and ``q,Q`` (50 RTK fixed, 34 float, 16 single point, 0 no position).

Each event is both a position fix and a trigger event, timed in UTC (GPS time minus the
leap seconds).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from drone_io.logs.common import LogReadOptions, build_track, fail, gps_to_utc, trigger_events
from models.geo import HeightRef
from models.track import FlightTrack

FORMAT = "dji_mrk"
_NUM = r"([-+]?\d+(?:\.\d+)?)"
_HEAD = re.compile(r"^\s*(\d+)\s+" + _NUM + r"\s+\[(\d+)\]")
_LAT = re.compile(_NUM + r"\s*,\s*Lat\b")
_LON = re.compile(_NUM + r"\s*,\s*Lon\b")
_ELLH = re.compile(_NUM + r"\s*,\s*Ellh\b")
_STD = re.compile(r",\s*Ellh\s+" + _NUM + r"\s*,\s*" + _NUM + r"\s*,\s*" + _NUM)
_Q = re.compile(r"(\d+)\s*,\s*Q\b")


def read_mrk(path: Path, options: LogReadOptions | None = None) -> FlightTrack:
    options = options or LogReadOptions()
    lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    rows: list[tuple[float, float, float, float, float, float, float, int]] = []
    bad: list[int] = []
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        head, lat, lon = _HEAD.match(line), _LAT.search(line), _LON.search(line)
        if not (head and lat and lon):
            bad.append(line_no)
            continue
        ellh, std, q = _ELLH.search(line), _STD.search(line), _Q.search(line)
        rows.append(
            (
                float(head.group(3)),
                float(head.group(2)),
                float(lat.group(1)),
                float(lon.group(1)),
                float(ellh.group(1)) if ellh else math.nan,
                math.hypot(float(std.group(1)), float(std.group(2))) / math.sqrt(2.0) if std else math.nan,
                float(std.group(3)) if std else math.nan,
                int(q.group(1)) if q else 50,
            )
        )
    warnings: list[str] = []
    if bad:
        last = max(i for i, ln in enumerate(lines, start=1) if ln.strip())
        if bad == [last]:
            warnings.append(f"{path.name}: the file breaks at line {last} (last event cut off, truncated); read the events before it")
        else:
            warnings.append(f"{path.name}: skipped {len(bad)} malformed line(s), the first at line {bad[0]}")
    if not rows:
        raise fail(path, "no camera events (index, GPS time, Lat, Lon, Ellh) in this MRK file", "re-copy the MRK file from the flight folder")
    a = np.asarray([r[:7] for r in rows], dtype=np.float64)
    quality = np.asarray([r[7] for r in rows], dtype=np.int64)
    t = gps_to_utc(a[:, 0], a[:, 1])
    not_fixed = int(np.sum((quality != 50) & (quality > 0)))
    if not_fixed:
        warnings.append(f"{path.name}: {not_fixed} event(s) without a fixed RTK solution (float or single point)")
    triggers = trigger_events(t, a[:, 2], a[:, 3], a[:, 4], a[:, 5], a[:, 6])
    return build_track(
        path,
        FORMAT,
        t,
        a[:, 2],
        a[:, 3],
        a[:, 4],
        options=options,
        valid=quality > 0,
        height_ref=HeightRef.ELLIPSOIDAL,
        triggers=triggers,
        warnings=warnings,
        what="camera events",
    )
