"""Image records: everything ingest learns about one image of a batch."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from models.errors import InputError
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
    # Course over ground (degrees clockwise from true north) from EXIF GPSTrack, when written.
    course_deg: float | None = None
    # File format as sniffed from its bytes: 'jpeg', 'tiff' or 'dng'.
    file_format: str = "jpeg"
    # Things worth telling the user that did not stop the read (no EXIF, no GPS, resized copy...).
    warnings: tuple[str, ...] = ()

    @property
    def has_position(self) -> bool:
        """Whether the image carries a usable horizontal position."""
        return self.gps is not None and self.position_source != PositionSource.NONE

    @property
    def bare_name(self) -> str:
        """The file name without its sub-folder (how gcp_list.txt and geo.txt refer to images)."""
        return self.name.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class SkippedItem:
    """An input that was left out, with why and what to do."""

    item: str  # file name or record id
    reason: str  # short machine-friendly reason code, e.g. "corrupt_jpeg"
    message: str  # full human message naming the file and the fix


class ImageIndex:
    """Resolve the image references of GCP files and geo.txt to :attr:`ImageRecord.name`.

    Records are named by their path relative to the image folder, so two files
    called ``DJI_0001.JPG`` in different sub-folders are both kept. A reference
    may be that relative path, or the bare file name when it is unique; a bare
    name shared by two images is ambiguous and an error naming both paths.
    """

    def __init__(self, names: list[str] | tuple[str, ...]) -> None:
        self._names = frozenset(names)
        by_bare: dict[str, list[str]] = {}
        for n in names:
            by_bare.setdefault(n.rsplit("/", 1)[-1], []).append(n)
        self._by_bare = {k: tuple(sorted(v)) for k, v in by_bare.items()}

    def __contains__(self, ref: object) -> bool:
        return isinstance(ref, str) and self.lookup(ref) is not None

    def lookup(self, ref: str) -> str | None:
        """The record name for ``ref``, None when no image matches; raises when ambiguous."""
        ref = ref.strip().replace("\\", "/")
        if ref in self._names:
            return ref
        if "/" in ref:
            folded = [n for n in self._names if n.lower() == ref.lower()]
            return folded[0] if len(folded) == 1 else None
        matches = self._by_bare.get(ref, ())
        if not matches:  # a GCP tool may change the case of the name (DJI_0001.JPG vs dji_0001.jpg)
            matches = tuple(n for k, v in self._by_bare.items() if k.lower() == ref.lower() for n in v)
        if len(matches) > 1:
            raise InputError(
                f"image name '{ref}' is ambiguous: it matches {' and '.join(matches)}; "
                "refer to the image by its path relative to the image folder, or rename one of the files"
            )
        return matches[0] if matches else None

    def ambiguous(self) -> dict[str, tuple[str, ...]]:
        """Bare names shared by more than one image, with their paths."""
        return {k: v for k, v in self._by_bare.items() if len(v) > 1}
