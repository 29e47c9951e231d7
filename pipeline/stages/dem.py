"""DEM: ground classification per point tile, then DSM and DTM per raster tile, as Dask tasks.

1. classify: one task per fused tile loads the tile plus a margin from its
   neighbours (wide enough for SMRF's window), separates ground (class 2) from
   the rest (1), marks roof-like regions as buildings (6), and saves the classes
   of its own points.
2. grid: one task per raster tile of ``dem.tile_size`` cells at
   ``dem.resolution_gsd_factor`` x GSD grids the DSM and DTM from the classified
   points of the tile plus a margin, and also counts the cells that two or more
   cameras see (the flown area) for the coverage figure.
The client streams the finished tiles into ``dsm.tif`` and ``dtm.tif`` (COG,
float32, nodata, overviews, CRS) one tile at a time.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from dask.base import tokenize
from distributed import Client
from numpy.typing import NDArray

from drone_io.cog import TiledRasterWriter
from models.raster import GridSpec, Window
from pipeline.config import Config, GroundFilter
from pipeline.dem.ground import (
    BUILDING,
    GROUND,
    BuildingOptions,
    SmrfOptions,
    below_ground,
    building_points,
    classify,
    csf_ground,
    ground_surface_from,
    smrf_ground,
)
from pipeline.dem.surfaces import SurfaceOptions, surfaces
from pipeline.dense.records import FusionIndex, ViewGeometry
from pipeline.dense.tiles import TileGrid, TileKey, boxes_intersect
from pipeline.progress import map_tasks
from pipeline.stage import StageReport, StageSpec
from pipeline.workspace import Workspace, fingerprint

logger = logging.getLogger(__name__)

STAGE_NAME = "dem"
NODATA = -9999.0


@dataclass(frozen=True)
class GroundParams:
    method: GroundFilter
    smrf: SmrfOptions
    csf_cloth_resolution: float
    buildings: BuildingOptions

    @property
    def margin(self) -> float:
        """Context a tile needs for its classification to match a single pass (m)."""
        return 1.5 * self.smrf.window + 2.0 * self.smrf.cell


@dataclass(frozen=True)
class ClassifyTask:
    key: TileKey
    neighbours: tuple[TileKey, ...]  # fused tiles within the margin


@dataclass(frozen=True, eq=False)
class GridTask:
    window: Window
    tiles: tuple[TileKey, ...]  # fused tiles that overlap the window plus its margin
    views: tuple[ViewGeometry, ...]  # cameras whose footprint touches the window


@dataclass(frozen=True)
class GridResult:
    window: Window
    valid_cells: int
    seen_cells: int  # sampled cells seen by >= 2 cameras
    seen_valid_cells: int  # of those, cells with a DSM value


def _points_in_box(ws: Workspace, keys: tuple[TileKey, ...], box: tuple[float, float, float, float], with_classes: bool) -> tuple[NDArray[np.float64], NDArray[np.uint8]]:
    xyz_parts = []
    cls_parts = []
    for key in keys:
        pts = ws.load_tile_points(key)
        inside = (pts.xyz[:, 0] >= box[0]) & (pts.xyz[:, 0] < box[2]) & (pts.xyz[:, 1] >= box[1]) & (pts.xyz[:, 1] < box[3])
        xyz_parts.append(pts.xyz[inside])
        if with_classes:
            cls_parts.append(ws.load_tile_classes(key)[inside])
        del pts
    xyz = np.concatenate(xyz_parts) if xyz_parts else np.zeros((0, 3))
    cls = np.concatenate(cls_parts) if cls_parts else np.zeros(0, np.uint8)
    return xyz, cls


def classify_task(task: ClassifyTask, ws: Workspace, grid: TileGrid, params: GroundParams) -> tuple[int, int, int]:
    """Dask task: ASPRS classes of one fused tile's points; returns (points, ground, building)."""
    if ws.tile_classes_exist(task.key):
        cls = ws.load_tile_classes(task.key)
    else:
        own = ws.load_tile_points(task.key).xyz
        others, _ = _points_in_box(ws, task.neighbours, grid.bounds(task.key, params.margin), with_classes=False)
        xyz = np.concatenate([own, others])
        if len(xyz) < 10:
            cls = np.full(len(own), 1, np.uint8)
        else:
            if params.method is GroundFilter.CSF:
                ground = csf_ground(xyz, params.csf_cloth_resolution)
                surface = ground_surface_from(xyz, ground, params.smrf.cell)
            else:
                ground, surface = smrf_ground(xyz, params.smrf)
            buildings = building_points(xyz, ground, surface, params.buildings)
            low = below_ground(xyz, surface, params.smrf.threshold, params.smrf.scalar)
            cls = classify(xyz, ground, buildings, low)[: len(own)]
        ws.save_tile_classes(task.key, cls)
    return len(cls), int(np.count_nonzero(cls == GROUND)), int(np.count_nonzero(cls == BUILDING))


