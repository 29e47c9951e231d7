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


def blend_low(low: list[F32], valid: list[BoolArray], labels: NDArray[np.int32], sigma: float) -> tuple[F32, BoolArray]:
    """The blended low band (h, w, 3) and where any image contributes to it.

    ``low[j]`` are image j's coarse colour samples (h, w, 3), ``valid[j]`` where
    they exist, ``labels`` which image each coarse cell belongs to (index into
    the lists, -1 for none), ``sigma`` the transition width in coarse cells.
    """
    h, w = labels.shape
    acc = np.zeros((h, w, 3), np.float32)
    wsum = np.zeros((h, w), np.float32)
    for j in range(len(low)):
        mask = (labels == j).astype(np.float32)
        if not mask.any():
            continue  # no weight anywhere
        wj = _blur(mask, sigma) * valid[j].astype(np.float32)
        acc += np.where(valid[j][..., None], low[j], np.float32(0.0)) * wj[..., None]
        wsum += wj
    covered = wsum > 1e-6
    blended = acc / np.maximum(wsum, np.float32(1e-6))[..., None]
    return blended.astype(np.float32), covered


def correction(
    blended: F32, covered: BoolArray, low: F32, valid: BoolArray, sigma: float, needed: tuple[int, int, int, int] | None = None
) -> F32:
    """One image's correction field (h, w, 3): the smooth part of ``blended - low``, extended past its samples.

    The field is extended (nearest value) over cells without samples nearby;
    with ``needed`` = (row0, row1, col0, col1), only when some cell of that
    block lacks them (elsewhere the field is left at zero: nobody samples it).
    """
    h, w = covered.shape
    have = valid & covered
    delta = np.where(have[..., None], blended - low, np.float32(0.0)).astype(np.float32)
    # Keep only the smooth part of the correction, then extend it over cells without samples.
    smooth, den = normalized_blur(delta, have, max(1.0, 0.5 * sigma))
    ok = den > 1e-3
    if not ok.any():
        return np.zeros((h, w, 3), np.float32)
    if needed is not None:
        r0, r1, c0, c1 = needed
        if ok[max(0, r0) : max(0, r1), max(0, c0) : max(0, c1)].all():
            return np.where(ok[..., None], smooth, np.float32(0.0)).astype(np.float32)
    return fill_nearest(smooth, 0.0, ~ok)


def fill_field(blended: F32, covered: BoolArray, sigma: float) -> F32:
    """The blended low band smoothed and extended over cells no image sees (nearest value)."""
    smooth_all, den_all = normalized_blur(np.where(covered[..., None], blended, np.float32(0.0)).astype(np.float32), covered, max(1.0, 0.5 * sigma))
    return fill_nearest(smooth_all, 0.0, ~(den_all > 1e-3))


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
    blended, covered = blend_low(low, valid, labels, sigma)
    out = [correction(blended, covered, low[j], valid[j], sigma) for j in range(n)]
    return out, fill_field(blended, covered, sigma)
