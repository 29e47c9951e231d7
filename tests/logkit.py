"""Synthetic flights and small, realistic flight-log samples for the log and geotag tests."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from pymavlink.dialects.v20 import ardupilotmega as mavlink

from models.image import Attitude, GpsPosition, ImageRecord, PositionSource

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
LAT0, LON0 = 22.54, 113.93  # Shenzhen (UTM 49N)
M_PER_DEG = 111_320.0


@dataclass(frozen=True)
class Flight:
    """A lawnmower flight sampled densely: times (UTC), lat, lon, alt, yaw, pitch, roll."""

    t: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    alt: np.ndarray
    yaw: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray

    def at(self, tq: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (np.interp(tq, self.t, self.lat), np.interp(tq, self.t, self.lon), np.interp(tq, self.t, self.alt))


def lawnmower(rate_hz: float = 10.0, speed: float = 8.0, lines: int = 3, length_m: float = 240.0, spacing_m: float = 40.0) -> Flight:
    """Parallel north-south lines joined by east steps, at constant speed and 100 m altitude."""
    corners = []
    for k in range(lines):
        x = k * spacing_m
        ys = (0.0, length_m) if k % 2 == 0 else (length_m, 0.0)
        corners += [(x, ys[0]), (x, ys[1])]
    pts = np.asarray(corners, dtype=float)
    seg = np.hypot(*np.diff(pts, axis=0).T)
    tc = np.concatenate([[0.0], np.cumsum(seg / speed)])
    t = np.arange(0.0, tc[-1] + 1e-9, 1.0 / rate_hz)
    x = np.interp(t, tc, pts[:, 0])
    y = np.interp(t, tc, pts[:, 1])
    heading = np.degrees(np.arctan2(np.gradient(x), np.gradient(y))) % 360.0
    lat = LAT0 + y / M_PER_DEG
    lon = LON0 + x / (M_PER_DEG * math.cos(math.radians(LAT0)))
    return Flight(
        t=T0 + t,
        lat=lat,
        lon=lon,
        alt=np.full(len(t), 100.0),
        yaw=heading,
        pitch=np.full(len(t), 4.0) + np.sin(t / 7.0),
        roll=np.sin(t / 5.0) * 3.0,
    )


def shots(flight: Flight, every_s: float = 2.0, start_s: float = 1.0) -> np.ndarray:
    """Shutter times (UTC) every few seconds over the flight."""
    return np.arange(flight.t[0] + start_s, flight.t[-1] - 0.5, every_s)


def records_for(
    shot_t: np.ndarray,
    clock_offset_s: float,
    flight: Flight | None = None,
    with_gps: set[int] | None = None,
    subsec: bool = True,
) -> list[ImageRecord]:
    """Image records whose capture time is the camera clock (log clock + offset), EXIF GPS for some."""
    recs = []
    for i, ts in enumerate(shot_t):
        cam = ts + clock_offset_s
        cam = round(cam, 3) if subsec else math.floor(cam)
        gps = None
        source = PositionSource.NONE
        if with_gps is not None and i in with_gps and flight is not None:
            la, lo, al = flight.at(np.asarray([ts]))
            gps = GpsPosition(lat=float(la[0]), lon=float(lo[0]), alt=float(al[0]))
            source = PositionSource.EXIF
        recs.append(
            ImageRecord(
                name=f"IMG_{i:04d}.JPG",
                path=Path(f"/nonexistent/IMG_{i:04d}.JPG"),
                width=4000,
                height=3000,
                camera_id="cam",
                capture_time=cam,
                gps=gps,
                position_source=source,
            )
        )
    return recs


class _Buf:
    """File-like sink for pymavlink's encoder."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, b: bytes) -> None:
        self.data += b


