"""``aerobase log-info``: what a flight log holds, as a dict (JSON) and as text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from drone_io.logs import LogReadOptions, read_log
from drone_io.logs.common import iso_utc
from models.track import FlightTrack
from pipeline.config import IngestConfig


def track_info(track: FlightTrack) -> dict[str, Any]:
    """The log-info figures of a track read already."""
    p = track.positions
    timed = not track.by_image_name
    start = float(p.t[0]) if timed else None
    end = float(p.t[-1]) if timed else None
    absolute = timed and track.absolute_time
    return {
        "format": track.format,
        "fixes": len(p),
        "dropped": int(track.dropped_fixes),
        "start": iso_utc(start, track.time_zone_known) if absolute and start is not None else None,
        "end": iso_utc(end, track.time_zone_known) if absolute and end is not None else None,
        "duration_s": round(end - start, 3) if start is not None and end is not None else None,
        "has_attitude": track.has_attitude,
        "triggers": track.trigger_count,
        "bbox": [
            float(np.min(p.lon)),
            float(np.min(p.lat)),
            float(np.max(p.lon)),
            float(np.max(p.lat)),
        ],
    }


def log_info(path: Path) -> dict[str, Any]:
    """Read a log and summarise it. Keys: format, fixes, dropped, start, end, duration_s,
    has_attitude, triggers, bbox ([west, south, east, north] in WGS84 degrees).

    ``start``/``end`` are ISO 8601 UTC ('Z'); without the zone suffix when the log's clock is a
    camera's local time of unknown zone (DJI SRT); null when the log has only boot-relative
    time or no times at all (geo.txt). Raises LogFormatError naming the file when nothing is usable.
    """
    ingest = IngestConfig()
    track = read_log(Path(path), LogReadOptions(max_speed_mps=ingest.max_speed_mps))
    return track_info(track)


def format_log_info(info: dict[str, Any]) -> str:
    """Human-readable lines for :func:`log_info` output (warnings go to the log on stderr)."""
    lines = [
        f"format:     {info['format']}",
        f"fixes:      {info['fixes']} kept, {info['dropped']} dropped",
    ]
    if info["start"] is not None:
        zone = "" if str(info["start"]).endswith("Z") else "  (camera local time, zone unknown)"
        lines.append(f"start:      {info['start']}{zone}")
        lines.append(f"end:        {info['end']}")
    else:
        lines.append("start, end: unknown (the log has relative times only, or none)")
    if info["duration_s"] is not None:
        lines.append(f"duration:   {info['duration_s']:.1f} s")
    lines.append(f"attitude:   {'yes' if info['has_attitude'] else 'no'}")
    lines.append(f"triggers:   {info['triggers'] if info['triggers'] else 'none'}")
    w, s, e, n = info["bbox"]
    lines.append(f"bbox:       lon {w:.7f} .. {e:.7f}, lat {s:.7f} .. {n:.7f}")
    return "\n".join(lines)
