"""Two-view depth: rectify a pair, run OpenCV StereoSGBM, triangulate into the reference view.

Rectification is Fusiello-style and works for any baseline direction: both
cameras are turned to one common orientation whose x axis is the baseline, so
rows align and the neighbour lies to the right (positive disparities). The
undistort + rotate warp of each image is one ``cv2.initUndistortRectifyMap``.
SGBM's own left-right check (``disp12MaxDiff``), uniqueness test and speckle
filter reject unreliable matches. The disparity map is then sampled back onto
the reference image's own (distorted) pixel grid and turned into depth along
its optical axis, so every pair of one reference yields a depth map on the
same grid.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from models.camera import CameraModel
from models.pose import Pose

FloatArray = NDArray[np.float64]
F32 = NDArray[np.float32]


@dataclass(frozen=True)
class StereoOptions:
    """StereoSGBM settings."""

    block_size: int = 5  # matching block side (odd, px)
    max_disparities: int = 256  # cap on the disparity search range (px at depth-map scale)
    uniqueness_ratio: int = 10  # best cost must beat the second best by this percentage
    speckle_window: int = 100  # connected regions smaller than this (px) are removed
    speckle_range: int = 2  # disparity variation allowed inside a region (px)
    lr_max_diff: int = 1  # left-right consistency tolerance (px)
    max_size_factor: float = 1.6  # rectified image side at most this times the reference's
    refine: bool = True  # gradient-based sub-pixel refinement of SGBM's disparities


@dataclass(frozen=True, eq=False)
class Rectification:
    """A common rectified frame for a reference and a neighbour camera."""

    R: FloatArray  # world -> rectified-camera rotation (rows: baseline x, y, z)
    K: FloatArray  # intrinsics of both rectified images
    width: int
    height: int
    baseline: float  # distance between the centres (CRS units)

    @property
    def focal(self) -> float:
        return float(self.K[0, 0])


@functools.lru_cache(maxsize=8)
def normalized_grid(cam: CameraModel) -> F32:
    """Undistorted normalised coordinates (H, W, 2) of every pixel of a camera's grid."""
    u, v = np.meshgrid(np.arange(cam.width, dtype=np.float64), np.arange(cam.height, dtype=np.float64))
    xn = cam.pixel_to_normalized(np.stack([u, v], axis=-1).reshape(-1, 2))
    out = xn.reshape(cam.height, cam.width, 2).astype(np.float32)
    out.setflags(write=False)
    return out


def _edge_pixels(cam: CameraModel, n: int = 16) -> FloatArray:
    w, h = cam.width - 1.0, cam.height - 1.0
    t = np.linspace(0.0, 1.0, n)
    return np.concatenate(
        [
            np.stack([t * w, np.zeros(n)], 1),
            np.stack([t * w, np.full(n, h)], 1),
            np.stack([np.zeros(n), t * h], 1),
            np.stack([np.full(n, w), t * h], 1),
        ]
    )


def rectify(cam1: CameraModel, pose1: Pose, cam2: CameraModel, pose2: Pose, opts: StereoOptions) -> Rectification | None:
    """The rectified frame of a pair, or None when the geometry is degenerate."""
    b = pose2.center - pose1.center
    baseline = float(np.linalg.norm(b))
    if baseline <= 0.0:
        return None
    x = b / baseline
    z0 = pose1.viewing_direction + pose2.viewing_direction
    z0 = z0 / np.linalg.norm(z0)
    if abs(float(z0 @ x)) > 0.8:  # baseline along the viewing direction: no usable rectification
        return None
    y = np.cross(z0, x)
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    R = np.stack([x, y, z])
    f = cam1.focal_px
    xn = cam1.pixel_to_normalized(_edge_pixels(cam1))
    rays = np.concatenate([xn, np.ones((len(xn), 1))], axis=1)
    q = rays @ (R @ pose1.R.T).T
    if np.any(q[:, 2] <= 1e-6):
        return None
    u = f * q[:, 0] / q[:, 2]
    v = f * q[:, 1] / q[:, 2]
    width = float(u.max() - u.min()) + 1.0
    height = float(v.max() - v.min()) + 1.0
    cap = opts.max_size_factor * max(cam1.width, cam1.height)
    shrink = min(1.0, cap / max(width, height))
    f *= shrink
    cx = -u.min() * shrink
    cy = -v.min() * shrink
    K = np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])
    return Rectification(R=R, K=K, width=int(math.ceil(width * shrink)), height=int(math.ceil(height * shrink)), baseline=baseline)


