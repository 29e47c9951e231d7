"""Gridding kernels for the DSM and DTM: one statistic per cell, hole filling, smoothing.

All functions work on one window of a :class:`GridSpec` and return float32
arrays with NaN for "no data"; the DEM stage maps them over tiles (each with a
margin) and the eager/tiled results are equal on every tile's core.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from scipy import sparse
from scipy.sparse.linalg import spsolve

from models.raster import GridSpec, Window

FloatArray = NDArray[np.float64]
F32 = NDArray[np.float32]
BoolArray = NDArray[np.bool_]


def cell_index(grid: GridSpec, window: Window, x: FloatArray, y: FloatArray) -> tuple[NDArray[np.int64], BoolArray]:
    """Flat cell index inside ``window`` of each point, and which points fall in it."""
    col = np.floor((np.asarray(x) - grid.x_min) / grid.resolution).astype(np.int64) - window.col_off
    row = np.floor((grid.y_max - np.asarray(y)) / grid.resolution).astype(np.int64) - window.row_off
    inside = (col >= 0) & (col < window.width) & (row >= 0) & (row < window.height)
    return row * window.width + col, inside


def cell_percentile(grid: GridSpec, window: Window, xyz: FloatArray, q: float) -> tuple[F32, NDArray[np.int32]]:
    """The ``q``-th percentile (0-100, linear) of point heights per cell, and the point count per cell."""
    (out,), counts = cell_percentiles(grid, window, xyz, (q,))
    return out, counts


def cell_percentiles(grid: GridSpec, window: Window, xyz: FloatArray, qs: tuple[float, ...]) -> tuple[list[F32], NDArray[np.int32]]:
    """Several percentiles (0-100, linear) of point heights per cell from one sort, and the point count per cell."""
    h, w = window.height, window.width
    outs = [np.full(h * w, np.nan, dtype=np.float32) for _ in qs]
    counts = np.zeros(h * w, dtype=np.int32)
    if len(xyz):
        flat, inside = cell_index(grid, window, xyz[:, 0], xyz[:, 1])
        flat = flat[inside]
        z = xyz[inside, 2]
        if len(z):
            order = np.lexsort((z, flat))
            flat = flat[order]
            z = z[order]
            cells, start, n = np.unique(flat, return_index=True, return_counts=True)
            for q, out in zip(qs, outs):
                pos = start + (q / 100.0) * (n - 1)
                lo = np.floor(pos).astype(np.int64)
                hi = np.minimum(lo + 1, start + n - 1)
                frac = pos - lo
                out[cells] = (z[lo] * (1.0 - frac) + z[hi] * frac).astype(np.float32)
            counts[cells] = n.astype(np.int32)
    return [o.reshape(h, w) for o in outs], counts.reshape(h, w)


def cells_touching(grid: GridSpec, box: tuple[float, float, float, float]) -> Window:
    """The window of the cells of ``grid`` that a box (x_min, y_min, x_max, y_max) touches, clipped to the grid."""
    c0 = max(0, int(np.floor((box[0] - grid.x_min) / grid.resolution)))
    c1 = min(grid.width, int(np.floor((box[2] - grid.x_min) / grid.resolution)) + 1)
    r0 = max(0, int(np.floor((grid.y_max - box[3]) / grid.resolution)))
    r1 = min(grid.height, int(np.floor((grid.y_max - box[1]) / grid.resolution)) + 1)
    return Window(c0, r0, max(0, c1 - c0), max(0, r1 - r0))


def window_bounds(grid: GridSpec, window: Window) -> tuple[float, float, float, float]:
    """(x_min, y_min, x_max, y_max) of a window of ``grid``."""
    left = grid.x_min + window.col_off * grid.resolution
    top = grid.y_max - window.row_off * grid.resolution
    return (left, top - window.height * grid.resolution, left + window.width * grid.resolution, top)


def merge_window(dst: F32, window: Window, part: F32) -> None:
    """Write the finite cells of ``part`` into ``window`` of ``dst`` (NaN cells leave ``dst`` as it is)."""
    view = dst[window.slices]
    np.copyto(view, part, where=np.isfinite(part))


def nearest_fill(arr: F32) -> F32:
    """Every NaN cell takes the value of its nearest valid cell (all NaN stays NaN)."""
    valid = np.isfinite(arr)
    if valid.all() or not valid.any():
        return arr.copy()
    _, (ri, ci) = ndimage.distance_transform_edt(~valid, return_indices=True)
    return arr[ri, ci]


def harmonic_fill(arr: F32, fill: BoolArray) -> F32:
    """Fill the ``fill`` cells with the harmonic (Laplace) interpolant of their valid neighbours.

    Each hole's values depend only on the valid cells that border it, so a hole
    gets the same values whichever tile computes it; linear surfaces are
    reproduced exactly. Holes that touch no valid cell stay NaN.
    """
    out = arr.copy()
    valid = np.isfinite(arr)
    fill = fill & ~valid
    if not fill.any() or not valid.any():
        return out
    cross = ndimage.generate_binary_structure(2, 1)
    labels, _ = ndimage.label(fill, structure=cross)
    touching = np.unique(labels[ndimage.binary_dilation(valid, structure=cross) & fill])
    solvable = np.isin(labels, touching[touching > 0])
    rows, cols = np.nonzero(solvable)
    m = len(rows)
    if m == 0:
        return out
    h, w = arr.shape
    idx = np.full(arr.shape, -1, dtype=np.int64)
    idx[rows, cols] = np.arange(m)
    known = np.where(valid, arr, 0.0).astype(np.float64)
    base = float(known[valid].mean())
    diag = np.zeros(m)
    rhs = np.zeros(m)
    off_i: list[NDArray[np.int64]] = []
    off_j: list[NDArray[np.int64]] = []
    for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        rr = rows + dr
        cc = cols + dc
        inb = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        rr = np.clip(rr, 0, h - 1)
        cc = np.clip(cc, 0, w - 1)
        nb = idx[rr, cc]
        unknown = inb & (nb >= 0)
        is_known = inb & valid[rr, cc]
        diag += unknown | is_known
        rhs += np.where(is_known, known[rr, cc] - base, 0.0)
        off_i.append(np.nonzero(unknown)[0])
        off_j.append(nb[unknown])
    ii = np.concatenate([np.arange(m)] + off_i)
    jj = np.concatenate([np.arange(m)] + off_j)
    vals = np.concatenate([diag] + [-np.ones(len(o)) for o in off_i])
    A = sparse.csr_matrix((vals, (ii, jj)), shape=(m, m))
    out[rows, cols] = (spsolve(A, rhs) + base).astype(np.float32)
    return out


def pushpull_fill(arr: F32, fill: BoolArray) -> F32:
    """Fill the ``fill`` cells from a mean pyramid (push-pull): linear memory and time, any hole size.

    Push: average the valid cells 2 x 2 level by level. Pull: from the coarsest
    level down, a cell without data takes the bilinear upsampling of the level
    above. Smooth, not exact on planes, but it scales to millions of cells.
    """
    out = arr.copy()
    valid = np.isfinite(arr)
    fill = fill & ~valid
    if not fill.any() or not valid.any():
        return out
    base = float(arr[valid].mean())
    levels: list[tuple[NDArray[np.float64], NDArray[np.float64]]] = []
    v = np.where(valid, arr - base, 0.0).astype(np.float64)
    w = valid.astype(np.float64)
    while True:
        levels.append((v, w))
        if (w > 0).all() or max(v.shape) <= 1:
            break
        h, wd = v.shape
        v = np.pad(v, ((0, h % 2), (0, wd % 2)))
        w = np.pad(w, ((0, h % 2), (0, wd % 2)))
        v = v[0::2, 0::2] + v[1::2, 0::2] + v[0::2, 1::2] + v[1::2, 1::2]
        w = w[0::2, 0::2] + w[1::2, 0::2] + w[0::2, 1::2] + w[1::2, 1::2]
    v, w = levels[-1]
    est = np.where(w > 0, v / np.maximum(w, 1e-12), 0.0)
    for v, w in reversed(levels[:-1]):
        h, wd = v.shape
        up = cv2.resize(est.astype(np.float32), (est.shape[1] * 2, est.shape[0] * 2), interpolation=cv2.INTER_LINEAR)[:h, :wd]
        est = np.where(w > 0, v / np.maximum(w, 1e-12), up)
    out[fill] = (est[fill] + base).astype(np.float32)
    return out


# Above this many cells to fill, the harmonic solve gives way to push-pull (memory and time).
HARMONIC_MAX_CELLS = 250_000


def interpolate_fill(arr: F32, fill: BoolArray) -> F32:
    """Fill the ``fill`` cells by harmonic interpolation (push-pull for very large fills).

    Cells the harmonic solve cannot reach take the nearest valid value.
    """
    if int(np.count_nonzero(fill & ~np.isfinite(arr))) > HARMONIC_MAX_CELLS:
        return pushpull_fill(arr, fill)
    out = harmonic_fill(arr, fill)
    missing = fill & ~np.isfinite(out)
    if missing.any() and np.isfinite(arr).any():
        out[missing] = nearest_fill(arr)[missing]
    return out


def small_holes(arr: F32, max_hole_cells: int, border_pad: tuple[bool, bool, bool, bool] = (True, True, True, True)) -> BoolArray:
    """NaN cells in gaps at most ``max_hole_cells`` across: the morphological closing of the data mask.

    Closing with a disk of diameter ``max_hole_cells`` fills holes, cracks and
    notches narrower than the disk, wherever they lead, but never grows the
    outer boundary of the data or closes a wider gap. ``border_pad`` (top,
    bottom, left, right) marks window sides that are the edge of the whole
    raster, beyond which there is no data; other sides need a margin of at
    least ``max_hole_cells + 1`` cells for tiles to agree with one pass.
    """
    valid = np.isfinite(arr)
    if valid.all() or not valid.any() or max_hole_cells <= 0:
        return np.zeros(arr.shape, dtype=bool)
    r = (max_hole_cells + 1) // 2
    p = r + 1
    top, bottom, left, right = (p if b else 0 for b in border_pad)
    padded = np.pad(valid, ((top, bottom), (left, right)), constant_values=False).astype(np.uint8)
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    grown = cv2.dilate(padded, disk, borderType=cv2.BORDER_REPLICATE)
    closed = cv2.erode(grown, disk, borderType=cv2.BORDER_REPLICATE)
    fill = closed[top : top + arr.shape[0], left : left + arr.shape[1]].astype(bool)
    return fill & ~valid


def median_smooth(arr: F32, size: int = 3) -> F32:
    """NaN-aware median filter (3 or 5): NaN cells stay NaN and do not pull their neighbours."""
    if size not in (3, 5):
        raise ValueError("median size must be 3 or 5")
    valid = np.isfinite(arr)
    if not valid.any():
        return arr.copy()
    base = float(np.nanmin(arr))
    filled = nearest_fill(arr) - base
    smooth = cv2.medianBlur(filled.astype(np.float32), size) + base
    return np.where(valid, smooth, np.nan).astype(np.float32)


def fill_and_smooth(arr: F32, max_hole_cells: int, border_pad: tuple[bool, bool, bool, bool], smooth: int = 3) -> F32:
    """Fill small holes by interpolation, then median-smooth (ODM's DSM recipe without the radii)."""
    out = interpolate_fill(arr, small_holes(arr, max_hole_cells, border_pad))
    return median_smooth(out, smooth) if smooth else out
