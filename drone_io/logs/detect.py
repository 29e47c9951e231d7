"""Tell a flight log's format from its content, with the file extension as a fallback."""

from __future__ import annotations

import enum
import re
import struct
from pathlib import Path

from models.errors import LogFormatError

_SNIFF_BYTES = 64 * 1024


class LogFormat(str, enum.Enum):
    """Flight-log formats Aerobase reads; the value is the name ``log-info`` prints."""

    ULOG = "px4_ulog"  # PX4 ULog (.ulg)
    DATAFLASH = "ardupilot_dataflash"  # ArduPilot DataFlash, binary .bin or text .log
    TLOG = "mavlink_tlog"  # MAVLink telemetry log (.tlog)
    DJI_SRT = "dji_srt"  # DJI video subtitle telemetry (.srt)
    AIRDATA_CSV = "airdata_csv"  # AirData UAV CSV export
    LITCHI_CSV = "litchi_csv"  # Litchi flight-log CSV
    GPX = "gpx"  # GPS Exchange Format track
    MRK = "dji_mrk"  # DJI/Autel RTK camera-event file (.mrk)
    GEO_TXT = "odm_geo_txt"  # OpenDroneMap geo.txt (positions by image name)


_BY_SUFFIX = {
    ".ulg": LogFormat.ULOG,
    ".bin": LogFormat.DATAFLASH,
    ".tlog": LogFormat.TLOG,
    ".srt": LogFormat.DJI_SRT,
    ".gpx": LogFormat.GPX,
    ".mrk": LogFormat.MRK,
}

_SRT_TIMECODE = re.compile(r"\d{1,2}:\d{2}:\d{2}[,.]\d{3}\s*-->")
_SRT_FIELDS = re.compile(r"GPS\s*\(|\[\s*latitude\s*:|\[\s*longt?itude\s*:|FrameCnt|SrtCnt", re.IGNORECASE)
_CRS_LINE = re.compile(r"^\s*(EPSG:\d+|\+proj=|WGS84\s*$|PROJCS\[|GEOGCS\[|PROJCRS\[|GEOGCRS\[)", re.IGNORECASE)
_IMAGE_NAME = re.compile(r"\.(jpe?g|tiff?|dng|png)$", re.IGNORECASE)


def _looks_like_tlog(head: bytes) -> bool:
    """8-byte big-endian microsecond timestamp, then a MAVLink v1/v2 frame, twice in a row."""
    pos = 0
    for _ in range(2):
        if len(head) < pos + 12:
            return pos > 0
        magic = head[pos + 8]
        if magic == 0xFE:
            length = 8 + 6 + head[pos + 9] + 2
        elif magic == 0xFD:
            signed = head[pos + 10] & 0x01 if len(head) > pos + 10 else 0
            length = 8 + 10 + head[pos + 9] + 2 + (13 if signed else 0)
        else:
            return False
        (stamp,) = struct.unpack(">Q", head[pos : pos + 8])
        if not (stamp == 0 or 9.0e14 < stamp < 4.2e15):  # 1998 .. 2103 in microseconds
            return False
        pos += length
    return True


def _text_format(path: Path, text: str) -> LogFormat | None:
    stripped = text.lstrip("\ufeff \t\r\n")
    low = stripped[:4000].lower()
    if "<gpx" in low:
        return LogFormat.GPX
    lines = [ln.strip() for ln in stripped.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if not lines:
        return None
    first = lines[0]
    if first.startswith("FMT,") or (len(lines) > 1 and all(ln.startswith(("FMT,", "FMTU,", "PARM,")) for ln in lines[:3])):
        return LogFormat.DATAFLASH
    if _SRT_TIMECODE.search(stripped[:4000]) or (first.isdigit() and _SRT_FIELDS.search(stripped[:4000])):
        return LogFormat.DJI_SRT
    if re.search(r",\s*Lat\b", stripped[:4000]) and re.search(r",\s*Lon\b", stripped[:4000]):
        return LogFormat.MRK
    header = first.lower()
    if "," in header and "latitude" in header and "longitude" in header:
        if any(k in header for k in ("height_above_takeoff", "altitude_above_sealevel", "compass_heading")):
            return LogFormat.AIRDATA_CSV
        if any(k in header for k in ("curvesize", "actiontype1", "gimbalpitchangle")):
            raise LogFormatError(
                f"{path}: this is a Litchi waypoint mission (a flight plan), not a flight log; "
                "export the flight log CSV of the flown mission instead"
            )
        if "datetime(utc)" in header or "time(millisecond)" in header:
            return LogFormat.LITCHI_CSV
        raise LogFormatError(
            f"{path}: a CSV with latitude/longitude but no known time column; Aerobase reads AirData and "
            "Litchi flight-log CSVs, which have datetime(utc) or time(millisecond)"
        )
    if _CRS_LINE.match(first) and len(lines) > 1:
        parts = lines[1].split()
        if len(parts) >= 3 and _IMAGE_NAME.search(parts[0]):
            return LogFormat.GEO_TXT
    return None


def detect_format(path: Path) -> LogFormat:
    """The format of a log file; LogFormatError naming the file when it is empty or unknown."""
    path = Path(path)
    if not path.exists():
        raise LogFormatError(f"{path}: no such file; check the path of the flight log")
    if not path.is_file():
        raise LogFormatError(f"{path}: not a file; pass a flight log file")
    try:
        with path.open("rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except OSError as exc:
        raise LogFormatError(f"{path}: cannot be read ({exc.strerror or exc}); check its permissions") from exc
    if not head.strip(b" \t\r\n\x00\xef\xbb\xbf"):
        raise LogFormatError(f"{path}: the file is empty; re-copy the log from the aircraft or controller")
    if head.startswith(b"ULog\x01\x12\x35"):
        return LogFormat.ULOG
    if head[:2] == b"\xa3\x95":
        return LogFormat.DATAFLASH
    if _looks_like_tlog(head):
        return LogFormat.TLOG
    text = head.decode("utf-8", errors="replace")
    if text.count("\ufffd") < max(8, len(text) // 50):
        found = _text_format(path, text)
        if found is not None:
            return found
    by_ext = _BY_SUFFIX.get(path.suffix.lower())
    if by_ext is not None:
        return by_ext
    names = ", ".join(f.value for f in LogFormat)
    raise LogFormatError(f"{path}: not a flight log Aerobase can read (known formats: {names})")
