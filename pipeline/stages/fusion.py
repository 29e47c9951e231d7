"""Fusion: consistent depths -> one georeferenced, coloured point cloud, one Dask task per tile.

Space is cut into square tiles of ``dense.fusion_tile_m``. A tile task reads
only the filtered depth maps whose point footprint touches the tile (plus a
margin), back-projects them one at a time into the CRS, merges them on a
CRS-anchored voxel grid (voxel = ``dense.fusion_voxel_factor`` depth-map
pixels on the ground), removes statistical outliers with open3d and keeps the
voxels of its own tile. Memory per task is bounded by the tile, not the flight.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from dask.base import tokenize
from distributed import Client

from models.errors import ReconstructionError
from pipeline.config import Config
from pipeline.dense.consistency import View, backproject
from pipeline.dense.fusion import FusedPoints, FusionOptions, clean_tile, merge, voxel_merge
from pipeline.dense.records import FusionIndex, TileSummary, ViewGeometry
from pipeline.dense.tiles import TileGrid, TileKey, boxes_intersect
from pipeline.o3d import import_open3d
from pipeline.progress import map_tasks
from pipeline.stage import StageReport, StageSpec
from pipeline.stages.densify import FILTERED
from pipeline.workspace import Workspace, fingerprint

logger = logging.getLogger(__name__)

STAGE_NAME = "fusion"
# Points held before the per-image parts of a tile are folded together (about 30 bytes each).
MERGE_BATCH_POINTS = 8_000_000


@dataclass(frozen=True, eq=False)
class FusionTask:
    key: TileKey
    views: tuple[ViewGeometry, ...]


def fusion_margin(voxel: float, opts: FusionOptions) -> float:
    """Context around a tile for outlier removal: a few neighbourhoods of voxels."""
    return max(1.0, 4.0 * voxel * np.sqrt(opts.sor_neighbors))


def fuse_tile(task: FusionTask, ws: Workspace, grid: TileGrid, scale: float, opts: FusionOptions) -> TileSummary:
    """Dask task: fuse one tile and save its points; returns its summary."""
    margin = fusion_margin(opts.voxel, opts)
    if ws.tile_points_exist(task.key):
        pts = ws.load_tile_points(task.key)
    else:
        parts: list[FusedPoints] = []
        pending = 0
        for view in task.views:
            dm = ws.load_depthmap(view.name, FILTERED)
            xyz, rows, cols = backproject(View(dm, view.camera.scaled(scale), view.pose))
            inside = grid.contains(task.key, xyz, margin)
            if not inside.any():
                continue
            assert dm.rgb is not None
            parts.append(voxel_merge(xyz[inside], dm.rgb[rows[inside], cols[inside]], opts.voxel))
            pending += len(parts[-1])
            del xyz, rows, cols, dm
            if pending > MERGE_BATCH_POINTS:  # bound memory: fold the parts into one merged cloud
                parts = [merge(parts, opts.voxel)]
                pending = len(parts[0])
        pts = clean_tile(merge(parts, opts.voxel), grid.bounds(task.key), opts)
        ws.save_tile_points(task.key, pts)
    if len(pts) == 0:
        return TileSummary(task.key, 0, (0.0, 0.0, 0.0, 0.0), 0.0, 0.0)
    lo = pts.xyz.min(axis=0)
    hi = pts.xyz.max(axis=0)
    return TileSummary(task.key, len(pts), (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])), float(lo[2]), float(hi[2]))


def fusion_options(cfg: Config, gsd: float) -> FusionOptions:
    d = cfg.dense
    return FusionOptions(
        voxel=d.fusion_voxel_factor * gsd / d.depth_scale,
        sor_neighbors=d.outlier_neighbors,
        sor_std_ratio=d.outlier_std_ratio,
    )


def run(ws: Workspace, cfg: Config, client: Client) -> StageReport:
    index = ws.load_dense_index()
    rec = ws.load_reconstruction()
    paths = {r.name: str(r.path) for r in ws.load_images()}
    opts = fusion_options(cfg, index.gsd_m)
    grid = TileGrid(cfg.dense.fusion_tile_m)
    margin = fusion_margin(opts.voxel, opts)
    with_points = [s for s in index.images if s.points > 0]
    if not with_points:
        raise ReconstructionError("no image has a consistent depth map; check the reconstruction and the dense settings")
    keys: set[TileKey] = set()
    for s in with_points:
        keys.update(grid.keys_touching(s.bounds))
    tasks = []
    for key in sorted(keys):
        box = grid.bounds(key, margin)
        views = tuple(
            ViewGeometry(s.image, paths.get(s.image, ""), rec.camera_of(s.image), rec.images[s.image].pose)
            for s in with_points
            if boxes_intersect(s.bounds, box)
        )
        tasks.append(FusionTask(key, views))
    ws.reset_task_dir(STAGE_NAME, tokenize(cfg.values("dense"), fingerprint(ws.dense_index_path)))
    import_open3d()  # once, here, rather than in the first tile tasks at the same time
    summaries = map_tasks(client, fuse_tile, tasks, ws, grid, index.depth_scale, opts, label="fusion-tile", item_names=[t.key.name for t in tasks])
    tiles = tuple(s for s in summaries if s.points > 0)
    for t in summaries:
        if t.points == 0:
            ws.tile_points_path(t.key).unlink(missing_ok=True)
    fusion = FusionIndex(crs=index.crs, tile_size=grid.size, voxel=opts.voxel, tiles=tiles)
    ws.save_fusion_index(fusion)
    logger.info("fused %d points in %d tiles (voxel %.3f m)", fusion.points, len(tiles), opts.voxel)
    figures = {
        "dense": {
            "points": fusion.points,
            "tiles": len(tiles),
            "voxel_m": round(opts.voxel, 4),
            "max_views_per_tile": max((len(t.views) for t in tasks), default=0),
        }
    }
    return StageReport(figures=figures, outputs=(ws.fusion_index_path,))


STAGE = StageSpec(
    name=STAGE_NAME,
    run=run,
    config_fields=("dense",),
    version=1,
    title="fuse consistent depths into a coloured point cloud, tile by tile",
)
