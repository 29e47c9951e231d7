"""Square tiles of the ground plane that bound the work of fusion, ground classification and export."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True, order=True)
class TileKey:
    """Column (east) and row (north) index of a tile."""

    ix: int
    iy: int

    @property
    def name(self) -> str:
        return f"{self.ix:+04d}_{self.iy:+04d}"


@dataclass(frozen=True)
class TileGrid:
    """Tiles of side ``size`` anchored at multiples of ``size`` in the CRS (independent of the flight)."""

    size: float

    def key_of(self, x: float, y: float) -> TileKey:
        return TileKey(int(math.floor(x / self.size)), int(math.floor(y / self.size)))

    def bounds(self, key: TileKey, margin: float = 0.0) -> tuple[float, float, float, float]:
        """(x_min, y_min, x_max, y_max) of a tile grown by ``margin``."""
        x0 = key.ix * self.size
        y0 = key.iy * self.size
        return (x0 - margin, y0 - margin, x0 + self.size + margin, y0 + self.size + margin)

    def keys_touching(self, box: tuple[float, float, float, float]) -> Iterator[TileKey]:
        """Every tile that intersects a box (x_min, y_min, x_max, y_max)."""
        x_min, y_min, x_max, y_max = box
        for iy in range(int(math.floor(y_min / self.size)), int(math.floor(y_max / self.size)) + 1):
            for ix in range(int(math.floor(x_min / self.size)), int(math.floor(x_max / self.size)) + 1):
                yield TileKey(ix, iy)

    def contains(self, key: TileKey, xy: NDArray[np.float64], margin: float = 0.0) -> NDArray[np.bool_]:
        """Which points (N, 2+) fall in a tile grown by ``margin`` (half-open on the far sides)."""
        x0, y0, x1, y1 = self.bounds(key, margin)
        x = xy[:, 0]
        y = xy[:, 1]
        return (x >= x0) & (x < x1) & (y >= y0) & (y < y1)


def boxes_intersect(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]
