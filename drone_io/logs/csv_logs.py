"""AirData UAV and Litchi flight-log CSV exports.

AirData: ``time(millisecond), datetime(utc), latitude, longitude, height_above_takeoff(feet),
..., altitude_above_seaLevel(feet), ..., compass_heading(degrees), pitch(degrees),
roll(degrees), isPhoto, ..., gimbal_heading(degrees), gimbal_pitch(degrees)`` (metric exports
say ``(meters)``). Litchi: ``latitude, longitude, altitude(m), ..., time(millisecond),
datetime(utc), ..., yaw(deg), pitch(deg), roll(deg), ..., isTakingPhoto`` (imperial exports say
``(feet)``; altitude is above take-off).

Times: ``datetime(utc)`` has whole seconds, ``time(millisecond)`` counts from the start; the
two combine to millisecond UTC. A photo event is a rising edge of isPhoto/isTakingPhoto.
"""

from __future__ import annotations

import calendar
import csv
import math
import re
from pathlib import Path

import numpy as np

from drone_io.logs.common import (
    FloatArray,
    LogReadOptions,
    attitude_series,
    build_track,
    fail,
    trigger_events,
)
from models.geo import HeightRef
from models.track import FlightTrack

_HEADER = re.compile(r"^\s*([^()]+?)\s*(?:\(([^)]*)\))?\s*$")
_DATETIME = re.compile(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})[ T](\d{1,2}):(\d{2}):(\d{2})(?:[.,](\d+))?")
_UNITS = {"feet": 0.3048, "ft": 0.3048, "meters": 1.0, "metres": 1.0, "m": 1.0}


def _columns(header: list[str]) -> dict[str, tuple[int, str]]:
    cols: dict[str, tuple[int, str]] = {}
    for i, cell in enumerate(header):
        m = _HEADER.match(cell.lstrip("\ufeff"))
        if not m:
            continue
        name = m.group(1).strip().lower()
        unit = (m.group(2) or "").strip().lower()
        if name == "datetime" and unit not in ("utc", ""):
            name = f"datetime_{unit}"  # Litchi's datetime(local) must not shadow datetime(utc)
        cols.setdefault(name, (i, unit))
    return cols


def _parse_datetime(text: str) -> float:
    m = _DATETIME.search(text)
    if not m:
        return math.nan
    y, mo, d, hh, mi, ss, frac = m.groups()
    try:
        base = calendar.timegm((int(y), int(mo), int(d), int(hh), int(mi), int(ss)))
    except (ValueError, OverflowError):
        return math.nan
    return base + (float("0." + frac) if frac else 0.0)


def _num(row: list[str], col: tuple[int, str] | None) -> float:
    if col is None or col[0] >= len(row):
        return math.nan
    try:
        v = float(row[col[0]])
    except ValueError:
        return math.nan
    return v


def _flag(row: list[str], col: tuple[int, str] | None) -> bool:
    if col is None or col[0] >= len(row):
        return False
    return row[col[0]].strip().lower() in ("1", "true", "yes")


def _scale(col: tuple[int, str] | None) -> float:
    return 1.0 if col is None else _UNITS.get(col[1], 1.0)