def write_tlog(
    path: Path,
    flight: Flight,
    shot_t: np.ndarray | None = None,
    *,
    boot_utc: float | None = None,
    system_time: bool = True,
    position_every: int = 1,
) -> Path:
    """A MAVLink tlog like an ArduPilot copter's: GLOBAL_POSITION_INT, ATTITUDE, SYSTEM_TIME, CAMERA_FEEDBACK."""
    boot_utc = flight.t[0] - 30.0 if boot_utc is None else boot_utc
    mav = mavlink.MAVLink(_Buf(), srcSystem=1, srcComponent=1)
    events: list[tuple[float, bytes]] = []

    def add(t: float, msg: mavlink.MAVLink_message) -> None:
        events.append((t, msg.pack(mav)))

    for k in range(0, len(flight.t), position_every):
        t = float(flight.t[k])
        boot_ms = int(round((t - boot_utc) * 1000))
        add(t, mav.global_position_int_encode(boot_ms, int(round(flight.lat[k] * 1e7)), int(round(flight.lon[k] * 1e7)), int(round(flight.alt[k] * 1000)), 100_000, 0, 0, 0, 0))
        add(t, mav.attitude_encode(boot_ms, math.radians(flight.roll[k]), math.radians(flight.pitch[k]), math.radians(((flight.yaw[k] + 180) % 360) - 180), 0, 0, 0))
        if system_time and k % 10 == 0:
            add(t, mav.system_time_encode(int(round(t * 1e6)), boot_ms))
    if shot_t is not None:
        la, lo, al = flight.at(shot_t)
        for i, ts in enumerate(shot_t):
            add(float(ts) + 0.05, mav.camera_feedback_encode(int(round(ts * 1e6)), 0, 0, i + 1, int(round(la[i] * 1e7)), int(round(lo[i] * 1e7)), float(al[i]), 100.0, 0.0, 0.0, 0.0, 0.0, 0))
    events.sort(key=lambda e: e[0])
    with path.open("wb") as fh:
        for t, payload in events:
            fh.write(struct.pack(">Q", int(round((t + 0.02) * 1e6))) + payload)  # received 20 ms later
    return path


def _utc_text(t: float, ms: bool = False) -> str:
    dt = datetime.fromtimestamp(t, tz=timezone.utc)
    return dt.strftime("%Y-%m-%d %H:%M:%S") + (f".{int(round((t % 1) * 1000)):03d}" if ms else "")


AIRDATA_HEADER = (
    "time(millisecond),datetime(utc),latitude,longitude,height_above_takeoff(feet),"
    "height_above_ground_at_drone_location(feet),ground_elevation_at_drone_location(feet),"
    "altitude_above_seaLevel(feet),height_sonar(feet),speed(mph),distance(feet),mileage(feet),"
    "satellites,gpslevel,voltage(v),max_altitude(feet),max_ascent(feet),max_speed(mph),max_distance(feet),"
    " xSpeed(mph), ySpeed(mph), zSpeed(mph), compass_heading(degrees), pitch(degrees), roll(degrees),"
    "isPhoto,isVideo,rc_elevator,rc_aileron,rc_throttle,rc_rudder,rc_elevator(percent),rc_aileron(percent),"
    "rc_throttle(percent),rc_rudder(percent),gimbal_heading(degrees),gimbal_pitch(degrees),gimbal_roll(degrees),"
    "battery_percent,voltageCell1,voltageCell2,voltageCell3,voltageCell4,voltageCell5,voltageCell6,current(A),"
    "battery_temperature(f),altitude(feet),ascent(feet),flycStateRaw,flycState,message"
)


def write_airdata_csv(path: Path, flight: Flight, shot_t: np.ndarray, every: int = 1) -> Path:
    """An AirData UAV export: 10 Hz rows, whole-second datetime(utc), feet, isPhoto pulses."""
    n_cols = len(AIRDATA_HEADER.split(","))
    photo_rows = {int(np.argmin(np.abs(flight.t - s))) for s in shot_t}
    lines = [AIRDATA_HEADER]
    for k in range(0, len(flight.t), every):
        t = float(flight.t[k])
        ft = flight.alt[k] / 0.3048
        row = [""] * n_cols
        row[0] = str(int(round((t - flight.t[0]) * 1000)))
        row[1] = _utc_text(math.floor(t))
        row[2] = f"{flight.lat[k]:.8f}"
        row[3] = f"{flight.lon[k]:.8f}"
        row[4] = f"{ft - 30:.1f}"
        row[7] = f"{ft:.2f}"
        row[12], row[13] = "17", "5"
        row[22] = f"{flight.yaw[k]:.1f}"
        row[23] = f"{flight.pitch[k]:.1f}"
        row[24] = f"{flight.roll[k]:.1f}"
        row[25] = "1" if k in photo_rows else "0"
        row[26] = "0"
        row[35] = f"{flight.yaw[k]:.1f}"
        row[36] = "-90.0"
        row[37] = "0.0"
        row[51] = "Flying"
        lines.append(",".join(row))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


LITCHI_HEADER = (
    "latitude,longitude,altitude(m),ascent(m),speed(mps),distance(m),max_altitude(m),max_ascent(m),"
    "max_speed(mps),max_distance(m),time(millisecond),datetime(utc),datetime(local),satellites,pressure(Pa),"
    "temperature(F),flycState,isflying,pitch(deg),roll(deg),yaw(deg),yaw(360),gimbalPitch(deg),"
    "gimbalRoll(deg),gimbalYaw(deg),isTakingPhoto,isTakingVideo,batteryPercent"
)


