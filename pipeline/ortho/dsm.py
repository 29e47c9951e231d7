"""Heights from the DSM on any north-up grid of the same CRS, window by window."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

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
    # without decoding the GeoTIFF again; empty until :func:`scan_dsm` writes one.
    raw: str = ""

    @classmethod
    def open(cls, path: Path) -> "DsmSource":
        info = read_raster_info(path)
        if info.count < 1:
            raise InputError(f"DSM {path} has no bands")
        # The median of a reduced read: cheap, and robust to nodata.
        longest = max(info.grid.width, info.grid.height)
        factor = max(1, longest // 512)
        coarse = read_band_window(
            path,
            Window(0, 0, info.grid.width, info.grid.height),
            out_shape=(max(1, info.grid.height // factor), max(1, info.grid.width // factor)),
        )
        finite = coarse[np.isfinite(coarse)]
        if finite.size == 0:
            raise InputError(f"DSM {path} holds no valid heights; rerun the dem stage")
        return cls(str(path), info.grid, float(np.median(finite)))


def dsm_overview(dsm: DsmSource, longest: int = 512) -> "HeightRange":
    """A coarse look at the whole DSM (cell averages, at most ``longest`` cells a side), for planning."""
    g = dsm.grid
    factor = max(1, -(-max(g.width, g.height) // longest))
    shape = (-(-g.height // factor), -(-g.width // factor))
    z = read_band_window(Path(dsm.path), Window(0, 0, shape[1] * factor, shape[0] * factor), out_shape=shape)
    grid = GridSpec(g.crs, g.x_min, g.y_max, g.resolution * factor, shape[1], shape[0])
    return HeightRange(grid, z, z)


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
    out = np.full((window.height, window.width), np.nan, np.float32)
    H, W = raw.shape
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
        z = fill_nearest(_raw_window(dsm, window) if dsm.raw else read_band_window(Path(dsm.path), window), dsm.fill_height)
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

    @property
    def step(self) -> F32:
        """step[r, c]: height range of the 2x2 block whose top-left cell is (r, c), the bilinear support (cached)."""
        cached = self.__dict__.get("_step")
        if cached is None:
            k = np.ones((2, 2), np.uint8)
            cached = np.asarray(
                cv2.dilate(self.z, k, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)
                - cv2.erode(self.z, k, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE),
                dtype=np.float32,
            )
            object.__setattr__(self, "_step", cached)
            object.__setattr__(self, "_step_max", float(cached.max()) if cached.size else 0.0)
        return np.asarray(cached, dtype=np.float32)

    @property
    def step_max(self) -> float:
        _ = self.step
        return float(self.__dict__["_step_max"])

    def max_pooled(self, factor: int) -> "DsmWindow":
        """Highest height per block of ``factor`` x ``factor`` cells (conservative for occlusion)."""
        if factor <= 1:
            return self
        h, w = self.z.shape
        bh, bw = -(-h // factor), -(-w // factor)
        pad = np.full((bh * factor, bw * factor), -np.inf, np.float32)
        pad[:h, :w] = self.z
        z = pad.reshape(bh * factor, bw, factor).max(axis=2).reshape(bh, factor, bw).max(axis=1)
        g = self.grid
        return DsmWindow(GridSpec(g.crs, g.x_min, g.y_max, g.resolution * factor, bw, bh), z.astype(np.float32))

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
        if step_m is not None and self.step_max > step_m:
            # The grid is separable (columns and rows), so the cells at steps and their nearest
            # DSM cells come from 1-D indices; only the step cells are rewritten.
            H, W = z.shape
            fc = np.clip(np.floor(col), 0, W - 1).astype(np.intp)
            fr = np.clip(np.floor(row), 0, H - 1).astype(np.intp)
            rr, cc = np.nonzero(self.step[np.ix_(fr, fc)] > np.float32(step_m))
            if rr.size:
                nc = np.clip(np.rint(col), 0, W - 1).astype(np.intp)  # OpenCV's nearest: round half to even
                nr = np.clip(np.rint(row), 0, H - 1).astype(np.intp)
                out[rr, cc] = z[nr[rr], nc[cc]]
        return np.asarray(out, dtype=np.float32)


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
    z = fill_nearest(read_band_window(Path(dsm.path), Window(c0, r0, c1 - c0, r1 - r0), out_shape=out_shape), dsm.fill_height)
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


def floor_heights(hr: HeightRange, xs: NDArray[np.float64], ys: NDArray[np.float64], fill: float) -> F32:
    """The lowest DSM height within about one coarse cell of each (xs per column, ys per row) point.

    Taken from the flight-wide coarse grid, so it is the same whichever tile asks.
    """
    zmin = np.where(np.isfinite(hr.z_min), hr.z_min, np.float32(fill)).astype(np.float32)
    low = cv2.erode(zmin, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)
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


def _block_reduce(a: F32, size: int, op: np.ufunc) -> F32:
    """``op`` (np.maximum / np.minimum) over size x size blocks of ``a`` (shape a multiple of size).

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


