"""DEM: ground classification on the whole flight's low surface, then DSM and DTM per raster tile, as Dask tasks.

1. low surface: one task per fused tile grids the heights of the points in the
   cells the tile touches (with the points of its neighbours in those cells) to a
   low percentile and a spread per ``dem.smrf_cell_m`` cell. The client joins the
   parts into one grid of the whole flight (4 MB per km²) and runs the ground
   filter on it (SMRF with ground growth, or cloth simulation): one ground surface,
   whatever the tiling.
2. classify: one task per fused tile tests its points against that surface
   (ground 2, low noise 7) and marks roof-like regions as buildings (6), with a
   margin of its neighbours' points so that a roof across a tile edge is one region.
3. DTM: one task per fused tile takes the median of the ground points per coarse
   DTM cell (``dem.dtm_cell_m``) the tile touches; the client joins them, fills
   every gap by interpolation and median-smooths: one coarse DTM of the flight.
4. grid: one task per raster tile of ``dem.tile_size`` cells at
   ``dem.resolution_gsd_factor`` x GSD grids the DSM from the classified points of
   the tile plus a margin, resamples the coarse DTM (no tile seams), and counts the
   sampled cells that two or more registered images see (the flown area) and how
   many of them have a DSM value (``dem.coverage_fraction``).
The client streams the finished tiles into ``dsm.tif`` and ``dtm.tif`` (COG,
float32, nodata, overviews, CRS) one tile at a time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from dask.base import tokenize
from distributed import Client
from numpy.typing import NDArray

from drone_io.cog import TiledRasterWriter
from models.footprint import footprint_bounds
from models.raster import GridSpec, Window
from pipeline.config import Config, GroundFilter
from pipeline.dem.grid import cells_touching, merge_window, window_bounds
from pipeline.dem.ground import (
    BUILDING,
    GROUND,
    BuildingOptions,
    GroundSurface,
    LowSurface,
    SmrfOptions,
    below_ground,
    building_points,
    classify,
    csf_cells,
    ground_test,
    low_surface_cells,
    smrf_cells,
    surface_from_cells,
)
from pipeline.dem.surfaces import SurfaceOptions, dtm_grid, finish_dtm, ground_medians, sample_window, surfaces
from pipeline.dense.records import Box, FusionIndex, ViewGeometry
from pipeline.dense.tiles import TileGrid, TileKey, boxes_intersect
from pipeline.progress import map_tasks
from pipeline.stage import StageReport, StageSpec
from pipeline.workspace import Workspace, fingerprint

logger = logging.getLogger(__name__)

STAGE_NAME = "dem"
NODATA = -9999.0
GROUND_SURFACE = "ground"
DTM_SURFACE = "dtm"
# Sample every STRIDE-th DEM cell (each way) when counting the cells that cameras see.
COVERAGE_STRIDE = 4


@dataclass(frozen=True)
class GroundParams:
    method: GroundFilter
    smrf: SmrfOptions
    csf_cloth_resolution: float
    buildings: BuildingOptions

    @property
    def margin(self) -> float:
        """Neighbours' points around a tile for its building regions to match a single pass (m)."""
        return 1.5 * self.smrf.window + 2.0 * self.smrf.cell


@dataclass(frozen=True)
class CellTask:
    """A fused tile, the window of a coarse grid that its points touch, and the other tiles with points there."""

    key: TileKey
    window: Window
    neighbours: tuple[TileKey, ...]


@dataclass(frozen=True)
class ClassifyTask:
    key: TileKey
    neighbours: tuple[TileKey, ...]  # fused tiles within the margin


@dataclass(frozen=True, eq=False)
class GridTask:
    window: Window
    tiles: tuple[TileKey, ...]  # fused tiles that overlap the window plus its margin
    views: tuple[ViewGeometry, ...]  # registered cameras whose footprint touches the window


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


def _padded(box: Box, pad: float) -> Box:
    return (box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad)


