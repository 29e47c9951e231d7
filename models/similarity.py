"""3D similarity transforms (scale, rotation, translation) and their least-squares fit.

``Similarity.apply(X) = s * R @ X + t``. The fit is Umeyama's closed form
(Umeyama 1991), optionally weighted, with an optional robust loop that drops
correspondences whose residual exceeds a threshold. Pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from models.pose import Pose

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class Similarity:
    """``x_new = scale * R @ x_old + t``."""

    scale: float
    R: FloatArray
    t: FloatArray

    @classmethod
    def translation(cls, t: FloatArray) -> "Similarity":
        return cls(1.0, np.eye(3), np.asarray(t, dtype=np.float64).reshape(3))

    def apply(self, X: FloatArray) -> FloatArray:
        """Transform points (N, 3) or (3,)."""
        X = np.asarray(X, dtype=np.float64)
        return self.scale * X @ self.R.T + self.t

    def apply_pose(self, pose: Pose) -> Pose:
        """The world-to-camera pose of the same camera in the new world frame."""
        R_new = pose.R @ self.R.T
        return Pose.from_center(R_new, self.apply(pose.center))

    def inverse(self) -> "Similarity":
        Rinv = self.R.T
        return Similarity(1.0 / self.scale, Rinv, -(Rinv @ self.t) / self.scale)


def fit_similarity(
    src: FloatArray,
    dst: FloatArray,
    weights: FloatArray | None = None,
    with_scale: bool = True,
) -> Similarity:
    """Least-squares ``dst ≈ s R src + t`` from (N, 3) correspondences, N >= 3 non-collinear."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3:
        raise ValueError(f"need matching (N, 3) arrays, got {src.shape} and {dst.shape}")
    if src.shape[0] < 3:
        raise ValueError(f"a similarity needs at least 3 correspondences, got {src.shape[0]}")
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mu_s = w @ src
    mu_d = w @ dst
    a = src - mu_s
    b = dst - mu_d
    cov = (b * w[:, None]).T @ a
    U, S, Vt = np.linalg.svd(cov)
    D = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        D[2, 2] = -1.0
    R = U @ D @ Vt
    var_s = float(w @ np.sum(a * a, axis=1))
    scale = float(np.trace(np.diag(S) @ D) / var_s) if with_scale and var_s > 0 else 1.0
    t = mu_d - scale * R @ mu_s
    return Similarity(scale, R, t)


def fit_similarity_robust(
    src: FloatArray,
    dst: FloatArray,
    threshold: float,
    weights: FloatArray | None = None,
    with_scale: bool = True,
    iterations: int = 10,
) -> tuple[Similarity, NDArray[np.bool_]]:
    """Fit, drop correspondences with residual > ``threshold``, refit; returns (transform, inliers).

    Starts from all points and removes the worst one at a time while it is an
    outlier (a trimmed fit), which is enough when outliers are a minority.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    inliers = np.ones(len(src), dtype=bool)
    sim = fit_similarity(src, dst, w, with_scale)
    for _ in range(max(iterations, len(src))):
        res = np.linalg.norm(sim.apply(src) - dst, axis=1)
        res_in = np.where(inliers, res, -1.0)
        worst = int(np.argmax(res_in))
        if res_in[worst] <= threshold or inliers.sum() <= 3:
            break
        inliers[worst] = False
        sim = fit_similarity(src[inliers], dst[inliers], w[inliers], with_scale)
    return sim, inliers
