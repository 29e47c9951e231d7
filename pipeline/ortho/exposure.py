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

import contextlib
import ctypes
import functools
import glob
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
from numpy.typing import NDArray

F32 = NDArray[np.float32]
U8 = NDArray[np.uint8]
BoolArray = NDArray[np.bool_]


@functools.cache
def _blas_threads_setter() -> Callable[[int], int] | None:
    """OpenBLAS's ``openblas_set_num_threads_local`` of numpy's bundled BLAS (thread count of the
    calling thread only; returns the previous count), or None where numpy has another BLAS."""
    libs = glob.glob(os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs", "libscipy_openblas*.so*"))
    for path in libs:
        try:
            fn: Any = getattr(ctypes.CDLL(path), "openblas_set_num_threads_local")
        except (OSError, AttributeError):
            continue
        fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
        return fn
    return None


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """numpy's LAPACK on the calling thread alone for a small dense solve.

    OpenBLAS splits a few-hundred-unknown solve over every core; when the cores are busy
    (the Dask workers, other processes), its threads wait on each other: the shading fit's
    362-unknown solve measured 25 ms on average and up to 0.6 s on a loaded 2-core machine,
    against 2-5 ms on one thread.
    """
    setter = _blas_threads_setter()
    if setter is None:
        yield
        return
    previous = setter(1)
    try:
        yield
    finally:
        setter(previous)


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


def _inliers(x: F32, bounds: NDArray[np.int64], min_cells: int) -> BoolArray:
    """Per segment ``x[bounds[p]:bounds[p + 1]]`` of at least ``min_cells``: the values within
    three robust sigmas (1.4826 MAD) of the segment's median. Shorter segments keep nothing."""
    keep = np.zeros(x.shape[0], bool)
    for s, e in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        if e - s < min_cells:
            continue
        seg = x[s:e]
        dev = np.abs(seg - _median(seg))
        keep[s:e] = dev < 3.0 * 1.4826 * (_median(dev) + 1e-3)
    return keep


def overlap_stats_many(
    i: NDArray[np.integer], j: NDArray[np.integer], rgb_i: U8, rgb_j: U8, bounds: NDArray[np.int64], min_cells: int = 16
) -> list[OverlapStats]:
    """:func:`overlap_stats` of many pairs at once: pair p's co-registered samples (n, 3) are rows
    ``bounds[p]:bounds[p + 1]`` of ``rgb_i`` and ``rgb_j``; pairs with too few cells are left out.

    Channel by channel on 1-D arrays: numpy's reductions along a 3-long last axis are several
    times slower than element-wise passes over the channels.
    """
    a = [rgb_i[:, ch] for ch in range(3)]
    b = [rgb_j[:, ch] for ch in range(3)]
    third = np.float32(1.0 / 3.0)
    ga = (a[0].astype(np.float32) + a[1] + a[2]) * third + np.float32(1.0)
    gb = (b[0].astype(np.float32) + b[1] + b[2]) * third + np.float32(1.0)
    # Robust: cells whose brightness ratio strays from the pair's (moving objects, parallax)
    # and near-saturated cells are left out.
    keep = _inliers(np.log(ga / gb), bounds, min_cells)
    keep &= np.maximum(np.maximum(a[0], a[1]), a[2]) < 250
    keep &= np.maximum(np.maximum(b[0], b[1]), b[2]) < 250
    # Per-pair sums of whole grey levels (exact), over the pairs that have cells.
    starts = bounds[:-1][np.diff(bounds) > 0]
    pairs = np.flatnonzero(np.diff(bounds) > 0)
    count = np.add.reduceat(keep, starts, dtype=np.int64) if starts.size else np.zeros(0, np.int64)
    sums = [np.add.reduceat(np.where(keep, x, 0), starts, dtype=np.int64) for x in a + b] if starts.size else []
    out = []
    for k in np.flatnonzero(count >= min_cells).tolist():
        n = int(count[k])
        ma = (float(sums[0][k] / n), float(sums[1][k] / n), float(sums[2][k] / n))
        mb = (float(sums[3][k] / n), float(sums[4][k] / n), float(sums[5][k] / n))
        p = int(pairs[k])
        out.append(OverlapStats(int(i[p]), int(j[p]), n, ma, mb))
    return out


def overlap_stats(i: int, j: int, rgb_i: U8, rgb_j: U8, both: BoolArray, min_cells: int = 16) -> OverlapStats | None:
    """Robust per-channel means of two co-registered samples over ``both``; None when too few cells."""
    rr, cc = np.nonzero(both)
    stats = overlap_stats_many(np.array([i]), np.array([j]), rgb_i[rr, cc], rgb_j[rr, cc], np.array([0, rr.size]), min_cells)
    return stats[0] if stats else None


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


def _bounds(seg: NDArray[np.integer], n: int) -> NDArray[np.int64]:
    """Start of each of ``n`` segments in a sorted array of segment numbers, and its end."""
    out = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(seg, minlength=n), out=out[1:])
    return out


