"""Rigorous ground -> image projection for the orthomosaic.

Every ground sample is projected with the true camera model: world -> camera
(pose), perspective division, Brown distortion, intrinsics. Nothing is
approximated with a homography. For speed the maths runs in float32 in a
*local* frame: world coordinates minus an origin near the tile, so that UTM
magnitudes do not eat the float32 mantissa (the error stays far below
0.01 px). Pixel convention: the centre of the top-left pixel is (0, 0).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from models.camera import CameraModel
from models.pose import Pose

FloatArray = NDArray[np.float64]
F32 = NDArray[np.float32]
BoolArray = NDArray[np.bool_]

# Pixel coordinate given to points that do not project (behind the camera, beyond the lens'
# valid field): far outside any image, so bounds tests and remap borders reject them.
OUTSIDE = np.float32(-1.0e6)


def scaled_camera(camera: CameraModel, sx: float, sy: float) -> CameraModel:
    """The camera for an image resampled by ``sx`` x ``sy`` (new size / old size per axis).

    Pixel-centre convention: a pixel centre c maps to (c + 0.5) * s - 0.5.
    """
    return dataclasses.replace(
        camera,
        width=int(round(camera.width * sx)),
        height=int(round(camera.height * sy)),
        fx=camera.fx * sx,
        fy=camera.fy * sy,
        cx=(camera.cx + 0.5) * sx - 0.5,
        cy=(camera.cy + 0.5) * sy - 0.5,
    )


@functools.lru_cache(maxsize=256)
def max_normalized_radius2(camera: CameraModel) -> float:
    """Squared normalised radius beyond which the distortion model is not trusted.

    Brown polynomials fold back far outside the field of view, which would map
    points behind the image edge *into* the image. We accept radii up to 1.25x
    the image corners' radius, and never past the first turning point of
    r * radial(r).
    """
    w, h = camera.width, camera.height
    corners = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [-0.5, h - 0.5], [w - 0.5, h - 0.5]])
    rc = float(np.max(np.linalg.norm(camera.pixel_to_normalized(corners), axis=1)))
    limit = 1.25 * rc
    if camera.has_distortion:
        r = np.linspace(0.0, max(3.0, 2 * limit), 4001)
        r2 = r * r
        rd = r * (1.0 + r2 * (camera.k1 + r2 * (camera.k2 + r2 * camera.k3)))
        turning = np.nonzero(np.diff(rd) <= 0)[0]
        if turning.size:
            limit = min(limit, 0.98 * float(r[turning[0]]))
    return limit * limit


@dataclass(frozen=True, eq=False)
class LocalProjector:
    """Projects points given in a local frame (world minus ``origin``) into one image.

    ``camera`` is the camera at the resolution of the pixels being sampled
    (a cached, downscaled image has a scaled camera).
    """

    camera: CameraModel
    pose: Pose
    origin: FloatArray  # (3,) world coordinates of the local frame's origin
    _r2max: np.float32 = field(init=False, repr=False, default=np.float32(0.0))

    def __post_init__(self) -> None:
        object.__setattr__(self, "origin", np.asarray(self.origin, dtype=np.float64).reshape(3))
        object.__setattr__(self, "_r2max", np.float32(max_normalized_radius2(self.camera)))

    @property
    def rotation32(self) -> F32:
        return self.pose.R.astype(np.float32)

    @property
    def translation32(self) -> F32:
        # x_cam = R (X_local + origin) + t = R X_local + (R origin + t)
        return (self.pose.R @ self.origin + self.pose.t).astype(np.float32)

    @property
    def center_local(self) -> FloatArray:
        return self.pose.center - self.origin

    def project(self, x: F32, y: F32, z: F32) -> tuple[F32, F32, F32, BoolArray]:
        """Local points -> (u, v, depth, ok). Arrays broadcast; float32 throughout.

        ``depth`` is the distance along the optical axis. ``ok`` is False behind
        the camera or beyond the trusted lens field; there u = v = OUTSIDE.
        """
        R = self.rotation32
        t = self.translation32
        x = np.asarray(x, dtype=np.float32)
        y = np.asarray(y, dtype=np.float32)
        z = np.asarray(z, dtype=np.float32)
        xc = R[0, 0] * x + R[0, 1] * y
        xc += R[0, 2] * z
        xc += t[0]
        yc = R[1, 0] * x + R[1, 1] * y
        yc += R[1, 2] * z
        yc += t[1]
        depth = R[2, 0] * x + R[2, 1] * y
        depth += R[2, 2] * z
        depth += t[2]
        front = depth > np.float32(1e-3)
        inv = np.divide(np.float32(1.0), depth, out=np.zeros_like(depth), where=front)
        xc *= inv
        yc *= inv
        cam = self.camera
        r2 = xc * xc
        r2 += yc * yc
        ok = front & (r2 < self._r2max)
        if cam.has_distortion:
            k1, k2, k3 = np.float32(cam.k1), np.float32(cam.k2), np.float32(cam.k3)
            p1, p2 = np.float32(cam.p1), np.float32(cam.p2)
            radial = k3 * r2
            radial += k2
            radial *= r2
            radial += k1
            radial *= r2
            radial += np.float32(1.0)
            xy2 = xc * yc
            xy2 *= np.float32(2.0)
            xd = xc * radial
            yd = yc * radial
            if p1 != 0.0 or p2 != 0.0:
                xd += p1 * xy2 + p2 * (r2 + np.float32(2.0) * xc * xc)
                yd += p1 * (r2 + np.float32(2.0) * yc * yc) + p2 * xy2
        else:
            xd, yd = xc, yc
        u = xd * np.float32(cam.fx)
        u += np.float32(cam.cx)
        v = yd * np.float32(cam.fy)
        v += np.float32(cam.cy)
        u[~ok] = OUTSIDE
        v[~ok] = OUTSIDE
        return u, v, depth, ok


def inside_image(u: F32, v: F32, width: int, height: int, margin: float = 0.0) -> BoolArray:
    """Whether pixel coordinates fall inside a width x height image (pixel-centre convention).

    ``margin`` shrinks the accepted area, e.g. to keep a bilinear or cubic
    footprint fully inside the image.
    """
    lo = np.float32(margin)
    return (u >= lo) & (v >= lo) & (u <= np.float32(width - 1 - margin)) & (v <= np.float32(height - 1 - margin))