def low_surface_task(task: CellTask, ws: Workspace, cgrid: GridSpec, percentile: float) -> tuple[Window, NDArray[np.float32], NDArray[np.float32]]:
    """Dask task: the low surface (low percentile, spread) of the cells that one fused tile touches."""
    box = _padded(window_bounds(cgrid, task.window), 1e-3 * cgrid.resolution)
    xyz, _ = _points_in_box(ws, (task.key,) + task.neighbours, box, with_classes=False)
    z, spread = low_surface_cells(cgrid, task.window, xyz, percentile)
    return task.window, z, spread


def classify_task(task: ClassifyTask, ws: Workspace, grid: TileGrid, params: GroundParams) -> tuple[int, int, int]:
    """Dask task: ASPRS classes of one fused tile's points; returns (points, ground, building)."""
    if ws.tile_classes_exist(task.key):
        cls = ws.load_tile_classes(task.key)
    else:
        surface = ws.load_dem_surface(GROUND_SURFACE)
        own = ws.load_tile_points(task.key).xyz
        others, _ = _points_in_box(ws, task.neighbours, grid.bounds(task.key, params.margin), with_classes=False)
        xyz = np.concatenate([own, others])
        ground = ground_test(xyz, surface, params.smrf.threshold, params.smrf.scalar)
        buildings = building_points(xyz, ground, surface, params.buildings)
        low = below_ground(xyz, surface, params.smrf.threshold, params.smrf.scalar)
        cls = classify(xyz, ground, buildings, low)[: len(own)]
        ws.save_tile_classes(task.key, cls)
    return len(cls), int(np.count_nonzero(cls == GROUND)), int(np.count_nonzero(cls == BUILDING))


def dtm_task(task: CellTask, ws: Workspace, coarse: GridSpec) -> tuple[Window, NDArray[np.float32]]:
    """Dask task: the median of the ground points per coarse DTM cell that one fused tile touches."""
    box = _padded(window_bounds(coarse, task.window), 1e-3 * coarse.resolution)
    xyz, cls = _points_in_box(ws, (task.key,) + task.neighbours, box, with_classes=True)
    return task.window, ground_medians(coarse, task.window, xyz[cls == GROUND])


