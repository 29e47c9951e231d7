"""Write a MAVLink telemetry log (.tlog) from a :class:`FlightTrack`.

A .tlog is what a ground station records: for every MAVLink packet, an 8-byte
big-endian timestamp (microseconds since the Unix epoch, the recorder's clock)
followed by the packet bytes. Packets are MAVLink 2 from the ArduPilot dialect,
encoded with pymavlink. Written per sample time, in order:

* ``HEARTBEAT`` and ``SYSTEM_TIME`` (Unix time and boot time) at 1 Hz,
* ``GLOBAL_POSITION_INT`` and ``GPS_RAW_INT`` at each position fix,
* ``ATTITUDE`` at each attitude sample,
* one ``CAMERA_FEEDBACK`` per trigger event (ArduPilot's camera trigger record).

Heights: ``GLOBAL_POSITION_INT.alt`` and ``GPS_RAW_INT.alt`` are above mean sea
level, ``GPS_RAW_INT.alt_ellipsoid`` above the WGS84 ellipsoid; the caller
states the geoid undulation (N, ellipsoidal minus orthometric) of the track.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import NDArray
from pymavlink.dialects.v20 import ardupilotmega as mavlink2

from models.errors import InputError
from models.geo import HeightRef
from models.track import FlightTrack

FloatArray = NDArray[np.float64]

_EARTH_R = 6_378_137.0
MAV_TYPE_QUADROTOR = 2
MAV_AUTOPILOT_ARDUPILOTMEGA = 3
MAV_MODE_FLAG_CUSTOM_MODE_ENABLED = 1
MAV_MODE_FLAG_SAFETY_ARMED = 128
MAV_STATE_ACTIVE = 4
COPTER_MODE_AUTO = 3
GPS_FIX_TYPE_3D_FIX = 3


class _Packer:
    def __init__(self, fh: BinaryIO, system_id: int, component_id: int) -> None:
        self.fh = fh
        self.mav = mavlink2.MAVLink(None, srcSystem=system_id, srcComponent=component_id)
        self.count = 0

    def write(self, t_us: int, msg: Any) -> None:
        buf = msg.pack(self.mav)
        self.mav.seq = (self.mav.seq + 1) % 256
        self.fh.write(struct.pack(">Q", int(t_us)) + buf)
        self.count += 1


def _velocity_ned(t: FloatArray, lat: FloatArray, lon: FloatArray, alt: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """North, east, down velocities (m/s) by central differences of the fixes."""
    if len(t) < 2:
        z = np.zeros(len(t))
        return z, z, z
    lat_r = np.radians(lat)
    north = np.radians(lat - lat[0]) * _EARTH_R
    east = np.radians(lon - lon[0]) * _EARTH_R * np.cos(lat_r)
    vn = np.gradient(north, t)
    ve = np.gradient(east, t)
    vd = -np.gradient(alt, t)
    return vn, ve, vd


def _wrap_pi(a: FloatArray) -> FloatArray:
    return np.asarray((a + np.pi) % (2 * np.pi) - np.pi, dtype=np.float64)


def write_tlog(
    path: Path,
    track: FlightTrack,
    boot_unix_s: float,
    home_alt_m: float,
    geoid_undulation_m: float = 0.0,
    system_id: int = 1,
    component_id: int = 1,
    focal_length_mm: float = 0.0,
) -> int:
    """Write ``track`` as a .tlog at ``path``; returns the number of packets.

    Times in the track are POSIX seconds (UTC, the log's clock). ``boot_unix_s``
    is the autopilot's boot time, which sets ``time_boot_ms`` of the packets.
    ``home_alt_m`` (same height reference as the track) sets ``relative_alt``.
    """
    pos = track.positions
    if len(pos) == 0:
        raise InputError(f"{path}: a tlog needs at least one position fix")
    if pos.height_ref is HeightRef.ELLIPSOIDAL:
        alt_ell = pos.alt
        alt_msl = pos.alt - geoid_undulation_m
        home_msl = home_alt_m - geoid_undulation_m
    else:
        alt_msl = pos.alt
        alt_ell = pos.alt + geoid_undulation_m
        home_msl = home_alt_m
    vn, ve, vd = _velocity_ned(pos.t, pos.lat, pos.lon, pos.alt)
    ground_speed = np.hypot(vn, ve)
    course = np.degrees(np.arctan2(ve, vn)) % 360.0

    events: list[tuple[int, int, int, int]] = []  # (t_us, order, kind, index) sorted into time order
    t_pos_us = np.rint(pos.t * 1e6).astype(np.int64)
    for i, tu in enumerate(t_pos_us):
        events.append((int(tu), 2, 0, i))
    att = track.attitude
    if att is not None:
        for i, tu in enumerate(np.rint(att.t * 1e6).astype(np.int64)):
            events.append((int(tu), 3, 1, i))
    trig = track.triggers
    if trig is not None:
        for i, tu in enumerate(np.rint(trig.t * 1e6).astype(np.int64)):
            events.append((int(tu), 4, 2, i))
    t_start = int(t_pos_us.min())
    t_end = int(max(e[0] for e in events))
    second = 1_000_000
    for tu in range(t_start - t_start % second + second, t_end + 1, second):
        events.append((tu, 0, 3, 0))
    events.append((t_start, 0, 3, 0))
    events.sort()
    boot_us = int(round(boot_unix_s * 1e6))

    def boot_ms(tu: int) -> int:
        return max(0, (tu - boot_us) // 1000)

    path = Path(path)
    with open(path, "wb") as fh:
        out = _Packer(fh, system_id, component_id)
        mav = out.mav
        for tu, _order, kind, i in events:
            if kind == 3:
                out.write(
                    tu,
                    mav.heartbeat_encode(
                        MAV_TYPE_QUADROTOR,
                        MAV_AUTOPILOT_ARDUPILOTMEGA,
                        MAV_MODE_FLAG_CUSTOM_MODE_ENABLED | MAV_MODE_FLAG_SAFETY_ARMED,
                        COPTER_MODE_AUTO,
                        MAV_STATE_ACTIVE,
                    ),
                )
                out.write(tu, mav.system_time_encode(tu, boot_ms(tu)))
            elif kind == 0:
                lat_e7 = int(round(pos.lat[i] * 1e7))
                lon_e7 = int(round(pos.lon[i] * 1e7))
                hdg = int(round(course[i] * 100)) % 36000 if ground_speed[i] > 0.2 else 65535
                out.write(
                    tu,
                    mav.global_position_int_encode(
                        boot_ms(tu),
                        lat_e7,
                        lon_e7,
                        int(round(alt_msl[i] * 1000)),
                        int(round((alt_msl[i] - home_msl) * 1000)),
                        int(round(vn[i] * 100)),
                        int(round(ve[i] * 100)),
                        int(round(vd[i] * 100)),
                        hdg,
                    ),
                )
                out.write(
                    tu,
                    mav.gps_raw_int_encode(
                        tu,
                        GPS_FIX_TYPE_3D_FIX,
                        lat_e7,
                        lon_e7,
                        int(round(alt_msl[i] * 1000)),
                        70,
                        110,
                        int(round(ground_speed[i] * 100)),
                        int(round(course[i] * 100)) % 36000,
                        18,
                        alt_ellipsoid=int(round(alt_ell[i] * 1000)),
                        h_acc=1000,
                        v_acc=1500,
                        vel_acc=200,
                        hdg_acc=0,
                        yaw=0,
                    ),
                )
            elif kind == 1:
                assert att is not None
                yaw = float(_wrap_pi(np.radians(np.array([att.yaw[i]])))[0])
                out.write(
                    tu,
                    mav.attitude_encode(boot_ms(tu), math.radians(att.roll[i]), math.radians(att.pitch[i]), yaw, 0.0, 0.0, 0.0),
                )
            else:
                assert trig is not None
                lat = trig.lat[i] if trig.lat is not None else 0.0
                lon = trig.lon[i] if trig.lon is not None else 0.0
                alt = trig.alt[i] if trig.alt is not None else 0.0
                a_msl = alt - geoid_undulation_m if pos.height_ref is HeightRef.ELLIPSOIDAL else alt
                roll = pitch = yaw_deg = 0.0
                if att is not None and len(att) > 0:
                    roll = float(np.interp(trig.t[i], att.t, att.roll))
                    pitch = float(np.interp(trig.t[i], att.t, att.pitch))
                    k = int(np.clip(np.searchsorted(att.t, trig.t[i]), 0, len(att) - 1))
                    yaw_deg = float(att.yaw[k]) % 360.0
                out.write(
                    tu,
                    mav.camera_feedback_encode(
                        tu,
                        0,
                        0,
                        i + 1,
                        int(round(lat * 1e7)),
                        int(round(lon * 1e7)),
                        float(a_msl),
                        float(a_msl - home_msl),
                        roll,
                        pitch,
                        yaw_deg,
                        float(focal_length_mm),
                        0,
                        i + 1,
                    ),
                )
        return out.count
