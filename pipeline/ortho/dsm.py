"""Heights from the DSM on any north-up grid of the same CRS, window by window."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from drone_io.raster_grid import read_band_window, read_raster_info
from models.errors import InputError
from models.raster import GridSpec, Window

F32 = NDArray[np.float32]


@dataclass(frozen=True)
class DsmSource:
    """Where the DSM is and what fills its holes."""

    path: str
    grid: GridSpec
    # Height used where no valid DSM cell is near (the flight's median ground height).
    fill_height: float
    # A raw float32 copy of the DSM (.npy, NaN for no data) that windows are sliced from
    # without decoding the GeoTIFF again; empty unless :func:`import_dsm` wrote one.
    raw: str = ""


def fill_nearest(z: F32, fill: float, bad: NDArray[np.bool_] | None = None) -> F32:
    """Replace NaN cells (or ``bad`` cells) of (h, w[, c]) with the nearest good cell's value.

    ``fill`` is used when no cell is good.
    """
    if bad is None:
        finite = np.isfinite(z) if z.ndim == 2 else np.isfinite(z).all(axis=2)
        missing = np.asarray(~finite, dtype=bool)
    else:
        missing = bad
    if not missing.any():
        return z
    if missing.all():
        return np.full_like(z, np.float32(fill))
    idx = ndimage.distance_transform_edt(missing, return_distances=False, return_indices=True)
    return np.asarray(z[idx[0], idx[1]], dtype=np.float32)


def _raw_window(dsm: DsmSource, window: Window) -> F32:
    """A window of the raw DSM copy that may reach past the raster (NaN there)."""
    raw = np.load(dsm.raw, mmap_mode="r")
    H, W = raw.shape
    if window.col_off >= 0 and window.row_off >= 0 and window.col_off + window.width <= W and window.row_off + window.height <= H:
        return np.asarray(raw[window.slices], dtype=np.float32)  # inside: the mapped block itself, no copy
    out = np.full((window.height, window.width), np.nan, np.float32)
    c0, r0 = max(0, window.col_off), max(0, window.row_off)
    c1, r1 = min(W, window.col_off + window.width), min(H, window.row_off + window.height)
    if c1 > c0 and r1 > r0:
        out[r0 - window.row_off : r1 - window.row_off, c0 - window.col_off : c1 - window.col_off] = raw[r0:r1, c0:c1]
    return out


@dataclass(frozen=True, eq=False)
class DsmWindow:
    """A block of the DSM in memory, holes filled: sample it on any grid without more reads."""

    grid: GridSpec  # the block's own grid (a window of the DSM grid)
    z: F32

    @classmethod
    def read(cls, dsm: DsmSource, window: Window) -> "DsmWindow":
        z = fill_nearest(np.array(_raw_window(dsm, window)) if dsm.raw else read_band_window(Path(dsm.path), window), dsm.fill_height)
        g = dsm.grid
        grid = GridSpec(g.crs, g.x_min + window.col_off * g.resolution, g.y_max - window.row_off * g.resolution, g.resolution, window.width, window.height)
        return cls(grid, z)

    @classmethod
    def covering(cls, dsm: DsmSource, bounds: tuple[float, float, float, float], pad: int = 3, align: int = 1) -> "DsmWindow":
        """The DSM block (not clipped: holes past the edge are filled) covering ``bounds`` plus ``pad`` cells.

        With ``align`` the block starts and ends on multiples of ``align`` cells of the DSM grid,
        so that pooling it gives the same coarse cells whichever tile reads it.
        """
        g = dsm.grid
        c0 = int(math.floor((bounds[0] - g.x_min) / g.resolution)) - pad
        c1 = int(math.ceil((bounds[2] - g.x_min) / g.resolution)) + pad
        r0 = int(math.floor((g.y_max - bounds[3]) / g.resolution)) - pad
        r1 = int(math.ceil((g.y_max - bounds[1]) / g.resolution)) + pad
        a = max(1, align)
        c0, r0 = c0 - c0 % a, r0 - r0 % a
        c1, r1 = c1 + (-c1) % a, r1 + (-r1) % a
        return cls.read(dsm, Window(c0, r0, max(a, c1 - c0), max(a, r1 - r0)))

    def sample(self, grid: GridSpec, window: Window, step_m: float | None = None) -> F32:
        """Heights at the cell centres of ``window`` of ``grid`` (bilinear, clamped at the block's edge).

        With ``step_m``, cells whose bilinear support spans a height step larger
        than ``step_m`` take the nearest DSM cell instead: at a wall, bilinear
        heights form a ramp that is no real surface and would project onto the
        wall in the images, so a cell is either roof or ground and building
        edges stay crisp.
        """
        xs, ys = grid.cell_centers(window)
        col64, row64 = self.grid.world_to_cell(xs, ys)
        col, row = col64.astype(np.float32), row64.astype(np.float32)  # the positions OpenCV sees
        map_x = np.ascontiguousarray(np.broadcast_to(col[None, :], (window.height, window.width)))
        map_y = np.ascontiguousarray(np.broadcast_to(row[:, None], (window.height, window.width)))
        z = self.z
        # Float maps: OpenCV interpolates float rasters exactly with them (fixed-point maps
        # would quantise positions to 1/32 cell, a visible error on a 10 m wall).
        out = cv2.remap(z, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if step_m is not None:
            # The grid is separable (columns and rows), so the cells at steps and their nearest
            # DSM cells come from 1-D indices; only the step cells are rewritten.
            H, W = z.shape
            fc = np.clip(np.floor(col), 0, W - 1).astype(np.intp)
            fr = np.clip(np.floor(row), 0, H - 1).astype(np.intp)
            rr, cc = _step_cells(z, fr, fc, np.float32(step_m))
            if rr.size:
                nc = np.clip(np.rint(col), 0, W - 1).astype(np.intp)  # OpenCV's nearest: round half to even
                nr = np.clip(np.rint(row), 0, H - 1).astype(np.intp)
                out[rr, cc] = z[nr[rr], nc[cc]]
        return np.asarray(out, dtype=np.float32)


def _step_cells(z: F32, fr: NDArray[np.intp], fc: NDArray[np.intp], step: np.float32) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """(rows, cols) of the target cells whose bilinear support (DSM cells fr..fr+1 x fc..fc+1) spans more than ``step``.

    A target grid as fine as the DSM or finer (a tile's pixels) measures the height range
    of every 2x2 block of the DSM rows and columns it covers (one dilate and erode), then
    finds its step cells there (:func:`_cells_over`); a coarser one (blending grid, cell
    corners) measures it at its own cells only.
    """
    H, W = z.shape
    sorted_ = fr.size > 0 and fc.size > 0 and bool(np.all(fr[1:] >= fr[:-1])) and bool(np.all(fc[1:] >= fc[:-1]))
    if sorted_ and (int(fr[-1]) - int(fr[0]) + 2) * (int(fc[-1]) - int(fc[0]) + 2) <= 2 * fr.size * fc.size:
        r0, c0 = int(fr[0]), int(fc[0])
        block = z[r0 : int(fr[-1]) + 2, c0 : int(fc[-1]) + 2]  # OpenCV takes the strided view: no copy
        k = np.ones((2, 2), np.uint8)
        span = cv2.dilate(block, k, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE) - cv2.erode(
            block, k, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE
        )
        return _cells_over(span > step, fr - r0, fc - c0)
    r1, c1 = np.minimum(fr + 1, H - 1), np.minimum(fc + 1, W - 1)
    quad = [z[np.ix_(a, b)] for a in (fr, r1) for b in (fc, c1)]
    span = np.maximum(np.maximum(quad[0], quad[1]), np.maximum(quad[2], quad[3])) - np.minimum(
        np.minimum(quad[0], quad[1]), np.minimum(quad[2], quad[3])
    )
    rr, cc = np.nonzero(span > step)
    return rr.astype(np.intp), cc.astype(np.intp)


def _cells_over(flags: NDArray[np.bool_], fr: NDArray[np.intp], fc: NDArray[np.intp]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """(rows, cols) of the target cells whose DSM cell (fr per row, fc per column) is flagged.

    Equals ``np.nonzero(flags[np.ix_(fr, fc)])`` up to order, without the gather over every
    target cell: height steps are rare, so the flagged DSM cells are found on the DSM block
    and each expands to its run of target rows times its run of target columns. When the
    indices are not sorted (a grid that is not north-up), the gather is used.
    """
    if fr.size == 0 or fc.size == 0:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    if not (bool(np.all(fr[1:] >= fr[:-1])) and bool(np.all(fc[1:] >= fc[:-1]))):
        rr, cc = np.nonzero(flags[np.ix_(fr, fc)])
        return rr.astype(np.intp), cc.astype(np.intp)
    r0, c0 = int(fr[0]), int(fc[0])
    # OpenCV's SIMD scan for the few flagged cells (numpy's nonzero costs several times more).
    found = cv2.findNonZero(np.ascontiguousarray(flags[r0 : int(fr[-1]) + 1, c0 : int(fc[-1]) + 1]).view(np.uint8))
    if found is None:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    found = found.reshape(-1, 2)  # (x, y) per cell
    cs, rs = found[:, 0].astype(np.intp), found[:, 1].astype(np.intp)
    ra = np.searchsorted(fr, rs + r0, "left")
    ca = np.searchsorted(fc, cs + c0, "left")
    nr = np.searchsorted(fr, rs + r0, "right") - ra
    nc = np.searchsorted(fc, cs + c0, "right") - ca
    count = nr * nc
    total = int(count.sum())
    which = np.repeat(np.arange(count.size), count)
    off = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
    q, m = np.divmod(off, nc[which])
    return (ra[which] + q).astype(np.intp), (ca[which] + m).astype(np.intp)


def heights_on_grid(dsm: DsmSource, grid: GridSpec, window: Window, step_m: float | None = None) -> F32:
    """DSM heights at the cell centres of ``window`` of ``grid`` (see :meth:`DsmWindow.sample`).

    When the target cells are much coarser than the DSM's, the DSM is read
    decimated (cell averages), so memory follows the target's size.
    """
    src = dsm.grid
    decim = max(1, int(grid.resolution / src.resolution) // 2)
    bounds = _window_bounds(grid, window)
    if decim <= 1:
        return DsmWindow.covering(dsm, bounds).sample(grid, window, step_m)
    g = src
    c0 = int(math.floor((bounds[0] - g.x_min) / g.resolution)) - 2 * decim
    c1 = int(math.ceil((bounds[2] - g.x_min) / g.resolution)) + 2 * decim
    r0 = int(math.floor((g.y_max - bounds[3]) / g.resolution)) - 2 * decim
    r1 = int(math.ceil((g.y_max - bounds[1]) / g.resolution)) + 2 * decim
    c0 -= c0 % decim
    r0 -= r0 % decim
    c1 += (-c1) % decim
    r1 += (-r1) % decim
    out_shape = ((r1 - r0) // decim, (c1 - c0) // decim)
    if dsm.raw:
        # Cell averages of the valid cells, as GDAL's decimated read gives them.
        total, count = _valid_block_sums(_raw_window(dsm, Window(c0, r0, c1 - c0, r1 - r0)), decim)
        with np.errstate(invalid="ignore", divide="ignore"):
            coarse_z = np.where(count > 0, total / np.maximum(count, 1.0), np.nan).astype(np.float32)
    else:
        coarse_z = read_band_window(Path(dsm.path), Window(c0, r0, c1 - c0, r1 - r0), out_shape=out_shape)
    z = fill_nearest(coarse_z, dsm.fill_height)
    coarse = GridSpec(g.crs, g.x_min + c0 * g.resolution, g.y_max - r0 * g.resolution, g.resolution * decim, out_shape[1], out_shape[0])
    return DsmWindow(coarse, z).sample(grid, window, step_m)


def _window_bounds(grid: GridSpec, window: Window) -> tuple[float, float, float, float]:
    x0 = grid.x_min + window.col_off * grid.resolution
    y1 = grid.y_max - window.row_off * grid.resolution
    return (x0, y1 - window.height * grid.resolution, x0 + window.width * grid.resolution, y1)


@dataclass(frozen=True, eq=False)
class HeightRange:
    """Lowest and highest DSM height per coarse cell: bounds occluder searches without reading the DSM."""

    grid: GridSpec  # coarse cells, a whole number of DSM cells each
    z_min: F32
    z_max: F32

    def range_in(self, bounds: tuple[float, float, float, float], fill: float) -> tuple[float, float]:
        """(lowest, highest) DSM height within ``bounds`` (x0, y0, x1, y1), one coarse cell of slack."""
        x0, y0, x1, y1 = bounds
        c0, r1 = self.grid.world_to_cell(np.array([x0]), np.array([y0]))
        c1, r0 = self.grid.world_to_cell(np.array([x1]), np.array([y1]))
        ca = max(0, int(np.floor(c0[0])) - 1)
        cb = min(self.grid.width, int(np.ceil(c1[0])) + 2)
        ra = max(0, int(np.floor(r0[0])) - 1)
        rb = min(self.grid.height, int(np.ceil(r1[0])) + 2)
        if ca >= cb or ra >= rb:
            return fill, fill
        lo = self.z_min[ra:rb, ca:cb]
        hi = self.z_max[ra:rb, ca:cb]
        lo = lo[np.isfinite(lo)]
        hi = hi[np.isfinite(hi)]
        if lo.size == 0:
            return fill, fill
        return float(lo.min()), float(hi.max())

    def floor_grid(self, fill: float) -> F32:
        """Lowest height within one coarse cell of each cell (``fill`` where none), cached per fill."""
        cache: dict[float, F32] = self.__dict__.setdefault("_floor", {})
        low = cache.get(fill)
        if low is None:
            zmin = np.where(np.isfinite(self.z_min), self.z_min, np.float32(fill)).astype(np.float32)
            low = np.asarray(cv2.erode(zmin, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE), dtype=np.float32)
            low.flags.writeable = False
            cache[fill] = low
        return low


def floor_heights(hr: HeightRange, xs: NDArray[np.float64], ys: NDArray[np.float64], fill: float) -> F32:
    """The lowest DSM height within about one coarse cell of each (xs per column, ys per row) point.

    Taken from the flight-wide coarse grid, so it is the same whichever tile asks.
    """
    low = hr.floor_grid(fill)
    col, row = hr.grid.world_to_cell(xs, ys)
    c = np.clip(np.rint(col).astype(np.int64), 0, hr.grid.width - 1)
    r = np.clip(np.rint(row).astype(np.int64), 0, hr.grid.height - 1)
    if r.size and c.size and bool(np.all(r[1:] >= r[:-1])) and bool(np.all(c[1:] >= c[:-1])):
        # Points on a grid: runs of them share a coarse cell, so repeat the few cells needed
        # (several times faster than gathering every point).
        ru, rn = np.unique(r, return_counts=True)
        cu, cn = np.unique(c, return_counts=True)
        return np.repeat(np.repeat(low[np.ix_(ru, cu)], rn, axis=0), cn, axis=1).astype(np.float32, copy=False)
    return np.asarray(low[np.ix_(r, c)], dtype=np.float32)


def block_reduce(a: F32, size: int, op: np.ufunc) -> F32:
    """``op`` (np.fmax / np.fmin: NaN only where the whole block is NaN) over size x size blocks of ``a`` (shape a multiple of size).

    Strided element-wise passes: numpy's reduction along a short last axis is several times slower.
    """
    if size == 1:
        return np.array(a, dtype=np.float32)
    cols = np.array(a[:, 0::size], dtype=np.float32)
    for k in range(1, size):
        op(cols, a[:, k::size], out=cols)
    out = np.array(cols[0::size], dtype=np.float32)
    for k in range(1, size):
        op(out, cols[k::size], out=out)
    return out


def _nan_padded(z: F32, size: int) -> F32:
    """``z`` grown with NaN to whole ``size`` x ``size`` blocks (``z`` itself when it has them)."""
    h, w = z.shape
    hh, ww = -(-h // size) * size, -(-w // size) * size
    if (hh, ww) == (h, w):
        return z
    pad = np.full((hh, ww), np.nan, np.float32)
    pad[:h, :w] = z
    return pad


def block_sum(a: NDArray[Any], size: int) -> NDArray[np.float64]:
    """Sums over size x size blocks of the first two axes (their sizes multiples of size), by strided passes."""
    cols = np.array(a[:, 0::size], dtype=np.float64)
    for k in range(1, size):
        cols += a[:, k::size]
    out = np.array(cols[0::size], dtype=np.float64)
    for k in range(1, size):
        out += cols[k::size]
    return out


def _valid_block_sums(z: F32, size: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Sum and count of the finite cells per size x size block of ``z`` (shape a multiple of size).

    A block without holes (the usual DSM) is summed by OpenCV's integer-factor area
    resize, several times faster than the masked strided sums (float32 means: about
    1e-5 m off on heights of hundreds of metres).
    """
    h, w = z.shape[0] // size, z.shape[1] // size
    if size > 1 and h > 0 and w > 0 and bool(np.isfinite(z).all()):
        means = cv2.resize(np.ascontiguousarray(z, dtype=np.float32), (w, h), interpolation=cv2.INTER_AREA)
        area = float(size * size)
        return np.asarray(means, dtype=np.float64) * area, np.full((h, w), area)
    good = np.isfinite(z)
    return block_sum(np.where(good, z, np.float32(0.0)), size), block_sum(good, size)


def _read_ahead(path: Path, windows: list[Window], ahead: int = 2) -> Iterator[tuple[Window, F32]]:
    """Band 1 over each window in turn, decoded by a helper thread up to ``ahead`` windows in advance.

    GDAL decodes (DEFLATE, predictor) without the GIL, so the next blocks decode while the
    caller reduces and copies the current one: the DSM import is about as long as its decode
    alone instead of decode plus reductions, and only ``ahead`` + 1 blocks are in memory.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dsm-read") as pool:
        pending: deque[tuple[Window, Future[F32]]] = deque()
        for win in windows:
            pending.append((win, pool.submit(read_band_window, path, win)))
            if len(pending) > ahead:
                w, fut = pending.popleft()
                yield w, fut.result()
        while pending:
            w, fut = pending.popleft()
            yield w, fut.result()


def import_dsm(
    path: Path, raw_out: Path, cells_per_block: int = 32, overview_longest: int = 512, read_size: int = 2048
) -> tuple[DsmSource, HeightRange, HeightRange]:
    """One decode of the DSM GeoTIFF, streamed block by block.

    Writes the raw float32 copy (``raw_out``, .npy, NaN for no data; see
    :attr:`DsmSource.raw`) and returns the source (fill height: the median of
    the overview), the lowest and highest height per ``cells_per_block`` x
    ``cells_per_block`` cells, and an overview of cell averages at most
    ``overview_longest`` cells a side (for planning). Memory stays at a few read
    blocks plus the small grids.
    """
    info = read_raster_info(path)
    if info.count < 1:
        raise InputError(f"DSM {path} has no bands")
    g = info.grid
    b = max(1, cells_per_block)
    f = max(1, -(-max(g.width, g.height) // overview_longest))
    bh, bw = -(-g.height // b), -(-g.width // b)
    oh, ow = -(-g.height // f), -(-g.width // f)
    zmin = np.full((bh, bw), np.nan, np.float32)
    zmax = np.full((bh, bw), np.nan, np.float32)
    osum = np.zeros((oh, ow), np.float64)
    ocount = np.zeros((oh, ow), np.float64)
    raw = np.lib.format.open_memmap(raw_out, mode="w+", dtype=np.float32, shape=(g.height, g.width))
    lcm = b * f // math.gcd(b, f)
    step = max(lcm, (read_size // lcm) * lcm)
    windows = [
        Window(c0, r0, min(step, g.width - c0), min(step, g.height - r0)) for r0 in range(0, g.height, step) for c0 in range(0, g.width, step)
    ]
    for win, z in _read_ahead(path, windows):
        r0, c0, h, w = win.row_off, win.col_off, win.height, win.width
        if np.isinf(z).any():  # no height: only NaN marks a hole from here on
            z[np.isinf(z)] = np.nan
        raw[r0 : r0 + h, c0 : c0 + w] = z
        # fmax/fmin skip NaN, and a block with no height stays NaN.
        hi = block_reduce(_nan_padded(z, b), b, np.fmax)
        lo = block_reduce(_nan_padded(z, b), b, np.fmin)
        zmax[r0 // b : r0 // b + hi.shape[0], c0 // b : c0 // b + hi.shape[1]] = hi
        zmin[r0 // b : r0 // b + lo.shape[0], c0 // b : c0 // b + lo.shape[1]] = lo
        total, count = _valid_block_sums(_nan_padded(z, f), f)
        osum[r0 // f : r0 // f + total.shape[0], c0 // f : c0 // f + total.shape[1]] += total
        ocount[r0 // f : r0 // f + count.shape[0], c0 // f : c0 // f + count.shape[1]] += count
    # No flush (msync): readers see the pages through the page cache, as for every other file the
    # workspace writes without syncing; a synchronous write-back of the copy only made the plan wait.
    del raw
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(ocount > 0, osum / np.maximum(ocount, 1.0), np.nan).astype(np.float32)
    finite_means = means[np.isfinite(means)]
    if finite_means.size == 0:
        raise InputError(f"DSM {path} holds no valid heights; rerun the dem stage")
    dsm = DsmSource(str(path), g, float(np.median(finite_means)), str(raw_out))
    coarse = HeightRange(GridSpec(g.crs, g.x_min, g.y_max, g.resolution * b, bw, bh), zmin, zmax)
    overview = HeightRange(GridSpec(g.crs, g.x_min, g.y_max, g.resolution * f, ow, oh), means, means)
    return dsm, coarse, overview


def pool_dsm(dsm: DsmSource, pool: int, pooled_out: Path, read_rows: int = 2048) -> GridSpec:
    """The max-pooled occluder DSM (highest height per ``pool`` x ``pool`` cells, NaN where no data).

    Read from the raw copy band by band and written to ``pooled_out`` as a
    memory-mapped .npy, so tiles and images read just their window of it.
    """
    if not dsm.raw:
        raise ValueError("pool_dsm needs the DSM's raw copy (import_dsm)")
    g = dsm.grid
    p = max(1, pool)
    ph, pw = -(-g.height // p), -(-g.width // p)
    src = np.load(dsm.raw, mmap_mode="r")
    pooled = np.lib.format.open_memmap(pooled_out, mode="w+", dtype=np.float32, shape=(ph, pw))
    step = max(p, (read_rows // p) * p)
    for r0 in range(0, g.height, step):
        h = min(step, g.height - r0)
        z = np.asarray(src[r0 : r0 + h], dtype=np.float32)
        # fmax skips NaN; a block with no height stays NaN.
        hi = block_reduce(_nan_padded(z, p), p, np.fmax)
        pooled[r0 // p : r0 // p + hi.shape[0]] = hi
    del pooled  # no flush: see import_dsm
    return GridSpec(g.crs, g.x_min, g.y_max, g.resolution * p, pw, ph)
