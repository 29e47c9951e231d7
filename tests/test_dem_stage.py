"""The dem stage on a synthetic classified-terrain cloud (:mod:`tests.demscene`): the same DSM, DTM and
classes whatever the tiling (no seams), raised terrain kept as ground, and the coverage figure."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from pipeline.cluster import dask_client
from pipeline.config import RunConfig, load_config
from models.raster import Window
from pipeline.dem.ground import BUILDING, GROUND, LowSurface, low_surface_cells, smrf_cells, surface_from_cells
from pipeline.stages import dem
from tests.demscene import BENCH, HOLE, dem_scene, load_classes, scene_workspace


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        a = ds.read(1).astype(np.float32)
        a[a == ds.nodata] = np.nan
        return a


def _run(out: Path, fusion_tile_m: float, raster_tile: int) -> tuple[Any, dict[str, Any]]:
    scene = dem_scene()
    ws = scene_workspace(out, scene, fusion_tile_m)
    cfg = load_config("default")
    cfg = dataclasses.replace(cfg, dem=dataclasses.replace(cfg.dem, tile_size=raster_tile))
    with dask_client(RunConfig(workers=2)) as client:
        report = dem.run(ws, cfg, client)
    return ws, report.figures


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, dict[str, Any]]]:
    """One fused tile and one raster tile, against 30 m fused tiles and 64-cell raster tiles (0.5 m DEM cells)."""
    base = tmp_path_factory.mktemp("demstage")
    return {"one": _run(base / "one", 1000.0, 4096), "many": _run(base / "many", 30.0, 64)}


def test_dem_has_no_tile_seams(runs: dict[str, tuple[Any, dict[str, Any]]]) -> None:
    (ws1, fig1), (ws2, fig2) = runs["one"], runs["many"]
    assert len(ws2.load_fusion_index().tiles) >= 30
    dsm1, dsm2 = _read(ws1.dsm_path), _read(ws2.dsm_path)
    dtm1, dtm2 = _read(ws1.dtm_path), _read(ws2.dtm_path)
    assert np.array_equal(np.isnan(dsm1), np.isnan(dsm2))
    assert np.nanmax(np.abs(dsm1 - dsm2)) < 1e-4
    assert np.array_equal(np.isnan(dtm1), np.isnan(dtm2))
    # One ground surface and one coarse DTM of the whole flight: 30 m tiles change nothing, at
    # tile borders or elsewhere (with per-tile classification and DTM this was metres).
    assert np.nanmax(np.abs(dtm1 - dtm2)) < 1e-3
    _, cls1 = load_classes(ws1)
    _, cls2 = load_classes(ws2)
    assert np.array_equal(cls1, cls2)
    assert fig1["ground"] == fig2["ground"]
    assert fig1["dem"]["coverage_fraction"] == pytest.approx(fig2["dem"]["coverage_fraction"], abs=1e-3)


def test_dem_ground_surface_equals_eager_kernels(runs: dict[str, tuple[Any, dict[str, Any]]]) -> None:
    """The surface the tiled tasks built equals the kernels run once on all points (same grid)."""
    ws, _ = runs["many"]
    saved = ws.load_dem_surface(dem.GROUND_SURFACE)
    opts = dem.ground_params(load_config("default")).smrf
    grid = saved.grid
    z, spread = low_surface_cells(grid, Window(0, 0, grid.width, grid.height), dem_scene().xyz, opts.cell_percentile)
    low = LowSurface(grid, z, spread)
    eager = surface_from_cells(low, smrf_cells(low, opts), opts)
    assert np.abs(eager.z - saved.z).max() < 1e-5


def test_dem_keeps_raised_terrain_as_ground(runs: dict[str, tuple[Any, dict[str, Any]]]) -> None:
    ws, _ = runs["many"]
    scene = dem_scene()
    xyz, cls = load_classes(ws)
    order = np.lexsort((scene.xyz[:, 2], scene.xyz[:, 1], scene.xyz[:, 0]))
    assert np.array_equal(xyz, scene.xyz[order])
    kind, arm, bench = scene.kind[order], scene.arm[order], scene.bench[order]
    ground = cls == GROUND
    # The 34 m wide arm of the bench is narrower than twice SMRF's window: ground grows back onto it.
    assert ground[arm & (kind == "ground")].mean() > 0.97
    assert ground[bench & (kind == "ground")].mean() > 0.97
    assert ground[kind == "ground"].mean() > 0.97
    # ... but not onto the car and the tree standing on it, nor onto the buildings.
    assert (~ground[kind == "car"]).mean() > 0.95
    assert (~ground[kind == "tree"]).mean() > 0.9
    assert (~ground[kind == "building"]).mean() > 0.99
    assert (cls[kind == "building"] == BUILDING).mean() > 0.95

    # The DTM follows the bench (a morphological DTM would cut the arm down to the plain).
    dtm = _read(ws.dtm_path)
    with rasterio.open(ws.dtm_path) as ds:
        t = ds.transform
    rows, cols = np.nonzero(np.isfinite(dtm))
    pick = np.random.default_rng(0).choice(len(rows), 20000, replace=False)
    x = t.c + (cols[pick] + 0.5) * t.a
    y = t.f + (rows[pick] + 0.5) * t.e
    err = dtm[rows[pick], cols[pick]] - scene.terrain_at(x, y)
    on_arm = (x - 500000.0 > 30.0) & (x - 500000.0 < 90.0) & (y - 4000000.0 > 63.0) & (y - 4000000.0 < 73.0)
    assert np.median(np.abs(err[on_arm])) < 0.1
    assert np.median(np.abs(err)) < 0.1
    assert np.percentile(np.abs(err), 95) < 0.5 * BENCH


def test_dem_coverage_of_flown_area(runs: dict[str, tuple[Any, dict[str, Any]]]) -> None:
    _, fig = runs["one"]
    d = fig["dem"]
    # Every camera sees the whole 180 x 140 m scene area twice or more ...
    assert d["flown_area_m2"] == pytest.approx(180.0 * 140.0, rel=0.03)
    # ... and the DSM covers all of it but the 20 x 20 m hole.
    hole = (HOLE[1] - HOLE[0]) * (HOLE[3] - HOLE[2])
    assert d["coverage_fraction"] == pytest.approx(1.0 - hole / d["flown_area_m2"], abs=0.01)
    assert d["dsm_area_m2"] == pytest.approx(d["flown_area_m2"] - hole, rel=0.02)
