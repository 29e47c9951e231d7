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


def vignetting_factor(r2: F32, coeffs: tuple[float, float]) -> F32:
    """Multiplier that removes the lens fall-off at normalised squared radius ``r2``.

    The fall-off is exp(a1 r^2 + a2 r^4) (r = 1 at the image corner), so the correction is its inverse.
    """
    a1, a2 = np.float32(coeffs[0]), np.float32(coeffs[1])
    return np.exp(-(a1 * r2 + a2 * r2 * r2)).astype(np.float32)


def radius2(u: F32, v: F32, cx: float, cy: float, width: int, height: int) -> F32:
    """Squared radius from the principal point, 1.0 at the image corners."""
    half_diag2 = np.float32(0.25 * (width * width + height * height))
    du = u - np.float32(cx)
    dv = v - np.float32(cy)
    return ((du * du + dv * dv) / half_diag2).astype(np.float32)


@dataclass(frozen=True, eq=False)
class PairSamples:
    """Grey levels of two images at the same ground cells, with each image's squared radius there."""

    i: int
    j: int
    grey_i: F32
    grey_j: F32
    r2_i: F32
    r2_j: F32


def fit_vignetting(pairs: list[PairSamples], camera_of: list[int], n_cameras: int, ridge: float = 1e-3) -> NDArray[np.float64]:
    """(n_cameras, 2) fall-off coefficients, fitted jointly with per-image log gains.

    log g_i - log g_j + f_ci(r_i) - f_cj(r_j) = log I_i - log I_j over every overlap, with
    f(r) = a1 r^2 + a2 r^4 per camera. Pairs whose ratio strays from its median (moving
    objects, parallax) are trimmed; a small ridge keeps an unseen camera at zero.
    """
    n = len(camera_of)
    m = n + 2 * n_cameras
    ata = np.zeros((m, m))
    atb = np.zeros(m)
    for s in pairs:
        ok = (s.grey_i > 8) & (s.grey_j > 8) & (s.grey_i < 248) & (s.grey_j < 248)
        if int(ok.sum()) < 16:
            continue
        d = np.log(s.grey_i[ok]) - np.log(s.grey_j[ok])
        med = float(np.median(d))
        mad = float(np.median(np.abs(d - med))) + 1e-3
        keep = np.abs(d - med) < 3.0 * 1.4826 * mad
        d = d[keep].astype(np.float64)
        ri = s.r2_i[ok][keep].astype(np.float64)
        rj = s.r2_j[ok][keep].astype(np.float64)
        k = d.shape[0]
        if k < 16:
            continue
        a = np.zeros((k, m))
        a[:, s.i] = 1.0
        a[:, s.j] -= 1.0
        ci, cj = n + 2 * camera_of[s.i], n + 2 * camera_of[s.j]
        a[:, ci] += ri
        a[:, ci + 1] += ri * ri
        a[:, cj] -= rj
        a[:, cj + 1] -= rj * rj
        w = 1.0 / k  # every overlap counts about the same, whatever its size
        ata += w * a.T @ a
        atb += w * a.T @ d
    ata[:n, :n] += 1.0 / max(n, 1)  # the mean log gain is free: pin it
    ata[n:, n:] += ridge * np.eye(2 * n_cameras)
    ata[:n, :n] += ridge * np.eye(n)
    x = np.linalg.solve(ata, atb)
    return np.asarray(x[n:].reshape(n_cameras, 2), dtype=np.float64)


def apply_gain(rgb: NDArray[np.float32] | U8, gain: NDArray[np.float64] | tuple[float, float, float]) -> F32:
    """Colour samples (..., 3) times per-channel gains, as float32 (not clipped)."""
    g = np.asarray(gain, dtype=np.float32).reshape((1,) * (np.ndim(rgb) - 1) + (3,))
    return np.asarray(rgb, dtype=np.float32) * g
