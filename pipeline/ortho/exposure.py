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


def _median(x: NDArray[np.floating]) -> float:
    """np.median of a 1-D array by one partition (np.median's own overhead dominates on small overlaps)."""
    n = x.shape[0]
    k = n // 2
    if n % 2:
        return float(np.partition(x, k)[k])
    p = np.partition(x, (k - 1, k))
    return float((p[k - 1] + p[k]) / 2)


def overlap_stats(i: int, j: int, rgb_i: U8, rgb_j: U8, both: BoolArray, min_cells: int = 16) -> OverlapStats | None:
    """Robust per-channel means of two co-registered samples over ``both``; None when too few cells.

    Channel by channel on 1-D arrays: numpy's reductions along a 3-long last axis are several
    times slower than element-wise passes over the channels.
    """
    rr, cc = np.nonzero(both)
    if rr.size < min_cells:
        return None
    a = [rgb_i[rr, cc, ch].astype(np.float32) for ch in range(3)]
    b = [rgb_j[rr, cc, ch].astype(np.float32) for ch in range(3)]
    third = np.float32(1.0 / 3.0)
    ga = (a[0] + a[1] + a[2]) * third + np.float32(1.0)
    gb = (b[0] + b[1] + b[2]) * third + np.float32(1.0)
    lr = np.log(ga / gb)
    med = _median(lr)
    mad = _median(np.abs(lr - med)) + 1e-3
    bright = np.float32(250.0)
    keep = (np.abs(lr - med) < 3.0 * 1.4826 * mad) & (np.maximum(np.maximum(a[0], a[1]), a[2]) < bright)
    keep &= np.maximum(np.maximum(b[0], b[1]), b[2]) < bright
    n = int(keep.sum())
    if n < min_cells:
        return None
    ma = tuple(float(x[keep].sum(dtype=np.float64) / n) for x in a)
    mb = tuple(float(x[keep].sum(dtype=np.float64) / n) for x in b)
    return OverlapStats(i, j, n, (ma[0], ma[1], ma[2]), (mb[0], mb[1], mb[2]))


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


N_SHADING = 7  # x, y, x^2, xy, y^2 per image; r^2, r^4 per camera


def normalized_xy(u: F32, v: F32, cx: float, cy: float, width: int, height: int) -> tuple[F32, F32]:
    """Image position relative to the principal point, in half-diagonals (the corners are at radius 1)."""
    inv = np.float32(1.0 / (0.5 * np.hypot(width, height)))
    return ((u - np.float32(cx)) * inv).astype(np.float32), ((v - np.float32(cy)) * inv).astype(np.float32)


def _basis(x: NDArray[np.floating], y: NDArray[np.floating]) -> list[NDArray[np.floating]]:
    r2 = x * x + y * y
    return [x, y, x * x, x * y, y * y, r2, r2 * r2]


def shading_factor(x: F32, y: F32, coeffs: tuple[float, ...]) -> F32:
    """Multiplier that removes an image's brightness field at normalised position (x, y).

    The field is exp(c . basis): a quadratic in the image position (light that changes across
    the frame: hot spot, sun angle) plus the camera's radial lens fall-off (r^2, r^4).
    """
    if not any(coeffs):
        return np.ones(np.shape(x), np.float32)
    f = np.zeros(np.shape(x), np.float32)
    for c, b in zip(coeffs, _basis(x, y)):
        if c != 0.0:
            f += np.float32(c) * b
    return np.exp(-f).astype(np.float32)


@dataclass(frozen=True, eq=False)
class PairSamples:
    """Grey levels of two images at the same ground cells, with each image's normalised position there."""

    i: int
    j: int
    grey_i: F32
    grey_j: F32
    xy_i: tuple[F32, F32]
    xy_j: tuple[F32, F32]


def fit_shading(
    pairs: list[PairSamples], camera_of: list[int], n_cameras: int, ridge_image: float = 0.5, ridge: float = 1e-4
) -> NDArray[np.float64]:
    """(n_images, 7) brightness-field coefficients, fitted jointly with per-image log gains.

    log I_i - log I_j = (g_i + f_i(x_i, y_i)) - (g_j + f_j(x_j, y_j)) over every overlap; f_i is
    a quadratic of the image position (per image, held near zero by ``ridge_image`` unless the
    overlaps demand it) plus the radial fall-off of the image's camera. Cells whose ratio strays
    from the pair's median (moving objects, parallax) are trimmed.
    """
    n = len(camera_of)
    per = 6  # gain + 5 field terms per image
    m = per * n + 2 * n_cameras
    ata = np.zeros((m, m))
    atb = np.zeros(m)
    for s in pairs:
        ok = (s.grey_i > 8) & (s.grey_j > 8) & (s.grey_i < 248) & (s.grey_j < 248)
        if int(ok.sum()) < 16:
            continue
        d = np.log(s.grey_i[ok]) - np.log(s.grey_j[ok])
        med = _median(d)
        mad = _median(np.abs(d - med)) + 1e-3
        keep = np.abs(d - med) < 3.0 * 1.4826 * mad
        if int(keep.sum()) < 16:
            continue
        d = d[keep].astype(np.float64)
        k = d.shape[0]
        # Only the two images' and their cameras' unknowns appear: fill that block alone.
        ci, cj = per * n + 2 * camera_of[s.i], per * n + 2 * camera_of[s.j]
        cols = list(range(per * s.i, per * s.i + per)) + list(range(per * s.j, per * s.j + per)) + [ci, ci + 1, cj, cj + 1]
        a = np.zeros((k, len(cols)))
        for off, sign, (x, y), c in ((0, 1.0, s.xy_i, 2 * per), (per, -1.0, s.xy_j, 2 * per + 2)):
            b = _basis(x[ok][keep].astype(np.float64), y[ok][keep].astype(np.float64))
            a[:, off] = sign
            for t in range(5):
                a[:, off + 1 + t] = sign * b[t]
            a[:, c] += sign * b[5]
            a[:, c + 1] += sign * b[6]
        w = 1.0 / k  # every overlap counts about the same, whatever its size
        idx = np.asarray(cols)
        np.add.at(ata, (idx[:, None], idx[None, :]), w * a.T @ a)
        np.add.at(atb, idx, w * a.T @ d)
    gains = np.arange(n) * per
    ata[np.ix_(gains, gains)] += 1.0 / max(n, 1)  # the mean log gain is free: pin it
    reg = np.full(m, ridge)
    for t in range(1, per):
        reg[np.arange(n) * per + t] = ridge_image
    ata += np.diag(reg)
    x = np.linalg.solve(ata, atb)
    out = np.zeros((n, N_SHADING))
    for img in range(n):
        out[img, :5] = x[per * img + 1 : per * img + 6]
        c = per * n + 2 * camera_of[img]
        out[img, 5:] = x[c : c + 2]
    return out
