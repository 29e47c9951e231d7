"""DJI video subtitle telemetry (.SRT), in every layout DJI has shipped.

Layouts handled (one block per subtitle):
- ``GPS(lon,lat,n) BAROMETER:h`` / ``GPS(lon,lat,n) Hb:h`` (Mavic Pro, old firmware) and
  ``GPS (lon, lat, n), ... H 45.60m`` (Phantom 4, Mavic Mini, P4 RTK with ``HOME (lon, lat, h m)``
  and ``F.PRY``/``G.PRY`` attitude). The third GPS number is an integer satellite count in
  every known sample, so it is read as an altitude only when it carries a unit or decimals.
- Bracketed ``[latitude : x] [longtitude : y] [altitude: z]`` (Mavic 2/Air 2), with DJI's
  misspelling ``longtitude`` or the correct ``longitude``, and ``abs_alt``/``rel_alt``.
- Blocks without time codes (date line only), files without dates (time codes only).

Times: the date line is the camera's local clock (zone unknown, read as UTC like EXIF
times). With time codes and dates, times are the time codes anchored to the median
(date - time code), which smooths dates that lag; with time codes only, times are
video-relative (``absolute_time=False``).
"""

from __future__ import annotations

import calendar
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from drone_io.logs.common import LogReadOptions, attitude_series, build_track, fail
from models.geo import HeightRef
from models.track import FlightTrack

FORMAT = "dji_srt"
_NUM = r"([-+]?\d+(?:\.\d+)?)"
_TIMECODE = re.compile(r"(\d{1,2}):(\d{2}):(\d{2})[,.](\d{1,3})\s*-->")
_DATE = re.compile(r"(\d{4})[-.](\d{1,2})[-.](\d{1,2})\s+(\d{1,2}):(\d{2}):(\d{2})(?:[,.](\d{1,3}))?(?:,(\d{1,3}))?")
_GPS_NA = re.compile(r"GPS\s*\(\s*N/?A\s*,", re.IGNORECASE)
_GPS = re.compile(r"GPS\s*\(\s*" + _NUM + r"\s*,\s*" + _NUM + r"\s*(?:,\s*([-+]?\d+(?:\.\d+)?)\s*(m?)\s*)?\)")
_HOME = re.compile(r"HOME\s*\(\s*" + _NUM + r"\s*,\s*" + _NUM + r"\s*(?:,\s*" + _NUM + r"\s*m\s*)?\)")
_LAT = re.compile(r"\[\s*latitude\s*:\s*" + _NUM, re.IGNORECASE)
_LON = re.compile(r"\[\s*longt?itude\s*:\s*" + _NUM, re.IGNORECASE)
_ALT = re.compile(r"\[\s*altitude\s*:\s*" + _NUM, re.IGNORECASE)
_ABS_ALT = re.compile(r"abs_alt\s*:\s*" + _NUM, re.IGNORECASE)
_REL_ALT = re.compile(r"rel_alt\s*:\s*" + _NUM, re.IGNORECASE)
_BARO = re.compile(r"(?:BAROMETER|\bHb)\s*:\s*" + _NUM)
_H = re.compile(r"(?<![\w.])H\s+" + _NUM + r"\s*m\b")
_PRY = r"\s*\(\s*" + _NUM + r"°?\s*,\s*" + _NUM + r"°?\s*,\s*" + _NUM + r"°?\s*\)"
_FPRY = re.compile(r"F\.PRY" + _PRY)
_GPRY = re.compile(r"G\.PRY" + _PRY)
_GB = {k: re.compile(rf"gb_{k}\s*:\s*" + _NUM, re.IGNORECASE) for k in ("yaw", "pitch", "roll")}
_TELEMETRY_HINT = re.compile(r"GPS|latitude|longt?itude|FrameCnt|SrtCnt|ISO|iso|HOME|Shutter|shutter", re.IGNORECASE)


@dataclass
class _Block:
    number: int
    line: int  # 1-based line of the block number
    timecode: float | None = None
    date: float | None = None
    text: list[str] = field(default_factory=list)


def _float(m: re.Match[str] | None, group: int = 1) -> float | None:
    return float(m.group(group)) if m else None


