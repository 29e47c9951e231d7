"""MAVLink telemetry logs (.tlog) via pymavlink: positions, attitude and camera events.

Positions come from GLOBAL_POSITION_INT (the autopilot's fused position), or from
GPS_RAW_INT (fix_type >= 3) when the log has no fused positions. Attitude from ATTITUDE.
Camera events from CAMERA_FEEDBACK (ArduPilot, one per shot), else CAMERA_IMAGE_CAPTURED,
else CAMERA_TRIGGER.

Times: vehicle messages carry ``time_boot_ms``; SYSTEM_TIME pairs it with the vehicle's
GPS-derived UTC, and the median difference per boot gives UTC for every message. A boot
without SYSTEM_TIME falls back to the ground station's receive times (with a warning).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from pymavlink import mavutil

from drone_io.logs.common import (
    LogReadOptions,
    attitude_series,
    build_track,
    fail,
    quiet_stdout,
    trigger_events,
)
from models.geo import HeightRef
from models.track import FlightTrack

FORMAT = "mavlink_tlog"
_TYPES = {
    "GLOBAL_POSITION_INT",
    "GPS_RAW_INT",
    "ATTITUDE",
    "SYSTEM_TIME",
    "CAMERA_FEEDBACK",
    "CAMERA_IMAGE_CAPTURED",
    "CAMERA_TRIGGER",
    "BAD_DATA",
}
_UTC_USEC_MIN = 1.0e15  # microsecond values above this are UNIX time, below it boot time
_REBOOT_S = 5.0  # time_boot_ms stepping back more than this starts a new boot


def read_tlog(path: Path, options: LogReadOptions | None = None) -> FlightTrack:
    options = options or LogReadOptions()
    rows: list[tuple[str, int, float, float, Any]] = []  # (type, boot index, boot s, receive s, msg)
    bad = 0
    first_bad: int | None = None
    boot_idx = 0
    last_boot = -1.0
    sysids: Counter[int] = Counter()
    with quiet_stdout():
        conn = mavutil.mavlink_connection(str(path), dialect="ardupilotmega", robust_parsing=True, notimestamps=False)
        try:
            while True:
                # recv_msg, not recv_match(type=...): the typed path jumps over corrupt bytes silently.
                m = conn.recv_msg()
                if m is None:
                    break
                kind = m.get_type()
                if kind not in _TYPES:
                    continue
                if kind == "BAD_DATA":
                    bad += 1
                    if first_bad is None:
                        first_bad = int(conn.f.tell())
                    continue
                boot_ms = getattr(m, "time_boot_ms", None)
                boot_s = float("nan")
                if boot_ms is not None:
                    boot_s = float(boot_ms) * 1e-3
                    if last_boot >= 0 and boot_s < last_boot - _REBOOT_S:
                        boot_idx += 1
                    last_boot = boot_s
                elif kind == "GPS_RAW_INT" and float(m.time_usec) < _UTC_USEC_MIN:
                    boot_s = float(m.time_usec) * 1e-6
                if kind == "GLOBAL_POSITION_INT":
                    sysids[m.get_srcSystem()] += 1
                rows.append((kind, boot_idx, boot_s, float(getattr(m, "_timestamp", float("nan"))), m))
            leftover = len(conn.mav.buf) - conn.mav.buf_index
            size = path.stat().st_size
        finally:
            conn.close()

    warnings: list[str] = []
    if bad:
        warnings.append(
            f"{path.name}: skipped {bad} unreadable MAVLink packet(s) (bad checksum or unknown message), "
            f"the first near byte {first_bad}"
        )
    if leftover > 0:
        warnings.append(
            f"{path.name}: the log breaks at byte {size - leftover} of {size} (last packet cut off, truncated); "
            "read what came before it"
        )

    vehicle = sysids.most_common(1)[0][0] if sysids else None
    if vehicle is not None:
        rows = [r for r in rows if r[4].get_srcSystem() == vehicle]

    # UTC offset per boot: SYSTEM_TIME when the vehicle had GPS time, else the receive clock.
    offsets: dict[int, float] = {}
    fallback: list[int] = []
    for b in sorted({r[1] for r in rows}):
        pairs = [
            float(r[4].time_unix_usec) * 1e-6 - r[2]
            for r in rows
            if r[1] == b and r[0] == "SYSTEM_TIME" and float(r[4].time_unix_usec) > _UTC_USEC_MIN
        ]
        if pairs:
            offsets[b] = float(np.median(pairs))
            continue
        recv = [r[3] - r[2] for r in rows if r[1] == b and np.isfinite(r[2]) and np.isfinite(r[3])]
        if recv:
            offsets[b] = float(np.median(recv))
            fallback.append(b)
    if fallback:
        warnings.append(
            f"{path.name}: the vehicle sent no GPS time (SYSTEM_TIME) for {len(fallback)} boot(s); "
            "times there come from the ground station's clock"
        )

    def utc(r: tuple[str, int, float, float, Any]) -> float:
        return r[2] + offsets.get(r[1], float("nan"))

    fused = [r for r in rows if r[0] == "GLOBAL_POSITION_INT"]
    raw = [r for r in rows if r[0] == "GPS_RAW_INT"]
    use_fused = sum(1 for r in fused if r[4].lat != 0 or r[4].lon != 0) >= 2
    if use_fused:
        src = fused
        valid = np.ones(len(src), dtype=bool)
    else:
        src = raw
        valid = np.asarray([int(r[4].fix_type) >= 3 for r in src], dtype=bool)
    if not src:
        raise fail(
            path,
            "no position messages (GLOBAL_POSITION_INT or GPS_RAW_INT) in this telemetry log",
            "geotagging needs a log with the vehicle's position stream",
        )
    t = np.asarray(
        [utc(r) if np.isfinite(r[2]) else float(r[4].time_usec) * 1e-6 for r in src], dtype=np.float64
    )
    lat = np.asarray([r[4].lat for r in src], dtype=np.float64) * 1e-7
    lon = np.asarray([r[4].lon for r in src], dtype=np.float64) * 1e-7
    alt = np.asarray([r[4].alt for r in src], dtype=np.float64) * 1e-3
    height_ref = HeightRef.ORTHOMETRIC  # GLOBAL_POSITION_INT.alt and GPS_RAW_INT.alt: above mean sea level
    if not use_fused:
        ell = np.asarray([float(getattr(r[4], "alt_ellipsoid", 0) or 0) for r in src]) * 1e-3
        if np.all(ell[valid] != 0.0) and valid.any():
            alt, height_ref = ell, HeightRef.ELLIPSOIDAL

    att = [r for r in rows if r[0] == "ATTITUDE"]
    attitude = None
    if att:
        attitude = attitude_series(
            [utc(r) for r in att],
            np.degrees([r[4].yaw for r in att]),
            np.degrees([r[4].pitch for r in att]),
            np.degrees([r[4].roll for r in att]),
        )

    triggers = None
    feedback = [r for r in rows if r[0] == "CAMERA_FEEDBACK"]
    captured = [r for r in rows if r[0] == "CAMERA_IMAGE_CAPTURED"]
    camtrig = [r for r in rows if r[0] == "CAMERA_TRIGGER"]
    if feedback:
        triggers = trigger_events(
            [_event_time(float(r[4].time_usec), r, offsets) for r in feedback],
            [r[4].lat * 1e-7 for r in feedback],
            [r[4].lng * 1e-7 for r in feedback],
            [float(r[4].alt_msl) for r in feedback],
        )
    elif captured:
        triggers = trigger_events(
            [float(r[4].time_utc) * 1e-6 if float(r[4].time_utc) > _UTC_USEC_MIN else utc(r) for r in captured],
            [r[4].lat * 1e-7 for r in captured],
            [r[4].lon * 1e-7 for r in captured],
            [r[4].alt * 1e-3 for r in captured],
        )
    elif camtrig:
        triggers = trigger_events([_event_time(float(r[4].time_usec), r, offsets) for r in camtrig])

    return build_track(
        path,
        FORMAT,
        t,
        lat,
        lon,
        alt,
        options=options,
        valid=valid,
        height_ref=height_ref,
        attitude=attitude,
        triggers=triggers,
        warnings=warnings,
        absolute_time=bool(offsets),
    )


def _event_time(time_usec: float, row: tuple[str, int, float, float, Any], offsets: dict[int, float]) -> float:
    """A camera event's UTC: its own UNIX microseconds, or boot microseconds plus the boot's offset."""
    if time_usec > _UTC_USEC_MIN:
        return time_usec * 1e-6
    return time_usec * 1e-6 + offsets.get(row[1], float("nan"))
