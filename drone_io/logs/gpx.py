"""GPX tracks via gpxpy: track points (or route points) with times; elevation is orthometric.

A GPX that breaks off (truncated XML) still yields the complete ``<trkpt>`` elements
before the break, with a warning naming the line and column of the break.
"""

from __future__ import annotations

import calendar
import math
import re
from datetime import datetime, timezone
from pathlib import Path

import gpxpy
import gpxpy.gpx

from drone_io.logs.common import LogReadOptions, build_track, fail
from models.geo import HeightRef
from models.track import FlightTrack

FORMAT = "gpx"
_TRKPT = re.compile(r"<(?:\w+:)?(trkpt|rtept)\b([^>]*)>(.*?)</(?:\w+:)?\1>", re.DOTALL)
_ATTR = re.compile(r"\b(lat|lon)\s*=\s*[\"']([-+\d.eE]+)[\"']")
_ELE = re.compile(r"<(?:\w+:)?ele>\s*([-+\d.eE]+)\s*<")
_TIME = re.compile(r"<(?:\w+:)?time>\s*([^<]+?)\s*<")
_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})?")


def _posix(dt: datetime | None) -> float:
    if dt is None:
        return math.nan
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _iso_to_posix(text: str) -> float:
    m = _ISO.match(text)
    if not m:
        return math.nan
    y, mo, d, hh, mi, ss, frac, zone = m.groups()
    t = calendar.timegm((int(y), int(mo), int(d), int(hh), int(mi), int(ss))) + (float(frac) if frac else 0.0)
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        t -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return float(t)


def _salvage(text: str) -> list[tuple[float, float, float, float]]:
    """Complete track points found by pattern in a GPX whose XML is broken."""
    pts = []
    for m in _TRKPT.finditer(text):
        attrs = dict(_ATTR.findall(m.group(2)))
        if "lat" not in attrs or "lon" not in attrs:
            continue
        ele = _ELE.search(m.group(3))
        tm = _TIME.search(m.group(3))
        pts.append(
            (
                _iso_to_posix(tm.group(1)) if tm else math.nan,
                float(attrs["lat"]),
                float(attrs["lon"]),
                float(ele.group(1)) if ele else math.nan,
            )
        )
    return pts


def read_gpx(path: Path, options: LogReadOptions | None = None) -> FlightTrack:
    options = options or LogReadOptions()
    text = path.read_bytes().decode("utf-8-sig", errors="replace")
    warnings: list[str] = []
    pts: list[tuple[float, float, float, float]] = []
    try:
        doc = gpxpy.parse(text)
    except (gpxpy.gpx.GPXException, ValueError) as exc:
        pts = _salvage(text)
        if not pts:
            raise fail(path, f"not a readable GPX ({exc})", "re-export the track as GPX 1.1") from exc
        warnings.append(f"{path.name}: the GPX breaks ({exc}); read the {len(pts)} complete point(s) before it")
    else:
        for track in doc.tracks:
            for seg in track.segments:
                pts.extend((_posix(p.time), p.latitude, p.longitude, p.elevation if p.elevation is not None else math.nan) for p in seg.points)
        if not pts:
            for route in doc.routes:
                pts.extend((_posix(p.time), p.latitude, p.longitude, p.elevation if p.elevation is not None else math.nan) for p in route.points)
    if not pts:
        raise fail(path, "no track or route points", "export the flight as a GPX track")
    timed = [p for p in pts if math.isfinite(p[0])]
    if not timed:
        raise fail(path, f"none of its {len(pts)} points has a time", "geotagging needs a GPX track with <time> on each point")
    if len(timed) < len(pts):
        warnings.append(f"{path.name}: {len(pts) - len(timed)} point(s) without a time were dropped")
    return build_track(
        path,
        FORMAT,
        [p[0] for p in pts],
        [p[1] for p in pts],
        [p[2] for p in pts],
        [p[3] for p in pts],
        options=options,
        height_ref=HeightRef.ORTHOMETRIC,
        warnings=warnings,
    )
