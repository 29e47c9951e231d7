"""A depth map of one image, as a small typed value (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True, eq=False)
class DepthMap:
    """Per-pixel depth of one reference image at a fraction of its full resolution.

    The pixel grid is the image's own (distorted) grid scaled by ``scale``, i.e.
    the grid of ``camera.scaled(scale)``. ``depth`` is the distance along the
    optical axis (camera z) in CRS units; NaN marks pixels without a depth.
    """

    image: str
    scale: float
    depth: NDArray[np.float32]  # (H, W), NaN = no depth
    rgb: NDArray[np.uint8] | None = None  # (H, W, 3) colour of each pixel
    views: NDArray[np.uint8] | None = None  # (H, W) number of views that agree on the depth

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.depth.shape[0]), int(self.depth.shape[1]))

    @property
    def valid(self) -> NDArray[np.bool_]:
        return np.isfinite(self.depth)

    @property
    def valid_count(self) -> int:
        return int(np.count_nonzero(self.valid))
