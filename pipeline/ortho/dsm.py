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


def fill_nearest(z: F32, fill: float) -> F32:
    """Replace NaN cells with the nearest valid cell's value (``fill`` when none is valid)."""
    bad = ~np.isfinite(z)
    if not bad.any():
        return z
    if bad.all():
        return np.full_like(z, np.float32(fill))
    idx = ndimage.distance_transform_edt(bad, return_distances=False, return_indices=True)
    return np.asarray(z[tuple(idx)], dtype=np.float32)


def heights_on_grid(dsm: DsmSource, grid: GridSpec, window: Window, step_m: float | None = None) -> F32:
    """DSM heights at the cell centres of ``window`` of ``grid`` (bilinear; holes filled by nearest).

    With ``step_m``, cells whose bilinear support spans a height step larger
    than ``step_m`` take the nearest DSM cell instead (no ramps down walls).

    When the target cells are much coarser than the DSM's, the DSM is first
    read decimated (cell averages), so memory follows the target's size.
    """
    src = dsm.grid
    xs, ys = grid.cell_centers(window)
    col, row = src.world_to_cell(xs, ys)
    c0 = int(math.floor(col.min())) - 2
    c1 = int(math.ceil(col.max())) + 3
    r0 = int(math.floor(row.min())) - 2
    r1 = int(math.ceil(row.max())) + 3
    decim = max(1, int(grid.resolution / src.resolution) // 2)
    if decim > 1:
        c0 -= c0 % decim
        r0 -= r0 % decim
        c1 += (-c1) % decim
        r1 += (-r1) % decim
        out_shape = ((r1 - r0) // decim, (c1 - c0) // decim)
        z = read_band_window(Path(dsm.path), Window(c0, r0, c1 - c0, r1 - r0), out_shape=out_shape)
        # Coarse cell k covers fine cells [k*decim, (k+1)*decim): centre (k + 0.5) * decim - 0.5.
        mx = (col - c0 + 0.5) / decim - 0.5
        my = (row - r0 + 0.5) / decim - 0.5
    else:
        z = read_band_window(Path(dsm.path), Window(c0, r0, c1 - c0, r1 - r0))
        mx = col - c0
        my = row - r0
    z = fill_nearest(z, dsm.fill_height)
    map_x = np.ascontiguousarray(np.broadcast_to(mx.astype(np.float32)[None, :], (window.height, window.width)))
    map_y = np.ascontiguousarray(np.broadcast_to(my.astype(np.float32)[:, None], (window.height, window.width)))
    out = cv2.remap(z, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if step_m is not None:
        # At a height step (a wall), bilinear heights form a ramp that is no real surface and
        # would project onto the wall in the images; there the nearest cell is taken instead,
        # so a cell is either roof or ground and building edges stay crisp.
        k = np.ones((2, 2), np.uint8)
        step = cv2.dilate(z, k, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE) - cv2.erode(
            z, k, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE
        )
        # step[r, c] = range of the 2x2 block whose top-left cell is (r, c): the bilinear support.
        fx = np.floor(map_x)
        fy = np.floor(map_y)
        at_step = cv2.remap(step, fx, fy, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE) > np.float32(step_m)
        if at_step.any():
            nearest = cv2.remap(z, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
            out = np.where(at_step, nearest, out)
    return np.asarray(out, dtype=np.float32)


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


def height_range(dsm: DsmSource, cells_per_block: int = 32, read_size: int = 2048) -> HeightRange:
    """Stream the DSM window by window and keep the min/max per block of ``cells_per_block`` cells."""
    g = dsm.grid
    b = max(1, cells_per_block)
    bh, bw = -(-g.height // b), -(-g.width // b)
    zmin = np.full((bh, bw), np.nan, np.float32)
    zmax = np.full((bh, bw), np.nan, np.float32)
    step = max(b, (read_size // b) * b)
    for r0 in range(0, g.height, step):
        for c0 in range(0, g.width, step):
            h = min(step, g.height - r0)
            w = min(step, g.width - c0)
            z = read_band_window(Path(dsm.path), Window(c0, r0, w, h))
            ph, pw = -(-h // b) * b, -(-w // b) * b
            pad = np.full((ph, pw), np.nan, np.float32)
            pad[:h, :w] = z
            blocks = pad.reshape(ph // b, b, pw // b, b)
            finite = np.isfinite(blocks)
            lo = np.where(finite, blocks, np.inf).min(axis=(1, 3))
            hi = np.where(finite, blocks, -np.inf).max(axis=(1, 3))
            lo[~np.isfinite(lo)] = np.nan
            hi[~np.isfinite(hi)] = np.nan
            rb, cb = r0 // b, c0 // b
            zmin[rb : rb + lo.shape[0], cb : cb + lo.shape[1]] = lo
            zmax[rb : rb + hi.shape[0], cb : cb + hi.shape[1]] = hi
    coarse = GridSpec(g.crs, g.x_min, g.y_max, g.resolution * b, bw, bh)
    return HeightRange(coarse, zmin, zmax)
