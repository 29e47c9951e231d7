"""Two-band blending across seams (the two-level form of Burt & Adelson's multi-band blend).

Detail (the high band) switches sharply at the seam: each output pixel keeps
the full-resolution sample of its own image, so nothing ghosts. Brightness
and colour (the low band) cross the seam smoothly over ``sigma``: on a coarse
grid, every image's low band is blended with weights that are its blurred
seam mask, and each image gets a smooth correction field

    delta_j = blended_low - low_j

that is added to its full-resolution samples. Where an image is occluded or
out of frame it has no weight and no samples, so occluded content (walls)
never leaks in: the blur is a normalised convolution over valid cells only.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from pipeline.ortho.dsm import fill_nearest

F32 = NDArray[np.float32]
BoolArray = NDArray[np.bool_]


def _blur(a: F32, sigma: float) -> F32:
    if sigma <= 0:
        return a
    return np.asarray(cv2.GaussianBlur(a, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE), dtype=np.float32)


def normalized_blur(values: F32, valid: BoolArray, sigma: float) -> tuple[F32, F32]:
    """Blur of ``values`` (h, w, c) over ``valid`` cells only; returns (blurred, blurred weight)."""
    m = valid.astype(np.float32)
    num = _blur(values * m[..., None], sigma)
    den = _blur(m, sigma)
    if num.ndim == 2:
        num = num[..., None]
    out = num / np.maximum(den, np.float32(1e-6))[..., None]
    return out.astype(np.float32), den


def low_band_corrections(
    low: list[F32], valid: list[BoolArray], labels: NDArray[np.int32], sigma: float
) -> tuple[list[F32], F32]:
    """Per-image correction fields (h, w, 3) on the coarse grid, and the blended low band.

    ``low[j]`` are image j's coarse colour samples (h, w, 3), ``valid[j]`` where
    they exist, ``labels`` which image each coarse cell belongs to (index into
    the lists, -1 for none), ``sigma`` the transition width in coarse cells.
    The blended low band is extended over cells no image sees (nearest value),
    to fill ground hidden from every image.
    """
    n = len(low)
    h, w = labels.shape
    if n == 0:
        return [], np.zeros((h, w, 3), np.float32)
    acc = np.zeros((h, w, 3), np.float32)
    wsum = np.zeros((h, w), np.float32)
    weights = []
    for j in range(n):
        mask = (labels == j).astype(np.float32)
        wj = _blur(mask, sigma) * valid[j].astype(np.float32)
        weights.append(wj)
        acc += np.where(valid[j][..., None], low[j], 0.0) * wj[..., None]
        wsum += wj
    covered = wsum > 1e-6
    blended = acc / np.maximum(wsum, np.float32(1e-6))[..., None]
    out = []
    for j in range(n):
        have = valid[j] & covered
        delta = np.where(have[..., None], blended - low[j], 0.0).astype(np.float32)
        # Keep only the smooth part of the correction, then extend it over cells without samples.
        smooth, den = normalized_blur(delta, have, max(1.0, 0.5 * sigma))
        ok = den > 1e-3
        if not ok.any():
            out.append(np.zeros((h, w, 3), np.float32))
            continue
        out.append(fill_nearest(smooth, 0.0, ~ok))
    smooth_all, den_all = normalized_blur(np.where(covered[..., None], blended, 0.0).astype(np.float32), covered, max(1.0, 0.5 * sigma))
    return out, fill_nearest(smooth_all, 0.0, ~(den_all > 1e-3))
