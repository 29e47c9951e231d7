"""Occlusion against the DSM with a per-image z-buffer.

The DSM cells that can hide something (cells standing above their
surroundings, plus vertical "wall columns" at height jumps so that walls are
solid) are projected into the image and splatted into a coarse depth buffer,
keeping the nearest depth per buffer cell. A ground sample is visible when
its own depth is not behind the buffer's depth at its pixel by more than a
tolerance. The buffer cell is a little larger than the projected spacing of
the occluder samples, and the cells at height jumps also splat their
corners, so a roof leaves no gaps through which the ground behind it would
wrongly show and its outline reaches the real edge: walls never smear onto
the ground. A buffer cell that straddles an edge hides the ground in it, so
the test errs, by at most one cell, toward taking that ground from another image.

Occluders of a point Q lie on the segment from Q toward the camera while the
ray is below the highest surface, so only the DSM between a region and the
camera matters (:func:`occluder_bounds`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from models.raster import Window
from pipeline.ortho.geometry import LocalProjector

F32 = NDArray[np.float32]
BoolArray = NDArray[np.bool_]


def occluder_bounds(
    region: tuple[float, float, float, float], camera_center: NDArray[np.float64], z_min: float, z_max: float
) -> tuple[float, float, float, float]:
    """Bounding box (x0, y0, x1, y1) of every DSM cell that can hide part of ``region`` from a camera.

    A ray from a ground point at height >= z_min rises toward the camera
    centre and clears z_max after the fraction s_max = (z_max - z_min) / (Cz -
    z_min) of its horizontal run; the occluders lie within that run.
    """
    x0, y0, x1, y1 = region
    cz = float(camera_center[2])
    if cz <= z_max:
        s_max = 1.0
    else:
        s_max = max(0.0, (z_max - z_min) / max(cz - z_min, 1e-6))
    cx, cy = float(camera_center[0]), float(camera_center[1])
    xs = [x0, x1, x0 + s_max * (cx - x0), x1 + s_max * (cx - x1)]
    ys = [y0, y1, y0 + s_max * (cy - y0), y1 + s_max * (cy - y1)]
    return (min(xs), min(ys), max(xs), max(ys))


@dataclass(frozen=True, eq=False)
class Occluders:
    """DSM samples that can hide something, in a local frame (float32, 1-D)."""

    x: F32
    y: F32
    z: F32
    spacing: float  # horizontal sample spacing (m)

    def __len__(self) -> int:
        return int(self.x.shape[0])


def occluders_from_grid(
    xs: F32, ys: F32, z: F32, spacing: float, tolerance_m: float, floor: F32, trim: int = 0, max_wall_levels: int = 24
) -> Occluders:
    """Occluder samples from heights ``z`` on a grid with cell centres ``xs`` (per column), ``ys`` (per row).

    A cell is kept when it stands more than ``tolerance_m`` above ``floor``,
    the lowest ground around it: only such cells can hide anything. Cells at
    a height jump also get a column of samples down to the foot of the jump,
    so that walls are solid (the far wall of a building is what hides the
    ground just behind it). ``trim`` border cells are left out: their
    neighbourhood is cut by the window, and a neighbouring tile sees them whole.
    """
    h, w = np.shape(z)
    inner = Window(trim, trim, max(0, w - 2 * trim), max(0, h - 2 * trim))
    rows, cols, zk, jump = occluder_cells(z, floor, tolerance_m, inner)
    return occluders_from_cells(xs[cols].astype(np.float32), ys[rows].astype(np.float32), zk, jump, spacing, tolerance_m, max_wall_levels)


def occluder_cells(
    z: F32, floor: F32, tolerance_m: float, inner: Window
) -> tuple[NDArray[np.intp], NDArray[np.intp], F32, F32]:
    """(rows, cols, heights, jumps) of the cells of ``inner`` that stand more than ``tolerance_m`` above ``floor``.

    The jump is how far a cell stands above the lowest of its 3 x 3 neighbours (the cells
    outside ``inner`` count as neighbours: they are the margin that keeps the foot whole).
    """
    z = np.asarray(z, dtype=np.float32)
    keep = np.zeros(z.shape, bool)
    sl = inner.slices
    keep[sl] = z[sl] > np.asarray(floor, np.float32)[sl] + np.float32(tolerance_m)
    rows, cols = np.nonzero(keep)
    del keep
    zk = z[rows, cols]
    foot = cv2.erode(z, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)
    return rows, cols, zk, zk - foot[rows, cols]


def occluders_from_cells(x: F32, y: F32, z: F32, jump: F32, spacing: float, tolerance_m: float, max_wall_levels: int = 24) -> Occluders:
    """Occluder samples from the cells that stand above their ground (see :func:`occluders_from_grid`).

    ``jump`` is how far each cell stands above the lowest of its 3 x 3 neighbours: cells
    at a jump get a column of samples down to its foot, and their corners carry the top.
    """
    tol = np.float32(tolerance_m)
    px, py, pz = [x], [y], [z]
    wall = jump > tol
    if wall.any():
        wx, wy, wj, wz = x[wall], y[wall], jump[wall], z[wall]
        levels = int(min(max_wall_levels, max(2, np.ceil(float(wj.max()) / max(spacing, 1e-3)))))
        for k in range(1, levels):
            f = np.float32(k / levels)
            px.append(wx)
            py.append(wy)
            pz.append(wz - f * wj)
        # The corners of edge cells carry the top height too, so the roof's outline in the
        # image reaches the real edge (centres alone stop half a cell short of it).
        half = np.float32(0.5 * spacing)
        for sx, sy in ((-half, -half), (-half, half), (half, -half), (half, half)):
            px.append(wx + sx)
            py.append(wy + sy)
            pz.append(wz)
    return Occluders(np.concatenate(px), np.concatenate(py), np.concatenate(pz), float(spacing))


def occluder_pool(cell_px: float, ortho_res: float, gsd_m: float, dsm_res: float) -> int:
    """DSM cells per side of an occluder cell: about ``cell_px`` pixels of the ortho or of the images.

    The pixel is the coarser of the ortho's (``ortho_res``) and the flight's GSD (``gsd_m``, the
    images' own pixel): an ortho finer than the images resamples them and gains no occlusion
    detail, so finer occluder cells would only multiply the occluders and the z-buffer work
    (4 x per halving of the ortho cell). At the flight GSD or coarser the ortho pixel sets it.
    """
    return max(1, int(round(cell_px * max(ortho_res, gsd_m) / dsm_res)))


def zbuffer_cell(spacing: float, focal_px: float, min_depth: float, scale: float = 1.6) -> float:
    """Z-buffer cell (image pixels): ``scale`` x the projected occluder spacing at the nearest depth.

    A fixed value per image (not per tile), so every tile decides the same way.
    """
    return max(1.0, scale * spacing * focal_px / max(min_depth, 1e-3))


@dataclass(frozen=True, eq=False)
class ZBuffer:
    """Nearest occluder depth per buffer cell of ``cell`` image pixels."""

    depth: F32  # (rows, cols), +inf where nothing was splatted
    cell: float

    def lookup(self, u: F32, v: F32) -> F32:
        """Buffer depth at pixels (u, v): +inf outside the buffer.

        The cell is floor(u / cell), floor(v / cell): OpenCV's nearest-neighbour remap
        (which rounds) at u / cell - 0.5, with +inf beyond the border; one SIMD pass
        instead of numpy's clips, casts and 2-D gather.
        """
        inv = np.float32(1.0 / self.cell)
        half = np.float32(0.5)
        mu = np.asarray(u, np.float32).ravel() * inv
        mu -= half
        mv = np.asarray(v, np.float32).ravel() * inv
        mv -= half
        n = mu.shape[0]
        out = np.empty(n, np.float32)
        depth = np.ascontiguousarray(self.depth, dtype=np.float32)
        # cv2.remap takes at most 32767 points per row.
        for s in range(0, n, _ROW):
            e = min(n, s + _ROW)
            out[s:e] = cv2.remap(
                depth, mu[None, s:e], mv[None, s:e], cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=float("inf")
            ).ravel()
        return out.reshape(np.shape(u))


# Points per cv2.remap row in ZBuffer.lookup.
_ROW = 32000


# Occluders per chunk of build_zbuffer: the projection's temporaries stay in the CPU cache
# (an image has ~10^5 occluders; projected at once they spill it, at about twice the cost).
_SPLAT_CHUNK = 32768


def build_zbuffer(proj: LocalProjector, occ: Occluders, cell: float) -> ZBuffer:
    """Splat occluders into a depth buffer of ``cell``-pixel cells over the image of ``proj.camera``."""
    cam = proj.camera
    w = int(np.ceil(cam.width / cell)) + 1
    h = int(np.ceil(cam.height / cell)) + 1
    buf = np.full(h * w, np.inf, np.float32)
    c = np.float32(cell)
    for s in range(0, len(occ), _SPLAT_CHUNK):
        e = s + _SPLAT_CHUNK
        u, v, d, ok = proj.project(occ.x[s:e], occ.y[s:e], occ.z[s:e])
        iu = np.floor(u / c).astype(np.int64)
        iv = np.floor(v / c).astype(np.int64)
        sel = ok & (iu >= 0) & (iu < w) & (iv >= 0) & (iv < h)
        np.minimum.at(buf, iv[sel] * w + iu[sel], d[sel])
    return ZBuffer(buf.reshape(h, w), cell)


def hidden_by(zbuf: ZBuffer, u: F32, v: F32, depth: F32, focal_px: float, tolerance_m: float) -> F32:
    """How far (m) samples lie behind the z-buffer surface beyond the tolerance; <= 0 when visible."""
    nearest = zbuf.lookup(u, v)
    slack = np.float32(tolerance_m) + depth * np.float32(zbuf.cell / focal_px)
    return np.asarray(depth - (nearest + slack), dtype=np.float32)


def visible(zbuf: ZBuffer, u: F32, v: F32, depth: F32, focal_px: float, tolerance_m: float) -> BoolArray:
    """Whether samples at pixels (u, v) with ``depth`` are in front of the z-buffer.

    The tolerance grows with the ground size of a buffer cell, so a tilted
    surface is not hidden by its own neighbours.
    """
    nearest = zbuf.lookup(u, v)
    slack = np.float32(tolerance_m) + depth * np.float32(zbuf.cell / focal_px)
    return depth <= nearest + slack
