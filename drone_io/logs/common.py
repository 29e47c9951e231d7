"""Shared pieces of the flight-log readers: options, time conversions, attitude maths, track assembly.

Every reader collects raw arrays (time, lat, lon, alt and a validity flag per fix) and
hands them to :func:`build_track`, which drops invalid fixes and GPS spikes
(:mod:`drone_io.logs.clean`), sorts by time and returns one :class:`FlightTrack`.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from drone_io.logs.clean import clean_fixes
from models.errors import LogFormatError
from models.geo import HeightRef
from models.track import AttitudeSeries, FlightTrack, PositionSeries, TriggerEvents

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

# GPS time started 1980-01-06 00:00:00 UTC.
GPS_EPOCH_POSIX = 315964800.0
# (first POSIX second the value applies from, GPS-UTC seconds), most recent first.
_LEAP_SECONDS: tuple[tuple[float, int], ...] = (
    (1483228800.0, 18),  # 2017-01-01
    (1435708800.0, 17),  # 2015-07-01
    (1341100800.0, 16),  # 2012-07-01
    (1230768000.0, 15),  # 2009-01-01
    (1136073600.0, 14),  # 2006-01-01
    (915148800.0, 13),  # 1999-01-01
)


@dataclass(frozen=True)
class LogReadOptions:
    """How readers clean fixes (the defaults match ``IngestConfig``)."""

    # A fix implying a horizontal or vertical speed above this is a spike (m/s).
    max_speed_mps: float = 60.0
    # Position noise allowed on top of the speed limit between two fixes (m).
    spike_tolerance_m: float = 10.0


def gps_leap_seconds(gps_posix: float) -> int:
    """GPS-UTC offset in seconds at a GPS-scale POSIX-like time."""
    for start, leap in _LEAP_SECONDS:
        if gps_posix - leap >= start:
            return leap
    return 13


def gps_to_utc(week: FloatArray | float, seconds_of_week: FloatArray | float) -> FloatArray:
    """POSIX UTC seconds from GPS week and seconds of week (leap seconds applied)."""
    w = np.asarray(week, dtype=np.float64)
    s = np.asarray(seconds_of_week, dtype=np.float64)
    gps = GPS_EPOCH_POSIX + w * 604800.0 + s
    flat = np.atleast_1d(gps)
    leaps = np.array([gps_leap_seconds(float(v)) for v in flat], dtype=np.float64)
    return np.asarray(flat - leaps, dtype=np.float64).reshape(np.shape(gps))


def iso_utc(t: float, zone_known: bool = True) -> str:
    """ISO 8601 text of a POSIX time; 'Z' only when the zone is known to be UTC."""
    dt = datetime.fromtimestamp(t, tz=timezone.utc)
    text = dt.isoformat(timespec="milliseconds").replace("+00:00", "")
    return text + "Z" if zone_known else text


def euler_from_quat_ned(q: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(yaw, pitch, roll) degrees from body-FRD-to-NED quaternions (N, 4) as (w, x, y, z).

    Yaw is clockwise from north in [0, 360), pitch nose-up positive, roll right-wing-down
    positive: the aerospace ZYX convention, which is also the DJI one.
    """
    qa = np.asarray(q, dtype=np.float64).reshape(-1, 4)
    w, x, y, z = qa[:, 0], qa[:, 1], qa[:, 2], qa[:, 3]
    roll = np.degrees(np.arctan2(2.0 * (w * x + y * z), 1.0 - 2.0 * (x * x + y * y)))
    pitch = np.degrees(np.arcsin(np.clip(2.0 * (w * y - z * x), -1.0, 1.0)))
    yaw = np.degrees(np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))) % 360.0
    return yaw, pitch, roll


def fail(path: Path, what: str, fix: str = "") -> LogFormatError:
    """A LogFormatError naming the file, what is wrong and what to do."""
    text = f"{path}: {what}"
    if fix:
        text += f"; {fix}"
    return LogFormatError(text)


