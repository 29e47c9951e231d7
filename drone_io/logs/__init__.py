"""Flight-log readers: one module per format, each returning one typed :class:`FlightTrack`.

``read_log(path)`` detects the format from the content (the extension only breaks ties),
reads the file, drops invalid fixes and GPS spikes (counted in ``dropped_fixes`` and
``dropped_reasons``) and returns the track. A truncated or corrupt log yields what could
be read, with a warning naming the file and where it broke (``track.warnings``). A file
with nothing usable raises :class:`LogFormatError` naming the file and what to do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from drone_io.logs.common import LogReadOptions
from drone_io.logs.detect import LogFormat, detect_format
from models.errors import AerobaseError, LogFormatError
from models.track import FlightTrack

logger = logging.getLogger(__name__)

__all__ = ["LogFormat", "LogReadOptions", "detect_format", "read_log"]


def _reader(fmt: LogFormat) -> Callable[[Path, LogReadOptions], FlightTrack]:
    # Imported lazily: pyulog and pymavlink take a moment to import.
    if fmt is LogFormat.ULOG:
        from drone_io.logs.ulog import read_ulog

        return read_ulog
    if fmt is LogFormat.DATAFLASH:
        from drone_io.logs.dataflash import read_dataflash

        return read_dataflash
    if fmt is LogFormat.TLOG:
        from drone_io.logs.tlog import read_tlog

        return read_tlog
    if fmt is LogFormat.DJI_SRT:
        from drone_io.logs.dji_srt import read_dji_srt

        return read_dji_srt
    if fmt in (LogFormat.AIRDATA_CSV, LogFormat.LITCHI_CSV):
        from drone_io.logs.csv_logs import read_csv_log

        return lambda p, o: read_csv_log(p, fmt.value, o)
    if fmt is LogFormat.GPX:
        from drone_io.logs.gpx import read_gpx

        return read_gpx
    if fmt is LogFormat.MRK:
        from drone_io.logs.mrk import read_mrk

        return read_mrk
    from drone_io.logs.geo_txt import read_geo_txt

    return read_geo_txt


def read_log(path: Path, options: LogReadOptions | None = None) -> FlightTrack:
    """Read one flight log of any supported format into a :class:`FlightTrack`."""
    path = Path(path)
    options = options or LogReadOptions()
    fmt = detect_format(path)
    try:
        track = _reader(fmt)(path, options)
    except AerobaseError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - third-party parsers raise anything on corrupt input
        raise LogFormatError(
            f"{path}: could not be read as {fmt.value} ({type(exc).__name__}: {exc}); "
            "the file is corrupt or not what its content suggests; re-copy it from the aircraft"
        ) from exc
    if track.dropped_fixes:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(track.dropped_reasons.items()))
        logger.info("%s: kept %d fixes, dropped %d (%s)", path.name, len(track.positions), track.dropped_fixes, reasons)
    for warning in track.warnings:
        logger.warning("%s", warning)
    return track
