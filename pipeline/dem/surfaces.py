"""DSM and DTM of one raster window from classified points (the DEM stage's per-tile kernel).

DSM: a high-ish percentile of point heights per cell (robust to the odd
stray point, close to the top surface), small holes filled by interpolation,
then a median filter (ODM's gridding recipe with a robust statistic instead of
IDW radii). DTM: the median of ground points per cell, every other cell that
has DSM data interpolated from the surrounding ground (under buildings and
trees), median-smoothed and never above the DSM. The window is computed with a
margin and cropped, so tiles agree with a single eager pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from models.raster import GridSpec, Window
from pipeline.dem.grid import cell_percentile, fill_and_smooth, interpolate_fill, median_smooth, nearest_fill
from pipeline.dem.ground import GROUND

F32 = NDArray[np.float32]


@dataclass(frozen=True)
class SurfaceOptions:
    """How points become DSM and DTM cells."""

    dsm_percentile: float = 75.0  # percentile of point heights per DSM cell
    max_hole_cells: int = 20  # DSM holes up to this many cells across are interpolated
    smooth: int = 3  # median filter size of the DSM (0, 3 or 5)
    dtm_cell: float = 1.0  # the DTM is interpolated on cells about this size (m), then resampled
    dtm_smooth: int = 3  # median filter size of the coarse DTM (0, 3 or 5)


@dataclass(frozen=True, eq=False)
class SurfaceTile:
    """The DSM and DTM of one window; NaN is nodata."""

    window: Window
    dsm: F32
    dtm: F32
    points: NDArray[np.int32]  # points per cell (all classes)


def border_sides(grid: GridSpec, outer: Window) -> tuple[bool, bool, bool, bool]:
    """Which sides (top, bottom, left, right) of a window are the edge of the whole grid."""
    return (
        outer.row_off == 0,
        outer.row_off + outer.height == grid.height,
        outer.col_off == 0,
        outer.col_off + outer.width == grid.width,
    )


def ground_surface(grid: GridSpec, outer: Window, ground: NDArray[np.float64], needed: NDArray[np.bool_], opts: SurfaceOptions) -> F32:
    """The DTM of a window: ground medians on coarse cells, holes filled harmonically, resampled bilinearly."""
    k = max(1, int(round(opts.dtm_cell / grid.resolution)))
    coarse = GridSpec(grid.crs, grid.x_min, grid.y_max, grid.resolution * k, -(-grid.width // k), -(-grid.height // k))
    c0, r0 = outer.col_off // k, outer.row_off // k
    cwin = Window(c0, r0, -(-(outer.col_off + outer.width) // k) - c0, -(-(outer.row_off + outer.height) // k) - r0)
    z, _ = cell_percentile(coarse, cwin, ground, 50.0)
    if not np.isfinite(z).any():
        return np.full(needed.shape, np.nan, np.float32)
    # Coarse cells that hold a needed fine cell, plus a ring, are interpolated.
    rows = (np.arange(outer.row_off, outer.row_off + outer.height) // k) - r0
    cols = (np.arange(outer.col_off, outer.col_off + outer.width) // k) - c0
    want = np.zeros(z.shape, dtype=bool)
    nr, nc = np.nonzero(needed)
    want[rows[nr], cols[nc]] = True
    want = ndimage.binary_dilation(want, iterations=1)
    z = interpolate_fill(z, want)
    if opts.dtm_smooth:
        z = median_smooth(z, opts.dtm_smooth)
    z = nearest_fill(z)
    # Fine cell centres in coarse (fractional, centre-based) coordinates of the coarse window.
    fr = (np.arange(outer.row_off, outer.row_off + outer.height) + 0.5) / k - 0.5 - r0
    fc = (np.arange(outer.col_off, outer.col_off + outer.width) + 0.5) / k - 0.5 - c0
    rr, cc = np.meshgrid(fr, fc, indexing="ij")
    return np.asarray(ndimage.map_coordinates(z, [rr, cc], order=1, mode="nearest"), dtype=np.float32)


def surfaces(grid: GridSpec, window: Window, margin: int, xyz: NDArray[np.float64], cls: NDArray[np.uint8], opts: SurfaceOptions) -> SurfaceTile:
    """DSM and DTM of ``window`` from the points of the window grown by ``margin`` cells."""
    outer = window.expanded(margin, grid.width, grid.height)
    sides = border_sides(grid, outer)
    dsm_raw, counts = cell_percentile(grid, outer, xyz, opts.dsm_percentile)
    dsm = fill_and_smooth(dsm_raw, opts.max_hole_cells, sides, opts.smooth)
    has_dsm = np.isfinite(dsm)
    dtm = ground_surface(grid, outer, xyz[cls == GROUND], has_dsm, opts)
    dtm = np.where(has_dsm, np.fmin(dtm, dsm), np.nan).astype(np.float32)
    core = window.relative_to(outer).slices
    return SurfaceTile(window, dsm[core].copy(), dtm[core].copy(), counts[core].copy())
