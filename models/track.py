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
    # Image file names the events belong to, when the file names them (ODM geo.txt).
    names: tuple[str, ...] | None = None

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
    # Gimbal (camera) attitude, when the log records it apart from the vehicle's (DJI SRT G.PRY).
    gimbal: AttitudeSeries | None = None
    # Dropped fixes by reason ("no_fix", "zero", "nan", "out_of_range", "duplicate_time", "spike").
    dropped_reasons: dict[str, int] = field(default_factory=dict)
    # False when absolute times are a camera's local clock of unknown zone (DJI SRT date lines).
    time_zone_known: bool = True
    # True when the file keys positions by image name and has no times (ODM geo.txt): then
    # ``positions.t`` is only the entry order and ``triggers.names`` holds the image names.
    by_image_name: bool = False

    @property
    def has_attitude(self) -> bool:
        return (self.attitude is not None and len(self.attitude) > 0) or (
            self.gimbal is not None and len(self.gimbal) > 0
        )

    @property
    def trigger_count(self) -> int:
        return 0 if self.triggers is None else len(self.triggers)
