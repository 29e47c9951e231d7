"""PX4 ULog (.ulg) via pyulog: GPS fixes, vehicle attitude, camera trigger/capture events.

Times: ULog timestamps are microseconds since boot. UTC comes from the GPS topic's
``time_utc_usec`` (median of UTC minus boot time over fixes that carry it). Without it
the track keeps boot time and ``absolute_time=False``.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path
from typing import Any

import numpy as np
from pyulog import ULog

from drone_io.logs.common import (
    FloatArray,
    LogReadOptions,
    attitude_series,
    build_track,
    euler_from_quat_ned,
    fail,
    quiet_stdout,
    trigger_events,
)
from models.geo import HeightRef
from models.track import FlightTrack

FORMAT = "px4_ulog"
_GPS_TOPICS = ("vehicle_gps_position", "sensor_gps")
_TOPICS = [*_GPS_TOPICS, "vehicle_attitude", "camera_capture", "camera_trigger"]
_MSG_TYPES = set(b"BFIMPQARDLCSO")
_HEADER = 16


def scan_stream(path: Path) -> tuple[int, str] | None:
    """Walk the message framing; (byte offset, what) where the stream breaks, None when whole."""
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        n = len(data)
        pos = _HEADER
        while pos + 3 <= n:
            size, kind = struct.unpack_from("<HB", data, pos)
            if kind not in _MSG_TYPES:
                return pos, f"an unknown message type 0x{kind:02x}"
            if pos + 3 + size > n:
                return pos, "a message cut off by the end of the file (truncated)"
            pos += 3 + size
        if pos != n:
            return pos, "a message header cut off by the end of the file (truncated)"
    return None


def _field(d: dict[str, Any], *names: str) -> Any | None:
    for name in names:
        if name in d:
            return d[name]
    return None


def read_ulog(path: Path, options: LogReadOptions | None = None) -> FlightTrack:
    options = options or LogReadOptions()
    with quiet_stdout() as printed:
        ulog = ULog(str(path), _TOPICS, disable_str_exceptions=True)
    warnings: list[str] = []
    broken = scan_stream(path)
    if broken is not None or ulog.file_corruption:
        where = f"at byte {broken[0]} ({broken[1]})" if broken else "(pyulog reported corrupt data)"
        warnings.append(f"{path.name}: the log breaks {where}; read what came before it")
    datasets = {(d.name, d.multi_id): d.data for d in ulog.data_list}
    printed_text = printed.getvalue().strip()
    if printed_text and not warnings and "corrupt" in printed_text.lower():
        warnings.append(f"{path.name}: {printed_text.splitlines()[0]}")

    gps: dict[str, Any] | None = None
    for topic in _GPS_TOPICS:
        candidates = [data for (name, _), data in sorted(datasets.items(), key=lambda kv: kv[0][1]) if name == topic]
        if candidates:
            gps = candidates[0]
            break
    att = datasets.get(("vehicle_attitude", 0))
    if gps is None or len(gps["timestamp"]) == 0:
        extra = f" (it holds {len(att['timestamp'])} attitude samples but no GPS topic)" if att is not None else ""
        raise fail(
            path,
            f"no GPS position in this ULog{extra}",
            "geotagging needs a log recorded with GPS (vehicle_gps_position or sensor_gps)",
        )

    boot = np.asarray(gps["timestamp"], dtype=np.float64) * 1e-6
    lat_raw = _field(gps, "latitude_deg", "lat")
    lon_raw = _field(gps, "longitude_deg", "lon")
    if lat_raw is None or lon_raw is None:
        raise fail(path, "the GPS topic has no latitude/longitude fields", "this PX4 version is not supported")
    lat = np.asarray(lat_raw, dtype=np.float64)
    lon = np.asarray(lon_raw, dtype=np.float64)
    if "latitude_deg" not in gps:  # int32 degrees * 1e7
        lat, lon = lat * 1e-7, lon * 1e-7
    height_ref = HeightRef.ORTHOMETRIC
    if "altitude_ellipsoid_m" in gps:
        alt: FloatArray = np.asarray(gps["altitude_ellipsoid_m"], dtype=np.float64)
        height_ref = HeightRef.ELLIPSOIDAL
    elif "alt_ellipsoid" in gps:
        alt = np.asarray(gps["alt_ellipsoid"], dtype=np.float64) * 1e-3
        height_ref = HeightRef.ELLIPSOIDAL
    elif "altitude_msl_m" in gps:
        alt = np.asarray(gps["altitude_msl_m"], dtype=np.float64)
    else:
        alt = np.asarray(gps["alt"], dtype=np.float64) * 1e-3
    fix_type = np.asarray(gps.get("fix_type", np.full(len(boot), 3)), dtype=np.int64)
    valid = fix_type >= 3

    utc = np.asarray(gps.get("time_utc_usec", np.zeros(len(boot))), dtype=np.float64) * 1e-6
    has_utc = (utc > 1.0e9) & valid
    absolute = bool(has_utc.any())
    offset = float(np.median(utc[has_utc] - boot[has_utc])) if absolute else 0.0
    if not absolute:
        warnings.append(f"{path.name}: no GPS time in the log; times are seconds since boot")

    attitude = None
    if att is not None and all(f"q[{i}]" in att for i in range(4)):
        q = np.stack([np.asarray(att[f"q[{i}]"], dtype=np.float64) for i in range(4)], axis=1)
        yaw, pitch, roll = euler_from_quat_ned(q)
        attitude = attitude_series(np.asarray(att["timestamp"], dtype=np.float64) * 1e-6 + offset, yaw, pitch, roll)

    triggers = None
    capture = datasets.get(("camera_capture", 0))
    trigger = datasets.get(("camera_trigger", 0))
    if capture is not None and len(capture["timestamp"]):
        tc = np.asarray(capture["timestamp"], dtype=np.float64) * 1e-6 + offset
        triggers = trigger_events(
            tc,
            _field(capture, "lat"),
            _field(capture, "lon"),
            _field(capture, "alt"),
        )
    elif trigger is not None and len(trigger["timestamp"]):
        triggers = trigger_events(np.asarray(trigger["timestamp"], dtype=np.float64) * 1e-6 + offset)

    return build_track(
        path,
        FORMAT,
        boot + offset,
        lat,
        lon,
        alt,
        options=options,
        valid=valid,
        height_ref=height_ref,
        attitude=attitude,
        triggers=triggers,
        warnings=warnings,
        absolute_time=absolute,
    )