def rectify_maps(cam: CameraModel, pose: Pose, rect: Rectification, K: FloatArray) -> tuple[F32, F32]:
    """remap() maps that warp an image of ``cam`` into the rectified frame (intrinsics ``K``)."""
    R_cam_to_rect = rect.R @ pose.R.T
    m1, m2 = cv2.initUndistortRectifyMap(cam.K, cam.dist_coeffs, R_cam_to_rect, K, (rect.width, rect.height), cv2.CV_32FC1)
    return np.asarray(m1, dtype=np.float32), np.asarray(m2, dtype=np.float32)


def _inside(m1: F32, m2: F32, cam: CameraModel) -> NDArray[np.bool_]:
    return (m1 >= 0) & (m1 <= cam.width - 1) & (m2 >= 0) & (m2 <= cam.height - 1)


def disparity_range(depth_min: float, depth_max: float, rect: Rectification, qz_min: float, qz_max: float) -> tuple[int, int]:
    """(minDisparity, numDisparities) covering depths [depth_min, depth_max] of the reference."""
    fb = rect.focal * rect.baseline
    d_lo = fb / (depth_max * qz_max)
    d_hi = fb / (depth_min * qz_min)
    min_d = int(math.floor(d_lo)) - 2
    num = int(math.ceil((d_hi - min_d + 2) / 16.0)) * 16
    return min_d, max(16, num)


def sgbm(left: NDArray[np.uint8], right: NDArray[np.uint8], min_disp: int, num_disp: int, opts: StereoOptions) -> F32:
    """Disparity (px, float32) of ``left``; NaN where SGBM found no reliable match."""
    bs = opts.block_size
    matcher = cv2.StereoSGBM.create(
        minDisparity=min_disp,
        numDisparities=num_disp,
        blockSize=bs,
        P1=8 * bs * bs,
        P2=32 * bs * bs,
        disp12MaxDiff=opts.lr_max_diff,
        preFilterCap=63,
        uniquenessRatio=opts.uniqueness_ratio,
        speckleWindowSize=opts.speckle_window,
        speckleRange=opts.speckle_range,
        mode=cv2.StereoSGBM_MODE_SGBM_3WAY,
    )
    raw = matcher.compute(left, right)
    disp = raw.astype(np.float32) / 16.0
    disp[raw <= (min_disp - 1) * 16] = np.nan
    return disp