def _chunks(bounds: NDArray[np.int64], rows: int) -> list[tuple[int, int]]:
    """Consecutive runs of segments [c0, c1) of about ``rows`` rows together (at least one segment each)."""
    out = []
    c0, n = 0, bounds.shape[0] - 1
    while c0 < n:
        c1 = max(c0 + 1, int(np.searchsorted(bounds, bounds[c0] + rows, side="right")) - 1)
        c1 = min(c1, n)
        out.append((c0, c1))
        c0 = c1
    return out


def _design(xi: F32, yi: F32, xj: F32, yj: F32) -> NDArray[np.float64]:
    """Rows of the shading fit for samples at (xi, yi) in image i and (xj, yj) in image j:
    gain and five field terms of image i, the same of image j (negated), then the lens
    fall-off (r^2, r^4) of i's camera and of j's (negated; the same two unknowns when the
    images share a camera)."""
    a = np.zeros((xi.shape[0], 16))
    for off, sign, x, y, c in ((0, 1.0, xi, yi, 12), (6, -1.0, xj, yj, 14)):
        b = _basis(x.astype(np.float64), y.astype(np.float64))
        a[:, off] = sign
        for t in range(5):
            a[:, off + 1 + t] = sign * b[t]
        a[:, c] += sign * b[5]
        a[:, c + 1] += sign * b[6]
    return a


def _pair_normals(pairs: list[PairSamples], grams: NDArray[np.float64], rhs: NDArray[np.float64]) -> None:
    """Each pair's block of the shading fit's normal equations (16 x 16, and its right-hand
    side), weighted by one over its trimmed sample count; zero for pairs of fewer than 16."""
    n_pairs = len(pairs)
    gi, gj = np.concatenate([s.grey_i for s in pairs]), np.concatenate([s.grey_j for s in pairs])
    xy = [np.concatenate([s.xy_i[0] for s in pairs]), np.concatenate([s.xy_i[1] for s in pairs])]
    xy += [np.concatenate([s.xy_j[0] for s in pairs]), np.concatenate([s.xy_j[1] for s in pairs])]
    seg = np.repeat(np.arange(n_pairs), [s.grey_i.shape[0] for s in pairs])
    ok = (gi > 8) & (gj > 8) & (gi < 248) & (gj < 248)
    d = np.log(gi[ok]) - np.log(gj[ok])
    keep = _inliers(d, _bounds(seg[ok], n_pairs), 16)
    rows = np.flatnonzero(ok)[keep]
    use = (np.bincount(seg[rows], minlength=n_pairs) >= 16)[seg[rows]]
    rows, d = rows[use], d[keep][use].astype(np.float64)
    bounds = _bounds(seg[rows], n_pairs)
    a = _design(*(x[rows] for x in xy))
    for p in range(n_pairs):
        s, e = bounds[p], bounds[p + 1]
        if e > s:
            w = 1.0 / (e - s)  # every overlap counts about the same, whatever its size
            grams[p] = w * a[s:e].T @ a[s:e]
            rhs[p] = w * a[s:e].T @ d[s:e]


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
    if pairs:
        # Only the two images' and their cameras' unknowns appear in a pair's rows: 16 columns.
        pi, pj = np.array([s.i for s in pairs]), np.array([s.j for s in pairs])
        ci, cj = per * n + 2 * np.asarray(camera_of)[pi], per * n + 2 * np.asarray(camera_of)[pj]
        own, cam = np.arange(per), np.arange(2)
        cols = np.concatenate([per * pi[:, None] + own, per * pj[:, None] + own, ci[:, None] + cam, cj[:, None] + cam], axis=1)
        grams = np.zeros((len(pairs), 16, 16))
        rhs = np.zeros((len(pairs), 16))
        # A few thousand pairs' samples at a time: the temporaries stay a few MB.
        bounds = np.concatenate([[0], np.cumsum([s.grey_i.shape[0] for s in pairs])]).astype(np.int64)
        for c0, c1 in _chunks(bounds, 1 << 14):
            _pair_normals(pairs[c0:c1], grams[c0:c1], rhs[c0:c1])
        np.add.at(ata, (cols[:, :, None], cols[:, None, :]), grams)
        np.add.at(atb, cols, rhs)
    gains = np.arange(n) * per
    ata[np.ix_(gains, gains)] += 1.0 / max(n, 1)  # the mean log gain is free: pin it
    reg = np.full(m, ridge)
    for t in range(1, per):
        reg[np.arange(n) * per + t] = ridge_image
    ata += np.diag(reg)
    with _one_blas_thread():
        x = np.linalg.solve(ata, atb)
    out = np.zeros((n, N_SHADING))
    for img in range(n):
        out[img, :5] = x[per * img + 1 : per * img + 6]
        c = per * n + 2 * camera_of[img]
        out[img, 5:] = x[c : c + 2]
    return out
