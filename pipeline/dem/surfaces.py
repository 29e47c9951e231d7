"""DSM and DTM of one raster window from classified points (the DEM stage's per-tile kernel).

DSM: a high-ish percentile of point heights per cell (low noise, class 7, left out) (robust to the odd
stray point, close to the top surface), small holes filled by interpolation,
then a median filter (ODM's gridding recipe with a robust statistic instead of
IDW radii); the window is computed with a margin and cropped, so tiles agree
with a single eager pass. DTM: the median of the ground points on coarse cells
(``dtm_cell``) of the *whole* flight, every gap (under buildings and trees)
interpolated, median-smoothed (:func:`finish_dtm`); a tile samples that one
surface bilinearly, so the DTM has no tile seams, and keeps it only where the
DSM has data and never above the DSM.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from models.raster import GridSpec, Window
from pipeline.dem.grid import cell_percentile, fill_and_smooth, interpolate_fill, median_smooth, nearest_fill
from pipeline.dem.ground import LOW_NOISE, GroundSurface

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

    def hole_cells(self, resolution: float) -> int:
        return max(self.max_hole_cells, int(round(self.max_hole_m / resolution)))

    def dsm_margin(self, resolution: float) -> int:
        """Cells of context the DSM of a tile needs to match a single pass (closing + median)."""
        return self.hole_cells(resolution) + 2 + self.smooth

    def margin_m(self, resolution: float) -> float:
        """Context around a tile whose points a tile task must load (m)."""
        return self.dsm_margin(resolution) * resolution


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


def dtm_grid(grid: GridSpec, opts: SurfaceOptions) -> GridSpec:
    """The coarse DTM grid: cells of about ``opts.dtm_cell``, a whole number of DEM cells, same origin."""
    k = max(1, int(round(opts.dtm_cell / grid.resolution)))
    return GridSpec(grid.crs, grid.x_min, grid.y_max, grid.resolution * k, -(-grid.width // k), -(-grid.height // k))


def ground_medians(coarse: GridSpec, window: Window, ground: NDArray[np.float64]) -> F32:
    """Median height of the ground points per coarse DTM cell of ``window``; NaN where none."""
    z, _ = cell_percentile(coarse, window, ground, 50.0)
    return z


def finish_dtm(z: F32, opts: SurfaceOptions) -> F32:
    """The coarse DTM of the whole flight from its ground medians: every gap interpolated, median-smoothed."""
    if not np.isfinite(z).any():
        return z.copy()
    z = interpolate_fill(z, ~np.isfinite(z))
    if opts.dtm_smooth:
        z = median_smooth(z, opts.dtm_smooth)
    return nearest_fill(z)


def dtm_surface(grid: GridSpec, ground: NDArray[np.float64], opts: SurfaceOptions) -> GroundSurface:
    """The coarse DTM of a whole point set's ground points (the eager path)."""
    coarse = dtm_grid(grid, opts)
    z = finish_dtm(ground_medians(coarse, Window(0, 0, coarse.width, coarse.height), ground), opts)
    return GroundSurface(coarse, z)


def sample_window(surface: GroundSurface, grid: GridSpec, window: Window) -> F32:
    """A surface sampled bilinearly at the cell centres of ``window`` of ``grid``."""
    xs, ys = grid.cell_centers(window)
    xx, yy = np.meshgrid(xs, ys)
    if not np.isfinite(surface.z).any():
        return np.full((window.height, window.width), np.nan, np.float32)
    return surface.sample(xx.ravel(), yy.ravel()).reshape(window.height, window.width).astype(np.float32)


def surfaces(grid: GridSpec, window: Window, xyz: NDArray[np.float64], cls: NDArray[np.uint8], dtm: GroundSurface, opts: SurfaceOptions) -> SurfaceTile:
    """DSM of ``window`` from the points around it (at least ``opts.margin_m`` of context), and the
    flight's coarse DTM ``dtm`` resampled to it."""
    outer = window.expanded(opts.dsm_margin(grid.resolution), grid.width, grid.height)
    sides = border_sides(grid, outer)
    dsm_raw, counts = cell_percentile(grid, outer, xyz[cls != LOW_NOISE], opts.dsm_percentile)
    dsm = fill_and_smooth(dsm_raw, opts.hole_cells(grid.resolution), sides, opts.smooth)
    core = window.relative_to(outer).slices
    dsm = dsm[core].copy()
    dtm_z = sample_window(dtm, grid, window)
    dtm_z = np.where(np.isfinite(dsm), np.fmin(dtm_z, dsm), np.nan).astype(np.float32)
    return SurfaceTile(window, dsm, dtm_z, counts[core].copy())

