"""A synthetic classified-terrain point cloud for the DEM tests, and a workspace that the dem stage can run on.

The scene (180 x 140 m, 5 points per m², 3 cm noise) has what trips a morphological ground
filter: a bench 5 m above the plain (steep banks) whose arm is 34 m wide, narrower than
twice SMRF's 18 m window; a car and a rough tree on that arm; a 9 m building across the
30 m tile edges and a 7 m building on the bench; a tree on the plain; and a 20 x 20 m hole
with no points (a water surface, say). Every point carries its truth: terrain height and kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from models.camera import CameraModel
from models.pose import Pose, world_to_camera_from_gimbal
from models.reconstruction import Reconstruction, RegisteredImage
from pipeline.dense.fusion import FusedPoints
from pipeline.dense.records import DenseIndex, DepthSummary, FusionIndex, TileSummary
from pipeline.dense.tiles import TileGrid
from pipeline.workspace import Workspace

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

ORIGIN = np.array([500000.0, 4000000.0])
SIZE = (180.0, 140.0)
CRS = "EPSG:32633"
BENCH = 5.0
BANK = 1.0  # width of the bench's banks (m)
ARM = (20.0, 100.0, 50.0, 84.0)  # x0, x1, y0, y1 (local m): 34 m wide, under the 36 m of SMRF's window
HOLE = (150.0, 170.0, 10.0, 30.0)  # x0, x1, y0, y1 (local m): no points


@dataclass(frozen=True, eq=False)
class DemScene:
    xyz: FloatArray  # (N, 3) in CRS
    terrain: FloatArray  # true terrain height under each point
    kind: NDArray[np.str_]  # 'ground', 'building', 'car', 'tree'
    bench: BoolArray  # the point lies on the raised bench (its top or embankment)
    arm: BoolArray  # ... on the arm of the bench

    def terrain_at(self, x: FloatArray, y: FloatArray) -> FloatArray:
        """True terrain height at CRS x, y (bench included)."""
        return _terrain(np.asarray(x) - ORIGIN[0], np.asarray(y) - ORIGIN[1])


def _bench_rise(xl: FloatArray, yl: FloatArray) -> FloatArray:
    """Rise of the bench over the plain: a 70 x 100 m block with a 34 m wide, 80 m long arm; its banks rise
    5 m over 1 m (a retaining wall, or a steep bank under bushes)."""
    res = 0.25
    w, h = int(SIZE[0] / res), int(SIZE[1] / res)
    mask = np.zeros((h, w), np.uint8)
    for x0, x1, y0, y1 in ((100.0, 170.0, 20.0, 120.0), ARM):
        mask[int(y0 / res) : int(y1 / res), int(x0 / res) : int(x1 / res)] = 1
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 5) * res
    rise = BENCH * np.clip(dist / BANK, 0.0, 1.0)
    c = np.clip((xl / res).astype(int), 0, w - 1)
    r = np.clip((yl / res).astype(int), 0, h - 1)
    return np.asarray(rise[r, c], dtype=np.float64)


def _terrain(xl: FloatArray, yl: FloatArray) -> FloatArray:
    return 100.0 + 0.02 * xl + 0.5 * np.sin(yl / 15.0) + _bench_rise(xl, yl)


def _in_box(xl: FloatArray, yl: FloatArray, box: tuple[float, float, float, float]) -> BoolArray:
    return (xl >= box[0]) & (xl < box[1]) & (yl >= box[2]) & (yl < box[3])


def dem_scene(seed: int = 0, density: float = 5.0) -> DemScene:
    rng = np.random.default_rng(seed)
    n = int(SIZE[0] * SIZE[1] * density)
    xl = rng.uniform(0.0, SIZE[0], n)
    yl = rng.uniform(0.0, SIZE[1], n)
    keep = ~_in_box(xl, yl, HOLE)
    xl, yl = xl[keep], yl[keep]
    terrain = _terrain(xl, yl)
    z = terrain + rng.normal(0.0, 0.03, len(xl))
    kind = np.full(len(xl), "ground", dtype="<U8")
    for box, height in (((45.0, 69.0, 8.0, 24.0), 9.0), ((120.0, 140.0, 90.0, 104.0), 7.0)):
        inb = _in_box(xl, yl, box)
        roof = float(np.max(terrain[inb])) + height
        z[inb] = roof + 0.05 * (yl[inb] - box[2]) + rng.normal(0.0, 0.03, inb.sum())  # a gently pitched roof
        kind[inb] = "building"
    car = _in_box(xl, yl, (50.0, 54.5, 66.0, 68.0))
    z[car] = terrain[car] + 1.5 + rng.normal(0.0, 0.03, car.sum())
    kind[car] = "car"
    for cx, cy, r in ((80.0, 62.0, 3.5), (20.0, 120.0, 4.5)):
        tree = np.hypot(xl - cx, yl - cy) < r
        z[tree] = terrain[tree] + rng.uniform(2.0, 8.0, tree.sum())
        kind[tree] = "tree"
    rise = _bench_rise(xl, yl)
    arm = _in_box(xl, yl, ARM) & (rise > 0.0)
    xyz = np.column_stack([xl + ORIGIN[0], yl + ORIGIN[1], z])
    return DemScene(xyz, terrain, kind, rise > 0.0, arm)


def camera() -> CameraModel:
    return CameraModel("test", 640, 480, 600.0, 600.0, 319.5, 239.5)


def reconstruction(height: float = 150.0) -> Reconstruction:
    """A 4 x 4 grid of nadir cameras (160 x 120 m footprints) over the scene: every point is seen by two or more."""
    images = {}
    for i, x in enumerate((10.0, 65.0, 120.0, 175.0)):
        for j, y in enumerate((0.0, 50.0, 100.0, 150.0)):
            name = f"IMG_{i}{j}.JPG"
            pose = Pose.from_center(world_to_camera_from_gimbal(0.0, -90.0, 0.0), np.array([ORIGIN[0] + x, ORIGIN[1] + y, 100.0 + height]))
            images[name] = RegisteredImage(name, "test", pose)
    return Reconstruction(CRS, {"test": camera()}, images)


def scene_workspace(out: Path, scene: DemScene, fusion_tile_m: float, gsd_m: float = 0.25) -> Workspace:
    """A workspace with the scene as fused tiles of ``fusion_tile_m`` and the cameras: what the dem stage reads."""
    ws = Workspace(out)
    ws.ensure()
    rec = reconstruction()
    ws.save_reconstruction(rec)
    tiles = TileGrid(fusion_tile_m)
    ix = np.floor(scene.xyz[:, 0] / fusion_tile_m).astype(np.int64)
    iy = np.floor(scene.xyz[:, 1] / fusion_tile_m).astype(np.int64)
    summaries = []
    for kx, ky in sorted(set(zip(ix.tolist(), iy.tolist()))):
        sel = (ix == kx) & (iy == ky)
        key = tiles.key_of(float(scene.xyz[sel][0, 0]), float(scene.xyz[sel][0, 1]))
        pts = scene.xyz[sel]
        ws.save_tile_points(key, FusedPoints(pts, np.full((len(pts), 3), 128, np.uint8), np.full(len(pts), 2, np.uint16)))
        summaries.append(
            TileSummary(key, len(pts), (float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())), float(pts[:, 2].min()), float(pts[:, 2].max()))
        )
    ws.save_fusion_index(FusionIndex(CRS, fusion_tile_m, 2 * gsd_m, tuple(summaries)))
    lo, hi = scene.xyz.min(axis=0), scene.xyz.max(axis=0)
    images = tuple(DepthSummary(n, 1000, (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])), float(lo[2]), float(hi[2])) for n in sorted(rec.images))
    ws.save_dense_index(DenseIndex(CRS, gsd_m, 0.5, images))
    return ws


def load_classes(ws: Workspace) -> tuple[FloatArray, NDArray[np.uint8]]:
    """Every point of a classified workspace and its class, in a tiling-independent order (sorted by x, y, z)."""
    fusion = ws.load_fusion_index()
    xyz = np.vstack([ws.load_tile_points(t.key).xyz for t in fusion.tiles])
    cls = np.concatenate([ws.load_tile_classes(t.key) for t in fusion.tiles])
    order = np.lexsort((xyz[:, 2], xyz[:, 1], xyz[:, 0]))
    return xyz[order], cls[order]
