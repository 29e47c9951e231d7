"""Build test inputs for ingest: small TIFF/DNG files with EXIF and GPS, EXIF transplants for JPEGs.

Nothing here is a reader: the TIFF writer is a minimal, independent encoder of
the TIFF 6.0 / EXIF 2.3 / DNG 1.4 structures, so the readers are checked
against bytes laid out by the specifications.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Union

BYTE, ASCII, SHORT, LONG, RATIONAL, UNDEFINED, SRATIONAL = 1, 2, 3, 4, 5, 7, 10
_SIZES = {BYTE: 1, ASCII: 1, SHORT: 2, LONG: 4, RATIONAL: 8, UNDEFINED: 1, SRATIONAL: 8}


@dataclass
class IfdRef:
    """A LONG value that is the offset of another IFD of the same file."""

    index: int


@dataclass
class BlobRef:
    """A LONG value that is the offset of a named data block."""

    name: str


Value = Union[int, float, Fraction, str, bytes, IfdRef, BlobRef]


@dataclass
class Ifd:
    entries: list[tuple[int, int, list[Value]]] = field(default_factory=list)

    def add(self, tag: int, typ: int, values: list[Value] | Value) -> "Ifd":
        vals = values if isinstance(values, list) else [values]
        self.entries.append((tag, typ, vals))
        return self


def _encode_values(typ: int, values: list[Value], bo: str, resolve: dict[str, int], ifd_offsets: list[int]) -> bytes:
    if typ == ASCII:
        text = values[0]
        assert isinstance(text, str)
        return text.encode("ascii") + b"\x00"
    if typ in (BYTE, UNDEFINED) and len(values) == 1 and isinstance(values[0], bytes):
        return values[0]
    out = b""
    for v in values:
        if isinstance(v, IfdRef):
            v = ifd_offsets[v.index]
        elif isinstance(v, BlobRef):
            v = resolve[v.name]
        if typ in (BYTE, UNDEFINED):
            out += struct.pack(bo + "B", int(v))  # type: ignore[arg-type]
        elif typ == SHORT:
            out += struct.pack(bo + "H", int(v))  # type: ignore[arg-type]
        elif typ == LONG:
            out += struct.pack(bo + "I", int(v))  # type: ignore[arg-type]
        elif typ in (RATIONAL, SRATIONAL):
            f = Fraction(v).limit_denominator(1_000_000)  # type: ignore[arg-type]
            out += struct.pack(bo + ("II" if typ == RATIONAL else "ii"), f.numerator, f.denominator)
    return out


def _count(typ: int, values: list[Value]) -> int:
    if typ == ASCII:
        assert isinstance(values[0], str)
        return len(values[0]) + 1
    if typ in (BYTE, UNDEFINED) and len(values) == 1 and isinstance(values[0], bytes):
        return len(values[0])
    return len(values)


def write_tiff(ifds: list[Ifd], blobs: dict[str, bytes], big_endian: bool = False) -> bytes:
    """Lay out IFDs (IFD 0 first; IFD 0 links to none) and data blocks into TIFF bytes."""
    bo = ">" if big_endian else "<"
    # Pass 1: sizes (independent of offsets).
    sizes = []
    for ifd in ifds:
        extra = 0
        for _tag, typ, vals in ifd.entries:
            n = _count(typ, vals) * _SIZES[typ]
            if n > 4:
                extra += n + (n & 1)
        sizes.append(2 + 12 * len(ifd.entries) + 4 + extra)
    ifd_offsets = []
    pos = 8
    for s in sizes:
        ifd_offsets.append(pos)
        pos += s
    resolve = {}
    for name, data in blobs.items():
        resolve[name] = pos
        pos += len(data) + (len(data) & 1)
    # Pass 2: bytes.
    out = bytearray((b"MM\x00*" if big_endian else b"II*\x00") + struct.pack(bo + "I", 8))
    for ifd, off in zip(ifds, ifd_offsets):
        entries = sorted(ifd.entries, key=lambda e: e[0])
        head = bytearray(struct.pack(bo + "H", len(entries)))
        overflow = bytearray()
        overflow_at = off + 2 + 12 * len(entries) + 4
        for tag, typ, vals in entries:
            data = _encode_values(typ, vals, bo, resolve, ifd_offsets)
            head += struct.pack(bo + "HHI", tag, typ, _count(typ, vals))
            if len(data) <= 4:
                head += data.ljust(4, b"\x00")
            else:
                head += struct.pack(bo + "I", overflow_at + len(overflow))
                overflow += data + (b"\x00" if len(data) & 1 else b"")
        head += struct.pack(bo + "I", 0)
        out += head + overflow
    for data in blobs.values():
        out += data + (b"\x00" if len(data) & 1 else b"")
    return bytes(out)


def _dms(value: float) -> list[Value]:
    v = abs(value)
    d = int(v)
    m = int((v - d) * 60)
    s = (v - d - m / 60.0) * 3600.0
    return [Fraction(d), Fraction(m), Fraction(s).limit_denominator(100000)]


def camera_tiff(
    width: int,
    height: int,
    *,
    make: str = "Aerobase",
    model: str = "TestCam",
    lat: float | None = 46.5,
    lon: float | None = -91.25,
    alt: float | None = 210.5,
    datetime_original: str | None = "2024:05:01 10:20:30",
    subsec: str | None = None,
    offset: str | None = None,
    gps_time: tuple[str, float, float, float] | None = None,
    focal_mm: float | None = 8.8,
    focal35: int | None = 24,
    xmp: bytes | None = None,
    dng: bool = False,
    big_endian: bool = False,
    orientation: int = 1,
) -> bytes:
    """A small camera TIFF (8-bit grey strips) or DNG (preview in IFD0, 16-bit CFA raw in a SubIFD)."""
    ifd0 = Ifd()
    exif = Ifd()
    gps = Ifd()
    ifds = [ifd0, exif, gps]
    blobs: dict[str, bytes] = {}
    ifd0.add(0x010F, ASCII, make).add(0x0110, ASCII, model).add(0x0112, SHORT, orientation)
    if xmp is not None:
        ifd0.add(0x02BC, BYTE, xmp)
    ifd0.add(0x8769, LONG, IfdRef(1)).add(0x8825, LONG, IfdRef(2))
    if dng:
        pw, ph = 8, 6
        blobs["preview"] = bytes(pw * ph * 3)
        ifd0.add(0x00FE, LONG, 1).add(0x0100, LONG, pw).add(0x0101, LONG, ph).add(0x0102, SHORT, [8, 8, 8])
        ifd0.add(0x0103, SHORT, 1).add(0x0106, SHORT, 2).add(0x0111, LONG, BlobRef("preview"))
        ifd0.add(0x0115, SHORT, 3).add(0x0116, LONG, ph).add(0x0117, LONG, pw * ph * 3)
        ifd0.add(0xC612, BYTE, [1, 4, 0, 0])  # DNGVersion
        raw = Ifd()
        ifds.append(raw)
        rw, rh = width + 4, height + 4  # the raw has a margin that DefaultCropSize removes
        blobs["raw"] = bytes(rw * rh * 2)
        raw.add(0x00FE, LONG, 0).add(0x0100, LONG, rw).add(0x0101, LONG, rh).add(0x0102, SHORT, 16)
        raw.add(0x0103, SHORT, 1).add(0x0106, SHORT, 32803).add(0x0111, LONG, BlobRef("raw"))
        raw.add(0x0115, SHORT, 1).add(0x0116, LONG, rh).add(0x0117, LONG, rw * rh * 2)
        raw.add(0xC61F, LONG, [2, 2]).add(0xC620, LONG, [width, height])  # DefaultCropOrigin, DefaultCropSize
        ifd0.add(0x014A, LONG, IfdRef(3))
    else:
        blobs["pixels"] = bytes((x * 7) & 0xFF for x in range(width * height))
        ifd0.add(0x0100, LONG, width).add(0x0101, LONG, height).add(0x0102, SHORT, 8).add(0x0103, SHORT, 1)
        ifd0.add(0x0106, SHORT, 1).add(0x0111, LONG, BlobRef("pixels")).add(0x0115, SHORT, 1)
        ifd0.add(0x0116, LONG, height).add(0x0117, LONG, width * height)
    if datetime_original:
        exif.add(0x9003, ASCII, datetime_original)
        ifd0.add(0x0132, ASCII, datetime_original)
    if subsec:
        exif.add(0x9291, ASCII, subsec)
    if offset:
        exif.add(0x9011, ASCII, offset)
    if focal_mm:
        exif.add(0x920A, RATIONAL, Fraction(focal_mm).limit_denominator(1000))
    if focal35:
        exif.add(0xA405, SHORT, focal35)
    exif.add(0x9000, UNDEFINED, b"0230")
    gps.add(0x0000, BYTE, [2, 3, 0, 0])
    if lat is not None and lon is not None:
        gps.add(0x0001, ASCII, "N" if lat >= 0 else "S").add(0x0002, RATIONAL, _dms(lat))
        gps.add(0x0003, ASCII, "E" if lon >= 0 else "W").add(0x0004, RATIONAL, _dms(lon))
    if alt is not None:
        gps.add(0x0005, BYTE, 0 if alt >= 0 else 1).add(0x0006, RATIONAL, Fraction(abs(alt)).limit_denominator(1000))
    if gps_time is not None:
        date, h, m, s = gps_time
        gps.add(0x0007, RATIONAL, [Fraction(h), Fraction(m), Fraction(s).limit_denominator(1000)])
        gps.add(0x001D, ASCII, date)
    return write_tiff(ifds, blobs, big_endian=big_endian)


# -- JPEG helpers -------------------------------------------------------------------------
def jpeg_app1_exif(data: bytes) -> bytes | None:
    """The whole APP1 'Exif' segment (marker included) of JPEG bytes, or None."""
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker == 0xE1 and data[i + 4 : i + 10] == b"Exif\x00\x00":
            return data[i : i + 2 + length]
        if marker == 0xDA:
            break
        i += 2 + length
    return None


def with_exif_of(original: bytes, encoded: bytes) -> bytes:
    """JPEG bytes ``encoded`` with the APP1 EXIF segment of ``original`` inserted after SOI."""
    app1 = jpeg_app1_exif(original)
    assert app1 is not None, "the original has no EXIF"
    return encoded[:2] + app1 + encoded[2:]


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
