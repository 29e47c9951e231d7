"""Best-view selection: a per-cell cost of taking a ground cell from one image (lower is better).

cost = w_angle * tan(off-nadir angle)          relief displacement grows with tan(theta)
     + w_gsd   * max(0, gsd_cell / gsd_ref - 1) farther views resolve less
     + w_sharp * blur_penalty(image)           blurred frames lose to sharp ones

``gsd_cell`` is the ground size of one full-resolution pixel along the ray
(distance / focal length in pixels); ``gsd_ref`` the flight's nadir GSD.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

F32 = NDArray[np.float32]
BoolArray = NDArray[np.bool_]
U8 = NDArray[np.uint8]


@dataclass(frozen=True)
class ViewWeights:
    """Weights of the terms of the view cost."""

    angle: float = 1.0
    gsd: float = 0.5
    sharpness: float = 0.5


def view_cost(
    center_local: NDArray[np.float64],
    focal_px: float,
    x: F32,
    y: F32,
    z: F32,
    gsd_ref: float,
    weights: ViewWeights,
    blur_penalty: float = 0.0,
) -> F32:
    """Cost of viewing local points (x, y, z) from a camera at ``center_local``; +inf when below it."""
    c = center_local.astype(np.float32)
    dx = c[0] - np.asarray(x, np.float32)
    dy = c[1] - np.asarray(y, np.float32)
    dz = c[2] - np.asarray(z, np.float32)
    horiz = np.sqrt(dx * dx + dy * dy)
    above = dz > np.float32(1e-3)
    tan = np.where(above, horiz / np.maximum(dz, np.float32(1e-3)), np.float32(np.inf))
    dist = np.sqrt(horiz * horiz + dz * dz)
    gsd_term = np.maximum(dist / np.float32(focal_px * gsd_ref) - np.float32(1.0), np.float32(0.0))
    cost = np.float32(weights.angle) * tan + np.float32(weights.gsd) * gsd_term
    cost += np.float32(weights.sharpness * blur_penalty)
    return np.asarray(cost, dtype=np.float32)


def sharpness(rgb: U8, longest: int = 1024) -> float:
    """A focus measure: variance of the Laplacian of the grey image at most ``longest`` px.

    The image is reduced by a whole factor (block means: OpenCV's fast path, where a
    fractional INTER_AREA costs more than the rest of the measure).
    """
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    k = -(-max(h, w) // longest)
    if k > 1:
        grey = cv2.resize(grey, (max(1, w // k), max(1, h // k)), interpolation=cv2.INTER_AREA)
    lap = cv2.Laplacian(grey, cv2.CV_32F)
    return float(lap.var())


def blur_penalties(sharpness_by_image: dict[str, float]) -> dict[str, float]:
    """Per-image penalty in [0, 1]: 0 at or above the flight's median sharpness, 1 for a flat image."""
    if not sharpness_by_image:
        return {}
    med = float(np.median(list(sharpness_by_image.values())))
    if med <= 0:
        return {k: 0.0 for k in sharpness_by_image}
    return {k: float(np.clip(1.0 - v / med, 0.0, 1.0)) for k, v in sharpness_by_image.items()}


def best_view(costs: F32, valid: BoolArray) -> tuple[NDArray[np.int64], BoolArray]:
    """Per-cell index of the cheapest valid view over axis 0, and whether any view is valid."""
    masked = np.where(valid, costs, np.float32(np.inf))
    idx = np.asarray(np.argmin(masked, axis=0), dtype=np.int64)
    return idx, np.asarray(valid.any(axis=0), dtype=bool)
