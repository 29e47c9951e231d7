"""Geotagging wired into ingest: a flight folder of GPS-less JPEGs plus logs/flight.tlog."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from drone_io.flight_dir import scan_flight
from drone_io.images import read_image_record
from models.errors import LogFormatError
from models.geo import Projector, parse_crs
from models.image import PositionSource
from pipeline.api import RunRequest, run_flight
from pipeline.config import Config, InputsConfig
from pipeline.ingest.log_geotag import geotag_from_logs
from tests import logkit

UTM49 = Projector.for_crs(parse_crs("EPSG:32649"))
OFFSET = 8 * 3600 + 2.37


@pytest.fixture(scope="module")
def flight_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, logkit.Flight, np.ndarray]:
    flight = logkit.lawnmower(lines=2, length_m=120.0)
    shot_t = logkit.shots(flight, every_s=2.5)
    root = logkit.write_flight_dir(tmp_path_factory.mktemp("flight"), flight, shot_t, OFFSET)
    return root, flight, shot_t


def _cfg(root: Path, **inputs: object) -> Config:
    return replace(Config(), inputs=replace(InputsConfig(), flight_dir=str(root), **inputs))  # type: ignore[arg-type]


def test_geotag_from_logs_on_real_jpegs(flight_dir: tuple[Path, logkit.Flight, np.ndarray]) -> None:
    root, flight, shot_t = flight_dir
    files = scan_flight(root)
    records = [read_image_record(p, n) for n, p in files.images]
    assert all(r.gps is None and r.capture_time is not None for r in records)
    geo = geotag_from_logs(files, _cfg(root), records)
    assert geo.clock_offset_s == pytest.approx(OFFSET, abs=0.05)
    assert geo.figures["method"] == "triggers"
    assert geo.figures["images_geotagged"] == len(shot_t) and geo.figures["images_outside_log"] == 0
    assert [t.source for t in geo.tracks] == ["flight.tlog"]
    la, lo, al = flight.at(shot_t)
    truth = UTM49.forward(lo, la, al)
    got = np.array([[r.gps.lon, r.gps.lat, r.gps.alt] for r in geo.records if r.gps])
    assert all(r.position_source is PositionSource.LOG for r in geo.records)
    assert np.linalg.norm(UTM49.forward(got[:, 0], got[:, 1], got[:, 2]) - truth, axis=1).max() < 0.1


def test_stray_file_in_logs_is_reported_but_explicit_log_must_read(flight_dir: tuple[Path, logkit.Flight, np.ndarray], tmp_path: Path) -> None:
    root, _flight, _shots = flight_dir
    files = scan_flight(root)
    records = [read_image_record(p, n) for n, p in files.images]
    stray = tmp_path / "readme.txt"
    stray.write_text("flight notes\n")
    files_with_stray = replace(files, logs=files.logs + (stray,))
    geo = geotag_from_logs(files_with_stray, _cfg(root), records)
    assert geo.figures["logs_unreadable"][0]["log"] == "readme.txt"
    assert geo.figures["images_geotagged"] == len(records)
    with pytest.raises(LogFormatError, match="readme.txt"):
        geotag_from_logs(files, _cfg(root, logs=(str(stray),)), records)


def test_no_logs_leaves_records_alone(flight_dir: tuple[Path, logkit.Flight, np.ndarray]) -> None:
    root, _flight, _shots = flight_dir
    files = replace(scan_flight(root), logs=())
    records = [read_image_record(p, n) for n, p in files.images]
    geo = geotag_from_logs(files, _cfg(root), records)
    assert geo.records == tuple(records) and geo.tracks == () and geo.figures == {}


@pytest.mark.slow
def test_ingest_stage_geotags_and_saves_tracks(flight_dir: tuple[Path, logkit.Flight, np.ndarray], tmp_path: Path) -> None:
    root, _flight, shot_t = flight_dir
    out = tmp_path / "out"
    summary = run_flight(RunRequest(flight_dir=root, out_dir=out, workers=1, stop_after="ingest"))
    ws = summary.workspace
    records = ws.load_images()
    assert sum(r.position_source is PositionSource.LOG for r in records) == len(shot_t)
    tracks = ws.load_tracks()
    assert len(tracks) == 1 and tracks[0].format == "mavlink_tlog" and tracks[0].trigger_count == len(shot_t)
    stats = json.loads((out / "stats.json").read_text()) if (out / "stats.json").exists() else summary.stats
    text = json.dumps(stats)
    assert '"geotag"' in text and '"method": "triggers"' in text