def seen_by_two(grid: GridSpec, window: Window, dsm: NDArray[np.float32], views: tuple[ViewGeometry, ...], ground_z: float, stride: int = 4) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Sampled cells (every ``stride``-th) that two or more cameras see, and whether each has a DSM value.

    A cell is placed at its DSM height, or at ``ground_z`` where the DSM has no value.
    """
    xs, ys = grid.cell_centers(window)
    xs, ys = xs[::stride], ys[::stride]
    sub = dsm[::stride, ::stride]
    xx, yy = np.meshgrid(xs, ys)
    z = np.where(np.isfinite(sub), sub, ground_z)
    pts = np.column_stack([xx.ravel(), yy.ravel(), z.ravel()])
    n = np.zeros(len(pts), np.int32)
    for v in views:
        pc = v.pose.to_camera(pts)
        uv = v.camera.project(pc)
        n += ((pc[:, 2] > 0) & v.camera.contains(uv)).astype(np.int32)
    return (n >= 2).reshape(sub.shape), np.isfinite(sub)


def grid_task(task: GridTask, ws: Workspace, grid: GridSpec, opts: SurfaceOptions, ground_z: float) -> GridResult:
    """Dask task: DSM and DTM of one raster tile, saved to the workspace."""
    xyz, cls = _points_in_box(ws, task.tiles, _expanded_bounds(grid, task.window, opts.margin_m(grid.resolution)), with_classes=True)
    tile = surfaces(grid, task.window, xyz, cls, opts)
    del xyz, cls
    ws.save_dem_tile(tile)
    seen, has = seen_by_two(grid, task.window, tile.dsm, task.views, ground_z)
    return GridResult(task.window, int(np.isfinite(tile.dsm).sum()), int(seen.sum()), int((seen & has).sum()))


def _window_bounds(grid: GridSpec, w: Window) -> tuple[float, float, float, float]:
    left = grid.x_min + w.col_off * grid.resolution
    top = grid.y_max - w.row_off * grid.resolution
    return (left, top - w.height * grid.resolution, left + w.width * grid.resolution, top)


def _expanded_bounds(grid: GridSpec, w: Window, margin_m: float) -> tuple[float, float, float, float]:
    left, bottom, right, top = _window_bounds(grid, w)
    return (left - margin_m, bottom - margin_m, right + margin_m, top + margin_m)


def ground_params(cfg: Config) -> GroundParams:
    d = cfg.dem
    return GroundParams(
        method=d.ground_filter,
        smrf=SmrfOptions(
            cell=d.smrf_cell_m,
            slope=d.smrf_slope,
            window=d.smrf_window_m,
            threshold=d.smrf_threshold,
            scalar=d.smrf_scalar,
            cell_percentile=d.smrf_cell_percentile,
        ),
        csf_cloth_resolution=d.csf_cloth_resolution,
        buildings=BuildingOptions(min_height=d.building_min_height_m, min_area=d.building_min_area_m2, max_roughness=d.building_max_roughness_m),
    )


def surface_options(cfg: Config, params: "GroundParams") -> SurfaceOptions:
    d = cfg.dem
    return SurfaceOptions(
        dsm_percentile=d.dsm_percentile,
        max_hole_cells=d.max_hole_cells,
        max_hole_m=d.max_hole_m,
        smooth=d.dsm_median,
        dtm_cell=d.dtm_cell_m,
        dtm_margin_m=params.margin,
    )


def dem_grid(fusion: FusionIndex, resolution: float) -> GridSpec:
    boxes = np.array([t.bounds for t in fusion.tiles])
    return GridSpec.covering(fusion.crs, float(boxes[:, 0].min()), float(boxes[:, 1].min()), float(boxes[:, 2].max()), float(boxes[:, 3].max()), resolution)


def run(ws: Workspace, cfg: Config, client: Client) -> StageReport:
    dense = ws.load_dense_index()
    fusion = ws.load_fusion_index()
    rec = ws.load_reconstruction()
    params = ground_params(cfg)
    tiles = TileGrid(fusion.tile_size)
    keys = [t.key for t in fusion.tiles]
    ws.reset_task_dir(STAGE_NAME, tokenize(cfg.values("dem"), fingerprint(ws.fusion_index_path)))

    # 1. Ground classification per fused tile.
    bounds = {t.key: t.bounds for t in fusion.tiles}
    ctasks = [
        ClassifyTask(k, tuple(o for o in keys if o != k and boxes_intersect(bounds[o], tiles.bounds(k, params.margin))))
        for k in keys
    ]
    counts = map_tasks(client, classify_task, ctasks, ws, tiles, params, label="dem-classify", item_names=[k.name for k in keys])
    n_points = sum(c[0] for c in counts)
    n_ground = sum(c[1] for c in counts)
    n_building = sum(c[2] for c in counts)

    # 2. DSM and DTM per raster tile.
    resolution = cfg.dem.resolution_gsd_factor * dense.gsd_m
    grid = dem_grid(fusion, resolution)
    opts = surface_options(cfg, params)
    margin_m = opts.margin_m(grid.resolution)
    foot = {s.image: s.bounds for s in dense.images if s.points > 0}
    ground_z = float(np.median([t.z_min for t in fusion.tiles]))
    gtasks = []
    for window in grid.tiles(cfg.dem.tile_size):
        box = _expanded_bounds(grid, window, margin_m)
        inner = _window_bounds(grid, window)
        gtasks.append(
            GridTask(
                window,
                tuple(k for k in keys if boxes_intersect(bounds[k], box)),
                tuple(
                    ViewGeometry(n, "", rec.camera_of(n), rec.images[n].pose)
                    for n, b in sorted(foot.items())
                    if boxes_intersect(b, inner)
                ),
            )
        )
    names = [f"r{t.window.row_off}c{t.window.col_off}" for t in gtasks]
    results = map_tasks(client, grid_task, gtasks, ws, grid, opts, ground_z, label="dem-grid", item_names=names)
    what = f"{resolution:.3f} m cells, {fusion.crs}, heights as in the reconstruction"
    with TiledRasterWriter(ws.dsm_path, grid, "float", nodata=NODATA, description=f"Aerobase DSM, {what}") as dsm_w, TiledRasterWriter(
        ws.dtm_path, grid, "float", nodata=NODATA, description=f"Aerobase DTM, {what}"
    ) as dtm_w:
        for r in results:
            tile = ws.load_dem_tile(r.window)
            dsm_w.write(r.window, np.nan_to_num(tile.dsm, nan=NODATA), np.isfinite(tile.dsm))
            dtm_w.write(r.window, np.nan_to_num(tile.dtm, nan=NODATA), np.isfinite(tile.dtm))
            del tile
    for r in results:
        ws.dem_tile_path(r.window).unlink(missing_ok=True)
    valid = sum(r.valid_cells for r in results)
    seen = sum(r.seen_cells for r in results)
    seen_valid = sum(r.seen_valid_cells for r in results)
    coverage = seen_valid / seen if seen else 0.0
    logger.info("DEM %d x %d cells at %.3f m; coverage of the area seen by 2+ images %.3f", grid.width, grid.height, resolution, coverage)
    figures = {
        "dem": {
            "resolution_m": round(resolution, 4),
            "width": grid.width,
            "height": grid.height,
            "valid_cells": valid,
            "coverage_fraction": round(coverage, 4),
        },
        "ground": {
            "fraction": round(n_ground / n_points, 4) if n_points else 0.0,
            "building_fraction": round(n_building / n_points, 4) if n_points else 0.0,
            "method": params.method.value,
        },
    }
    return StageReport(figures=figures, outputs=(ws.dsm_path, ws.dtm_path))


STAGE = StageSpec(
    name=STAGE_NAME,
    run=run,
    config_fields=("dem", "dense"),
    version=1,
    title="classify ground and buildings; grid DSM and DTM",
)
