"""Helpers for the dense/DEM ground-truth tests and benchmark: a workspace with the TRUE cameras
of a synthetic flight, and the Done-when figures measured against the true DSM and DTM.

Until SfM is on main, the dense stages run on the synthetic flight's true reconstruction; the
sparse points a real SfM would supply are sampled from the true DSM where two cameras see it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import laspy
import numpy as np
import rasterio
import rasterio.enums
from numpy.typing import NDArray
from scipy import ndimage

from drone_io.reconstruction_io import read_reconstruction_json
from models.raster import GridSpec
from models.reconstruction import Reconstruction, SparsePoints
from pipeline.config import Config, with_inputs
from pipeline.runner import run_stages
from pipeline.stages import ingest
from pipeline.workspace import Workspace

FloatArray = NDArray[np.float64]


def _read_raster(path: Path) -> tuple[NDArray[np.float32], GridSpec, float | None]:
    with rasterio.open(path) as ds:
        t = ds.transform
        grid = GridSpec(str(ds.crs), t.c, t.f, t.a, ds.width, ds.height)
        return ds.read(1).astype(np.float32), grid, ds.nodata


def sample_raster(arr: NDArray[np.float32], grid: GridSpec, x: FloatArray, y: FloatArray, order: int = 1) -> FloatArray:
    col, row = grid.world_to_cell(x, y)
    return np.asarray(ndimage.map_coordinates(arr, [row, col], order=order, mode="nearest"), dtype=np.float64)


def true_reconstruction(flight: Path, n_points: int = 4000, seed: int = 0) -> Reconstruction:
    """The true cameras plus sparse points sampled from the true DSM (seen by two or more cameras)."""
    rec = read_reconstruction_json(flight / "truth" / "cameras.json")
    dsm, grid, _ = _read_raster(flight / "truth" / "dsm.tif")
    rng = np.random.default_rng(seed)
    left, bottom, right, top = grid.bounds
    x = rng.uniform(left, right, n_points * 4)
    y = rng.uniform(bottom, top, n_points * 4)
    z = sample_raster(dsm, grid, x, y, order=0)
    xyz = np.column_stack([x, y, z])
    seen = np.zeros(len(xyz), np.int32)
    for name in rec.images:
        pc = rec.images[name].pose.to_camera(xyz)
        uv = rec.camera_of(name).project(pc)
        seen += (pc[:, 2] > 0) & rec.camera_of(name).contains(uv)
    xyz = xyz[seen >= 2][:n_points]
    n = len(xyz)
    pts = SparsePoints(xyz, np.full((n, 3), 128, np.uint8), np.full(n, 0.5), np.full(n, 3, np.int32))
    return Reconstruction(rec.crs, rec.cameras, rec.images, pts)


def prepare_true_workspace(flight: Path, out: Path, cfg: Config, client: object) -> Workspace:
    """Run ingest on the flight and save its true reconstruction into the workspace."""
    ws = Workspace(out)
    ws.ensure(flight)
    cfg = with_inputs(cfg, flight_dir=str(flight), crs=json.loads((flight / "truth" / "scene.json").read_text())["crs"])
    run_stages(ws, cfg, client, [ingest.STAGE])  # type: ignore[arg-type]
    ws.save_reconstruction(true_reconstruction(flight))
    return ws


@dataclass(frozen=True)
class DenseTruthFigures:
    """The Done-when figures of issue 6 against a synthetic flight's truth (errors in GSD units)."""

    gsd_m: float
    seen2_cells: int  # DEM cells seen by two or more cameras (occlusion by the true DSM included)
    coverage: float  # fraction of those with a DSM value
    dsm_median_gsd: float  # median |DSM - truth| over covered seen-by-2 cells
    dsm_p90_gsd: float  # 90th percentile, building walls excluded
    dsm_bias_gsd: float
    dtm_median_gsd: float  # on open ground (no building within 2 m, seen by 2+)
    dtm_p90_gsd: float
    dtm_rmse_gsd: float
    building_nonground: float  # footprint cells whose points are mostly non-ground
    building_class6: float  # footprint cells whose points are mostly class 6
    ground_nonbuilding_ground: float  # open-ground cells whose points are mostly ground

    def lines(self) -> list[str]:
        return [f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}" for k, v in self.__dict__.items()]


