"""Image features and verified matches, as typed values (no I/O).

Keypoints are stored at FULL image resolution in the Aerobase pixel convention
(centre of the top-left pixel is (0, 0)), whatever working size they were
detected at; code that hands them to pycolmap adds 0.5.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class ImageFeatures:
    """SIFT keypoints, descriptors and colours of one image."""

    # (N, 4) float32: x, y (full-resolution pixels), scale (full-resolution pixels), orientation (rad).
    keypoints: NDArray[np.float32]
    # (N, 128) uint8 RootSIFT descriptors, scaled like COLMAP's (unit L2 norm x 512, clipped to 255).
    descriptors: NDArray[np.uint8]
    # (N, 3) uint8 RGB colour sampled at each keypoint.
    colors: NDArray[np.uint8]
    # Working image size the features were detected at, as a fraction of full resolution.
    working_scale: float
    # Variance of the Laplacian of the working image (sharpness; low means blur).
    sharpness: float
    # Cache key: image fingerprint + feature settings; a rerun with the same key reuses the file.
    cache_key: str

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])

    @property
    def xy(self) -> FloatArray:
        """(N, 2) keypoint positions in full-resolution Aerobase pixels."""
        return self.keypoints[:, :2].astype(np.float64)


class PairGeometry(int, enum.Enum):
    """What geometric verification found for a pair (values are COLMAP's TwoViewGeometry configs)."""

    UNDEFINED = 0
    DEGENERATE = 1
    CALIBRATED = 2
    UNCALIBRATED = 3
    PLANAR = 4
    PANORAMIC = 5
    PLANAR_OR_PANORAMIC = 6
    WATERMARK = 7
    MULTIPLE = 8
    CALIBRATED_RIG = 9


@dataclass(frozen=True, eq=False)
class PairMatches:
    """Geometrically verified matches between two images."""

    image1: str
    image2: str
    # (M, 2) uint32 keypoint indices (image1, image2) of the verified inliers.
    matches: NDArray[np.uint32]
    # Putative matches before verification.
    num_putative: int
    geometry: PairGeometry
    # Two-view models from verification (3x3; zeros where not estimated).
    F: FloatArray
    E: FloatArray
    H: FloatArray

    @property
    def num_inliers(self) -> int:
        return int(self.matches.shape[0])


@dataclass(frozen=True)
class PairStat:
    """One tried pair: how many putative and verified matches it had."""

    image1: str
    image2: str
    putative: int
    inliers: int
    verified: bool
    # Why the pair was selected: 'gps_neighbor', 'footprint', 'sequential', 'exhaustive', 'retrieval'.
    source: str
