"""Read image metadata: EXIF (exifread), DJI XMP, and the true pixel size.

Formats: JPEG, TIFF and DNG (a TIFF dialect: EXIF, GPS and size come from its
tags; the full-resolution IFD is found among IFD0 and the SubIFDs). The pixel
size comes from the image stream itself (JPEG SOF marker, TIFF/DNG tags),
never from the EXIF size tags: resized images often keep their original EXIF
size. Every failure is an :class:`ImageReadError` (an :class:`InputError`)
naming the file, with a short reason code for the skipped-image report.
"""

from __future__ import annotations

import logging
import math
import struct
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import exifread

from drone_io.xmp import DjiXmp, extract_xmp_packet, parse_dji_xmp
from models.errors import InputError
from models.geo import HeightRef
from models.image import Attitude, GpsPosition, ImageRecord, PositionSource

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".tif", ".tiff", ".dng"}

# How many leading bytes are searched for an XMP packet that is not in its own APP1 segment.
_HEADER_BYTES = 512 * 1024
# How far from the end of a JPEG the end-of-image marker is looked for.
_TAIL_BYTES = 64 * 1024
_XMP_APP1_ID = b"http://ns.adobe.com/xap/1.0/\x00"
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class ImageReadError(InputError):
    """An image that cannot be used, with a short machine-friendly reason code."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def sniff_kind(head: bytes) -> str:
    """'jpeg', 'tiff', 'bigtiff', 'png', 'empty' or 'unknown' from magic bytes."""
    if not head:
        return "empty"
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[:4] in (b"II+\x00", b"MM\x00+"):
        return "bigtiff"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    return "unknown"


# -- JPEG structure -----------------------------------------------------------------
@dataclass(frozen=True)
class JpegLayout:
    """What the marker segments before the first scan say."""

    width: int
    height: int
    sos_offset: int  # byte offset of the first start-of-scan marker
    has_exif: bool  # an APP1 'Exif' segment is present
    xmp: bytes | None  # the standard XMP packet of an APP1 segment, if any


def read_jpeg_layout(fh: BinaryIO, path: Path) -> JpegLayout:
    """Walk the JPEG marker segments up to the first scan (seeking, so any header size works)."""
    fh.seek(2)
    size: tuple[int, int] | None = None
    has_exif = False
    xmp: bytes | None = None
    while True:
        pos = fh.tell()
        b = fh.read(1)
        if not b:
            break
        if b != b"\xff":
            continue
        m = fh.read(1)
        while m == b"\xff":  # fill bytes
            m = fh.read(1)
        if not m:
            break
        marker = m[0]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            continue
        if marker == 0xD9:
            break
        raw = fh.read(2)
        if len(raw) < 2:
            break
        (length,) = struct.unpack(">H", raw)
        if length < 2:
            break
        if marker == 0xDA:
            if size is None:
                break
            return JpegLayout(size[0], size[1], pos, has_exif, xmp)
        if marker in _SOF_MARKERS and size is None:
            body = fh.read(5)
            if len(body) < 5:
                break
            h, w = struct.unpack(">HH", body[1:5])
            size = (int(w), int(h))
            fh.seek(pos + 2 + length)
            continue
        if marker == 0xE1:
            ident = fh.read(min(length - 2, len(_XMP_APP1_ID)))
            if ident.startswith(b"Exif\x00"):
                has_exif = True
            elif ident == _XMP_APP1_ID and xmp is None:
                xmp = fh.read(length - 2 - len(ident))
        fh.seek(pos + 2 + length)
    if size is None:
        raise ImageReadError(
            f"{path}: no JPEG frame header found; the file is corrupt or truncated, re-copy it from the card",
            "corrupt_jpeg",
        )
    raise ImageReadError(
        f"{path}: the JPEG ends before its image data; the file is truncated, re-copy it from the card",
        "truncated_jpeg",
    )


def _jpeg_is_complete(fh: BinaryIO, sos_offset: int, file_size: int) -> bool:
    """Whether an end-of-image marker follows the scan data.

    Inside entropy-coded data 0xFF is always followed by 0x00 or a restart
    marker, so an 0xFFD9 after the first scan can only be the end of the image
    (trailing padding after it is allowed).
    """
    start = max(sos_offset, file_size - _TAIL_BYTES)
    fh.seek(start)
    return b"\xff\xd9" in fh.read(file_size - start)


def jpeg_size(data: bytes, path: Path) -> tuple[int, int]:
    """(width, height) from the first SOF marker of JPEG bytes."""
    import io

    layout = read_jpeg_layout(io.BytesIO(data), path)
    return layout.width, layout.height


# -- EXIF tag helpers -----------------------------------------------------------------
def _ratio(v: Any) -> float:
    if isinstance(v, Fraction):
        return float(v)
    num = getattr(v, "num", None)
    den = getattr(v, "den", None)
    if num is not None and den is not None:
        return float(num) / float(den) if den else float("nan")
    return float(v)


def _tag_values(tags: dict[str, Any], key: str) -> list[Any] | None:
    t = tags.get(key)
    if t is None:
        return None
    vals = getattr(t, "values", t)
    if isinstance(vals, (bytes, str)):
        return [vals]
    return list(vals) if isinstance(vals, (list, tuple)) else [vals]


def _tag_float(tags: dict[str, Any], key: str) -> float | None:
    vals = _tag_values(tags, key)
    if not vals:
        return None
    try:
        f = _ratio(vals[0])
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return f if math.isfinite(f) else None


def _tag_int(tags: dict[str, Any], key: str) -> int | None:
    f = _tag_float(tags, key)
    return int(f) if f is not None else None


def _tag_str(tags: dict[str, Any], key: str) -> str:
    t = tags.get(key)
    if t is None:
        return ""
    vals = getattr(t, "values", None)
    text = vals if isinstance(vals, str) else str(getattr(t, "printable", t))
    return text.strip().strip("\x00").strip()


def _dms(tags: dict[str, Any], key: str, ref_key: str) -> float | None:
    vals = _tag_values(tags, key)
    if not vals or len(vals) < 3:
        return None
    try:
        d, m, s = (_ratio(v) for v in vals[:3])
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    value = d + m / 60.0 + s / 3600.0
    if not math.isfinite(value):
        return None
    ref = _tag_str(tags, ref_key).upper()
    if ref in ("S", "W"):
        value = -value
    return value


def _parse_offset(text: str) -> timedelta | None:
    """An EXIF OffsetTime value ('+02:00', '-05:30', 'Z') as a timedelta."""
    text = text.strip()
    if text.upper() == "Z":
        return timedelta(0)
    if len(text) >= 6 and text[0] in "+-" and text[3] == ":":
        try:
            sign = 1 if text[0] == "+" else -1
            return sign * timedelta(hours=int(text[1:3]), minutes=int(text[4:6]))
        except ValueError:
            return None
    return None


def _gps_utc(tags: dict[str, Any]) -> float | None:
    """POSIX seconds of GPSDateStamp + GPSTimeStamp (UTC by definition), if both are present."""
    date = _tag_str(tags, "GPS GPSDate")
    hms = _tag_values(tags, "GPS GPSTimeStamp")
    if not date or not hms or len(hms) < 3:
        return None
    try:
        day = datetime.strptime(date[:10].replace("-", ":"), "%Y:%m:%d").replace(tzinfo=timezone.utc)
        h, m, s = (_ratio(v) for v in hms[:3])
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not all(math.isfinite(v) for v in (h, m, s)):
        return None
    return day.timestamp() + h * 3600.0 + m * 60.0 + s


def _capture_time(tags: dict[str, Any]) -> tuple[float | None, bool]:
    """POSIX seconds of DateTimeOriginal with SubSecTimeOriginal, in UTC, and whether the zone is known.

    The zone comes from OffsetTimeOriginal (EXIF 2.31) or, failing that, from
    the GPS date and time: their difference to the camera clock, rounded to a
    quarter hour, is the camera's UTC offset. Naive times are read as UTC and
    flagged, so a log's clock offset can absorb the zone later.
    """
    for key, sub_key, off_key in (
        ("EXIF DateTimeOriginal", "EXIF SubSecTimeOriginal", "EXIF OffsetTimeOriginal"),
        ("EXIF DateTimeDigitized", "EXIF SubSecTimeDigitized", "EXIF OffsetTimeDigitized"),
        ("Image DateTime", "EXIF SubSecTime", "EXIF OffsetTime"),
    ):
        text = _tag_str(tags, key)
        if not text:
            continue
        try:
            dt = datetime.strptime(text[:19].replace("-", ":", 2), "%Y:%m:%d %H:%M:%S")
        except ValueError:
            continue
        sub = _tag_str(tags, sub_key) or _tag_str(tags, "EXIF SubSecTime")
        frac = float(f"0.{sub}") if sub.isdigit() else 0.0
        offset = _parse_offset(_tag_str(tags, off_key)) or _parse_offset(_tag_str(tags, "EXIF OffsetTime"))
        if offset is not None:
            return dt.replace(tzinfo=timezone(offset)).timestamp() + frac, True
        naive_utc = dt.replace(tzinfo=timezone.utc).timestamp()
        gps = _gps_utc(tags)
        if gps is not None:
            quarter = round((naive_utc - gps) / 900.0) * 900.0
            if abs(quarter) <= 14 * 3600:
                return naive_utc - quarter + frac, True
        return naive_utc + frac, False
    return None, False


def _gps(tags: dict[str, Any], xmp: DjiXmp, notes: list[str]) -> GpsPosition | None:
    lat = _dms(tags, "GPS GPSLatitude", "GPS GPSLatitudeRef")
    lon = _dms(tags, "GPS GPSLongitude", "GPS GPSLongitudeRef")
    if (lat is None or lon is None) and xmp.gps_latitude is not None and xmp.gps_longitude is not None:
        lat, lon = xmp.gps_latitude, xmp.gps_longitude
    if lat is None or lon is None:
        return None
    if abs(lat) < 1e-9 and abs(lon) < 1e-9:
        notes.append("GPS position is 0,0 (the camera had no fix)")
        return None
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        notes.append(f"GPS position lat={lat}, lon={lon} is out of range")
        return None
    alt = _tag_float(tags, "GPS GPSAltitude")
    alt_ref = _tag_values(tags, "GPS GPSAltitudeRef")
    if alt is not None and alt_ref and str(alt_ref[0]) == "1":
        alt = -alt
    if alt is None and xmp.absolute_altitude is not None:
        alt = xmp.absolute_altitude
    if alt is None:
        notes.append("GPS altitude is missing")
        alt = float("nan")
    std_h = None
    if xmp.rtk_std_lat is not None and xmp.rtk_std_lon is not None:
        std_h = float((xmp.rtk_std_lat**2 + xmp.rtk_std_lon**2) ** 0.5)
    return GpsPosition(
        lat=lat,
        lon=lon,
        alt=float(alt),
        # EXIF GPSAltitude is defined above sea level; DJI follows that on most models.
        height_ref=HeightRef.ORTHOMETRIC,
        std_horizontal_m=std_h,
        std_vertical_m=xmp.rtk_std_hgt,
        rtk_fixed=None if xmp.rtk_flag is None else xmp.rtk_flag == 50,
    )


def _course(tags: dict[str, Any]) -> float | None:
    track = _tag_float(tags, "GPS GPSTrack")
    if track is None or not 0.0 <= track <= 360.0:
        return None
    return track % 360.0


def _sensor_width_mm(tags: dict[str, Any], prefix: str = "EXIF") -> float | None:
    """Sensor width from FocalPlaneXResolution and the EXIF pixel width (the original, unresized one)."""
    res = _tag_float(tags, f"{prefix} FocalPlaneXResolution") or _tag_float(tags, "EXIF FocalPlaneXResolution")
    exif_w = (
        _tag_float(tags, "EXIF ExifImageWidth")
        or _tag_float(tags, "EXIF ExifImageLength")
        or _tag_float(tags, "Image ImageWidth")
    )
    if not res or not exif_w or res <= 0:
        return None
    unit_vals = _tag_values(tags, "EXIF FocalPlaneResolutionUnit")
    unit = int(unit_vals[0]) if unit_vals and str(unit_vals[0]).isdigit() else 2
    mm_per_unit = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}.get(unit, 25.4)
    width = exif_w / res * mm_per_unit
    return width if 1.0 < width < 60.0 else None


def camera_id_for(make: str, model: str, width: int, height: int, focal_mm: float | None) -> str:
    """A stable id for one physical camera at one resolution."""
    parts = [make.strip() or "unknown", model.strip() or "camera", f"{width}x{height}"]
    if focal_mm:
        parts.append(f"{focal_mm:.2f}mm")
    return " ".join(parts).lower().replace("/", "-")


# -- TIFF / DNG ---------------------------------------------------------------------------
def _tiff_ifd_prefixes(tags: dict[str, Any]) -> list[str]:
    prefixes = ["Image"]
    prefixes += sorted({k.split(" ")[0] + " " + k.split(" ")[1] for k in tags if k.startswith("EXIF SubIFD")})
    return prefixes


def _tiff_size(tags: dict[str, Any], path: Path, file_size: int) -> tuple[int, int]:
    """Pixel size of the full-resolution image of a TIFF or DNG, checked against the file length.

    DNG keeps a preview in IFD0 (NewSubfileType 1) and the raw image in a
    SubIFD (NewSubfileType 0); its DefaultCropSize is the developed size.
    """
    best: tuple[int, int, str] | None = None
    for prefix in _tiff_ifd_prefixes(tags):
        w = _tag_int(tags, f"{prefix} ImageWidth")
        h = _tag_int(tags, f"{prefix} ImageLength")
        if not w or not h:
            continue
        subfile = _tag_int(tags, f"{prefix} SubfileType")
        if subfile not in (None, 0):
            continue
        if best is None or w * h > best[0] * best[1]:
            best = (w, h, prefix)
    if best is None:
        raise ImageReadError(
            f"{path}: TIFF without a full-resolution image (no width/height tags); it is not a camera image",
            "not_an_image",
        )
    w, h, prefix = best
    ends = []
    for off_key, cnt_key in (("StripOffsets", "StripByteCounts"), ("TileOffsets", "TileByteCounts")):
        offs = _tag_values(tags, f"{prefix} {off_key}")
        cnts = _tag_values(tags, f"{prefix} {cnt_key}")
        if offs and cnts and len(offs) == len(cnts):
            try:
                ends.append(max(int(o) + int(c) for o, c in zip(offs, cnts)))
            except (TypeError, ValueError):
                pass
    if ends and max(ends) > file_size:
        raise ImageReadError(
            f"{path}: the TIFF is truncated (image data runs to byte {max(ends)}, the file has {file_size}); "
            "re-copy it from the card",
            "truncated_tiff",
        )
    crop = _tag_values(tags, f"{prefix} Tag 0xC620")  # DNG DefaultCropSize
    if crop and len(crop) >= 2:
        try:
            cw, ch = int(round(_ratio(crop[0]))), int(round(_ratio(crop[1])))
            if 0 < cw <= w and 0 < ch <= h:
                w, h = cw, ch
        except (TypeError, ValueError, ZeroDivisionError):
            pass
    return w, h


def _tiff_xmp(tags: dict[str, Any]) -> bytes | None:
    vals = _tag_values(tags, "Image ApplicationNotes")  # TIFF tag 700, XMLPacket
    if not vals:
        return None
    if isinstance(vals[0], (bytes, bytearray)):
        return bytes(vals[0])
    try:
        return bytes(int(v) & 0xFF for v in vals)
    except (TypeError, ValueError):
        return None


def _rasterio_size(path: Path) -> tuple[int, int] | None:
    """Size of a TIFF that exifread cannot parse (BigTIFF), through GDAL."""
    try:
        import rasterio
        from rasterio.errors import RasterioIOError

        try:
            with rasterio.open(path) as ds:
                return int(ds.width), int(ds.height)
        except RasterioIOError:
            return None
    except ImportError:  # pragma: no cover - rasterio is a dependency
        return None


# -- the reader ---------------------------------------------------------------------------
def _read_tags(fh: BinaryIO, path: Path, details: bool) -> dict[str, Any]:
    try:
        return dict(exifread.process_file(fh, details=details, extract_thumbnail=False))
    except Exception as exc:  # noqa: BLE001 - exifread raises many types on corrupt headers
        raise ImageReadError(
            f"{path}: the EXIF block is corrupt ({type(exc).__name__}: {exc}); the image cannot be georeferenced",
            "corrupt_exif",
        ) from exc


def read_image_record(path: Path, name: str) -> ImageRecord:
    """Read one image's metadata into an :class:`ImageRecord`.

    An image without EXIF or GPS is still a record (position source NONE)
    with a warning; an unreadable one raises :class:`ImageReadError`.
    """
    path = Path(path)
    notes: list[str] = []
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read the file ({exc.strerror}); check permissions", "unreadable_file") from exc
    with fh:
        head = fh.read(_HEADER_BYTES)
        file_size = fh.seek(0, 2)
        kind = sniff_kind(head)
        if kind == "empty":
            raise ImageReadError(f"{path}: the file is empty (0 bytes); re-copy it from the card or remove it", "empty_file")
        if kind == "png":
            raise ImageReadError(
                f"{path}: this is a PNG named like a {path.suffix.lstrip('.').upper() or 'camera'} image; "
                "PNG carries no camera EXIF, use the original JPEG",
                "png_renamed",
            )
        if kind == "unknown":
            raise ImageReadError(
                f"{path}: not a JPEG, TIFF or DNG image (unrecognised content); remove it from the image folder",
                "not_an_image",
            )

        xmp_packet: bytes | None = None
        if kind == "jpeg":
            layout = read_jpeg_layout(fh, path)
            if not _jpeg_is_complete(fh, layout.sos_offset, file_size):
                raise ImageReadError(
                    f"{path}: the JPEG is truncated (no end-of-image marker after the image data); "
                    "re-copy it from the card",
                    "truncated_jpeg",
                )
            tags = _read_tags(fh, path, details=False) if layout.has_exif else {}
            width, height = layout.width, layout.height
            xmp_packet = layout.xmp or extract_xmp_packet(head)
            file_format = "jpeg"
        elif kind == "tiff":
            tags = _read_tags(fh, path, details=True)  # details: DNG keeps the raw image in a SubIFD
            width, height = _tiff_size(tags, path, file_size)
            xmp_packet = _tiff_xmp(tags) or extract_xmp_packet(head)
            file_format = "dng" if ("Image Tag 0xC612" in tags or path.suffix.lower() == ".dng") else "tiff"
        else:  # bigtiff: GDAL reads it; exifread does not, so there is no EXIF
            size = _rasterio_size(path)
            if size is None:
                raise ImageReadError(f"{path}: the BigTIFF cannot be read; re-export it as TIFF or JPEG", "not_an_image")
            width, height = size
            tags = {}
            xmp_packet = extract_xmp_packet(head)
            file_format = "tiff"

    if not tags:
        notes.append("no EXIF metadata (no camera, GPS position or time)")

    orientation = _tag_int(tags, "Image Orientation") or 1
    if orientation in (5, 6, 7, 8):
        width, height = height, width

    xmp = parse_dji_xmp(xmp_packet)
    make = _tag_str(tags, "Image Make")
    model = _tag_str(tags, "Image Model")
    focal = _tag_float(tags, "EXIF FocalLength")
    focal35 = _tag_float(tags, "EXIF FocalLengthIn35mmFilm")
    t, tz_known = _capture_time(tags)
    gps = _gps(tags, xmp, notes)
    if tags and gps is None and not any("GPS" in n for n in notes):
        notes.append("no GPS position in EXIF")
    gimbal = None
    if xmp.gimbal_pitch is not None:
        gimbal = Attitude(
            yaw=xmp.gimbal_yaw if xmp.gimbal_yaw is not None else (xmp.flight_yaw or 0.0),
            pitch=xmp.gimbal_pitch,
            roll=xmp.gimbal_roll or 0.0,
        )
    flight = None
    if xmp.flight_yaw is not None:
        flight = Attitude(yaw=xmp.flight_yaw, pitch=xmp.flight_pitch or 0.0, roll=xmp.flight_roll or 0.0)

    return ImageRecord(
        name=name,
        path=path.resolve(),
        width=width,
        height=height,
        camera_id=camera_id_for(make, model, width, height, focal),
        capture_time=t,
        time_zone_known=tz_known,
        gps=gps,
        position_source=PositionSource.EXIF if gps is not None else PositionSource.NONE,
        relative_altitude_m=xmp.relative_altitude,
        gimbal=gimbal,
        flight=flight,
        make=make,
        model=model,
        focal_length_mm=focal if focal else None,
        focal_length_35mm=focal35 if focal35 else None,
        sensor_width_mm=_sensor_width_mm(tags),
        orientation=orientation,
        course_deg=_course(tags),
        file_format=file_format,
        warnings=tuple(notes),
    )


def read_exif_tags(path: Path) -> dict[str, Any]:
    """All EXIF tags of a file as exifread returns them (for inspection and tests)."""
    with open(path, "rb") as fh:
        return dict(exifread.process_file(fh, details=False))
