"""The flight's ground height: from DJI RelativeAltitude, or from image motion.

RelativeAltitude is the height above the take-off point, so ``GPSAltitude -
RelativeAltitude`` is the take-off (ground) height in the images' own height
reference. Cameras without it (most fixed-wing and non-DJI cameras) get an
estimate from image motion: between two consecutive nadir images, the ground
moves by ``baseline / GSD`` pixels, so matching a few consecutive pairs (SIFT on
1/4-size previews, a RANSAC similarity) and dividing the GPS baseline by the
pixel shift gives the GSD, and ``GSD x focal`` the flying height. Pairs whose
similarity scale departs from 1 (a climb, a bank) are left out; the median of
the rest is used. It is an estimate (about 10 %), good for figures and
footprints, not for georeferencing.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from numpy.typing import NDArray

from drone_io.image_pixels import read_gray_preview
from models.camera import CameraModel
from models.image import ImageRecord

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]

# Most consecutive pairs tried for the image-motion estimate (evenly spread over the flight).
MOTION_MAX_PAIRS = 12
# Usable pairs after which the image-motion estimate stops trying.
MOTION_ENOUGH_PAIRS = 5
# Usable pairs needed for an image-motion estimate.
MOTION_MIN_PAIRS = 3
# Preview reduction for the image-motion estimate (1/4 size: weak texture needs the detail).
MOTION_REDUCTION = 4


class GroundSource(str, enum.Enum):
    """Where the ground height came from."""

    CONFIG = "config"  # given by the user
    RELATIVE_ALTITUDE = "relative_altitude"  # GPSAltitude - DJI RelativeAltitude (take-off height)
    IMAGE_MOTION = "image_motion"  # GPS baseline / image shift between consecutive images


@dataclass(frozen=True)
class GroundEstimate:
    """The ground height of a flight, in the images' height reference (m)."""

    height_m: float
    source: GroundSource
    samples: int  # images (or image pairs) it rests on
    spread_m: float  # median absolute deviation of the samples (m)


def ground_from_relative_altitude(records: Sequence[ImageRecord]) -> GroundEstimate | None:
    """Median of GPSAltitude - RelativeAltitude over the images that carry both."""
    vals = [
        r.gps.alt - r.relative_altitude_m
        for r in records
        if r.gps is not None and r.relative_altitude_m is not None and np.isfinite(r.gps.alt)
    ]
    if not vals:
        return None
    a = np.asarray(vals)
    med = float(np.median(a))
    return GroundEstimate(med, GroundSource.RELATIVE_ALTITUDE, len(vals), float(np.median(np.abs(a - med))))


def _pair_shift_px(img_a: NDArray[np.uint8], img_b: NDArray[np.uint8]) -> tuple[float, float, int] | None:
    """(shift of the image centre in preview pixels, similarity scale, inliers) between two previews."""
    import cv2

    sift = cv2.SIFT.create(nfeatures=1500)
    ka, da = sift.detectAndCompute(img_a, None)
    kb, db = sift.detectAndCompute(img_b, None)
    if da is None or db is None or len(ka) < 20 or len(kb) < 20:
        return None
    matches = cv2.BFMatcher().knnMatch(da, db, k=2)
    good = [m[0] for m in matches if len(m) == 2 and m[0].distance < 0.75 * m[1].distance]
    if len(good) < 15:
        return None
    pa = np.array([ka[g.queryIdx].pt for g in good], dtype=np.float32)
    pb = np.array([kb[g.trainIdx].pt for g in good], dtype=np.float32)
    M, inliers = cv2.estimateAffinePartial2D(pa, pb, ransacReprojThreshold=2.0)
    if M is None or inliers is None or int(inliers.sum()) < 12:
        return None
    c = np.array([img_a.shape[1] / 2.0, img_a.shape[0] / 2.0, 1.0])
    shift = float(np.linalg.norm(M @ c - c[:2]))
    scale = float(np.hypot(M[0, 0], M[1, 0]))
    return shift, scale, int(inliers.sum())


def ground_from_image_motion(
    records: Sequence[ImageRecord],
    xyz: FloatArray,
    cameras: dict[str, CameraModel],
    max_pairs: int = MOTION_MAX_PAIRS,
) -> GroundEstimate | None:
    """Ground height from GPS baselines and image shifts of consecutive images.

    ``records`` are time-ordered images with positions and ``xyz`` their
    projected positions (metres). Returns None when too few pairs work.
    """
    n = len(records)
    if n < 2:
        return None
    xyz = np.asarray(xyz, dtype=np.float64)
    candidates = []
    for i in range(n - 1):
        a, b = records[i], records[i + 1]
        if a.camera_id != b.camera_id or a.capture_time is None or b.capture_time is None:
            continue
        if not 0 < b.capture_time - a.capture_time <= 30.0:
            continue
        base = float(np.linalg.norm(xyz[i + 1, :2] - xyz[i, :2]))
        cam = cameras[a.camera_id]
        if base < 1.0:
            continue
        candidates.append((i, base, cam))
    if not candidates:
        return None
    # Try pairs spread evenly over the flight until enough of them work.
    order = np.unique(np.linspace(0, len(candidates) - 1, min(max_pairs, len(candidates))).round().astype(int))
    heights: list[float] = []
    tried = 0
    for k in order:
        if len(heights) >= MOTION_ENOUGH_PAIRS:
            break
        tried += 1
        i, base, cam = candidates[int(k)]
        img_a = read_gray_preview(records[i].path, MOTION_REDUCTION)
        img_b = read_gray_preview(records[i + 1].path, MOTION_REDUCTION)
        if img_a is None or img_b is None:
            continue
        res = _pair_shift_px(img_a, img_b)
        if res is None:
            continue
        shift, scale, _inl = res
        factor = cam.width / img_a.shape[1] if img_a.shape[1] else float(MOTION_REDUCTION)
        shift_full = shift * factor
        if abs(scale - 1.0) > 0.1 or not 0.03 * cam.width < shift_full < 0.95 * cam.width:
            continue
        gsd = base / shift_full
        agl = gsd * cam.focal_px
        z = 0.5 * (xyz[i, 2] + xyz[i + 1, 2])
        if np.isfinite(z):
            heights.append(float(z - agl))
    if len(heights) < MOTION_MIN_PAIRS:
        logger.info("image-motion ground estimate: only %d usable pair(s) of %d tried", len(heights), tried)
        return None
    h = np.asarray(heights)
    med = float(np.median(h))
    return GroundEstimate(med, GroundSource.IMAGE_MOTION, len(heights), float(np.median(np.abs(h - med))))