def _split_blocks(lines: list[str]) -> list[_Block]:
    blocks: list[_Block] = []
    prev_blank = True
    for i, raw in enumerate(lines, start=1):
        line = raw.strip().lstrip("\ufeff")
        if line.isdigit() and prev_blank:
            blocks.append(_Block(number=int(line), line=i))
        elif line and blocks:
            tc = _TIMECODE.search(line)
            if tc and blocks[-1].timecode is None:
                h, mi, s, ms = tc.groups()
                blocks[-1].timecode = int(h) * 3600 + int(mi) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000.0
            else:
                d = _DATE.search(line)
                if d and blocks[-1].date is None:
                    y, mo, dd, hh, mi, ss, ms, us = d.groups()
                    frac = (int(ms.ljust(3, "0")) / 1e3 if ms else 0.0) + (int(us.ljust(3, "0")) / 1e6 if us else 0.0)
                    try:
                        blocks[-1].date = calendar.timegm((int(y), int(mo), int(dd), int(hh), int(mi), int(ss))) + frac
                    except (ValueError, OverflowError):
                        pass
                blocks[-1].text.append(line)
        prev_blank = not line or (line.isdigit() and not blocks)
    return blocks


def _anchor_timecodes(tc: np.ndarray, dates: np.ndarray, jump_s: float = 2.0) -> np.ndarray:
    """Times from time codes anchored to the dates, per run of blocks whose (date - time code) agrees.

    Joined clips make (date - time code) jump; within a clip its median smooths dates that lag
    or repeat. Blocks without a time code keep their date; blocks without a date take the
    anchor of the nearest dated block.
    """
    n = len(tc)
    both = np.flatnonzero(np.isfinite(tc) & np.isfinite(dates))
    if len(both) == 0:
        return np.where(np.isfinite(dates), dates, tc)
    diff = dates[both] - tc[both]
    seg = np.concatenate([[0], np.cumsum(np.abs(np.diff(diff)) > jump_s)])
    anchors = np.array([np.median(diff[seg == k]) for k in range(int(seg[-1]) + 1)])
    nearest = np.clip(np.searchsorted(both, np.arange(n)), 0, len(both) - 1)
    prev = np.clip(nearest - 1, 0, len(both) - 1)
    closer_prev = np.abs(both[prev] - np.arange(n)) < np.abs(both[nearest] - np.arange(n))
    pick = np.where(closer_prev, prev, nearest)
    anchor = anchors[seg[pick]]
    return np.where(np.isfinite(tc), tc + anchor, dates)