def write_litchi_csv(path: Path, flight: Flight, shot_t: np.ndarray) -> Path:
    """A Litchi flight log: metric export, altitude above take-off, isTakingPhoto pulses."""
    photo_rows = {int(np.argmin(np.abs(flight.t - s))) for s in shot_t}
    lines = [LITCHI_HEADER]
    for k in range(len(flight.t)):
        t = float(flight.t[k])
        yaw = ((flight.yaw[k] + 180) % 360) - 180
        lines.append(
            ",".join(
                [
                    f"{flight.lat[k]:.8f}",
                    f"{flight.lon[k]:.8f}",
                    f"{flight.alt[k] - 20:.2f}",
                    "0",
                    "8.0",
                    "0",
                    "80",
                    "80",
                    "8",
                    "300",
                    str(int(round((t - flight.t[0]) * 1000))),
                    _utc_text(math.floor(t)),
                    _utc_text(math.floor(t) + 8 * 3600),
                    "18",
                    "101000",
                    "70",
                    "P-GPS",
                    "1",
                    f"{flight.pitch[k]:.1f}",
                    f"{flight.roll[k]:.1f}",
                    f"{yaw:.1f}",
                    f"{flight.yaw[k]:.1f}",
                    "-90.0",
                    "0.0",
                    f"{yaw:.1f}",
                    "1" if k in photo_rows else "0",
                    "0",
                    "80",
                ]
            )
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_gpx(path: Path, flight: Flight, every: int = 10) -> Path:
    pts = "\n".join(
        f'      <trkpt lat="{flight.lat[k]:.8f}" lon="{flight.lon[k]:.8f}"><ele>{flight.alt[k]:.2f}</ele>'
        f"<time>{datetime.fromtimestamp(float(flight.t[k]), tz=timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3]}Z</time></trkpt>"
        for k in range(0, len(flight.t), every)
    )
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<gpx version="1.1" creator="AirData UAV" xmlns="http://www.topografix.com/GPX/1/1">\n'
        "  <trk><name>flight</name><trkseg>\n" + pts + "\n  </trkseg></trk>\n</gpx>\n",
        encoding="utf-8",
    )
    return path


def attitude_close(a: Attitude, yaw: float, pitch: float, roll: float, tol: float) -> bool:
    dyaw = abs(((a.yaw - yaw) + 180.0) % 360.0 - 180.0)
    return dyaw <= tol and abs(a.pitch - pitch) <= tol and abs(a.roll - roll) <= tol


def write_jpeg(path: Path, capture_utc_naive: float, subsec: bool = True) -> Path:
    """A tiny JPEG with camera EXIF and DateTimeOriginal (+ SubSecTimeOriginal), no GPS."""
    import cv2
    import piexif

    ok, buf = cv2.imencode(".jpg", np.full((48, 64, 3), 128, dtype=np.uint8))
    assert ok
    dt = datetime.fromtimestamp(math.floor(capture_utc_naive), tz=timezone.utc)
    exif = {
        "0th": {piexif.ImageIFD.Make: b"Synth", piexif.ImageIFD.Model: b"Cam1"},
        "Exif": {
            piexif.ExifIFD.DateTimeOriginal: dt.strftime("%Y:%m:%d %H:%M:%S").encode(),
            piexif.ExifIFD.FocalLength: (88, 10),
            piexif.ExifIFD.FocalLengthIn35mmFilm: 24,
        },
    }
    if subsec:
        exif["Exif"][piexif.ExifIFD.SubSecTimeOriginal] = f"{int(round((capture_utc_naive % 1) * 1000)) % 1000:03d}".encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    piexif.insert(piexif.dump(exif), buf.tobytes(), str(path))
    return path


def write_flight_dir(root: Path, flight: Flight, shot_t: np.ndarray, clock_offset_s: float, tlog: bool = True) -> Path:
    """images/IMG_nnnn.JPG without GPS (camera clock = log clock + offset) and logs/flight.tlog."""
    for i, ts in enumerate(shot_t):
        write_jpeg(root / "images" / f"IMG_{i:04d}.JPG", float(ts) + clock_offset_s)
    if tlog:
        (root / "logs").mkdir(parents=True, exist_ok=True)
        write_tlog(root / "logs" / "flight.tlog", flight, shot_t)
    return root
