"""Accuracy checks of an orthophoto against a reference on the same grid (tests, benchmarks, reports).

Geolocation error by local normalised cross-correlation: at a regular grid
of points, a patch of the orthophoto is matched against the reference within
a search radius; the sub-pixel peak (parabola fit) is the local offset.
Points whose patch has little texture, or whose match is ambiguous, are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from models.raster import GridSpec, Window

F32 = NDArray[np.float32]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class Offsets:
    """Local offsets (ortho minus reference), in pixels of the grid."""

    points: NDArray[np.float64]  # (n, 2) column, row of the patch centres
    dxy: NDArray[np.float64]  # (n, 2) dx (columns, east), dy (rows, south)
    score: NDArray[np.float64]  # (n,) NCC peak

    @property
    def rmse_px(self) -> float:
        if self.dxy.shape[0] == 0:
            return float("nan")
        return float(np.sqrt(np.mean(np.sum(self.dxy**2, axis=1))))

    def __len__(self) -> int:
        return int(self.dxy.shape[0])


def resample_to_grid(src: NDArray[np.float32], src_grid: GridSpec, dst_grid: GridSpec) -> F32:
    """Resample (h, w[, c]) from one north-up grid to another (anti-aliased bilinear)."""
    ratio = dst_grid.resolution / src_grid.resolution
    a = np.asarray(src, dtype=np.float32)
    if ratio > 1.0:
        a = np.asarray(cv2.GaussianBlur(a, (0, 0), 0.5 * ratio), dtype=np.float32)
    xs, ys = dst_grid.cell_centers(Window(0, 0, dst_grid.width, dst_grid.height))
    col, row = src_grid.world_to_cell(xs, ys)
    mx = np.ascontiguousarray(np.broadcast_to(col.astype(np.float32)[None, :], dst_grid.shape))
    my = np.ascontiguousarray(np.broadcast_to(row.astype(np.float32)[:, None], dst_grid.shape))
    return np.asarray(cv2.remap(a, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT), dtype=np.float32)


def _grey(a: NDArray[np.float32]) -> F32:
    a = np.asarray(a, dtype=np.float32)
    return a.mean(axis=2).astype(np.float32) if a.ndim == 3 else a


def local_offsets(
    ortho: NDArray[np.float32],
    reference: NDArray[np.float32],
    valid: BoolArray,
    n_side: int = 9,
    patch: int = 31,
    search: int = 6,
    min_std: float = 4.0,
    min_score: float = 0.6,
    exclude: BoolArray | None = None,
) -> Offsets:
    """Offsets at up to ``n_side`` x ``n_side`` points spread over the valid area.

    ``exclude`` marks cells no patch may touch (for example building walls in
    a test scene, where an orthophoto and a reference legitimately differ).
    """
    o = _grey(ortho)
    r = _grey(reference)
    h, w = o.shape
    half = patch // 2
    pad = half + search + 1
    pts, dxy, scores = [], [], []
    for row in np.linspace(pad, h - pad - 1, n_side).astype(int):
        for col in np.linspace(pad, w - pad - 1, n_side).astype(int):
            win = (slice(row - half, row + half + 1), slice(col - half, col + half + 1))
            big = (slice(row - half - search, row + half + search + 1), slice(col - half - search, col + half + search + 1))
            if not valid[big].all():
                continue
            if exclude is not None and exclude[big].any():
                continue
            tpl = o[win]
            if float(tpl.std()) < min_std:
                continue
            res = cv2.matchTemplate(r[big], tpl, cv2.TM_CCOEFF_NORMED)
            _, peak, _, loc = cv2.minMaxLoc(res)
            px, py = loc
            if peak < min_score or px in (0, res.shape[1] - 1) or py in (0, res.shape[0] - 1):
                continue

            def refine(a: float, b: float, c: float) -> float:
                d = a - 2 * b + c
                return 0.0 if abs(d) < 1e-9 else 0.5 * (a - c) / d

            sx = px + refine(res[py, px - 1], res[py, px], res[py, px + 1])
            sy = py + refine(res[py - 1, px], res[py, px], res[py + 1, px])
            # The template matched at reference offset (sx - search): the ortho sits that much the other way.
            pts.append((col, row))
            dxy.append((search - sx, search - sy))
            scores.append(peak)
    return Offsets(np.asarray(pts, float).reshape(-1, 2), np.asarray(dxy, float).reshape(-1, 2), np.asarray(scores, float))


def holes_inside(valid: BoolArray, seen: BoolArray, erode_px: int = 2) -> int:
    """Cells inside the ``seen`` area (eroded by ``erode_px`` to ignore its rim) that have no data."""
    inner = cv2.erode(seen.astype(np.uint8), np.ones((2 * erode_px + 1, 2 * erode_px + 1), np.uint8)) > 0
    return int((inner & ~valid).sum())
