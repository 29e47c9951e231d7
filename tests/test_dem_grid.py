from __future__ import annotations

import numpy as np
import pytest

from models.raster import GridSpec, Window
from pipeline.cluster import dask_client
from pipeline.config import RunConfig
from pipeline.dem.grid import cell_percentile, interpolate_fill, median_smooth, small_holes
from pipeline.dem.ground import GROUND, UNCLASSIFIED
from pipeline.dem.ground import GroundSurface
from pipeline.dem.surfaces import SurfaceOptions, dtm_surface, surfaces
from pipeline.progress import map_tasks


def test_cell_percentile_matches_numpy() -> None:
    grid = GridSpec.covering("EPSG:32633", 0.0, 0.0, 10.0, 10.0, 1.0)
    rng = np.random.default_rng(0)
    xyz = np.column_stack([rng.uniform(0, 10, 3000), rng.uniform(0, 10, 3000), rng.normal(0, 1, 3000)])
    out, n = cell_percentile(grid, Window(0, 0, 10, 10), xyz, 75.0)
    for r, c in [(0, 0), (3, 7), (9, 9)]:
        x0, y1 = c * 1.0, 10.0 - r
        sel = (xyz[:, 0] >= x0) & (xyz[:, 0] < x0 + 1) & (xyz[:, 1] <= y1) & (xyz[:, 1] > y1 - 1)
        assert n[r, c] == sel.sum()
        assert out[r, c] == pytest.approx(np.percentile(xyz[sel, 2], 75.0), abs=1e-5)


def test_small_holes_and_fill() -> None:
    yy, xx = np.mgrid[0:60, 0:60].astype(np.float32)
    arr = (0.1 * xx + 0.2 * yy).astype(np.float32)
    arr[10:14, 10:13] = np.nan  # small: 3-4 cells across
    arr[30:55, 25:50] = np.nan  # large: 25 cells across
    arr[0:12, 20:50] = np.nan  # a wide bay at the raster edge: outside the data, stays
    arr[20, 5:55] = np.nan  # a long crack, one cell wide
    arr[20:40, 57] = np.nan  # a crack that leads to the raster edge
    arr[20:40, 58:60] = np.nan
    mask = small_holes(arr, 6)
    assert mask[10:14, 10:13].all()
    assert mask[30:55, 25:50].mean() < 0.05  # a large gap stays (closing only rounds its corners)
    assert not mask[33:52, 28:47].any()
    assert not mask[0:6, 26:44].any()
    assert mask[20, 5:55].all()
    filled = interpolate_fill(arr, mask)
    truth = 0.1 * xx + 0.2 * yy
    assert np.allclose(filled[10:14, 10:13], truth[10:14, 10:13], atol=1e-4)
    assert np.isnan(filled[40, 40])


def test_median_smooth_keeps_nodata() -> None:
    arr = np.ones((20, 20), np.float32)
    arr[5, 5] = 50.0
    arr[10:12, :] = np.nan
    out = median_smooth(arr, 3)
    assert out[5, 5] == 1.0
    assert np.isnan(out[10:12]).all()


def _scene() -> tuple[GridSpec, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    n = 200000
    xy = rng.uniform(0, 80, size=(n, 2))
    z = 10 + 0.02 * xy[:, 0] + rng.normal(0, 0.03, n)
    box = (np.abs(xy[:, 0] - 40) < 8) & (np.abs(xy[:, 1] - 30) < 6)
    z[box] += 6.0
    keep = ~((np.abs(xy[:, 0] - 60) < 0.6) & (np.abs(xy[:, 1] - 60) < 0.6))  # a small hole
    keep &= ~((xy[:, 0] > 70) & (xy[:, 1] > 70))  # a large gap
    xyz = np.column_stack([xy + [600000.0, 5000000.0], z])[keep]
    cls = np.where(box[keep], UNCLASSIFIED, GROUND).astype(np.uint8)
    grid = GridSpec.covering("EPSG:32633", 600000.0, 5000000.0, 600080.0, 5000080.0, 0.4)
    return grid, xyz, cls


def _tile(args: tuple[GridSpec, Window, np.ndarray, np.ndarray, GroundSurface, SurfaceOptions]) -> tuple[Window, np.ndarray, np.ndarray]:
    grid, win, xyz, cls, dtm, opts = args
    t = surfaces(grid, win, xyz, cls, dtm, opts)
    return win, t.dsm, t.dtm


def test_surfaces_eager_equals_dask_tiles() -> None:
    grid, xyz, cls = _scene()
    opts = SurfaceOptions(max_hole_cells=8)
    dtm = dtm_surface(grid, xyz[cls == GROUND], opts)
    whole = surfaces(grid, Window(0, 0, grid.width, grid.height), xyz, cls, dtm, opts)
    # Holes: the small one is filled, the large gap stays nodata, the DTM runs under the box.
    r, c = int((5000080 - 5000060) / 0.4), int(60 / 0.4)
    assert np.isfinite(whole.dsm[r, c])
    assert np.isnan(whole.dsm[10, 190])
    rb, cb = int((80 - 30) / 0.4), int(40 / 0.4)
    assert whole.dsm[rb, cb] == pytest.approx(10 + 0.8 + 6.0, abs=0.1)
    assert whole.dtm[rb, cb] == pytest.approx(10 + 0.8, abs=0.15)
    with dask_client(RunConfig(workers=2)) as client:
        wins = list(grid.tiles(64))
        items = [(grid, w, xyz, cls, dtm, opts) for w in wins]
        tiles = map_tasks(client, _tile, items, label="dem-test")
    dsm = np.full(grid.shape, np.nan, np.float32)
    dtm_t = np.full(grid.shape, np.nan, np.float32)
    for win, a, b in tiles:
        dsm[win.slices] = a
        dtm_t[win.slices] = b
    assert np.array_equal(np.isnan(dsm), np.isnan(whole.dsm))
    assert np.nanmax(np.abs(dsm - whole.dsm)) < 1e-4
    assert np.array_equal(np.isnan(dtm_t), np.isnan(whole.dtm))
    assert np.nanmax(np.abs(dtm_t - whole.dtm)) < 1e-5  # one DTM of the whole cloud: tiles cannot disagree


def test_pushpull_fill_large_gap() -> None:
    from pipeline.dem.grid import pushpull_fill

    yy, xx = np.mgrid[0:300, 0:400].astype(np.float32)
    truth = (5.0 + 0.01 * xx + 0.02 * yy).astype(np.float32)
    arr = truth.copy()
    rng = np.random.default_rng(0)
    arr[rng.random(arr.shape) < 0.7] = np.nan  # patchy: 70% missing, like tree crowns
    arr[100:200, 150:300] = np.nan
    out = pushpull_fill(arr, np.ones(arr.shape, bool))
    assert np.isfinite(out).all()
    assert np.nanmax(np.abs(out - truth)) < 0.6
    assert np.median(np.abs(out - truth)) < 0.05