def read_csv_log(path: Path, fmt: str, options: LogReadOptions | None = None) -> FlightTrack:
    """Read an AirData (``fmt='airdata_csv'``) or Litchi (``fmt='litchi_csv'``) flight-log CSV."""
    options = options or LogReadOptions()
    text = path.read_bytes().decode("utf-8-sig", errors="replace")
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        raise fail(path, "the file is empty", "export the flight log CSV again")
    header = rows[0]
    cols = _columns(header)
    lat_c, lon_c = cols.get("latitude"), cols.get("longitude")
    if lat_c is None or lon_c is None:
        raise fail(path, "no latitude/longitude columns in the CSV header", "export the flight log with GPS columns")
    airdata = fmt == "airdata_csv"
    if airdata:
        asl = cols.get("altitude_above_sealevel")
        alt_c = asl or cols.get("height_above_takeoff")
        height_ref = HeightRef.ORTHOMETRIC if asl else HeightRef.UNKNOWN
        att_c = (cols.get("compass_heading"), cols.get("pitch"), cols.get("roll"))
        gim_c = (cols.get("gimbal_heading"), cols.get("gimbal_pitch"), cols.get("gimbal_roll"))
        photo_c = cols.get("isphoto")
    else:
        alt_c = cols.get("altitude")
        height_ref = HeightRef.UNKNOWN
        att_c = (cols.get("yaw"), cols.get("pitch"), cols.get("roll"))
        gim_c = (cols.get("gimbalyaw"), cols.get("gimbalpitch"), cols.get("gimbalroll"))
        photo_c = cols.get("istakingphoto")
    dt_c, ms_c = cols.get("datetime"), cols.get("time")
    if dt_c is None and ms_c is None:
        raise fail(path, "no datetime(utc) or time(millisecond) column", "export the flight log with its time columns")

    warnings: list[str] = []
    bad_lines: list[int] = []
    n_cols = len(header)
    data_lines = [i for i, r in enumerate(rows) if i > 0 and r and any(c.strip() for c in r)]
    last_line = data_lines[-1] if data_lines else -1
    recs: list[tuple[float, float, float, float, float, float, float, float, float, float, bool]] = []
    for idx in data_lines:
        row, line_no = rows[idx], idx + 1
        if idx == last_line and len(row) < n_cols:
            warnings.append(
                f"{path.name}: the file breaks at line {line_no} (last row cut off, truncated); read the rows before it"
            )
            continue
        lat, lon = _num(row, lat_c), _num(row, lon_c)
        if not (math.isfinite(lat) and math.isfinite(lon)):
            bad_lines.append(line_no)
            continue
        recs.append(
            (
                _parse_datetime(row[dt_c[0]]) if dt_c is not None and dt_c[0] < len(row) else math.nan,
                _num(row, ms_c) * (1.0 if ms_c is not None and ms_c[1] in ("s", "second", "seconds") else 1e-3),
                lat,
                lon,
                _num(row, alt_c) * _scale(alt_c),
                _num(row, att_c[0]),
                _num(row, att_c[1]),
                _num(row, att_c[2]),
                _num(row, gim_c[0]),
                _num(row, gim_c[1]),
                _flag(row, photo_c),
            )
        )
    if bad_lines:
        warnings.append(f"{path.name}: skipped {len(bad_lines)} row(s) without a readable position, the first at line {bad_lines[0]}")
    if not recs:
        raise fail(path, "no data rows with a position", "the CSV holds a header only or its rows are malformed")

    a = np.asarray([r[:10] for r in recs], dtype=np.float64)
    photo = np.asarray([r[10] for r in recs], dtype=bool)
    dates, rel = a[:, 0], a[:, 1]
    absolute = bool(np.isfinite(dates).any())
    if absolute and np.isfinite(rel).any():
        both = np.isfinite(dates) & np.isfinite(rel)
        diff = dates[both] - rel[both]
        whole_seconds = bool(np.all(np.mod(dates[both], 1.0) == 0.0))
        # Whole-second dates are truncated: the largest difference is closest to the true start.
        anchor = float(np.max(diff)) if whole_seconds else float(np.median(diff))
        t: FloatArray = np.where(np.isfinite(rel), rel + anchor, dates)
    elif absolute:
        t = dates
    else:
        t = rel
        warnings.append(f"{path.name}: no datetime(utc) column; times are seconds from the start of the log")
    if height_ref is HeightRef.UNKNOWN and alt_c is not None:
        warnings.append(f"{path.name}: altitudes are heights above the take-off point, not absolute heights")

    attitude = None
    if np.isfinite(a[:, 5]).any():
        ok = np.isfinite(a[:, 5]) & np.isfinite(a[:, 6]) & np.isfinite(a[:, 7])
        attitude = attitude_series(t[ok], a[ok, 5], a[ok, 6], a[ok, 7])
    gimbal = None
    if np.isfinite(a[:, 9]).any():
        ok = np.isfinite(a[:, 9])
        yaw = np.where(np.isfinite(a[:, 8]), a[:, 8], a[:, 5])
        ok &= np.isfinite(yaw)
        gimbal = attitude_series(t[ok], yaw[ok], a[ok, 9], np.zeros(int(ok.sum())))
    rising = photo & ~np.concatenate([[False], photo[:-1]])
    triggers = trigger_events(t[rising], a[rising, 2], a[rising, 3], a[rising, 4]) if rising.any() else None
    return build_track(
        path,
        fmt,
        t,
        a[:, 2],
        a[:, 3],
        a[:, 4],
        options=options,
        height_ref=height_ref,
        attitude=attitude,
        gimbal=gimbal,
        triggers=triggers,
        warnings=warnings,
        absolute_time=absolute,
    )
