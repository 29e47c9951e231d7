"""The ingest step that reads a flight's logs and geotags its images from them.

One call from the ingest stage (and ``aerobase inspect``): read the logs (``--log`` files,
else every file in the flight's ``logs/`` folder, plus ``geo.txt``), geotag the records
(:func:`pipeline.ingest.geotag.geotag_images`) and return the new records, the tracks to save and
the figures for ``stats.json``. No workspace: the caller saves ``tracks``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drone_io.flight_dir import FlightFiles
from drone_io.logs import LogReadOptions, read_log
from models.errors import LogFormatError
from models.image import ImageRecord
from models.track import FlightTrack
from pipeline.config import Config
from pipeline.ingest.geotag import GeotagResult, geotag_images

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LogGeotag:
    """What the geotag step produced."""

    records: tuple[ImageRecord, ...]
    tracks: tuple[FlightTrack, ...]
    result: GeotagResult | None  # None when there was no log to read
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def clock_offset_s(self) -> float | None:
        return None if self.result is None else self.result.clock_offset_s


def log_paths(files: FlightFiles, cfg: Config) -> tuple[list[Path], bool]:
    """The logs to read and whether the user named them (``--log``)."""
    if cfg.inputs.logs:
        return [Path(p) for p in cfg.inputs.logs], True
    return list(files.logs), False


def geotag_from_logs(files: FlightFiles, cfg: Config, records: Sequence[ImageRecord]) -> LogGeotag:
    """Read the flight's logs and geo.txt and geotag ``records`` from them.

    With ``--log`` (``cfg.inputs.logs``) the named logs must be readable and their positions
    replace EXIF positions for every image in their span; logs found in ``logs/`` that cannot
    be read are reported and skipped.
    """
    paths, explicit = log_paths(files, cfg)
    if files.geo_txt is not None and files.geo_txt not in paths:
        paths.append(files.geo_txt)
    options = LogReadOptions(max_speed_mps=cfg.ingest.max_speed_mps)
    tracks: list[FlightTrack] = []
    unreadable: list[dict[str, str]] = []
    for path in paths:
        try:
            tracks.append(read_log(path, options))
        except LogFormatError as exc:
            if explicit and path != files.geo_txt:
                raise
            logger.warning("skipped log %s: %s", path.name, exc)
            unreadable.append({"log": path.name, "message": str(exc)})
    log_figures: dict[str, Any] = {
        "logs": [
            {
                "log": t.source,
                "format": t.format,
                "fixes": len(t.positions),
                "dropped": t.dropped_fixes,
                "dropped_reasons": dict(t.dropped_reasons),
                "triggers": t.trigger_count,
                "warnings": list(t.warnings),
            }
            for t in tracks
        ],
        "logs_unreadable": unreadable,
    }
    if not tracks:
        figures = {
            **log_figures,
            "clock_offset_s": None,
            "method": None,
            "images_geotagged": 0,
            "images_outside_log": 0,
        }
        return LogGeotag(tuple(records), (), None, figures if paths else {})
    result = geotag_images(records, tracks, cfg.ingest, override_exif=explicit)
    if result.geotagged:
        logger.info(
            "geotagged %d image(s) from %d log(s); clock offset %s s (%s)",
            len(result.geotagged),
            len(tracks),
            "n/a" if result.clock_offset_s is None else f"{result.clock_offset_s:.3f}",
            result.method,
        )
    return LogGeotag(result.records, tuple(tracks), result, {**log_figures, **result.figures()})
