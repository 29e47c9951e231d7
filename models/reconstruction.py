"""A solved camera network: refined cameras, georegistered poses and sparse points.

Poses and points are in the working projected CRS (``crs``), full coordinates in
float64. Later stages (densify, dem, ortho) read only this.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from models.camera import CameraModel
from models.pose import Pose

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class RegisteredImage:
    """An image with a solved pose."""

    name: str
    camera_id: str
    pose: Pose


@dataclass(frozen=True, eq=False)
class SparsePoints:
    """Triangulated tie points."""

    xyz: FloatArray  # (N, 3) in the working CRS
    rgb: NDArray[np.uint8]  # (N, 3)
    error_px: FloatArray  # (N,) mean reprojection error
    track_length: NDArray[np.int32]  # (N,) number of images observing the point

    @classmethod
    def empty(cls) -> "SparsePoints":
        return cls(
            np.zeros((0, 3)), np.zeros((0, 3), np.uint8), np.zeros(0), np.zeros(0, np.int32)
        )

    def __len__(self) -> int:
        return int(self.xyz.shape[0])


@dataclass(frozen=True, eq=False)
class Reconstruction:
    """Cameras + registered images + sparse points in one projected CRS."""

    crs: str  # 'EPSG:N' or WKT
    cameras: dict[str, CameraModel]
    images: dict[str, RegisteredImage]
    points: SparsePoints = field(default_factory=SparsePoints.empty)

    def camera_of(self, image_name: str) -> CameraModel:
        return self.cameras[self.images[image_name].camera_id]

    def centers(self) -> dict[str, FloatArray]:
        return {name: img.pose.center for name, img in self.images.items()}

    def project(self, image_name: str, X: FloatArray) -> FloatArray:
        """World points (N, 3) -> distorted pixels (N, 2) in one image."""
        img = self.images[image_name]
        return self.cameras[img.camera_id].project(img.pose.to_camera(X))