@contextlib.contextmanager
def quiet_stdout() -> Iterator[io.StringIO]:
    """Capture what third-party parsers print on stdout and stderr (pyulog, pymavlink), to turn into warnings."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        yield buf


def attitude_series(
    t: Sequence[float] | FloatArray,
    yaw: Sequence[float] | FloatArray,
    pitch: Sequence[float] | FloatArray,
    roll: Sequence[float] | FloatArray,
) -> AttitudeSeries | None:
    """A time-sorted attitude series without NaN samples, or None when empty."""
    ta = np.asarray(t, dtype=np.float64)
    arr = np.stack(
        [np.asarray(yaw, dtype=np.float64), np.asarray(pitch, dtype=np.float64), np.asarray(roll, dtype=np.float64)],
        axis=1,
    ) if len(ta) else np.zeros((0, 3))
    if len(ta) == 0:
        return None
    ok = np.isfinite(ta) & np.all(np.isfinite(arr), axis=1)
    ta, arr = ta[ok], arr[ok]
    if len(ta) == 0:
        return None
    order = np.argsort(ta, kind="stable")
    ta, arr = ta[order], arr[order]
    # Equal times would make interpolation divide by zero; keep the first sample of each.
    keep = np.concatenate([[True], np.diff(ta) > 0])
    ta, arr = ta[keep], arr[keep]
    return AttitudeSeries(t=ta, yaw=arr[:, 0] % 360.0, pitch=arr[:, 1], roll=arr[:, 2])


def trigger_events(
    t: Sequence[float] | FloatArray,
    lat: Sequence[float] | FloatArray | None = None,
    lon: Sequence[float] | FloatArray | None = None,
    alt: Sequence[float] | FloatArray | None = None,
    std_horizontal_m: Sequence[float] | FloatArray | None = None,
    std_vertical_m: Sequence[float] | FloatArray | None = None,
    names: Sequence[str] | None = None,
    sort: bool = True,
) -> TriggerEvents | None:
    """Trigger events sorted by time (events with a non-finite time are left out), or None when empty."""
    ta = np.asarray(t, dtype=np.float64)
    if len(ta) == 0:
        return None
    ok = np.isfinite(ta)
    order = np.argsort(ta[ok], kind="stable") if sort else np.arange(int(ok.sum()))

    def pick(a: Sequence[float] | FloatArray | None) -> FloatArray | None:
        if a is None:
            return None
        arr = np.asarray(a, dtype=np.float64)[ok][order]
        return arr if np.any(np.isfinite(arr)) else None

    name_t = None if names is None else tuple(np.asarray(list(names), dtype=object)[ok][order].tolist())
    return TriggerEvents(
        t=ta[ok][order],
        lat=pick(lat),
        lon=pick(lon),
        alt=pick(alt),
        std_horizontal_m=pick(std_horizontal_m),
        std_vertical_m=pick(std_vertical_m),
        names=name_t,
    )


def build_track(
    path: Path,
    fmt: str,
    t: Sequence[float] | FloatArray,
    lat: Sequence[float] | FloatArray,
    lon: Sequence[float] | FloatArray,
    alt: Sequence[float] | FloatArray,
    *,
    options: LogReadOptions,
    valid: Sequence[bool] | BoolArray | None = None,
    height_ref: HeightRef = HeightRef.UNKNOWN,
    attitude: AttitudeSeries | None = None,
    gimbal: AttitudeSeries | None = None,
    triggers: TriggerEvents | None = None,
    warnings: Sequence[str] = (),
    absolute_time: bool = True,
    time_zone_known: bool = True,
    by_image_name: bool = False,
    what: str = "position fixes",
) -> FlightTrack:
    """Clean the raw fixes and assemble the track; LogFormatError when no fix survives."""
    ta = np.asarray(t, dtype=np.float64)
    la = np.asarray(lat, dtype=np.float64)
    lo = np.asarray(lon, dtype=np.float64)
    al = np.asarray(alt, dtype=np.float64)
    n = len(ta)
    if n == 0:
        raise fail(path, f"no {what} found", "check that the log was recorded with GPS and is not empty")
    va = np.ones(n, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    result = clean_fixes(
        ta,
        la,
        lo,
        al,
        valid=va,
        max_speed_mps=options.max_speed_mps,
        tolerance_m=options.spike_tolerance_m,
        keep_order=by_image_name,
    )
    idx = result.kept
    if len(idx) == 0:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(result.reasons.items()))
        raise fail(
            path,
            f"none of its {n} {what} is usable ({reasons})",
            "the log holds no valid GPS position; use another log or set positions another way",
        )
    notes = list(warnings)
    spikes = result.reasons.get("spike", 0)
    if spikes:
        notes.append(f"{path.name}: dropped {spikes} GPS fix(es) as spikes (implied speed above {options.max_speed_mps:g} m/s)")
    positions = PositionSeries(t=ta[idx], lat=la[idx], lon=lo[idx], alt=al[idx], height_ref=height_ref)
    return FlightTrack(
        source=path.name,
        format=fmt,
        positions=positions,
        attitude=attitude,
        triggers=triggers,
        dropped_fixes=n - len(idx),
        warnings=tuple(notes),
        absolute_time=absolute_time,
        gimbal=gimbal,
        dropped_reasons=dict(result.reasons),
        time_zone_known=time_zone_known,
        by_image_name=by_image_name,
    )


def finite_or_nan(value: object) -> float:
    """float(value), NaN when it is missing or not a number."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan
