"""Write camera metadata into a JPEG: an EXIF APP1 segment (piexif) and a DJI-style XMP APP1 segment.

The JPEG stream from an encoder keeps its image data untouched; its JFIF APP0
segment is replaced by EXIF (as camera JPEGs have it), and the XMP packet goes
into its own APP1 segment right after the EXIF one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

import piexif

from models.errors import InputError

XMP_APP1_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
_MAX_SEGMENT = 65533  # payload bytes of one APPn segment


@dataclass(frozen=True)
class ExifGps:
    """A WGS84 position for the EXIF GPS IFD; altitude in metres (negative below the reference)."""

    lat: float
    lon: float
    alt: float
    map_datum: str = "WGS-84"


@dataclass(frozen=True)
class ExifFields:
    """The EXIF fields a survey camera writes."""

    make: str
    model: str
    width: int  # pixels (ExifImageWidth / PixelXDimension)
    height: int
    datetime_original: datetime  # camera clock, naive (no offset tag, like DJI)
    subsec_original: str  # digits of the fraction of a second, e.g. "370"
    focal_length_mm: float
    focal_length_35mm: int
    sensor_width_mm: float  # sets FocalPlaneX/YResolution (pixels per cm)
    sensor_height_mm: float
    gps: ExifGps | None = None
    software: str = ""


def _rational(value: float, max_den: int = 1_000_000) -> tuple[int, int]:
    f = Fraction(value).limit_denominator(max_den)
    return (f.numerator, f.denominator)


def _dms(value: float) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Degrees, minutes, seconds as EXIF rationals; seconds to 1e-6 arc-second."""
    v = abs(value)
    deg = int(v)
    rem = (v - deg) * 60.0
    minutes = int(rem)
    micro = int(round((rem - minutes) * 60.0 * 1_000_000))
    if micro >= 60 * 1_000_000:
        micro -= 60 * 1_000_000
        minutes += 1
    if minutes >= 60:
        minutes -= 60
        deg += 1
    return ((deg, 1), (minutes, 1), (micro, 1_000_000))


def build_exif(fields: ExifFields) -> bytes:
    """The EXIF payload (``Exif\\0\\0`` + TIFF structure) of an APP1 segment."""
    stamp = fields.datetime_original.strftime("%Y:%m:%d %H:%M:%S")
    zeroth: dict[int, object] = {
        piexif.ImageIFD.Make: fields.make.encode("ascii"),
        piexif.ImageIFD.Model: fields.model.encode("ascii"),
        piexif.ImageIFD.Orientation: 1,
        piexif.ImageIFD.XResolution: (72, 1),
        piexif.ImageIFD.YResolution: (72, 1),
        piexif.ImageIFD.ResolutionUnit: 2,
        piexif.ImageIFD.DateTime: stamp.encode("ascii"),
    }
    if fields.software:
        zeroth[piexif.ImageIFD.Software] = fields.software.encode("ascii")
    px_per_cm_x = fields.width / (fields.sensor_width_mm / 10.0)
    px_per_cm_y = fields.height / (fields.sensor_height_mm / 10.0)
    exif: dict[int, object] = {
        piexif.ExifIFD.ExifVersion: b"0230",
        piexif.ExifIFD.DateTimeOriginal: stamp.encode("ascii"),
        piexif.ExifIFD.DateTimeDigitized: stamp.encode("ascii"),
        piexif.ExifIFD.SubSecTimeOriginal: fields.subsec_original.encode("ascii"),
        piexif.ExifIFD.SubSecTimeDigitized: fields.subsec_original.encode("ascii"),
        piexif.ExifIFD.FocalLength: _rational(fields.focal_length_mm, 1000),
        piexif.ExifIFD.FocalLengthIn35mmFilm: int(fields.focal_length_35mm),
        piexif.ExifIFD.FocalPlaneXResolution: _rational(px_per_cm_x),
        piexif.ExifIFD.FocalPlaneYResolution: _rational(px_per_cm_y),
        piexif.ExifIFD.FocalPlaneResolutionUnit: 3,  # centimetres
        piexif.ExifIFD.PixelXDimension: int(fields.width),
        piexif.ExifIFD.PixelYDimension: int(fields.height),
        piexif.ExifIFD.ColorSpace: 1,
    }
    gps: dict[int, object] = {}
    if fields.gps is not None:
        g = fields.gps
        if not (-90.0 <= g.lat <= 90.0 and -180.0 <= g.lon <= 180.0):
            raise InputError(f"GPS position lat={g.lat}, lon={g.lon} is not a valid WGS84 coordinate")
        gps = {
            piexif.GPSIFD.GPSVersionID: (2, 3, 0, 0),
            piexif.GPSIFD.GPSLatitudeRef: b"N" if g.lat >= 0 else b"S",
            piexif.GPSIFD.GPSLatitude: _dms(g.lat),
            piexif.GPSIFD.GPSLongitudeRef: b"E" if g.lon >= 0 else b"W",
            piexif.GPSIFD.GPSLongitude: _dms(g.lon),
            piexif.GPSIFD.GPSAltitudeRef: 0 if g.alt >= 0 else 1,
            piexif.GPSIFD.GPSAltitude: (int(round(abs(g.alt) * 1000)), 1000),
            piexif.GPSIFD.GPSMapDatum: g.map_datum.encode("ascii"),
        }
    payload: bytes = piexif.dump({"0th": zeroth, "Exif": exif, "GPS": gps, "1st": {}, "thumbnail": None})
    return payload


def xpacket(xmp: bytes) -> bytes:
    """Wrap an ``x:xmpmeta`` element in the xpacket processing instructions readers expect."""
    return (
        b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        + xmp
        + b'\n<?xpacket end="w"?>'
    )


def _segment(marker: int, payload: bytes) -> bytes:
    if len(payload) > _MAX_SEGMENT:
        raise InputError(f"metadata segment of {len(payload)} bytes exceeds the JPEG limit of {_MAX_SEGMENT}")
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def embed_metadata(jpeg: bytes, exif: bytes | None, xmp: bytes | None) -> bytes:
    """A JPEG with EXIF and XMP APP1 segments right after SOI; existing APP0/APP1 segments are dropped."""
    if jpeg[:2] != b"\xff\xd8":
        raise InputError("not a JPEG stream (no SOI marker)")
    i = 2
    while i + 4 <= len(jpeg) and jpeg[i] == 0xFF and jpeg[i + 1] in (0xE0, 0xE1):
        (length,) = struct.unpack(">H", jpeg[i + 2 : i + 4])
        i += 2 + length
    parts = [b"\xff\xd8"]
    if exif is not None:
        parts.append(_segment(0xE1, exif))
    if xmp is not None:
        parts.append(_segment(0xE1, XMP_APP1_HEADER + xmp))
    parts.append(jpeg[i:])
    return b"".join(parts)
