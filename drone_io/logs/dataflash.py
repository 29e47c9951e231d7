"""ArduPilot DataFlash logs (binary .bin, text .log) via pymavlink's DFReader.

Reads GPS fixes (first instance; Status >= 3 counts as a fix), ATT attitude and camera
events (CAM, else TRIG). Message times are boot microseconds (``TimeUS``); UTC comes from
GPS week and milliseconds-of-week on fixes that carry them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from pymavlink import DFReader

from drone_io.logs.common import (
    LogReadOptions,
    attitude_series,
    build_track,
    fail,
    finite_or_nan,
    gps_to_utc,
    quiet_stdout,
    trigger_events,
)
from models.geo import HeightRef
from models.track import FlightTrack

FORMAT = "ardupilot_dataflash"
_TYPES = {"GPS", "ATT", "CAM", "TRIG"}
_SKIPPED = re.compile(r"Skipped (\d+) bad bytes in log at offset (\d+)")


def _boot_s(m: Any) -> float:
    for name, scale in (("TimeUS", 1e-6), ("T", 1e-3), ("TimeMS", 1e-3)):
        v = getattr(m, name, None)
        if v is not None:
            return float(v) * scale
    return float("nan")


def _gps_time(m: Any, week_field: str, ms_field: str) -> float:
    week = getattr(m, week_field, None)
    ms = getattr(m, ms_field, None)
    if week is None or ms is None or week <= 0:
        return float("nan")
    return float(gps_to_utc(float(week), float(ms) * 1e-3))


def _open(path: Path) -> Any:
    with path.open("rb") as fh:
        binary = fh.read(2) == b"\xa3\x95"
    if binary:
        return DFReader.DFReader_binary(str(path), zero_time_base=True)
    return DFReader.DFReader_text(str(path), zero_time_base=True)


def read_dataflash(path: Path, options: LogReadOptions | None = None) -> FlightTrack:
    options = options or LogReadOptions()
    gps_rows: list[tuple[float, float, float, float, bool, float]] = []
    att_rows: list[tuple[float, float, float, float]] = []
    cam_rows: list[tuple[float, float, float, float, float]] = []
    trig_rows: list[tuple[float, float, float, float, float]] = []
    with quiet_stdout() as printed:
        reader = _open(path)
        while True:
            # recv_msg, not recv_match(type=...): the typed path skips to the end, hiding truncation.
            m = reader.recv_msg()
            if m is None:
                break
            kind = m.get_type()
            if kind not in _TYPES:
                continue
            if kind == "GPS":
                if getattr(m, "I", 0) not in (0, None):
                    continue
                week_field, ms_field = ("GWk", "GMS") if hasattr(m, "GWk") else ("Week", "TimeMS")
                boot_t = _boot_s(m) if hasattr(m, "TimeUS") or hasattr(m, "T") else float("nan")
                lat, lon = finite_or_nan(getattr(m, "Lat", None)), finite_or_nan(getattr(m, "Lng", None))
                alt = finite_or_nan(getattr(m, "Alt", None))
                status = int(getattr(m, "Status", 3) or 0)
                gps_rows.append((boot_t, lat, lon, alt, status >= 3, _gps_time(m, week_field, ms_field)))
            elif kind == "ATT":
                att_rows.append((_boot_s(m), float(m.Yaw), float(m.Pitch), float(m.Roll)))
            else:
                row = (
                    _boot_s(m),
                    _gps_time(m, "GPSWeek", "GPSTime"),
                    finite_or_nan(getattr(m, "Lat", None)),
                    finite_or_nan(getattr(m, "Lng", None)),
                    finite_or_nan(getattr(m, "Alt", None)),
                )
                (cam_rows if kind == "CAM" else trig_rows).append(row)
    warnings: list[str] = []
    skipped = _SKIPPED.findall(printed.getvalue())
    if skipped:
        total = sum(int(n) for n, _ in skipped)
        warnings.append(
            f"{path.name}: the log is corrupt at byte {skipped[0][1]}: skipped {total} unreadable byte(s) "
            f"in {len(skipped)} place(s) and read the rest"
        )
    end = getattr(reader, "offset", None)
    size = getattr(reader, "data_len", None)
    if isinstance(end, int) and isinstance(size, int) and end < size:
        warnings.append(
            f"{path.name}: the log breaks at byte {end} of {size} (last message cut off, truncated); "
            "read what came before it"
        )
    if not gps_rows:
        extra = f" (it holds {len(att_rows)} attitude samples)" if att_rows else ""
        raise fail(path, f"no GPS messages in this DataFlash log{extra}", "geotagging needs a log recorded with GPS")

    g = np.asarray([r[:5] for r in gps_rows], dtype=np.float64)
    boot = g[:, 0]
    valid = g[:, 4] > 0.5
    utc = np.asarray([r[5] for r in gps_rows], dtype=np.float64)
    good = np.isfinite(utc) & np.isfinite(boot) & valid
    absolute = bool(good.any())
    offset = float(np.median(utc[good] - boot[good])) if absolute else 0.0
    if not absolute:
        warnings.append(f"{path.name}: no GPS time in the log; times are seconds since boot")

    attitude = None
    if att_rows:
        a = np.asarray(att_rows, dtype=np.float64)
        attitude = attitude_series(a[:, 0] + offset, a[:, 1], a[:, 2], a[:, 3])

    triggers = None
    events = cam_rows or trig_rows
    if events:
        e = np.asarray(events, dtype=np.float64)
        t_evt = np.where(np.isfinite(e[:, 1]) & absolute, e[:, 1], e[:, 0] + offset)
        triggers = trigger_events(t_evt, e[:, 2], e[:, 3], e[:, 4])

    return build_track(
        path,
        FORMAT,
        boot + offset,
        g[:, 1],
        g[:, 2],
        g[:, 3],
        options=options,
        valid=valid,
        height_ref=HeightRef.ORTHOMETRIC,
        attitude=attitude,
        triggers=triggers,
        warnings=warnings,
        absolute_time=absolute,
    )
