"""Fusion of consistent depths into one point cloud, tile by tile.

Points back-projected from every depth map that touches a tile (plus a
margin) are merged on a voxel grid anchored at multiples of the voxel size in
the CRS, so the same voxel gets the same points whichever tile computes it:
each voxel becomes one point at the mean position and colour of its members.
open3d's statistical outlier removal then runs on the tile with its margin,
and only the voxels whose centre lies in the tile are kept, so tiles
partition the cloud exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from pipeline.o3d import import_open3d

FloatArray = NDArray[np.float64]
U8 = NDArray[np.uint8]


@dataclass(frozen=True)
class FusionOptions:
    """How a tile's points are merged and cleaned."""

    voxel: float  # voxel side (CRS units)
    sor_neighbors: int = 16  # neighbours of statistical outlier removal
    sor_std_ratio: float = 2.0  # points beyond mean + ratio * std of neighbour distance are outliers
    min_voxel_points: int = 1  # voxels with fewer source points are dropped


@dataclass(frozen=True, eq=False)
class FusedPoints:
    """Points of one tile: full CRS coordinates, colour and how many depth samples each merges."""

    xyz: FloatArray
    rgb: U8
    count: NDArray[np.uint16]

    def __len__(self) -> int:
        return int(self.xyz.shape[0])

    @classmethod
    def empty(cls) -> "FusedPoints":
        return cls(np.zeros((0, 3)), np.zeros((0, 3), np.uint8), np.zeros(0, np.uint16))


def voxel_keys(xyz: FloatArray, voxel: float) -> NDArray[np.int64]:
    """Integer voxel index (N, 3) of each point on the CRS-anchored grid."""
    return np.floor(xyz / voxel).astype(np.int64)


def voxel_merge(xyz: FloatArray, rgb: U8, voxel: float, weight: NDArray[np.uint16] | None = None) -> FusedPoints:
    """One point per occupied voxel: weighted mean position and colour, and the summed weight.

    ``weight`` is how many samples each input point already stands for (1 when
    None), so merged clouds can be merged again: merging in steps equals
    merging everything at once.
    """
    if len(xyz) == 0:
        return FusedPoints.empty()
    w = np.ones(len(xyz)) if weight is None else weight.astype(np.float64)
    keys = voxel_keys(xyz, voxel)
    lo = keys.min(axis=0)
    span = keys.max(axis=0) - lo + 1
    flat = ((keys[:, 0] - lo[0]) * span[1] + (keys[:, 1] - lo[1])) * span[2] + (keys[:, 2] - lo[2])
    uniq, inverse = np.unique(flat, return_inverse=True)
    total = np.bincount(inverse, weights=w, minlength=len(uniq))
    origin = lo * voxel
    rel = xyz - origin
    out = np.empty((len(uniq), 3))
    for a in range(3):
        out[:, a] = np.bincount(inverse, weights=rel[:, a] * w, minlength=len(uniq)) / total
    col = np.empty((len(uniq), 3), np.uint8)
    for a in range(3):
        col[:, a] = np.rint(np.bincount(inverse, weights=rgb[:, a] * w, minlength=len(uniq)) / total).astype(np.uint8)
    return FusedPoints(out + origin, col, np.minimum(total, 65535).astype(np.uint16))


def merge(parts: list[FusedPoints], voxel: float) -> FusedPoints:
    """Voxel-merge already merged clouds (weights carried by their counts)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return FusedPoints.empty()
    return voxel_merge(
        np.concatenate([p.xyz for p in parts]),
        np.concatenate([p.rgb for p in parts]),
        voxel,
        np.concatenate([p.count for p in parts]),
    )


def statistical_inliers(xyz: FloatArray, neighbors: int, std_ratio: float) -> NDArray[np.bool_]:
    """open3d statistical outlier removal: True for the points it keeps."""
    keep = np.zeros(len(xyz), dtype=bool)
    if len(xyz) <= neighbors:
        keep[:] = True
        return keep
    o3d = import_open3d()
    pcd = o3d.geometry.PointCloud()
    pcd.points = o3d.utility.Vector3dVector(xyz - xyz.mean(axis=0))
    _, idx = pcd.remove_statistical_outlier(nb_neighbors=neighbors, std_ratio=std_ratio)
    keep[np.asarray(idx, dtype=np.int64)] = True
    return keep


def clean_tile(fused: FusedPoints, core: tuple[float, float, float, float], opts: FusionOptions) -> FusedPoints:
    """Remove outliers from a tile's merged voxels (tile + margin) and keep the voxels of the core box."""
    if len(fused) == 0:
        return fused
    keep = (fused.count >= opts.min_voxel_points) & statistical_inliers(fused.xyz, opts.sor_neighbors, opts.sor_std_ratio)
    # Tile membership by voxel centre, so neighbouring tiles partition the voxels exactly.
    centre = (np.floor(fused.xyz[:, :2] / opts.voxel) + 0.5) * opts.voxel
    x0, y0, x1, y1 = core
    keep &= (centre[:, 0] >= x0) & (centre[:, 0] < x1) & (centre[:, 1] >= y0) & (centre[:, 1] < y1)
    return FusedPoints(fused.xyz[keep], fused.rgb[keep], fused.count[keep])