def _seen_by_two(rec: Reconstruction, xyz: FloatArray, dsm: NDArray[np.float32], grid: GridSpec, step: float) -> NDArray[np.bool_]:
    """Points seen by >= 2 cameras, each view checked for occlusion by marching the true DSM."""
    z_top = float(np.nanmax(dsm))
    n = np.zeros(len(xyz), np.int32)
    for name in sorted(rec.images):
        pose = rec.images[name].pose
        cam = rec.camera_of(name)
        pc = pose.to_camera(xyz)
        ok = (pc[:, 2] > 0) & cam.contains(cam.project(pc))
        idx = np.nonzero(ok)[0]
        c = pose.center
        d = c - xyz[idx]
        # March from just above the point toward the camera until the ray is above every surface.
        t_max = np.clip((z_top - xyz[idx, 2]) / np.maximum(d[:, 2], 1e-6), 0.0, 1.0)
        horiz = np.hypot(d[:, 0], d[:, 1]) * t_max
        steps = int(np.ceil(horiz.max() / step)) if len(idx) else 0
        blocked = np.zeros(len(idx), bool)
        for k in range(1, steps + 1):
            t = t_max * k / steps
            p = xyz[idx] + d * t[:, None]
            h = sample_raster(dsm, grid, p[:, 0], p[:, 1], order=0)
            blocked |= h > p[:, 2] + 0.05
        n[idx[~blocked]] += 1
    return n >= 2


def _cell_majority(grid: GridSpec, xyz: FloatArray, cls: NDArray[np.uint8], codes: tuple[int, ...]) -> tuple[NDArray[np.float32], NDArray[np.int32]]:
    """Per DEM cell: fraction of points whose class is in ``codes``, and the point count."""
    col = np.floor((xyz[:, 0] - grid.x_min) / grid.resolution).astype(np.int64)
    row = np.floor((grid.y_max - xyz[:, 1]) / grid.resolution).astype(np.int64)
    ok = (col >= 0) & (col < grid.width) & (row >= 0) & (row < grid.height)
    flat = row[ok] * grid.width + col[ok]
    hit = np.isin(cls[ok], codes).astype(np.float64)
    n = np.bincount(flat, minlength=grid.width * grid.height)
    s = np.bincount(flat, weights=hit, minlength=grid.width * grid.height)
    with np.errstate(invalid="ignore"):
        frac = (s / n).astype(np.float32)
    return frac.reshape(grid.shape), n.reshape(grid.shape).astype(np.int32)


