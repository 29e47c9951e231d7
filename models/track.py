"""Flight tracks read from logs: positions, attitude and camera trigger events over time."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from models.geo import HeightRef

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class PositionSeries:
    """GNSS fixes: POSIX time (UTC seconds), WGS84 lat/lon degrees, altitude metres."""

    t: FloatArray
    lat: FloatArray
    lon: FloatArray
    alt: FloatArray
    height_ref: HeightRef = HeightRef.UNKNOWN

    def __len__(self) -> int:
        return int(self.t.shape[0])


@dataclass(frozen=True, eq=False)
class AttitudeSeries:
    """Vehicle or gimbal attitude: yaw (clockwise from north), pitch, roll in degrees."""

    t: FloatArray
    yaw: FloatArray
    pitch: FloatArray
    roll: FloatArray

    def __len__(self) -> int:
        return int(self.t.shape[0])


@dataclass(frozen=True, eq=False)
class TriggerEvents:
    """Camera shutter events; positions are present when the log records them (CAM, MRK)."""

    t: FloatArray
    lat: FloatArray | None = None
    lon: FloatArray | None = None
    alt: FloatArray | None = None
    # Per-event 1-sigma accuracies (m) from RTK logs, when present.
    std_horizontal_m: FloatArray | None = None
    std_vertical_m: FloatArray | None = None

    def __len__(self) -> int:
        return int(self.t.shape[0])


@dataclass(frozen=True, eq=False)
class FlightTrack:
    """One log file, read into typed series."""

    source: str  # file name the track came from
    format: str  # reader name, e.g. "px4_ulog", "dji_srt"
    positions: PositionSeries
    attitude: AttitudeSeries | None = None
    triggers: TriggerEvents | None = None
    dropped_fixes: int = 0  # fixes removed as spikes or invalid
    warnings: tuple[str, ...] = field(default_factory=tuple)
    # Whether the log's clock is absolute UTC (GPS time) or only relative (boot time).
    absolute_time: bool = True
