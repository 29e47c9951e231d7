"""Tiny synthetic scenes for dense/DEM unit tests: a textured plane seen by known cameras."""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from models.camera import CameraModel
from models.pose import Pose, world_to_camera_from_gimbal

EXTENT = 200.0  # the texture covers [-EXTENT/2, EXTENT/2]^2 in world x, y


def texture(size: int = 2048, seed: int = 0) -> NDArray[np.uint8]:
    """Multi-scale noise: enough texture for SGBM at every scale used in tests."""
    rng = np.random.default_rng(seed)
    acc = np.zeros((size, size), np.float32)
    for cells, weight in ((8, 1.0), (32, 0.8), (128, 0.6), (512, 0.5), (size, 0.4)):
        small = rng.random((cells, cells)).astype(np.float32)
        acc += weight * cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    acc = (acc - acc.min()) / (acc.max() - acc.min())
    return (acc * 235 + 10).astype(np.uint8)


def nadir_camera(width: int = 640, height: int = 480, focal: float = 600.0, k1: float = 0.0) -> CameraModel:
    return CameraModel("test", width, height, focal, focal, (width - 1) / 2.0, (height - 1) / 2.0, k1=k1)


def nadir_pose(x: float, y: float, z: float, yaw: float = 0.0) -> Pose:
    return Pose.from_center(world_to_camera_from_gimbal(yaw, -90.0, 0.0), np.array([x, y, z]))


def render_plane(cam: CameraModel, pose: Pose, tex: NDArray[np.uint8], plane_z: float = 0.0) -> tuple[NDArray[np.uint8], NDArray[np.float64]]:
    """Image of the textured plane z = plane_z, and the true depth of every pixel."""
    u, v = np.meshgrid(np.arange(cam.width, dtype=np.float64), np.arange(cam.height, dtype=np.float64))
    xn = cam.pixel_to_normalized(np.stack([u, v], -1).reshape(-1, 2))
    rays_cam = np.concatenate([xn, np.ones((len(xn), 1))], 1)
    rays = rays_cam @ pose.R
    c = pose.center
    s = (plane_z - c[2]) / rays[:, 2]
    pts = c + rays * s[:, None]
    size = tex.shape[0]
    tx = ((pts[:, 0] + EXTENT / 2) / EXTENT * size - 0.5).astype(np.float32).reshape(cam.height, cam.width)
    ty = ((EXTENT / 2 - pts[:, 1]) / EXTENT * size - 0.5).astype(np.float32).reshape(cam.height, cam.width)
    img = cv2.remap(tex, tx, ty, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    depth = (s * rays_cam[:, 2]).reshape(cam.height, cam.width)  # rays_cam z = 1
    return img, depth
