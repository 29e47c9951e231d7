"""Camera intrinsics with Brown distortion, as pure numpy math.

Pixel convention (used everywhere in Aerobase): the centre of the top-left
pixel is (0, 0), x grows right (columns), y grows down (rows). This is
OpenCV's convention; COLMAP puts that centre at (0.5, 0.5), so code that talks
to pycolmap adds or removes 0.5 at the boundary.

Camera frame: x right, y down, z forward (optical axis), as in OpenCV and COLMAP.
The distortion model is OpenCV/COLMAP ``OPENCV``: radial k1, k2 (and k3) with
tangential p1, p2 applied to normalised image coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class CameraModel:
    """Intrinsics of one physical camera at its full sensor resolution."""

    camera_id: str
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    k1: float = 0.0
    k2: float = 0.0
    p1: float = 0.0
    p2: float = 0.0
    k3: float = 0.0
    make: str = ""
    model: str = ""

    @property
    def K(self) -> FloatArray:
        """3x3 calibration matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def dist_coeffs(self) -> FloatArray:
        """Distortion coefficients in OpenCV order (k1, k2, p1, p2, k3)."""
        return np.array([self.k1, self.k2, self.p1, self.p2, self.k3])

    @property
    def has_distortion(self) -> bool:
        return any(abs(v) > 0.0 for v in (self.k1, self.k2, self.p1, self.p2, self.k3))

    @property
    def focal_px(self) -> float:
        """Mean focal length in pixels."""
        return 0.5 * (self.fx + self.fy)

    def scaled(self, factor: float) -> "CameraModel":
        """The same camera for an image resized by ``factor`` (0.5 halves it).

        Distortion is defined on normalised coordinates, so it is unchanged. The
        pixel-centre convention means (c + 0.5) scales, not c.
        """
        return replace(
            self,
            width=int(round(self.width * factor)),
            height=int(round(self.height * factor)),
            fx=self.fx * factor,
            fy=self.fy * factor,
            cx=(self.cx + 0.5) * factor - 0.5,
            cy=(self.cy + 0.5) * factor - 0.5,
        )

    def without_distortion(self) -> "CameraModel":
        return replace(self, k1=0.0, k2=0.0, p1=0.0, p2=0.0, k3=0.0)

    # -- normalised <-> distorted -------------------------------------------------
    def distort(self, xn: FloatArray) -> FloatArray:
        """Apply distortion to normalised coordinates (N, 2) -> (N, 2)."""
        xn = np.asarray(xn, dtype=np.float64)
        x, y = xn[..., 0], xn[..., 1]
        r2 = x * x + y * y
        radial = 1.0 + r2 * (self.k1 + r2 * (self.k2 + r2 * self.k3))
        xd = x * radial + 2.0 * self.p1 * x * y + self.p2 * (r2 + 2.0 * x * x)
        yd = y * radial + self.p1 * (r2 + 2.0 * y * y) + 2.0 * self.p2 * x * y
        return np.stack([xd, yd], axis=-1)

    def undistort(self, xd: FloatArray, iterations: int = 20) -> FloatArray:
        """Invert :meth:`distort` by fixed-point iteration (normalised coordinates)."""
        xd = np.asarray(xd, dtype=np.float64)
        if not self.has_distortion:
            return xd.copy()
        x = xd.copy()
        for _ in range(iterations):
            xx, yy = x[..., 0], x[..., 1]
            r2 = xx * xx + yy * yy
            radial = 1.0 + r2 * (self.k1 + r2 * (self.k2 + r2 * self.k3))
            dx = 2.0 * self.p1 * xx * yy + self.p2 * (r2 + 2.0 * xx * xx)
            dy = self.p1 * (r2 + 2.0 * yy * yy) + 2.0 * self.p2 * xx * yy
            x = np.stack([(xd[..., 0] - dx) / radial, (xd[..., 1] - dy) / radial], axis=-1)
        return x

    # -- camera frame <-> pixels --------------------------------------------------
    def project(self, points_cam: FloatArray) -> FloatArray:
        """Project camera-frame points (N, 3) to distorted pixels (N, 2).

        Points with z <= 0 come back as NaN.
        """
        p = np.asarray(points_cam, dtype=np.float64)
        z = p[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            xn = p[..., :2] / z[..., None]
        xn = np.where((z > 0)[..., None], xn, np.nan)
        xd = self.distort(xn)
        return np.stack([self.fx * xd[..., 0] + self.cx, self.fy * xd[..., 1] + self.cy], axis=-1)

    def pixel_to_normalized(self, uv: FloatArray) -> FloatArray:
        """Distorted pixels (N, 2) -> undistorted normalised coordinates (N, 2)."""
        uv = np.asarray(uv, dtype=np.float64)
        xd = np.stack([(uv[..., 0] - self.cx) / self.fx, (uv[..., 1] - self.cy) / self.fy], axis=-1)
        return self.undistort(xd)

    def pixel_to_ray(self, uv: FloatArray) -> FloatArray:
        """Distorted pixels (N, 2) -> unit viewing rays in the camera frame (N, 3)."""
        xn = self.pixel_to_normalized(uv)
        rays = np.concatenate([xn, np.ones(xn.shape[:-1] + (1,))], axis=-1)
        return rays / np.linalg.norm(rays, axis=-1, keepdims=True)

    def contains(self, uv: FloatArray, margin: float = 0.0) -> NDArray[np.bool_]:
        """Whether pixels lie inside the image (pixel-centre convention)."""
        uv = np.asarray(uv, dtype=np.float64)
        return (
            (uv[..., 0] >= -0.5 + margin)
            & (uv[..., 0] <= self.width - 0.5 - margin)
            & (uv[..., 1] >= -0.5 + margin)
            & (uv[..., 1] <= self.height - 0.5 - margin)
        )
