"""Point-cloud export: ``pointcloud.laz`` (LAZ 1.4, format 7) and ``pointcloud.copc.laz`` (COPC).

Both files are streamed from the fused tiles and their classes, one tile at a
time: laspy appends each tile to the LAZ; the COPC builder spills each tile's
points to per-octree-node scratch files, then copclib writes node by node.
Coordinates are millimetres (scale 0.001) in the working CRS, stored as WKT.
"""

from __future__ import annotations

import logging

import numpy as np
from distributed import Client

from drone_io.pointcloud import CloudFrame, CopcBuilder, LazWriter
from pipeline.config import Config
from pipeline.stage import StageReport, StageSpec
from pipeline.workspace import Workspace, atomic_path

logger = logging.getLogger(__name__)

STAGE_NAME = "pointcloud"


def run(ws: Workspace, cfg: Config, client: Client) -> StageReport:
    fusion = ws.load_fusion_index()
    tiles = sorted(fusion.tiles, key=lambda t: t.key)
    lo = np.array([min(t.bounds[0] for t in tiles), min(t.bounds[1] for t in tiles), min(t.z_min for t in tiles)])
    hi = np.array([max(t.bounds[2] for t in tiles), max(t.bounds[3] for t in tiles), max(t.z_max for t in tiles)])
    frame = CloudFrame.around(fusion.crs, lo)
    class_counts: dict[int, int] = {}
    with atomic_path(ws.pointcloud_path) as laz_tmp, atomic_path(ws.copc_path) as copc_tmp:
        builder = CopcBuilder(frame, lo, hi, spacing=fusion.voxel, scratch=ws.copc_spill_dir)
        with LazWriter(laz_tmp, frame) as laz:
            for t in tiles:
                pts = ws.load_tile_points(t.key)
                cls = ws.load_tile_classes(t.key)
                laz.write(pts.xyz, pts.rgb, cls)
                builder.add(pts.xyz, pts.rgb, cls)
                values, counts = np.unique(cls, return_counts=True)
                for v, c in zip(values.tolist(), counts.tolist()):
                    class_counts[v] = class_counts.get(v, 0) + c
                del pts, cls
        nodes = builder.write(copc_tmp)
    logger.info("wrote %d points to %s and %s (%d COPC nodes)", laz.points, ws.pointcloud_path.name, ws.copc_path.name, nodes)
    figures = {
        "pointcloud": {
            "points": laz.points,
            "copc_nodes": nodes,
            "copc_depth": builder.octree.max_depth,
            "classes": {str(k): v for k, v in sorted(class_counts.items())},
        }
    }
    return StageReport(figures=figures, outputs=(ws.pointcloud_path, ws.copc_path))


STAGE = StageSpec(
    name=STAGE_NAME,
    run=run,
    config_fields=("dense", "dem"),
    version=1,
    title="write the classified point cloud as LAZ 1.4 and COPC",
)
