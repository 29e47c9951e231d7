"""The flight: a lawnmower plan over the area of interest, flown at constant speed.

The trajectory is piecewise linear in local coordinates (take-off climb, the
survey lines with run-in and run-out, the transfers between lines, return and
landing). Shots are taken on the straight lines only, at exact milliseconds of
the log clock, so a log sampled at 10 Hz interpolates linearly to the exact
camera centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from numpy.typing import NDArray

from pipeline.synth.presets import FlightPreset

FloatArray = NDArray[np.float64]

LOG_RATE_HZ = 10.0
HOLD_S = 3.0  # on the ground before take-off and after landing


@dataclass(frozen=True, eq=False)
class Trajectory:
    """Waypoints with times (seconds since the log starts); linear in between."""

    times: FloatArray  # (K,) increasing
    points: FloatArray  # (K, 3) local x, y, z

    @property
    def duration(self) -> float:
        return float(self.times[-1])

    def position(self, t: FloatArray) -> FloatArray:
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        return np.stack([np.interp(t, self.times, self.points[:, k]) for k in range(3)], axis=-1)

    def velocity(self, t: FloatArray) -> FloatArray:
        """Velocity (m/s) of the segment each time falls in."""
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        seg = np.clip(np.searchsorted(self.times, t, side="right") - 1, 0, len(self.times) - 2)
        dt = self.times[seg + 1] - self.times[seg]
        dp = self.points[seg + 1] - self.points[seg]
        with np.errstate(invalid="ignore", divide="ignore"):
            v = np.where(dt[:, None] > 0, dp / np.where(dt > 0, dt, 1.0)[:, None], 0.0)
        return np.asarray(v, dtype=np.float64)


@dataclass(frozen=True)
class PlannedShot:
    """One camera trigger on a survey line."""

    index: int  # 0-based, in flight order
    line: int  # 0-based line number
    t_ms: int  # log clock, milliseconds since the log starts
    center: tuple[float, float, float]  # local camera centre
    heading_grid_deg: float  # direction of travel, clockwise from grid north
    ground_target: tuple[float, float]  # local ground point the optical axis aims at (nominal)


@dataclass(frozen=True, eq=False)
class FlightPlan:
    trajectory: Trajectory
    shots: tuple[PlannedShot, ...]
    home: tuple[float, float, float]  # take-off point on the ground (local)
    flight_z: float  # ellipsoidal height of the survey lines
    altitude_agl_m: float
    n_lines: int
    shots_per_line: int
    line_spacing_m: float
    shot_spacing_m: float
    front_overlap: float  # actual, after fitting the lines to the area
    side_overlap: float
    aoi_corners: FloatArray  # (4, 2) local corners of the area the ground targets span


def _count(length: float, spacing: float) -> int:
    if spacing <= 0:
        return 1
    return max(1, int(math.ceil(length / spacing - 1e-9)) + 1)


def plan_flight(preset: FlightPreset, ground_z: float, home_ground_z_fn: Callable[[float, float], float]) -> FlightPlan:
    """A lawnmower plan centred on the local origin.

    ``ground_z`` is the mean ground height (the flight height is set above it);
    ``home_ground_z_fn`` gives the terrain height of the take-off point.
    """
    az = math.radians(preset.line_azimuth_deg)
    e_along = np.array([math.sin(az), math.cos(az)])
    e_across = np.array([math.cos(az), -math.sin(az)])
    agl = preset.altitude_agl_m
    flight_z = ground_z + agl

    side_nominal = (1.0 - preset.side_overlap) * preset.footprint_across_m
    front_nominal = (1.0 - preset.front_overlap) * preset.footprint_along_m
    n_lines = _count(preset.aoi_across_m, side_nominal)
    n_shots = _count(preset.aoi_along_m, front_nominal)
    line_spacing = preset.aoi_across_m / (n_lines - 1) if n_lines > 1 else 0.0
    shot_spacing = preset.aoi_along_m / (n_shots - 1) if n_shots > 1 else 0.0

    pitch = preset.gimbal_pitch_deg
    # An oblique camera looks ahead: put the camera behind the ground point it aims at.
    look_ahead = 0.0 if pitch <= -89.999 else agl / math.tan(math.radians(-pitch))

    points: list[FloatArray] = []
    times: list[float] = []

    def add(p: FloatArray, speed: float) -> None:
        if not points:
            points.append(p)
            times.append(0.0)
            return
        d = float(np.linalg.norm(p - points[-1]))
        times.append(times[-1] + d / speed)
        points.append(p)

    shots_xy: list[tuple[int, int, FloatArray, FloatArray, float]] = []  # (line, j, cam_xy, target_xy, heading)
    line_ends: list[tuple[FloatArray, FloatArray]] = []
    for i in range(n_lines):
        offset_across = (i - (n_lines - 1) / 2.0) * line_spacing
        forward = i % 2 == 0
        direction = e_along if forward else -e_along
        heading = (preset.line_azimuth_deg + (0.0 if forward else 180.0)) % 360.0
        order = range(n_shots) if forward else range(n_shots - 1, -1, -1)
        cams: list[FloatArray] = []
        for j in order:
            offset_along = (j - (n_shots - 1) / 2.0) * shot_spacing
            target = offset_across * e_across + offset_along * e_along
            cam = target - look_ahead * direction
            cams.append(cam)
            shots_xy.append((i, j, cam, target, heading))
        line_ends.append((cams[0] - preset.run_in_m * direction, cams[-1] + preset.run_in_m * direction))

    start_xy = line_ends[0][0]
    home = np.array([start_xy[0], start_xy[1], float(home_ground_z_fn(float(start_xy[0]), float(start_xy[1])))])
    add(home, 1.0)
    points.append(home.copy())
    times.append(HOLD_S)
    add(np.array([home[0], home[1], flight_z]), preset.climb_speed_m_s)
    line_start_times: list[float] = []
    for a, b in line_ends:
        add(np.array([a[0], a[1], flight_z]), preset.speed_m_s)
        line_start_times.append(times[-1])
        add(np.array([b[0], b[1], flight_z]), preset.speed_m_s)
    add(np.array([home[0], home[1], flight_z]), preset.speed_m_s)
    add(home.copy(), preset.climb_speed_m_s)
    points.append(home.copy())
    times.append(times[-1] + HOLD_S)
    traj = Trajectory(np.asarray(times), np.vstack(points))

    shots: list[PlannedShot] = []
    for k, (i, _j, cam, target, heading) in enumerate(shots_xy):
        a = line_ends[i][0]
        t_nominal = line_start_times[i] + float(np.linalg.norm(cam - a)) / preset.speed_m_s
        t_ms = int(round(t_nominal * 1000.0))
        c = traj.position(np.array([t_ms / 1000.0]))[0]
        shots.append(
            PlannedShot(
                index=k,
                line=i,
                t_ms=t_ms,
                center=(float(c[0]), float(c[1]), float(c[2])),
                heading_grid_deg=heading,
                ground_target=(float(target[0]), float(target[1])),
            )
        )

    half_a = preset.aoi_across_m / 2.0
    half_l = preset.aoi_along_m / 2.0
    aoi = np.stack(
        [s_a * half_a * e_across + s_l * half_l * e_along for s_a, s_l in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    )
    front = 1.0 - shot_spacing / preset.footprint_along_m if n_shots > 1 else 1.0
    side = 1.0 - line_spacing / preset.footprint_across_m if n_lines > 1 else 1.0
    return FlightPlan(
        trajectory=traj,
        shots=tuple(shots),
        home=(float(home[0]), float(home[1]), float(home[2])),
        flight_z=flight_z,
        altitude_agl_m=agl,
        n_lines=n_lines,
        shots_per_line=n_shots,
        line_spacing_m=line_spacing,
        shot_spacing_m=shot_spacing,
        front_overlap=front,
        side_overlap=side,
        aoi_corners=aoi,
    )


def log_sample_times(trajectory: Trajectory, rate_hz: float = LOG_RATE_HZ) -> NDArray[np.int64]:
    """Log sample times in milliseconds since the log starts (exact multiples of the period)."""
    period_ms = int(round(1000.0 / rate_hz))
    end_ms = int(math.floor(trajectory.duration * 1000.0))
    return np.arange(0, end_ms + 1, period_ms, dtype=np.int64)