def refine_disparity(left: NDArray[np.uint8], right: NDArray[np.uint8], disp: F32, iterations: int = 3, window: int = 11) -> F32:
    """Sub-pixel refinement of a disparity map by windowed Lucas-Kanade steps along the rows.

    SGBM's parabola fit "pixel-locks": its sub-pixel estimate is pulled toward
    whole disparities by up to a quarter pixel, which shows as bands following
    the terrain's height contours. Each step here minimises the windowed SSD
    between the left image and the right image resampled at ``x - d``, which
    has no such bias on textured surfaces. Steps are limited to half a pixel;
    pixels without texture or with a step that will not settle keep SGBM's value.
    """
    h, w = left.shape
    L = np.asarray(cv2.GaussianBlur(left.astype(np.float32), (0, 0), 0.6), dtype=np.float32)
    R = np.asarray(cv2.GaussianBlur(right.astype(np.float32), (0, 0), 0.6), dtype=np.float32)
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.repeat(np.arange(h, dtype=np.float32)[:, None], w, axis=1)
    valid = np.isfinite(disp)
    d = np.where(valid, disp, 0.0).astype(np.float32)
    gx_r = cv2.Sobel(R, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    total = np.zeros_like(d)
    ok = valid.copy()
    sigma = window / 4.0
    for _ in range(iterations):
        mx = xs - d
        warped = cv2.remap(R, mx, ys, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        grad = cv2.remap(gx_r, mx, ys, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        r = L - warped
        # Gaussian (not box) window: its frequency response stays in [0, 1], so repeated
        # steps damp disparity noise instead of amplifying the box filter's side lobes.
        num = cv2.GaussianBlur(r * grad, (0, 0), sigma)
        den = cv2.GaussianBlur(grad * grad, (0, 0), sigma)
        with np.errstate(divide="ignore", invalid="ignore"):
            # I_R(x - d - s) ~ warped - s * grad; least squares in s, and d grows by s.
            step = np.where(den > 1e-3, -num / den, 0.0)
        step = np.clip(step, -0.5, 0.5).astype(np.float32)
        d = d + np.where(ok, step, 0.0).astype(np.float32)
        total += np.where(ok, step, 0.0).astype(np.float32)
    ok &= np.abs(total) <= 1.0
    return np.where(ok, d, np.where(valid, disp, np.nan)).astype(np.float32)


def pair_depth(
    gray1: NDArray[np.uint8],
    cam1: CameraModel,
    pose1: Pose,
    gray2: NDArray[np.uint8],
    cam2: CameraModel,
    pose2: Pose,
    depth_min: float,
    depth_max: float,
    opts: StereoOptions,
) -> F32 | None:
    """Depth along the reference's axis on its own pixel grid from one pair; NaN where unknown.

    ``gray1``/``gray2`` are the images at the resolution of ``cam1``/``cam2``
    (already scaled). Returns None when the pair cannot be rectified.
    """
    rect = rectify(cam1, pose1, cam2, pose2, opts)
    if rect is None:
        return None
    # Reference pixels -> rectified pixels (a rotation of the undistorted rays).
    xn = normalized_grid(cam1)
    R_rr = (rect.R @ pose1.R.T).astype(np.float32)
    q = xn[..., 0:1] * R_rr[:, 0] + xn[..., 1:2] * R_rr[:, 1] + R_rr[:, 2]
    qz = q[..., 2]
    min_d, num_d = disparity_range(depth_min, depth_max, rect, float(qz.min()), float(qz.max()))
    # A search wider than the cap (or than most of the image) loses the nearest depths.
    num_d = min(num_d, opts.max_disparities, (int(0.6 * rect.width) // 16) * 16)
    if num_d < 16:
        return None
    # The neighbour's rectified image is shifted right by min_d pixels, so SGBM searches
    # [0, num_d) and loses only num_d (not min_d + num_d) columns at the left border.
    K2 = rect.K.copy()
    K2[0, 2] += min_d
    m1x, m1y = rectify_maps(cam1, pose1, rect, rect.K)
    m2x, m2y = rectify_maps(cam2, pose2, rect, K2)
    left = np.asarray(cv2.remap(gray1, m1x, m1y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0), dtype=np.uint8)
    right = np.asarray(cv2.remap(gray2, m2x, m2y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0), dtype=np.uint8)
    # Matches within a block of the image content's edge are unreliable: shrink the masks.
    edge = np.ones((opts.block_size, opts.block_size), np.uint8)
    in1 = cv2.erode(_inside(m1x, m1y, cam1).astype(np.uint8), edge).astype(bool)
    in2 = cv2.erode(_inside(m2x, m2y, cam2).astype(np.uint8), edge).astype(bool)
    del m1x, m1y, m2x, m2y
    disp = sgbm(left, right, 0, num_d, opts)
    if opts.refine:
        disp = refine_disparity(left, right, disp)
    del left, right
    # Both ends of the match must come from real image content.
    rows, cols = np.nonzero(np.isfinite(disp))
    x2 = np.rint(cols - disp[rows, cols]).astype(np.int64)
    ok = in1[rows, cols] & (x2 >= 0) & (x2 < rect.width)
    ok[ok] &= in2[rows[ok], x2[ok]]
    disp[rows[~ok], cols[~ok]] = np.nan
    disp += np.float32(min_d)  # back to true disparities of the common frame
    disp[disp <= 0] = np.nan

    f = np.float32(rect.focal)
    map_u = (f * q[..., 0] / qz + np.float32(rect.K[0, 2])).astype(np.float32)
    map_v = (f * q[..., 1] / qz + np.float32(rect.K[1, 2])).astype(np.float32)
    near = cv2.remap(disp, map_u, map_v, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=np.nan)
    lin = cv2.remap(disp, map_u, map_v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=np.nan)
    # Bilinear inside smooth regions, nearest across disparity edges (no mixed depths).
    d = np.where(np.abs(lin - near) <= 0.5, lin, near)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = (f * np.float32(rect.baseline) / d) / qz
    depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
    # Depths far outside the planned range are mismatches at the search limits.
    depth[(depth < depth_min * 0.9) | (depth > depth_max * 1.1)] = np.nan
    return depth.astype(np.float32)


def probe_depth_range(
    gray1: NDArray[np.uint8],
    cam1: CameraModel,
    pose1: Pose,
    gray2: NDArray[np.uint8],
    cam2: CameraModel,
    pose2: Pose,
    depth_min: float,
    depth_max: float,
    opts: StereoOptions,
    near_fraction: float = 0.3,
    factor: int = 4,
) -> tuple[float, float] | None:
    """The depth range a reference really spans, from a cheap wide search at 1/``factor`` resolution.

    Tie points miss what SIFT cannot match (tree crowns, roofs without
    texture), so the sparse range can exclude the nearest surfaces. The probe
    searches from ``near_fraction`` of ``depth_min`` to 1.3 x ``depth_max`` on
    images ``factor`` times smaller (1/factor^3 of the cost) and returns the
    1st..99.5th percentile of what it finds, widened by 10%; None when it
    finds too little.
    """
    small1 = cam1.scaled(1.0 / factor)
    small2 = cam2.scaled(1.0 / factor)
    g1 = np.asarray(cv2.resize(gray1, (small1.width, small1.height), interpolation=cv2.INTER_AREA), dtype=np.uint8)
    g2 = np.asarray(cv2.resize(gray2, (small2.width, small2.height), interpolation=cv2.INTER_AREA), dtype=np.uint8)
    wide = StereoOptions(block_size=opts.block_size, max_disparities=opts.max_disparities, refine=False)
    depth = pair_depth(g1, small1, pose1, g2, small2, pose2, depth_min * near_fraction, depth_max * 1.3, wide)
    if depth is None:
        return None
    d = depth[np.isfinite(depth)]
    if d.size < 0.02 * depth.size:
        return None
    lo, hi = np.percentile(d, [1.0, 99.5])
    return float(lo) * 0.9, float(hi) * 1.1


def combine_pair_depths(depths: list[F32], rel_tol: float, weights: list[float] | None = None) -> tuple[F32, NDArray[np.uint8]]:
    """Weighted mean of the pair depths that agree with their median, and how many agree.

    A pair agrees at a pixel when its depth is within ``rel_tol`` of the median
    of all pairs there. ``weights`` (one per pair, e.g. baseline squared: depth
    precision grows with it) weight the mean. Pixels where no pair has a depth
    come back NaN / 0.
    """
    stack = np.stack(depths)
    w = np.ones(len(depths), np.float32) if weights is None else np.asarray(weights, np.float32)
    any_depth = np.isfinite(stack).any(axis=0)
    first = stack[0].copy()
    stack[0][~any_depth] = 0.0  # no all-NaN columns: nanmedian would warn (from a worker thread)
    med = np.nanmedian(stack, axis=0)
    stack[0] = first
    med[~any_depth] = np.nan
    with np.errstate(all="ignore"):
        agree = np.abs(stack - med) <= rel_tol * med
    count = agree.sum(axis=0).astype(np.uint8)
    wa = np.where(agree, w[:, None, None], np.float32(0.0))
    with np.errstate(all="ignore"):
        mean = (np.where(agree, stack, 0.0) * wa).sum(axis=0) / np.maximum(wa.sum(axis=0), 1e-12)
    out = np.where(count > 0, mean, np.nan).astype(np.float32)
    return out, count
