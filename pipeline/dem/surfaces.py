"""DSM and DTM of one raster window from classified points (the DEM stage's per-tile kernel).

DSM: a high-ish percentile of point heights per cell (low noise, class 7, left out) (robust to the odd
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
from pipeline.dem.ground import GROUND, LOW_NOISE

F32 = NDArray[np.float32]


@dataclass(frozen=True)
class SurfaceOptions:
    """How points become DSM and DTM cells."""

    dsm_percentile: float = 75.0  # percentile of point heights per DSM cell
    max_hole_cells: int = 20  # DSM holes up to this many cells across are interpolated ...
    max_hole_m: float = 0.0  # ... or up to this many metres across, whichever is more
    smooth: int = 3  # median filter size of the DSM (0, 3 or 5)
    dtm_cell: float = 1.0  # the DTM is interpolated on cells about this size (m), then resampled
    dtm_smooth: int = 3  # median filter size of the coarse DTM (0, 3 or 5)
    dtm_margin_m: float = 30.0  # ground context around a tile for the DTM under buildings (m)

    def hole_cells(self, resolution: float) -> int:
        return max(self.max_hole_cells, int(round(self.max_hole_m / resolution)))

    def dsm_margin(self, resolution: float) -> int:
        """Cells of context the DSM of a tile needs to match a single pass (closing + median)."""
        return self.hole_cells(resolution) + 2 + self.smooth

    def margin_m(self, resolution: float) -> float:
        """Context around a tile whose points a tile task must load (m)."""
        return max(self.dsm_margin(resolution) * resolution, self.dtm_margin_m)


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


def ground_surface(grid: GridSpec, window: Window, ground: NDArray[np.float64], opts: SurfaceOptions) -> F32:
    """The DTM of a window: ground medians on coarse cells (with ``dtm_margin_m`` of context),
    holes filled by interpolation, median-smoothed, resampled bilinearly to the window's cells."""
    k = max(1, int(round(opts.dtm_cell / grid.resolution)))
    coarse = GridSpec(grid.crs, grid.x_min, grid.y_max, grid.resolution * k, -(-grid.width // k), -(-grid.height // k))
    outer = window.expanded(int(np.ceil(opts.dtm_margin_m / grid.resolution)), grid.width, grid.height)
    c0, r0 = outer.col_off // k, outer.row_off // k
    cwin = Window(c0, r0, -(-(outer.col_off + outer.width) // k) - c0, -(-(outer.row_off + outer.height) // k) - r0)
    z, _ = cell_percentile(coarse, cwin, ground, 50.0)
    if not np.isfinite(z).any():
        return np.full((window.height, window.width), np.nan, np.float32)
    z = interpolate_fill(z, ~np.isfinite(z))
    if opts.dtm_smooth:
        z = median_smooth(z, opts.dtm_smooth)
    z = nearest_fill(z)
    # Cell centres of the window in coarse (fractional, centre-based) coordinates of the coarse window.
    fr = (np.arange(window.row_off, window.row_off + window.height) + 0.5) / k - 0.5 - r0
    fc = (np.arange(window.col_off, window.col_off + window.width) + 0.5) / k - 0.5 - c0
    rr, cc = np.meshgrid(fr, fc, indexing="ij")
    return np.asarray(ndimage.map_coordinates(z, [rr, cc], order=1, mode="nearest"), dtype=np.float32)


def surfaces(grid: GridSpec, window: Window, xyz: NDArray[np.float64], cls: NDArray[np.uint8], opts: SurfaceOptions) -> SurfaceTile:
    """DSM and DTM of ``window`` from the points around it (at least ``opts.margin_m`` of context)."""
    outer = window.expanded(opts.dsm_margin(grid.resolution), grid.width, grid.height)
    sides = border_sides(grid, outer)
    dsm_raw, counts = cell_percentile(grid, outer, xyz[cls != LOW_NOISE], opts.dsm_percentile)
    dsm = fill_and_smooth(dsm_raw, opts.hole_cells(grid.resolution), sides, opts.smooth)
    core = window.relative_to(outer).slices
    dsm = dsm[core].copy()
    dtm = ground_surface(grid, window, xyz[cls == GROUND], opts)
    dtm = np.where(np.isfinite(dsm), np.fmin(dtm, dsm), np.nan).astype(np.float32)
    return SurfaceTile(window, dsm, dtm, counts[core].copy())
