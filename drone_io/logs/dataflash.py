"""ArduPilot DataFlash logs (binary .bin, text .log) via pymavlink's DFReader.

Reads GPS fixes (first instance; Status >= 3 counts as a fix), ATT attitude and camera
events (CAM, else TRIG). Message times are boot microseconds (``TimeUS``); UTC comes from
GPS week and milliseconds-of-week on fixes that carry them.
"""

from __future__ import annotations

import mmap
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
_HEAD = b"\xa3\x95"
# ArduPilot pads block logs with up to a page of filler at the end: not corruption.
_TAIL_SLACK = 528


def _framing_warnings(path: Path, lengths: dict[int, int]) -> list[str]:
    """Walk the binary message framing: where bytes are unreadable and whether the end is cut off."""
    warnings: list[str] = []
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        n = len(data)
        ofs = 0
        bad = 0
        first_bad = -1
        places = 0
        in_bad = False
        while ofs + 3 <= n:
            length = lengths.get(data[ofs + 2]) if data[ofs : ofs + 2] == _HEAD else None
            if length is None or length < 3:
                if n - ofs > _TAIL_SLACK:
                    bad += 1
                    if first_bad < 0:
                        first_bad = ofs
                    if not in_bad:
                        places += 1
                    in_bad = True
                ofs += 1
                continue
            in_bad = False
            if ofs + length > n:
                warnings.append(
                    f"{path.name}: the log breaks at byte {ofs} of {n} (last message cut off, truncated); "
                    "read what came before it"
                )
                break
            ofs += length
    if bad:
        warnings.insert(
            0,
            f"{path.name}: the log is corrupt at byte {first_bad}: skipped {bad} unreadable byte(s) "
            f"in {places} place(s) and read the rest",
        )
    return warnings


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
    with quiet_stdout():  # pymavlink prints each bad header; _framing_warnings summarises them
        reader = _open(path)
        while True:
            m = reader.recv_match(type=list(_TYPES))
            if m is None:
                break
            kind = m.get_type()
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
    lengths = {int(t): int(f.len) for t, f in getattr(reader, "formats", {}).items()}
    if isinstance(reader, DFReader.DFReader_binary) and lengths:
        warnings.extend(_framing_warnings(path, lengths))
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
