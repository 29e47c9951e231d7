"""Multi-view geometric consistency of depth maps, and back-projection to world points.

A reference depth survives when at least ``min_views`` views agree on it: the
reference itself plus every neighbour whose own depth map, at the pixel where
the point projects, lies within ``rel_tol`` of the point's depth in that
neighbour. The surviving depth is the mean of the agreeing estimates expressed
in the reference view (COLMAP/OpenMVS-style fusion of consistent depths).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from models.camera import CameraModel
from models.depthmap import DepthMap
from models.pose import Pose
from pipeline.dense.stereo import normalized_grid

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class View:
    """A depth map with the (scaled) camera and pose of its grid."""

    depth: DepthMap
    camera: CameraModel  # scaled to the depth map's grid
    pose: Pose


def backproject(view: View, mask: NDArray[np.bool_] | None = None) -> tuple[FloatArray, NDArray[np.intp], NDArray[np.intp]]:
    """World points of the valid pixels of a depth map, with their (row, col)."""
    valid = view.depth.valid if mask is None else (view.depth.valid & mask)
    rows, cols = np.nonzero(valid)
    xn = normalized_grid(view.camera)[rows, cols].astype(np.float64)
    z = view.depth.depth[rows, cols].astype(np.float64)
    pc = np.concatenate([xn * z[:, None], z[:, None]], axis=1)
    return view.pose.to_world(pc), rows, cols


def consistent_depth(ref: View, neighbours: list[View], rel_tol: float, min_views: int) -> DepthMap:
    """The reference depth map keeping only depths that ``min_views`` views agree on."""
    X, rows, cols = backproject(ref)
    n = len(X)
    agree = np.ones(n, dtype=np.int32)  # the reference agrees with itself
    z_sum = ref.depth.depth[rows, cols].astype(np.float64)
    axis = ref.pose.R[2]
    c_ref = ref.pose.center
    for nb in neighbours:
        if n == 0:
            break
        pc = nb.pose.to_camera(X)
        uv = nb.camera.project(pc)
        u = np.rint(uv[:, 0])
        v = np.rint(uv[:, 1])
        inside = np.isfinite(u) & np.isfinite(v) & (u >= 0) & (v >= 0) & (u < nb.camera.width) & (v < nb.camera.height)
        idx = np.nonzero(inside)[0]
        ui = u[idx].astype(np.intp)
        vi = v[idx].astype(np.intp)
        d_nb = nb.depth.depth[vi, ui].astype(np.float64)
        z_nb = pc[idx, 2]
        ok = np.isfinite(d_nb) & (np.abs(d_nb - z_nb) <= rel_tol * z_nb)
        idx, ui, vi, d_nb = idx[ok], ui[ok], vi[ok], d_nb[ok]
        # The neighbour's surface point, expressed as a depth along the reference axis.
        xn = normalized_grid(nb.camera)[vi, ui].astype(np.float64)
        X_nb = nb.pose.to_world(np.concatenate([xn * d_nb[:, None], d_nb[:, None]], axis=1))
        z_sum[idx] += (X_nb - c_ref) @ axis
        agree[idx] += 1
    keep = agree >= min_views
    out = np.full(ref.depth.shape, np.nan, dtype=np.float32)
    out[rows[keep], cols[keep]] = (z_sum[keep] / agree[keep]).astype(np.float32)
    views = np.zeros(ref.depth.shape, dtype=np.uint8)
    views[rows[keep], cols[keep]] = np.minimum(agree[keep], 255).astype(np.uint8)
    return DepthMap(image=ref.depth.image, scale=ref.depth.scale, depth=out, rgb=ref.depth.rgb, views=views)
