"""Read image metadata: EXIF (exifread), DJI XMP, and the true pixel size.

The pixel size comes from the image stream itself (JPEG SOF marker, TIFF
tags), never from EXIF alone: resized images often keep their original EXIF
size. Every failure is an :class:`InputError` naming the file and the fix.
"""

from __future__ import annotations

import logging
import struct
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any

import exifread

from drone_io.xmp import DjiXmp, extract_xmp_packet, parse_dji_xmp
from models.errors import InputError
from models.geo import HeightRef
from models.image import Attitude, GpsPosition, ImageRecord, PositionSource

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".tif", ".tiff", ".dng"}

# How many leading bytes hold EXIF and XMP in practice (DJI XMP sits in APP1 near the start).
_HEADER_BYTES = 512 * 1024


def sniff_kind(head: bytes) -> str:
    """'jpeg', 'tiff', 'png', 'empty' or 'unknown' from magic bytes."""
    if not head:
        return "empty"
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    return "unknown"


def jpeg_size(data: bytes, path: Path) -> tuple[int, int]:
    """(width, height) from the first SOF marker of a JPEG."""
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            i += 1 if marker == 0xFF else 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            if i + 9 > n:
                break
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(w), int(h)
        if marker == 0xDA:  # start of scan before any SOF
            break
        i += 2 + length
    raise InputError(f"{path}: no JPEG frame header found; the file is corrupt or truncated, re-copy it from the card")


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
    return list(vals) if isinstance(vals, (list, tuple)) else [vals]


def _tag_float(tags: dict[str, Any], key: str) -> float | None:
    vals = _tag_values(tags, key)
    if not vals:
        return None
    try:
        f = _ratio(vals[0])
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return f if f == f else None


def _tag_str(tags: dict[str, Any], key: str) -> str:
    t = tags.get(key)
    if t is None:
        return ""
    return str(getattr(t, "printable", t)).strip().strip("\x00").strip()


def _dms(tags: dict[str, Any], key: str, ref_key: str) -> float | None:
    vals = _tag_values(tags, key)
    if not vals or len(vals) < 3:
        return None
    try:
        d, m, s = (_ratio(v) for v in vals[:3])
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    value = d + m / 60.0 + s / 3600.0
    ref = _tag_str(tags, ref_key).upper()
    if ref in ("S", "W"):
        value = -value
    return value


def _parse_offset(text: str) -> timedelta | None:
    text = text.strip()
    if len(text) >= 6 and text[0] in "+-" and text[3] == ":":
        try:
            sign = 1 if text[0] == "+" else -1
            return sign * timedelta(hours=int(text[1:3]), minutes=int(text[4:6]))
        except ValueError:
            return None
    return None


def _capture_time(tags: dict[str, Any]) -> tuple[float | None, bool]:
    """POSIX seconds of DateTimeOriginal (+SubSec, +OffsetTime); naive times are read as UTC."""
    for key, sub_key, off_key in (
        ("EXIF DateTimeOriginal", "EXIF SubSecTimeOriginal", "EXIF OffsetTimeOriginal"),
        ("EXIF DateTimeDigitized", "EXIF SubSecTimeDigitized", "EXIF OffsetTimeDigitized"),
        ("Image DateTime", "EXIF SubSecTime", "EXIF OffsetTime"),
    ):
        text = _tag_str(tags, key)
        if not text:
            continue
        try:
            dt = datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S")
        except ValueError:
            continue
        sub = _tag_str(tags, sub_key)
        frac = float(f"0.{sub}") if sub.isdigit() else 0.0
        offset = _parse_offset(_tag_str(tags, off_key))
        if offset is not None:
            aware = dt.replace(tzinfo=timezone(offset))
            return aware.timestamp() + frac, True
        return dt.replace(tzinfo=timezone.utc).timestamp() + frac, False
    return None, False


def _gps(tags: dict[str, Any], xmp: DjiXmp) -> GpsPosition | None:
    lat = _dms(tags, "GPS GPSLatitude", "GPS GPSLatitudeRef")
    lon = _dms(tags, "GPS GPSLongitude", "GPS GPSLongitudeRef")
    if lat is None or lon is None:
        return None
    if abs(lat) < 1e-9 and abs(lon) < 1e-9:
        return None  # 0,0 is the "no fix" value many cameras write
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        return None
    alt = _tag_float(tags, "GPS GPSAltitude")
    alt_ref = _tag_values(tags, "GPS GPSAltitudeRef")
    if alt is not None and alt_ref and str(alt_ref[0]) == "1":
        alt = -alt
    if alt is None:
        alt = xmp.absolute_altitude if xmp.absolute_altitude is not None else float("nan")
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


def _sensor_width_mm(tags: dict[str, Any]) -> float | None:
    """Sensor width from FocalPlaneXResolution and the EXIF pixel width (the original, unresized one)."""
    res = _tag_float(tags, "EXIF FocalPlaneXResolution")
    exif_w = _tag_float(tags, "EXIF ExifImageWidth")
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


def read_image_record(path: Path, name: str) -> ImageRecord:
    """Read one image's metadata into an :class:`ImageRecord`."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(_HEADER_BYTES)
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 2))
            tail = fh.read(2)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the file ({exc.strerror}); check permissions") from exc

    kind = sniff_kind(head)
    if kind == "empty":
        raise InputError(f"{path}: the file is empty (0 bytes); re-copy it from the card or remove it")
    if kind == "png":
        raise InputError(f"{path}: this is a PNG named like a JPEG; PNG carries no camera EXIF, use the original JPEG")
    if kind == "unknown":
        raise InputError(f"{path}: not a JPEG or TIFF image (unrecognised content); remove it from the image folder")
    if kind == "jpeg" and tail != b"\xff\xd9":
        raise InputError(f"{path}: the JPEG is truncated (no end-of-image marker); re-copy it from the card")

    try:
        import io

        tags = exifread.process_file(io.BytesIO(head), details=False)
    except Exception as exc:  # exifread raises a variety of errors on corrupt headers
        raise InputError(f"{path}: the EXIF block is corrupt ({exc}); the image cannot be georeferenced") from exc

    if kind == "jpeg":
        width, height = jpeg_size(head, path)
    else:
        w = _tag_float(tags, "Image ImageWidth")
        h = _tag_float(tags, "Image ImageLength")
        if w is None or h is None:
            raise InputError(f"{path}: TIFF without width/height tags; it is not a camera image")
        width, height = int(w), int(h)

    orientation_vals = _tag_values(tags, "Image Orientation")
    orientation = int(orientation_vals[0]) if orientation_vals and str(orientation_vals[0]).isdigit() else 1
    if orientation in (5, 6, 7, 8):
        width, height = height, width

    xmp = parse_dji_xmp(extract_xmp_packet(head))
    make = _tag_str(tags, "Image Make")
    model = _tag_str(tags, "Image Model")
    focal = _tag_float(tags, "EXIF FocalLength")
    focal35 = _tag_float(tags, "EXIF FocalLengthIn35mmFilm")
    t, tz_known = _capture_time(tags)
    sensor_width = _sensor_width_mm(tags)
    gps = _gps(tags, xmp)
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
        sensor_width_mm=sensor_width,
        orientation=orientation,
    )


def read_exif_tags(path: Path) -> dict[str, Any]:
    """All EXIF tags of a file as exifread returns them (for inspection and tests)."""
    with open(path, "rb") as fh:
        return dict(exifread.process_file(fh, details=False))
