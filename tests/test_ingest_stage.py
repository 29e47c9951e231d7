"""The ingest stage of ``aerobase run``: what it stores in the workspace, resume, GCPs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import pytest

from models.image import ImageRecord, PositionSource
from pipeline.cli import main
from pipeline.workspace import Workspace

GCPS = (
    "WGS84 UTM 15N\n"
    "576663.1 5188164.6 158.6 2000 1125 DJI_0018.JPG base1\n"
    "576663.1 5188164.6 158.6 2100 1300 DJI_0019.JPG base1\n"
    "576675.2 5188175.0 158.4 1500 900 DJI_0019.JPG CHK1\n"
    "576670.0 5188170.0 158.5 1000 700 DJI_0020.JPG g3\n"
)


@pytest.fixture
def flight(copy_dataset: Callable[..., Path], tmp_path: Path) -> Path:
    src = copy_dataset("brighton_beach", "images", limit=4)
    root = tmp_path / "flight"
    shutil.copytree(src, root / "images")
    (root / "gcp_list.txt").write_text(GCPS)
    return root


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["run", *args, "--stop-after", "ingest", "--workers", "1"])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_ingest_stores_records_cameras_gcps_georef(flight: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code, stdout, err = _run(capsys, str(flight), "-o", str(out), "--checkpoints", "g3", "--crs", "EPSG:32615")
    assert code == 0, err
    ws = Workspace(out)
    recs = ws.load_images()
    assert len(recs) == 4 and all(isinstance(r, ImageRecord) for r in recs)
    assert all(r.position_source is PositionSource.EXIF and r.gimbal is not None for r in recs)
    assert ws.load_skipped_images() == []
    cams = ws.load_cameras()
    assert list(cams) == ["dji fc300s 4000x2250 3.61mm"] and cams["dji fc300s 4000x2250 3.61mm"].fx == pytest.approx(2222.22, abs=0.01)
    assert ws.load_tracks() == []
    gcps = ws.load_gcps()
    assert gcps is not None and gcps.crs == "EPSG:32615"
    assert {p.name for p in gcps.checkpoints} == {"CHK1", "g3"} and [p.name for p in gcps.control] == ["base1"]
    georef = ws.load_georef()
    assert georef["crs"] == "EPSG:32615" and georef["vertical_reference"] == "orthometric"
    assert georef["ground_height_m"] == pytest.approx(158.5, abs=0.3) and georef["ground_height_source"] == "relative_altitude"
    assert georef["gsd_m"] == pytest.approx(0.018, abs=0.0005)
    stats = json.loads(ws.stats_path.read_text())
    for key in ("images_total", "images_used", "images_skipped", "cameras", "crs", "gsd_m", "ground_height_m",
                "vertical_reference", "area_m2", "overlap"):
        assert key in stats, key
    assert stats["images_used"] == 4 and stats["ingest"]["gcps"]["checkpoints"] == 2
    assert ws.cameras_geojson_path.exists()
    assert "GSD: 1.80 cm" in stdout

    # A second run finds the manifest up to date and skips the stage.
    code, stdout, err = _run(capsys, str(flight), "-o", str(out), "--checkpoints", "g3", "--crs", "EPSG:32615")
    assert code == 0 and "(up to date)" in stdout
    # A changed GCP file reruns it.
    (flight / "gcp_list.txt").write_text(GCPS.replace("158.5", "158.7"))
    code, stdout, err = _run(capsys, str(flight), "-o", str(out), "--checkpoints", "g3", "--crs", "EPSG:32615")
    assert code == 0 and "(up to date)" not in stdout


def test_gcp_far_from_the_flight_is_an_error(flight: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    swapped = "EPSG:32615\n5188164.6 576663.1 158.6 2000 1125 DJI_0018.JPG base1\n"
    (flight / "gcp_list.txt").write_text(swapped)
    code, _out, err = _run(capsys, str(flight), "-o", str(tmp_path / "out"))
    assert code == 2 and f"{flight / 'gcp_list.txt'}:2" in err and "km from the flight centre" in err


def test_unknown_checkpoint_name(flight: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = _run(capsys, str(flight), "-o", str(tmp_path / "out"), "--checkpoints", "NOPE")
    assert code == 2 and "--checkpoints names NOPE" in err and "gcp_list.txt" in err