def read_dji_srt(path: Path, options: LogReadOptions | None = None) -> FlightTrack:
    options = options or LogReadOptions()
    raw = path.read_bytes()
    text = raw.decode("utf-8", errors="replace")
    lines = text.splitlines()
    if not text.strip("\ufeff \t\r\n"):
        raise fail(path, "the file is empty", "re-copy the .SRT that the drone wrote beside the video")
    blocks = _split_blocks(lines)
    if not blocks or all(not b.text for b in blocks):
        raise fail(
            path,
            f"no telemetry blocks (the file has {len(lines)} line(s) and ends before the first block's data)",
            "the file is truncated or not a DJI telemetry subtitle; re-copy it from the card",
        )
    if not any(_TELEMETRY_HINT.search(" ".join(b.text)) for b in blocks):
        raise fail(path, "no DJI telemetry in its subtitles", "this .SRT holds plain subtitles, not flight data")

    n = len(blocks)
    lat = np.full(n, math.nan)
    lon = np.full(n, math.nan)
    abs_alt = np.full(n, math.nan)
    rel_alt = np.full(n, math.nan)
    home_alt = np.full(n, math.nan)
    fpry = np.full((n, 3), math.nan)
    gpry = np.full((n, 3), math.nan)
    no_fix = np.zeros(n, dtype=bool)
    for i, b in enumerate(blocks):
        body = " ".join(b.text)
        no_fix[i] = bool(_GPS_NA.search(body))
        gps = _GPS.search(body)
        if gps:
            lon[i], lat[i] = float(gps.group(1)), float(gps.group(2))
            third, unit = gps.group(3), gps.group(4)
            if third is not None and (unit or "." in third):
                abs_alt[i] = float(third)
        la, lo = _float(_LAT.search(body)), _float(_LON.search(body))
        if la is not None and lo is not None:
            lat[i], lon[i] = la, lo
        for pat in (_ALT, _ABS_ALT):
            v = _float(pat.search(body))
            if v is not None:
                abs_alt[i] = v
        for pat in (_REL_ALT, _BARO, _H):
            v = _float(pat.search(body))
            if v is not None:
                rel_alt[i] = v
                break
        home = _HOME.search(body)
        if home and home.group(3) is not None:
            home_alt[i] = float(home.group(3))
        f = _FPRY.search(body)
        if f:
            fpry[i] = [float(f.group(1)), float(f.group(2)), float(f.group(3))]  # pitch, roll, yaw
        g = _GPRY.search(body)
        if g:
            gpry[i] = [float(g.group(1)), float(g.group(2)), float(g.group(3))]
        else:
            gb = [_float(_GB[k].search(body)) for k in ("pitch", "roll", "yaw")]
            if all(v is not None for v in gb):
                gpry[i] = gb

    has_pos = np.isfinite(lat) & np.isfinite(lon)
    if not (has_pos.any() or no_fix.any()):
        raise fail(
            path,
            f"none of its {n} subtitle blocks holds a GPS position",
            "this drone or firmware writes no GPS into its .SRT; use the flight log (e.g. an AirData CSV) instead",
        )
    warnings: list[str] = []
    trailing = 0
    while trailing < n and not (has_pos[n - 1 - trailing] or no_fix[n - 1 - trailing]):
        trailing += 1
    if trailing:
        cut = blocks[n - trailing]
        warnings.append(
            f"{path.name}: the file breaks in block {cut.number} at line {cut.line} (truncated: the last "
            f"{trailing} block(s) hold no complete position); read the blocks before it"
        )
    inner = [b for b, ok, nf in zip(blocks[: n - trailing], has_pos, no_fix) if not ok and not nf]
    if inner:
        warnings.append(
            f"{path.name}: {len(inner)} block(s) without a GPS position, the first is block "
            f"{inner[0].number} at line {inner[0].line}; skipped them"
        )

    # Altitude: absolute when the layout has it, else take-off height (+ home altitude if given).
    height_ref = HeightRef.UNKNOWN
    if np.isfinite(abs_alt[has_pos]).any():
        alt = abs_alt
    elif np.isfinite(rel_alt[has_pos]).any():
        if np.isfinite(home_alt[has_pos]).any():
            alt = rel_alt + np.where(np.isfinite(home_alt), home_alt, np.nanmedian(home_alt))
            warnings.append(f"{path.name}: altitudes are the home altitude plus the height above take-off")
        else:
            alt = rel_alt
            warnings.append(f"{path.name}: altitudes are heights above the take-off point, not absolute heights")
    else:
        alt = np.full(n, math.nan)
        warnings.append(f"{path.name}: the subtitles carry no altitude")

    tc = np.asarray([math.nan if b.timecode is None else b.timecode for b in blocks])
    dates = np.asarray([math.nan if b.date is None else b.date for b in blocks])
    has_tc, has_date = np.isfinite(tc), np.isfinite(dates)
    absolute = bool(has_date.any())
    if has_tc.any() and has_date.any():
        t = _anchor_timecodes(tc, dates)
    elif has_date.any():
        t = dates
    elif has_tc.any():
        t = tc
        warnings.append(f"{path.name}: no date lines; times are seconds from the start of the video")
    else:
        raise fail(path, "its blocks carry neither time codes nor dates", "the file cannot be placed in time")
    if absolute and not has_date.all():
        warnings.append(
            f"{path.name}: {int((~has_date).sum())} block(s) without a date line; placed by their time codes"
        )

    f_ok = np.all(np.isfinite(fpry), axis=1) & np.isfinite(t)
    g_ok = np.all(np.isfinite(gpry), axis=1) & np.isfinite(t)
    attitude = attitude_series(t[f_ok], fpry[f_ok, 2], fpry[f_ok, 0], fpry[f_ok, 1]) if f_ok.any() else None
    gimbal = attitude_series(t[g_ok], gpry[g_ok, 2], gpry[g_ok, 0], gpry[g_ok, 1]) if g_ok.any() else None

    keep = has_pos | no_fix  # blocks that say GPS(N/A, ...) are fixes without a position: dropped, counted
    return build_track(
        path,
        FORMAT,
        t[keep],
        lat[keep],
        lon[keep],
        alt[keep],
        options=options,
        valid=~no_fix[keep],
        height_ref=height_ref,
        attitude=attitude,
        gimbal=gimbal,
        warnings=warnings,
        absolute_time=absolute,
        time_zone_known=False,
    )
