"""Raster grids, windows and tiles as immutable values (rasterio-style affine, corner-based)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from affine import Affine
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Window:
    """A rectangular block of a grid: rows [row_off, row_off+height), cols [col_off, col_off+width)."""

    col_off: int
    row_off: int
    width: int
    height: int

    @property
    def slices(self) -> tuple[slice, slice]:
        """(row slice, col slice) for numpy indexing."""
        return (slice(self.row_off, self.row_off + self.height), slice(self.col_off, self.col_off + self.width))

    def expanded(self, margin: int, grid_width: int, grid_height: int) -> "Window":
        """Grow by ``margin`` cells on every side, clipped to the grid."""
        c0 = max(0, self.col_off - margin)
        r0 = max(0, self.row_off - margin)
        c1 = min(grid_width, self.col_off + self.width + margin)
        r1 = min(grid_height, self.row_off + self.height + margin)
        return Window(c0, r0, c1 - c0, r1 - r0)

    def intersection(self, other: "Window") -> "Window":
        """The cells both windows hold (width or height 0 when they do not meet)."""
        c0, r0 = max(self.col_off, other.col_off), max(self.row_off, other.row_off)
        c1 = min(self.col_off + self.width, other.col_off + other.width)
        r1 = min(self.row_off + self.height, other.row_off + other.height)
        return Window(c0, r0, max(0, c1 - c0), max(0, r1 - r0))

    def relative_to(self, outer: "Window") -> "Window":
        """This window's position inside ``outer``."""
        return Window(self.col_off - outer.col_off, self.row_off - outer.row_off, self.width, self.height)


@dataclass(frozen=True)
class GridSpec:
    """A north-up raster grid in a CRS: origin at the top-left corner, square cells."""

    crs: str  # 'EPSG:N' or WKT
    x_min: float  # left edge
    y_max: float  # top edge
    resolution: float  # cell size in CRS units
    width: int
    height: int

    @classmethod
    def covering(cls, crs: str, x_min: float, y_min: float, x_max: float, y_max: float, resolution: float) -> "GridSpec":
        """The grid of ``resolution`` cells that covers a box, snapped outward to whole cells."""
        x0 = math.floor(x_min / resolution) * resolution
        y1 = math.ceil(y_max / resolution) * resolution
        width = max(1, int(math.ceil((x_max - x0) / resolution)))
        height = max(1, int(math.ceil((y1 - y_min) / resolution)))
        return cls(crs, x0, y1, resolution, width, height)

    @property
    def transform(self) -> Affine:
        return Affine(self.resolution, 0.0, self.x_min, 0.0, -self.resolution, self.y_max)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top)."""
        return (self.x_min, self.y_max - self.height * self.resolution, self.x_min + self.width * self.resolution, self.y_max)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    def window_transform(self, window: Window) -> Affine:
        return self.transform @ Affine.translation(window.col_off, window.row_off)

    def cell_centers(self, window: Window) -> tuple[FloatArray, FloatArray]:
        """World x (1D, per column) and y (1D, per row) of the cell centres in a window."""
        cols = np.arange(window.col_off, window.col_off + window.width, dtype=np.float64) + 0.5
        rows = np.arange(window.row_off, window.row_off + window.height, dtype=np.float64) + 0.5
        return self.x_min + cols * self.resolution, self.y_max - rows * self.resolution

    def world_to_cell(self, x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Fractional (col, row) with integer values at cell centres."""
        col = (np.asarray(x, dtype=np.float64) - self.x_min) / self.resolution - 0.5
        row = (self.y_max - np.asarray(y, dtype=np.float64)) / self.resolution - 0.5
        return col, row

    def tiles(self, tile_size: int) -> Iterator[Window]:
        """Non-overlapping windows of at most tile_size x tile_size, row-major."""
        for r in range(0, self.height, tile_size):
            for c in range(0, self.width, tile_size):
                yield Window(c, r, min(tile_size, self.width - c), min(tile_size, self.height - r))

    def scaled(self, resolution: float) -> "GridSpec":
        """The same extent at another resolution."""
        left, bottom, right, top = self.bounds
        return GridSpec.covering(self.crs, left, bottom, right, top, resolution)