def seen_by_two(grid: GridSpec, window: Window, dsm: NDArray[np.float32], views: tuple[ViewGeometry, ...], ground: NDArray[np.float32], stride: int = COVERAGE_STRIDE) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Sampled cells (every ``stride``-th) that two or more cameras see, and whether each has a DSM value.

    A cell is placed at its DSM height, or at the ``ground`` (DTM) height where the DSM has no value.
    """
    xs, ys = grid.cell_centers(window)
    xs, ys = xs[::stride], ys[::stride]
    sub = dsm[::stride, ::stride]
    xx, yy = np.meshgrid(xs, ys)
    z = np.where(np.isfinite(sub), sub, ground[::stride, ::stride])
    pts = np.column_stack([xx.ravel(), yy.ravel(), z.ravel()])
    n = np.zeros(len(pts), np.int32)
    for v in views:
        pc = v.pose.to_camera(pts)
        uv = v.camera.project(pc)
        n += ((pc[:, 2] > 0) & v.camera.contains(uv)).astype(np.int32)
    return (n >= 2).reshape(sub.shape), np.isfinite(sub)


def grid_task(task: GridTask, ws: Workspace, grid: GridSpec, opts: SurfaceOptions) -> GridResult:
    """Dask task: DSM and DTM of one raster tile, saved to the workspace."""
    xyz, cls = _points_in_box(ws, task.tiles, _expanded_bounds(grid, task.window, opts.margin_m(grid.resolution)), with_classes=True)
    dtm = ws.load_dem_surface(DTM_SURFACE)
    tile = surfaces(grid, task.window, xyz, cls, dtm, opts)
    del xyz, cls
    ws.save_dem_tile(tile)
    seen, has = seen_by_two(grid, task.window, tile.dsm, task.views, sample_window(dtm, grid, task.window))
    return GridResult(task.window, int(np.isfinite(tile.dsm).sum()), int(seen.sum()), int((seen & has).sum()))


def _expanded_bounds(grid: GridSpec, w: Window, margin_m: float) -> tuple[float, float, float, float]:
    return _padded(window_bounds(grid, w), margin_m)


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
            grow_slope=d.ground_grow_slope,
            grow_max_spread=d.ground_grow_max_spread_m,
            grow_min_width=d.ground_grow_min_width_m,
        ),
        csf_cloth_resolution=d.csf_cloth_resolution,
        buildings=BuildingOptions(min_height=d.building_min_height_m, min_area=d.building_min_area_m2, max_roughness=d.building_max_roughness_m),
    )


def surface_options(cfg: Config) -> SurfaceOptions:
    d = cfg.dem
    return SurfaceOptions(
        dsm_percentile=d.dsm_percentile,
        max_hole_cells=d.max_hole_cells,
        max_hole_m=d.max_hole_m,
        smooth=d.dsm_median,
        dtm_cell=d.dtm_cell_m,
    )


def dem_grid(fusion: FusionIndex, resolution: float) -> GridSpec:
    boxes = np.array([t.bounds for t in fusion.tiles])
    return GridSpec.covering(fusion.crs, float(boxes[:, 0].min()), float(boxes[:, 1].min()), float(boxes[:, 2].max()), float(boxes[:, 3].max()), resolution)


def classification_grid(grid: GridSpec, cell: float) -> GridSpec:
    """The ground filter's grid of the whole flight: the DEM grid's extent in ``cell`` cells."""
    left, bottom, right, top = grid.bounds
    return GridSpec.covering(grid.crs, left, bottom, right, top, cell)


def cell_tasks(fusion: FusionIndex, cgrid: GridSpec) -> list[CellTask]:
    """For each fused tile, the cells of ``cgrid`` that its points touch and the tiles with points there."""
    bounds = {t.key: t.bounds for t in fusion.tiles}
    out = []
    for k, b in bounds.items():
        window = cells_touching(cgrid, b)
        box = _padded(window_bounds(cgrid, window), 1e-3 * cgrid.resolution)
        out.append(CellTask(k, window, tuple(o for o in bounds if o != k and boxes_intersect(bounds[o], box))))
    return out


def assemble(grid: GridSpec, parts: list[tuple[Window, NDArray[np.float32]]]) -> NDArray[np.float32]:
    """One grid from per-tile parts (overlapping parts hold equal values; NaN: none)."""
    out = np.full(grid.shape, np.nan, np.float32)
    for window, part in parts:
        merge_window(out, window, part)
    return out


def view_boxes(ws: Workspace, z_low: float, z_high: float) -> dict[str, Box | None]:
    """The ground box of every registered image between two heights (None: it sees the horizon)."""
    rec = ws.load_reconstruction()
    return {n: footprint_bounds(rec.camera_of(n), im.pose, z_low, z_high) for n, im in sorted(rec.images.items())}


def _ground_surface(ws: Workspace, client: Client, fusion: FusionIndex, grid: GridSpec, params: GroundParams) -> int:
    """Step 1: the low surface of the flight, the ground filter, the ground surface saved; returns the ground cells."""
    cgrid = classification_grid(grid, params.smrf.cell)
    tasks = cell_tasks(fusion, cgrid)
    parts = map_tasks(client, low_surface_task, tasks, ws, cgrid, params.smrf.cell_percentile, label="dem-low", item_names=[t.key.name for t in tasks])
    low = LowSurface(cgrid, assemble(cgrid, [(w, z) for w, z, _ in parts]), assemble(cgrid, [(w, sp) for w, _, sp in parts]))
    del parts
    if params.method is GroundFilter.CSF:
        cells = csf_cells(low, params.csf_cloth_resolution, params.smrf)
    else:
        cells = smrf_cells(low, params.smrf)
    ws.save_dem_surface(GROUND_SURFACE, surface_from_cells(low, cells, params.smrf))
    logger.info("ground filter (%s) on %d x %d cells of %.2f m: %d of %d cells with points are ground", params.method.value, cgrid.width, cgrid.height, cgrid.resolution, int(cells.sum()), int(np.isfinite(low.z).sum()))
    return int(cells.sum())


def run(ws: Workspace, cfg: Config, client: Client) -> StageReport:
    dense = ws.load_dense_index()
    fusion = ws.load_fusion_index()
    rec = ws.load_reconstruction()
    params = ground_params(cfg)
    opts = surface_options(cfg)
    tiles = TileGrid(fusion.tile_size)
    keys = [t.key for t in fusion.tiles]
    bounds = {t.key: t.bounds for t in fusion.tiles}
    ws.reset_task_dir(STAGE_NAME, tokenize(cfg.values("dem"), fingerprint(ws.fusion_index_path)))
    resolution = cfg.dem.resolution_gsd_factor * dense.gsd_m
    grid = dem_grid(fusion, resolution)

    # 1. The ground surface of the whole flight (kept for a resumed run).
    if not ws.dem_surface_exists(GROUND_SURFACE):
        _ground_surface(ws, client, fusion, grid, params)

    # 2. Classes per fused tile.
    margin = max(params.margin, 2.0 * params.smrf.cell)
    ctasks = [ClassifyTask(k, tuple(o for o in keys if o != k and boxes_intersect(bounds[o], tiles.bounds(k, margin)))) for k in keys]
    counts = map_tasks(client, classify_task, ctasks, ws, tiles, params, label="dem-classify", item_names=[k.name for k in keys])
    n_points = sum(c[0] for c in counts)
    n_ground = sum(c[1] for c in counts)
    n_building = sum(c[2] for c in counts)

    # 3. The coarse DTM of the whole flight.
    coarse = dtm_grid(grid, opts)
    dtasks = cell_tasks(fusion, coarse)
    parts = map_tasks(client, dtm_task, dtasks, ws, coarse, label="dem-dtm", item_names=[t.key.name for t in dtasks])
    dtm = GroundSurface(coarse, finish_dtm(assemble(coarse, parts), opts))
    ws.save_dem_surface(DTM_SURFACE, dtm)
    del parts

    # 4. DSM and DTM per raster tile, and the flown area: cells that two or more registered images see.
    margin_m = opts.margin_m(grid.resolution)
    # Camera footprints between the lowest ground and the highest point: which views a tile tests.
    z_high = max(t.z_max for t in fusion.tiles)
    z_low = float(np.nanmin(dtm.z)) if np.isfinite(dtm.z).any() else min(t.z_min for t in fusion.tiles)
    boxes = view_boxes(ws, z_low, z_high)
    gtasks = []
    for window in grid.tiles(cfg.dem.tile_size):
        box = _expanded_bounds(grid, window, margin_m)
        inner = window_bounds(grid, window)
        gtasks.append(
            GridTask(
                window,
                tuple(k for k in keys if boxes_intersect(bounds[k], box)),
                tuple(ViewGeometry(n, "", rec.camera_of(n), rec.images[n].pose) for n, b in boxes.items() if b is None or boxes_intersect(b, inner)),
            )
        )
    names = [f"r{t.window.row_off}c{t.window.col_off}" for t in gtasks]
    results = map_tasks(client, grid_task, gtasks, ws, grid, opts, label="dem-grid", item_names=names)
    what = f"{resolution:.3f} m cells, {fusion.crs}, heights as in the reconstruction"
    with TiledRasterWriter(ws.dsm_path, grid, nodata=NODATA, description=f"Aerobase DSM, {what}") as dsm_w, TiledRasterWriter(
        ws.dtm_path, grid, nodata=NODATA, description=f"Aerobase DTM, {what}"
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
    sample_m2 = (COVERAGE_STRIDE * resolution) ** 2
    logger.info("DEM %d x %d cells at %.3f m; %.0f m2 seen by 2+ images, %.3f of it with a DSM value", grid.width, grid.height, resolution, seen * sample_m2, coverage)
    figures = {
        "dem": {
            "resolution_m": round(resolution, 4),
            "width": grid.width,
            "height": grid.height,
            "valid_cells": valid,
            "dsm_area_m2": round(valid * resolution**2, 1),
            "flown_area_m2": round(seen * sample_m2, 1),
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
    version=2,
    title="classify ground and buildings; grid DSM and DTM",
)