def dense_truth_figures(flight: Path, ws: Workspace, stride: int = 2) -> DenseTruthFigures:
    """Measure the DSM, DTM and classification of a finished run against the flight's truth."""
    scene = json.loads((flight / "truth" / "scene.json").read_text())
    gsd = float(scene["gsd_m"])
    rec = read_reconstruction_json(flight / "truth" / "cameras.json")
    t_dsm, t_grid, _ = _read_raster(flight / "truth" / "dsm.tif")
    t_dtm, _, _ = _read_raster(flight / "truth" / "dtm.tif")
    t_bld, _, _ = _read_raster(flight / "truth" / "buildings.tif")
    dsm, grid, nodata = _read_raster(ws.dsm_path)
    dtm, _, _ = _read_raster(ws.dtm_path)
    dsm[dsm == nodata] = np.nan
    dtm[dtm == nodata] = np.nan
    xs, ys = grid.cell_centers(grid.tiles(max(grid.width, grid.height)).__next__())
    xs, ys = xs[::stride], ys[::stride]
    X, Y = np.meshgrid(xs, ys)
    x, y = X.ravel(), Y.ravel()
    inside = (x > t_grid.bounds[0]) & (x < t_grid.bounds[2]) & (y > t_grid.bounds[1]) & (y < t_grid.bounds[3])
    true_top = sample_raster(t_dsm, t_grid, x, y)
    true_ground = sample_raster(t_dtm, t_grid, x, y)
    # Walls: within 3 DEM cells of a step of more than 0.5 m in the true DSM.
    step = ndimage.maximum_filter(t_dsm, 3) - ndimage.minimum_filter(t_dsm, 3) > 0.5
    r_wall = int(np.ceil(3 * grid.resolution / t_grid.resolution))
    walls = ndimage.binary_dilation(step, iterations=r_wall)
    wall = sample_raster(walls.astype(np.float32), t_grid, x, y, order=0) > 0.5
    near_bld = ndimage.binary_dilation(t_bld > 0, iterations=int(round(2.0 / t_grid.resolution)))
    open_ground = (sample_raster(near_bld.astype(np.float32), t_grid, x, y, order=0) < 0.5) & (np.abs(true_top - true_ground) < 0.05)
    in_bld = sample_raster(t_bld, t_grid, x, y, order=0) > 0.5

    seen = np.zeros(len(x), bool)
    idx = np.nonzero(inside)[0]
    seen[idx] = _seen_by_two(rec, np.column_stack([x[idx], y[idx], true_top[idx]]), t_dsm, t_grid, step=2 * grid.resolution)
    mine = dsm[::stride, ::stride].ravel()
    mine_dtm = dtm[::stride, ::stride].ravel()
    has = np.isfinite(mine)
    err = mine - true_top
    cov = seen & has
    e_all = np.abs(err[cov])
    e_nowall = np.abs(err[cov & ~wall])
    g = seen & open_ground & np.isfinite(mine_dtm)
    e_dtm = mine_dtm[g] - true_ground[g]

    # Classification per footprint cell, from the exported point cloud.
    las = laspy.read(ws.pointcloud_path)
    pxyz = np.column_stack([np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)])
    pcls = np.asarray(las.classification).astype(np.uint8)
    nonground, n = _cell_majority(grid, pxyz, pcls, (1, 6))
    class6, _ = _cell_majority(grid, pxyz, pcls, (6,))
    sub_ng = nonground[::stride, ::stride].ravel()
    sub_6 = class6[::stride, ::stride].ravel()
    sub_n = n[::stride, ::stride].ravel()
    fp = in_bld & ~wall & (sub_n > 0)
    og = open_ground & seen & (sub_n > 0)
    return DenseTruthFigures(
        gsd_m=gsd,
        seen2_cells=int(seen.sum()),
        coverage=float(cov.sum() / max(seen.sum(), 1)),
        dsm_median_gsd=float(np.median(e_all) / gsd),
        dsm_p90_gsd=float(np.percentile(e_nowall, 90) / gsd),
        dsm_bias_gsd=float(np.median(err[cov & ~wall]) / gsd),
        dtm_median_gsd=float(np.median(np.abs(e_dtm)) / gsd),
        dtm_p90_gsd=float(np.percentile(np.abs(e_dtm), 90) / gsd),
        dtm_rmse_gsd=float(np.sqrt(np.mean(e_dtm**2)) / gsd),
        building_nonground=float(np.mean(sub_ng[fp] > 0.5)),
        building_class6=float(np.mean(sub_6[fp] > 0.5)),
        ground_nonbuilding_ground=float(np.mean(sub_ng[og] <= 0.5)),
    )


@dataclass(frozen=True)
class HoleFigures:
    """Nodata inside the flown area of a DSM.

    The flown area is the data region with its enclosed gaps filled, shrunk by ``edge_m``: the
    ragged rim of a flight, seen by one or two images at grazing angles, is its edge, not its
    inside. Holes are the nodata cells within it.
    """

    valid_m2: float
    inner_m2: float
    holes: int
    hole_m2: float
    largest_m2: float


def enclosed_holes(dsm_path: Path, edge_m: float = 10.0) -> HoleFigures:
    with rasterio.open(dsm_path) as ds:
        f = max(1, int(np.ceil(max(ds.width, ds.height) / 3000)))  # coarse enough to stay fast
        data = ds.read(1, out_shape=(ds.height // f, ds.width // f), resampling=rasterio.enums.Resampling.nearest)
        nodata = data == ds.nodata
        res = abs(ds.transform.a) * f
    area = ndimage.binary_fill_holes(~nodata)
    inner = ndimage.distance_transform_edt(np.pad(area, 1))[1:-1, 1:-1] * res > edge_m
    holes = nodata & inner
    labels, n = ndimage.label(holes)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:].astype(np.float64) * res * res
    return HoleFigures(
        valid_m2=float((~nodata).sum() * res * res),
        inner_m2=float(inner.sum() * res * res),
        holes=int(n),
        hole_m2=float(sizes.sum()),
        largest_m2=float(sizes.max()) if n else 0.0,
    )
