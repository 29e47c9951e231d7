"""SfM against the synthetic flight's ground truth (``pipeline.synth``, small preset: 16 images, 4 cm GSD).

The camera has an off-centre principal point (+1.5% / -1.8% of the image) and
OpenCV distortion, so these runs also check self-calibration. Tolerances are
the issue's: every image registers; reprojection <= 0.8 px; with GCPs, camera
centres within 1 GSD horizontally and 1.5 GSD vertically of the truth and
checkpoint RMSE within the same; without GCPs and with 1 m GPS noise, camera
centres within 1 GSD of the truth after a best-fit similarity.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import piexif
import pytest

from drone_io.reconstruction_io import read_reconstruction_json
from models.errors import GeoreferenceError
from models.reconstruction import Reconstruction
from models.similarity import fit_similarity
from pipeline.api import RunRequest, run_flight
from pipeline.workspace import Workspace

synth = pytest.importorskip("pipeline.synth")

pytestmark = pytest.mark.slow


def _render(out: Path, **options: Any) -> Path:
    synth.render_flight(out, synth.SynthOptions(preset="small", seed=7, **options))
    return out


def _run(flight: Path, out: Path) -> dict[str, Any]:
    run_flight(RunRequest(flight_dir=flight, out_dir=out, stop_after="sfm", workers=2))
    return dict(json.loads((out / "stats.json").read_text()))


def _truth(flight: Path) -> tuple[Reconstruction, float]:
    scene = json.loads((flight / "truth" / "scene.json").read_text())
    return read_reconstruction_json(flight / "truth" / "cameras.json"), float(scene["gsd_m"])


def _centre_errors(rec: Reconstruction, truth: Reconstruction) -> tuple[list[str], np.ndarray, np.ndarray]:
    names = sorted(set(rec.images) & set(truth.images))
    solved = np.array([rec.images[n].pose.center for n in names])
    true = np.array([truth.images[n].pose.center for n in names])
    return names, solved, true


@pytest.fixture(scope="module")
def gcp_run(tmp_path_factory: pytest.TempPathFactory, synthetic_small: Path) -> tuple[Path, Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("synth-gcp") / "out"
    return synthetic_small, out, _run(synthetic_small, out)


def test_synthetic_every_image_registers_subpixel(gcp_run: tuple[Path, Path, dict[str, Any]]) -> None:
    flight, _, stats = gcp_run
    truth, _ = _truth(flight)
    assert stats["sfm"]["images_registered"] == stats["sfm"]["images_total"] == len(truth.images)
    assert stats["sfm"]["reprojection_error_px"]["mean"] <= 0.8
    assert stats["sfm"]["georeferenced_by"] == "gps+gcp"


def test_synthetic_gcp_georegistration_accuracy(gcp_run: tuple[Path, Path, dict[str, Any]]) -> None:
    flight, out, stats = gcp_run
    truth, gsd = _truth(flight)
    _, solved, true = _centre_errors(Workspace(out).load_reconstruction(), truth)
    d = solved - true
    assert np.max(np.hypot(d[:, 0], d[:, 1])) <= 1.0 * gsd
    assert np.max(np.abs(d[:, 2])) <= 1.5 * gsd
    chk = stats["gcp"]["checkpoint_rmse_m"]
    assert chk["count"] >= 3
    assert chk["horizontal"] <= 1.0 * gsd and chk["z"] <= 1.5 * gsd
    assert stats["gcp"]["checkpoint_rmse_gsd"]["horizontal"] <= 1.0
    assert stats["gcp"]["control_rmse_m"]["count"] >= 3


def test_synthetic_self_calibration_finds_off_centre_principal_point(gcp_run: tuple[Path, Path, dict[str, Any]]) -> None:
    flight, out, _ = gcp_run
    truth, _ = _truth(flight)
    true_cam = next(iter(truth.cameras.values()))
    cam = next(iter(Workspace(out).load_reconstruction().cameras.values()))
    # The principal point sits 24 px right and 22 px up of the centre; it must be found to a fraction of a pixel.
    assert abs(true_cam.cx - (true_cam.width - 1) / 2) > 20
    assert abs(cam.cx - true_cam.cx) < 0.3 and abs(cam.cy - true_cam.cy) < 0.3
    assert cam.k1 == pytest.approx(true_cam.k1, abs=0.003) and cam.k2 == pytest.approx(true_cam.k2, abs=0.002)
    assert abs(cam.fx / true_cam.fx - 1) < 0.002


def _move_gps(image: Path, east_m: float) -> None:
    """Shift an image's EXIF GPS longitude by ``east_m`` metres (a bad fix, or a misregistration)."""
    exif = piexif.load(str(image))
    gps = exif["GPS"]
    lat = sum(float(n) / d / 60**i for i, (n, d) in enumerate(gps[piexif.GPSIFD.GPSLatitude]))
    (deg, d0), (mins, d1), (sec, d2) = gps[piexif.GPSIFD.GPSLongitude]
    lon = deg / d0 + mins / d1 / 60 + sec / d2 / 3600
    lon += east_m / (111320.0 * np.cos(np.radians(lat)))
    d = int(lon)
    m = int((lon - d) * 60)
    s = (lon - d - m / 60) * 3600
    gps[piexif.GPSIFD.GPSLongitude] = ((d, 1), (m, 1), (int(round(s * 1e6)), 1000000))
    piexif.insert(piexif.dump(exif), str(image))


