"""Exposure balance: one gain per image and channel for the whole flight.

Brown & Lowe's gain compensation (as in OpenCV's ``GainCompensator``), solved
once from overlap statistics of low-resolution orthorectified samples, so
that every tile applies the same gains and tiles agree:

    E = sum_pairs n_ij (g_i a_ij - g_j b_ij)^2 / sigma_n^2 + sum_i n_i (1 - g_i)^2 / sigma_g^2

a_ij, b_ij: mean of image i and j over the cells both see (robust: cells
whose brightness ratio strays from the pair's median are left out, so
moving cars or misaligned walls do not bias the gain).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

F32 = NDArray[np.float32]
U8 = NDArray[np.uint8]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class OverlapStats:
    """Mean colour of two images over the cells both see."""

    i: int
    j: int
    count: int
    mean_i: tuple[float, float, float]
    mean_j: tuple[float, float, float]


def overlap_stats(i: int, j: int, rgb_i: U8, rgb_j: U8, both: BoolArray, min_cells: int = 16) -> OverlapStats | None:
    """Robust per-channel means of two co-registered samples over ``both``; None when too few cells."""
    if int(both.sum()) < min_cells:
        return None
    a = rgb_i[both].astype(np.float32)
    b = rgb_j[both].astype(np.float32)
    ga = a.mean(axis=1) + 1.0
    gb = b.mean(axis=1) + 1.0
    lr = np.log(ga / gb)
    med = float(np.median(lr))
    mad = float(np.median(np.abs(lr - med))) + 1e-3
    keep = (np.abs(lr - med) < 3.0 * 1.4826 * mad) & (a.max(axis=1) < 250) & (b.max(axis=1) < 250)
    if int(keep.sum()) < min_cells:
        return None
    ma = a[keep].mean(axis=0)
    mb = b[keep].mean(axis=0)
    return OverlapStats(
        i, j, int(keep.sum()), (float(ma[0]), float(ma[1]), float(ma[2])), (float(mb[0]), float(mb[1]), float(mb[2]))
    )


def solve_gains(n_images: int, stats: list[OverlapStats], sigma_n: float = 10.0, sigma_g: float = 0.1) -> NDArray[np.float64]:
    """(n_images, 3) gains minimising the energy above, per channel."""
    gains = np.ones((n_images, 3))
    for ch in range(3):
        A = np.zeros((n_images, n_images))
        b = np.zeros(n_images)
        for s in stats:
            a_ij, b_ij, n = s.mean_i[ch], s.mean_j[ch], float(s.count)
            for p, q, mp, mq in ((s.i, s.j, a_ij, b_ij), (s.j, s.i, b_ij, a_ij)):
                A[p, p] += n * (mp * mp / sigma_n**2 + 1.0 / sigma_g**2)
                A[p, q] -= n * mp * mq / sigma_n**2
                b[p] += n / sigma_g**2
        lonely = np.diag(A) == 0
        A[lonely, lonely] = 1.0
        b[lonely] = 1.0
        gains[:, ch] = np.linalg.solve(A, b)
    return np.clip(gains, 0.25, 4.0)


def apply_gain(rgb: NDArray[np.float32] | U8, gain: NDArray[np.float64] | tuple[float, float, float]) -> F32:
    """Colour samples (..., 3) times per-channel gains, as float32 (not clipped)."""
    g = np.asarray(gain, dtype=np.float32).reshape((1,) * (np.ndim(rgb) - 1) + (3,))
    return np.asarray(rgb, dtype=np.float32) * g
