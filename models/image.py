"""Image records: everything ingest learns about one image of a batch."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from models.geo import HeightRef


class PositionSource(str, enum.Enum):
    """Where an image's position came from."""

    EXIF = "exif"  # EXIF GPS tags in the image
    LOG = "log"  # interpolated from a flight log by time
    GEO_TXT = "geo_txt"  # ODM geo.txt beside the images
    NONE = "none"  # no position (GCP-only or unusable)


@dataclass(frozen=True)
class GpsPosition:
    """A geographic position with its stated accuracy."""

    lat: float
    lon: float
    alt: float
    height_ref: HeightRef = HeightRef.UNKNOWN
    # 1-sigma horizontal / vertical accuracy in metres when the source states it (RTK), else None.
    std_horizontal_m: float | None = None
    std_vertical_m: float | None = None
    # RTK fix flag from DJI XMP (True fixed, False float/none) when present.
    rtk_fixed: bool | None = None


@dataclass(frozen=True)
class Attitude:
    """Yaw (clockwise from true north), pitch (-90 nadir), roll; degrees."""

    yaw: float
    pitch: float
    roll: float


@dataclass(frozen=True)
class ImageRecord:
    """One image of the batch, as read from its file (and logs)."""

    name: str  # unique id: path relative to the image folder, POSIX separators
    path: Path  # absolute path of the file
    width: int  # pixels after EXIF orientation is applied
    height: int
    camera_id: str  # key into the batch's camera models
    capture_time: float | None = None  # POSIX seconds; naive EXIF times are read as UTC
    time_zone_known: bool = False  # True when an offset tag (or GPS time) fixed the zone
    gps: GpsPosition | None = None
    position_source: PositionSource = PositionSource.NONE
    relative_altitude_m: float | None = None  # DJI RelativeAltitude: height above take-off
    gimbal: Attitude | None = None
    flight: Attitude | None = None
    make: str = ""
    model: str = ""
    focal_length_mm: float | None = None
    focal_length_35mm: float | None = None
    # Sensor width (mm) derived from EXIF FocalPlaneXResolution, when the camera writes it.
    sensor_width_mm: float | None = None
    orientation: int = 1  # EXIF orientation tag (1 = upright)


@dataclass(frozen=True)
class SkippedItem:
    """An input that was left out, with why and what to do."""

    item: str  # file name or record id
    reason: str  # short machine-friendly reason code, e.g. "corrupt_jpeg"
    message: str  # full human message naming the file and the fix