def scan_dsm(
    dsm: DsmSource, pool: int, pooled_out: Path, cells_per_block: int = 32, read_size: int = 2048, raw_out: Path | None = None
) -> tuple[HeightRange, GridSpec]:
    """One streaming pass over the DSM: the coarse min/max grid, and the max-pooled occluder DSM.

    The pooled DSM (highest height per ``pool`` x ``pool`` cells, NaN where no
    data) is written to ``pooled_out`` as a memory-mapped .npy, so tiles read
    just their window of it. With ``raw_out``, the DSM itself is copied there
    too (float32 .npy, NaN for no data; see :attr:`DsmSource.raw`). Memory
    stays at one read block.
    """
    g = dsm.grid
    b = max(1, cells_per_block)
    p = max(1, pool)
    bh, bw = -(-g.height // b), -(-g.width // b)
    ph, pw = -(-g.height // p), -(-g.width // p)
    zmin = np.full((bh, bw), np.nan, np.float32)
    zmax = np.full((bh, bw), np.nan, np.float32)
    pooled = np.lib.format.open_memmap(pooled_out, mode="w+", dtype=np.float32, shape=(ph, pw))
    raw = np.lib.format.open_memmap(raw_out, mode="w+", dtype=np.float32, shape=(g.height, g.width)) if raw_out is not None else None
    lcm = b * p // math.gcd(b, p)
    step = max(lcm, (read_size // lcm) * lcm)
    for r0 in range(0, g.height, step):
        for c0 in range(0, g.width, step):
            h = min(step, g.height - r0)
            w = min(step, g.width - c0)
            z = read_band_window(Path(dsm.path), Window(c0, r0, w, h))
            if raw is not None:
                raw[r0 : r0 + h, c0 : c0 + w] = z
            for size, lo_out, hi_out in ((b, zmin, zmax), (p, None, pooled)):
                hh, ww = -(-h // size) * size, -(-w // size) * size
                pad = np.full((hh, ww), np.nan, np.float32)
                pad[:h, :w] = z
                finite = np.isfinite(pad)
                hi = _block_reduce(np.where(finite, pad, np.float32(-np.inf)), size, np.maximum)
                hi[~np.isfinite(hi)] = np.nan
                rb, cb = r0 // size, c0 // size
                hi_out[rb : rb + hi.shape[0], cb : cb + hi.shape[1]] = hi
                if lo_out is not None:
                    lo = _block_reduce(np.where(finite, pad, np.float32(np.inf)), size, np.minimum)
                    lo[~np.isfinite(lo)] = np.nan
                    lo_out[rb : rb + lo.shape[0], cb : cb + lo.shape[1]] = lo
    pooled.flush()
    del pooled
    if raw is not None:
        raw.flush()
        del raw
    coarse = GridSpec(g.crs, g.x_min, g.y_max, g.resolution * b, bw, bh)
    pooled_grid = GridSpec(g.crs, g.x_min, g.y_max, g.resolution * p, pw, ph)
    return HeightRange(coarse, zmin, zmax), pooled_grid