def test_synthetic_gps_only_shape_and_misregistration(tmp_path: Path) -> None:
    flight = _render(tmp_path / "flight", gps_sigma_h_m=1.0, gps_sigma_v_m=1.0)
    (flight / "gcp_list.txt").unlink()
    moved = sorted((flight / "images").iterdir())[5]
    _move_gps(moved, 60.0)
    stats = _run(flight, tmp_path / "out")
    truth, gsd = _truth(flight)
    rec = Workspace(tmp_path / "out").load_reconstruction()

    # The image whose GPS was moved 60 m registers where its pixels put it, which its GPS rules out:
    # it is reported and taken out of the model.
    assert stats["sfm"]["misregistered"] == [moved.name]
    assert moved.name not in rec.images and len(rec.images) == len(truth.images) - 1
    reasons = {u["image"]: u["reason"] for u in stats["sfm"]["unregistered"]}
    assert reasons == {moved.name: "misregistered"}

    _, solved, true = _centre_errors(rec, truth)
    sim = fit_similarity(solved, true)
    assert np.max(np.linalg.norm(sim.apply(solved) - true, axis=1)) <= 1.0 * gsd
    assert stats["sfm"]["reprojection_error_px"]["mean"] <= 0.8
    assert stats["sfm"]["georeferenced_by"] == "gps"


def test_synthetic_gcp_only_flight_is_georeferenced(tmp_path: Path) -> None:
    """No GPS at all (an older camera, a kite): three or more control points georeference it."""
    flight = _render(tmp_path / "flight", no_gps=True)
    shutil.rmtree(flight / "logs")  # no log to geotag from either
    stats = _run(flight, tmp_path / "out")
    truth, gsd = _truth(flight)
    assert stats["sfm"]["georeferenced_by"] == "gcp"
    assert stats["sfm"]["images_registered"] == len(truth.images)
    chk = stats["gcp"]["checkpoint_rmse_m"]
    assert chk["horizontal"] <= 1.0 * gsd and chk["z"] <= 1.5 * gsd
    rec = Workspace(tmp_path / "out").load_reconstruction()
    _, solved, true = _centre_errors(rec, truth)
    assert np.max(np.linalg.norm(solved - true, axis=1)) <= 3.0 * gsd


def test_no_gps_and_too_few_gcps_stops_before_anything_is_written(tmp_path: Path) -> None:
    flight = _render(tmp_path / "flight", no_gps=True)
    shutil.rmtree(flight / "logs")
    lines = (flight / "gcp_list.txt").read_text().splitlines()
    keep = {"GCP01", "GCP04"}
    (flight / "gcp_list.txt").write_text("\n".join([lines[0]] + [ln for ln in lines[1:] if ln.split()[-1] in keep]) + "\n")
    out = tmp_path / "out"
    with pytest.raises(GeoreferenceError, match="three well-spread control points"):
        run_flight(RunRequest(flight_dir=flight, out_dir=out, stop_after="sfm", workers=2))
    ws = Workspace(out)
    assert not ws.reconstruction_exists() and not ws.sparse_cloud_path.exists()
    assert not ws.manifest_exists("features")
