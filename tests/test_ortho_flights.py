"""Slow ortho checks on whole flights.

- ``aerobase synth --preset small`` with its true cameras and true DSM against its true
  orthophoto: geolocation RMSE by local NCC (<= 1 GSD, >= 50 points), no hole inside the flown
  area, buildings in place (no wall colour leaning out of the true footprints).
- The real flights end to end (``aerobase run``), once the sfm and dem stages are in the
  pipeline: COG validity, CRS and bounds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
from rasterio.warp import Resampling, reproject

from drone_io.cog import validate_cog
from drone_io.reconstruction_io import read_reconstruction_json
from pipeline.cluster import dask_client
from pipeline.config import Config, RunConfig, with_inputs
from pipeline.ortho.quality import holes_inside, local_offsets
from pipeline.runner import run_stages, stage_names
from pipeline.stages import STAGES, ingest, ortho
from pipeline.workspace import Workspace

pytestmark = pytest.mark.slow


def _on_ortho_grid(src: Path, like: rasterio.io.DatasetReader, bands: list[int], resampling: Resampling) -> np.ndarray:
    with rasterio.open(src) as t:
        out = np.zeros((len(bands), like.height, like.width), np.float32)
        reproject(
            t.read(bands).astype(np.float32), out, src_transform=t.transform, src_crs=t.crs,
            dst_transform=like.transform, dst_crs=like.crs, resampling=resampling,
        )
    return out


def test_synthetic_flight_against_truth(tmp_path: Path, synthetic_small: Path) -> None:
    flight = synthetic_small
    ws = Workspace(tmp_path / "out")
    ws.ensure()
    cfg = with_inputs(Config(run=RunConfig(workers=2)), flight_dir=str(flight))
    with dask_client(cfg.run) as client:
        run_stages(ws, cfg, client, [ingest.STAGE])
        ws.save_reconstruction(read_reconstruction_json(flight / "truth" / "cameras.json"))
        shutil.copy(flight / "truth" / "dsm.tif", ws.dsm_path)
        run_stages(ws, cfg, client, [ortho.STAGE])
    with rasterio.open(ws.orthophoto_path) as ds:
        rgb = np.moveaxis(ds.read([1, 2, 3]), 0, -1).astype(np.float32)
        mask = ds.dataset_mask() > 0
        truth = np.moveaxis(_on_ortho_grid(flight / "truth" / "orthophoto.tif", ds, [1, 2, 3], Resampling.average), 0, -1)
        buildings = _on_ortho_grid(flight / "truth" / "buildings.tif", ds, [1], Resampling.nearest)[0] > 0
    stats = json.loads(ws.stats_path.read_text())["ortho"]
    # Geolocation: local NCC against the true orthophoto, >= 50 points, RMSE <= 1 GSD.
    off = local_offsets(rgb, truth, mask, n_side=12, patch=41, search=8)
    assert len(off) >= 50
    assert off.rmse_px <= 1.0
    # No hole inside the flown area (the covered area with its ragged rim closed).
    seen = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((15, 15), np.uint8)) > 0
    inner = cv2.erode(seen.astype(np.uint8), np.ones((41, 41), np.uint8)) > 0
    assert holes_inside(mask, inner) == 0
    # Buildings stand where the truth has them: the orthophoto matches the truth over the
    # footprints and a 1 m band around them (leaning walls would spoil both).
    band = cv2.dilate(buildings.astype(np.uint8), np.ones((41, 41), np.uint8)) > 0
    near = band & mask & inner
    diff = np.abs(rgb - truth).mean(axis=2)
    assert float(np.median(diff[near])) < 8.0
    assert float(np.mean(diff[near] > 40.0)) < 0.03
    assert stats["coverage_fraction"] > 0.85


@pytest.mark.parametrize("name", ["brighton_beach", "seneca_subset"])
def test_real_flight_orthophoto(name: str, copy_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    if not {"sfm", "dem"} <= set(stage_names(STAGES)):
        pytest.skip("needs the sfm and dem stages in the pipeline")
    from pipeline.api import RunRequest, run_flight

    images = copy_dataset(name, "images")
    summary = run_flight(RunRequest(images.parent, tmp_path / "out", preset="fast"))
    ws = summary.workspace
    ok, errors, _ = validate_cog(ws.orthophoto_path)
    assert ok, errors
    rec = ws.load_reconstruction()
    centres = np.array([img.pose.center for img in rec.images.values()])
    with rasterio.open(ws.orthophoto_path) as ds:
        assert ds.crs is not None and ds.crs.to_string() == rasterio.crs.CRS.from_user_input(rec.crs).to_string()
        left, bottom, right, top = ds.bounds
    # The mosaic surrounds the camera positions and is not absurdly larger than the flight.
    assert left < centres[:, 0].min() and right > centres[:, 0].max()
    assert bottom < centres[:, 1].min() and top > centres[:, 1].max()
    span = max(np.ptp(centres[:, 0]), np.ptp(centres[:, 1])) + 1.0
    assert max(right - left, top - bottom) < 10 * span + 500
    assert ws.orthophoto_preview_path.exists()
