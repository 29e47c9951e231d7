"""Ground classification and DTM on a real flight: Brighton Beach (fast preset, the whole pipeline to ``dem``).

The park lies on a bench a few metres above the forest floor and the lake shore; the strip of
lawns, grass islands and roads between the forest and the shore trees is narrower than twice
SMRF's 18 m window, and SMRF alone classed it non-ground (the grass islands 31 % ground, the
road junction 3 %). The boxes below (EPSG:32615, the flight's UTM zone) were picked on the
orthophoto (``docs/images/ortho_brighton_beach.jpg``) laid over the DSM hillshade of a fast-preset
run: grass only, at least 1 m from tree crowns, paths and parked cars (GPS-only georeferencing
moves the scene by about a metre between runs), with the young trees of the islands inside
them (a few per cent of their points). The beach boxes are gravel and pebbles above the water line.

The DTM must not depend on how the cloud is tiled: the same flight re-run through the dem stage
as one fused tile gives the same DTM and classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from pipeline.api import RunRequest, build_config
from pipeline.cluster import dask_client
from pipeline.config import RunConfig
from pipeline.dem.ground import GROUND
from pipeline.dense.fusion import FusedPoints
from pipeline.dense.records import FusionIndex, TileSummary
from pipeline.dense.tiles import TileGrid
from pipeline.runner import RunOptions, run_pipeline
from pipeline.stages import STAGES, dem
from pipeline.workspace import Workspace
from tests.demscene import load_classes

pytestmark = pytest.mark.slow

Box = tuple[float, float, float, float]  # x0, x1, y0, y1

LAWN: dict[str, Box] = {
    "upper grass island": (576709.0, 576722.0, 5188178.0, 5188187.0),
    "middle grass island": (576723.0, 576731.0, 5188164.0, 5188172.0),
    "lawn by the north car park": (576733.0, 576741.0, 5188195.0, 5188203.0),
    "big lawn": (576686.0, 576698.0, 5188145.0, 5188160.0),
}
ROAD: Box = (576724.0, 576733.0, 5188176.0, 5188185.0)  # the junction between the islands
BEACH: dict[str, Box] = {
    "gravel beach": (576701.0, 576713.0, 5188124.0, 5188131.0),
    "pebble beach": (576756.0, 576764.0, 5188143.0, 5188153.0),
}


def _in(xyz: np.ndarray, box: Box) -> np.ndarray:
    return (xyz[:, 0] >= box[0]) & (xyz[:, 0] < box[1]) & (xyz[:, 1] >= box[2]) & (xyz[:, 1] < box[3])


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        a = ds.read(1).astype(np.float32)
        a[a == ds.nodata] = np.nan
        return a


def _one_tile_copy(ws: Workspace, out: Path) -> Workspace:
    """The workspace's reconstruction, dense index and fused points, as one fused tile."""
    one = Workspace(out)
    one.ensure()
    one.save_reconstruction(ws.load_reconstruction())
    one.save_dense_index(ws.load_dense_index())
    fusion = ws.load_fusion_index()
    parts = [ws.load_tile_points(t.key) for t in fusion.tiles]
    pts = FusedPoints(np.vstack([p.xyz for p in parts]), np.vstack([p.rgb for p in parts]), np.concatenate([p.count for p in parts]))
    size = 100.0 * fusion.tile_size
    key = TileGrid(size).key_of(float(pts.xyz[0, 0]), float(pts.xyz[0, 1]))
    assert TileGrid(size).contains(key, pts.xyz).all()
    one.save_tile_points(key, pts)
    lo, hi = pts.xyz.min(axis=0), pts.xyz.max(axis=0)
    summary = TileSummary(key, len(pts), (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])), float(lo[2]), float(hi[2]))
    one.save_fusion_index(FusionIndex(fusion.crs, size, fusion.voxel, (summary,)))
    return one


def test_brighton_lawn_is_ground_and_dtm_has_no_seam(copy_dataset: Any, tmp_path: Path) -> None:
    flight = copy_dataset("brighton_beach", "images").parent
    cfg = build_config(RunRequest(flight_dir=flight, out_dir=tmp_path / "out", preset="fast"))
    summary = run_pipeline(Workspace(tmp_path / "out"), cfg, STAGES, RunOptions(stop_after="dem"))
    ws = summary.workspace
    stats = summary.stats
    assert ws.load_reconstruction().crs == "EPSG:32615"
    print(stats["dem"], stats["ground"])

    xyz, cls = load_classes(ws)
    ground = cls == GROUND
    shares = {}
    for name, box in {**LAWN, "road junction": ROAD, **BEACH}.items():
        inside = _in(xyz, box)
        assert inside.sum() > 5000, name  # the box lies inside the flight's cloud
        shares[name] = float(ground[inside].mean())
    print({k: round(v, 3) for k, v in shares.items()})
    for name in LAWN:
        assert shares[name] > 0.85, name  # young trees on the islands are the rest
    lawn = np.any([_in(xyz, b) for b in LAWN.values()], axis=0)
    assert ground[lawn].mean() > 0.9
    assert shares["road junction"] > 0.9
    for name in BEACH:
        assert shares[name] > 0.75, name  # rocks and driftwood are the rest
    # A third of the flight is conifer forest (canopy points, few ground points seen through gaps).
    assert 0.7 < stats["ground"]["fraction"] < 0.95
    assert 0.7 < stats["dem"]["coverage_fraction"] <= 1.0

    # No seam: the dem stage on the same points as one fused tile gives the same DTM and classes.
    assert len(ws.load_fusion_index().tiles) > 1
    one = _one_tile_copy(ws, tmp_path / "one")
    with dask_client(RunConfig(workers=2)) as client:
        figures = dem.run(one, cfg, client).figures
    dtm, dtm_one = _read(ws.dtm_path), _read(one.dtm_path)
    assert np.array_equal(np.isnan(dtm), np.isnan(dtm_one))
    diff = np.abs(dtm - dtm_one)
    print("DTM, 1 vs", len(ws.load_fusion_index().tiles), "fused tiles: max difference", float(np.nanmax(diff)))
    assert np.nanmax(diff) < 1e-3
    xyz_one, cls_one = load_classes(one)
    assert np.array_equal(xyz, xyz_one) and np.array_equal(cls, cls_one)
    assert figures["ground"] == stats["ground"]
