"""Camera poses and rotations.

A :class:`Pose` maps world points into the camera frame: ``x_cam = R @ X + t``
(COLMAP's convention). The world is the projected output CRS: x east(ing),
y north(ing), z up (height). The camera frame is x right, y down, z forward.

Gimbal angles follow DJI's convention: yaw in degrees clockwise from north,
pitch in degrees with 0 level and -90 straight down, roll in degrees
positive right-wing-down. At pitch -90 the top of the image points in the
yaw direction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class Pose:
    """World-to-camera rigid transform."""

    R: FloatArray
    t: FloatArray

    def __post_init__(self) -> None:
        object.__setattr__(self, "R", np.asarray(self.R, dtype=np.float64).reshape(3, 3))
        object.__setattr__(self, "t", np.asarray(self.t, dtype=np.float64).reshape(3))

    @classmethod
    def from_center(cls, R: FloatArray, center: FloatArray) -> "Pose":
        """Pose from a world-to-camera rotation and the camera centre in the world."""
        R = np.asarray(R, dtype=np.float64)
        return cls(R=R, t=-R @ np.asarray(center, dtype=np.float64))

    @property
    def center(self) -> FloatArray:
        """Camera centre in world coordinates."""
        return -self.R.T @ self.t

    @property
    def viewing_direction(self) -> FloatArray:
        """Unit optical axis in world coordinates."""
        return self.R[2].copy()

    def to_camera(self, X: FloatArray) -> FloatArray:
        """World points (N, 3) -> camera-frame points (N, 3)."""
        return np.asarray(X, dtype=np.float64) @ self.R.T + self.t

    def to_world(self, Xc: FloatArray) -> FloatArray:
        """Camera-frame points (N, 3) -> world points (N, 3)."""
        return (np.asarray(Xc, dtype=np.float64) - self.t) @ self.R


def rotation_from_gimbal(yaw_deg: float, pitch_deg: float, roll_deg: float = 0.0) -> FloatArray:
    """Camera-to-world rotation (columns: camera x, y, z in ENU) from gimbal angles."""
    yaw, pitch, roll = np.radians([yaw_deg, pitch_deg, roll_deg])
    forward = np.array([np.sin(yaw), np.cos(yaw), 0.0])
    right = np.array([np.cos(yaw), -np.sin(yaw), 0.0])
    up = np.array([0.0, 0.0, 1.0])
    z = np.cos(pitch) * forward + np.sin(pitch) * up
    y = np.sin(pitch) * forward - np.cos(pitch) * up
    x = right
    # Roll turns the camera about its optical axis; right-wing-down turns x toward +y.
    cr, sr = np.cos(roll), np.sin(roll)
    x_r = cr * x + sr * y
    y_r = -sr * x + cr * y
    return np.stack([x_r, y_r, z], axis=1)


def world_to_camera_from_gimbal(yaw_deg: float, pitch_deg: float, roll_deg: float = 0.0) -> FloatArray:
    """World-to-camera rotation ``R`` of a :class:`Pose` from gimbal angles."""
    return rotation_from_gimbal(yaw_deg, pitch_deg, roll_deg).T


def gimbal_from_rotation(R_world_to_cam: FloatArray) -> tuple[float, float, float]:
    """Inverse of :func:`world_to_camera_from_gimbal`: (yaw, pitch, roll) in degrees."""
    M = np.asarray(R_world_to_cam, dtype=np.float64).T  # camera-to-world
    z = M[:, 2]
    pitch = np.degrees(np.arcsin(np.clip(z[2], -1.0, 1.0)))
    x = M[:, 0]
    y = M[:, 1]
    if abs(z[2]) < 1.0 - 1e-9:
        fwd = z[:2] / np.linalg.norm(z[:2])
    else:
        # Straight down/up: the heading is where the top of the image points.
        fwd = -y[:2] * np.sign(-z[2]) if np.linalg.norm(y[:2]) > 1e-9 else x[:2]
        fwd = fwd / np.linalg.norm(fwd)
    yaw = np.degrees(np.arctan2(fwd[0], fwd[1]))
    R0 = rotation_from_gimbal(float(yaw), float(pitch), 0.0)
    x0, y0 = R0[:, 0], R0[:, 1]
    roll = np.degrees(np.arctan2(float(x @ y0), float(x @ x0)))
    return float(yaw % 360.0), float(pitch), float(roll)


# -- quaternions (w, x, y, z), for interpolation on the rotation group -----------
def quat_from_matrix(R: FloatArray) -> FloatArray:
    """Unit quaternion (w, x, y, z) of a rotation matrix, with w >= 0."""
    R = np.asarray(R, dtype=np.float64)
    tr = np.trace(R)
    if tr > 0:
        s = np.sqrt(tr + 1.0) * 2
        q = np.array([0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s])
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = np.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2]) * 2
        q = np.array([(R[2, 1] - R[1, 2]) / s, 0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s])
    elif R[1, 1] > R[2, 2]:
        s = np.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2]) * 2
        q = np.array([(R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s])
    else:
        s = np.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1]) * 2
        q = np.array([(R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s])
    q = q / np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def matrix_from_quat(q: FloatArray) -> FloatArray:
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def slerp(q0: FloatArray, q1: FloatArray, f: float) -> FloatArray:
    """Spherical linear interpolation between unit quaternions, 0 <= f <= 1."""
    q0 = np.asarray(q0, dtype=np.float64)
    q1 = np.asarray(q1, dtype=np.float64)
    dot = float(q0 @ q1)
    if dot < 0.0:
        q1, dot = -q1, -dot
    if dot > 0.9995:
        q = q0 + f * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = np.arccos(dot)
    s = np.sin(theta)
    return (np.sin((1 - f) * theta) * q0 + np.sin(f * theta) * q1) / s


def rotation_angle_deg(R_a: FloatArray, R_b: FloatArray) -> float:
    """Angle of the relative rotation between two rotation matrices, in degrees."""
    c = (np.trace(np.asarray(R_a).T @ np.asarray(R_b)) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))
