"""Features: SIFT keypoints and descriptors per image (one Dask task per image).

Each image is decoded at the preset's working size (``features.max_image_size``;
0 is full resolution), SIFT runs on it, and keypoints are stored at full
resolution in Aerobase pixels. A per-image cache key (image fingerprint +
feature settings) lets a rerun, even a forced one, skip unchanged images.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from distributed import Client
from numpy.typing import NDArray

from drone_io.image_pixels import read_resized
from models.features import ImageFeatures
from models.image import ImageRecord
from pipeline.config import Config, FeatureExtractor, FeaturesConfig
from pipeline.sfm.georegister import require_georeference
from pipeline.progress import map_tasks
from pipeline.stage import StageReport, StageSpec
from pipeline.workspace import Workspace, fingerprint

logger = logging.getLogger(__name__)

# Bump when extraction changes its output, so cached features are recomputed.
EXTRACTOR_VERSION = 3

# OpenCV's contrastThreshold (its default 0.04 misses the low-contrast ground of many flights).
OPENCV_CONTRAST_THRESHOLD = 0.02


@dataclass(frozen=True)
class FeatureTask:
    """One image to extract: small and picklable."""

    name: str
    path: str
    width: int  # full resolution, after EXIF orientation
    height: int
    cache_key: str


@dataclass(frozen=True)
class FeatureResult:
    name: str
    num_features: int
    sharpness: float
    seconds: float
    cached: bool


def cache_key(path: Path, settings: FeaturesConfig) -> str:
    return "|".join(
        [
            fingerprint(path),
            settings.extractor.value,
            str(settings.max_image_size),
            str(settings.max_num_features),
            str(settings.upsample),
            f"v{EXTRACTOR_VERSION}",
        ]
    )


def working_size(width: int, height: int, max_image_size: int) -> tuple[int, int]:
    """(w, h) of the working image: the long side capped at max_image_size (0: full size)."""
    long_side = max(width, height)
    if max_image_size <= 0 or long_side <= max_image_size:
        return width, height
    s = max_image_size / long_side
    return max(1, int(round(width * s))), max(1, int(round(height * s)))


def load_working_image(path: Path, width: int, height: int, max_image_size: int) -> NDArray[np.uint8]:
    """BGR image at the working size; JPEG decodes at a reduced scale when that is enough."""
    ww, wh = working_size(width, height, max_image_size)
    return read_resized(path, (width, height), ww, wh, bgr=True)


def root_sift(descriptors: NDArray[np.float32]) -> NDArray[np.uint8]:
    """RootSIFT (L1 normalise, square root), quantised like COLMAP (x512, clipped to 255)."""
    d = np.asarray(descriptors, dtype=np.float32)
    d = d / np.maximum(d.sum(axis=1, keepdims=True), 1e-12)
    return np.minimum(np.round(np.sqrt(d) * 512.0), 255.0).astype(np.uint8)


def sift_opencv(gray: NDArray[np.uint8], max_features: int) -> tuple[NDArray[np.float32], NDArray[np.uint8]]:
    """(N, 4) keypoints x, y, scale, orientation (Aerobase pixels of ``gray``) and RootSIFT descriptors.

    Detects with a low contrast threshold, then keeps the ``max_features``
    largest-scale keypoints, as VLFeat/COLMAP do: on low-contrast ground (sand,
    fields) OpenCV's default keep-the-strongest choice fills the budget with
    tiny, unrepeatable blobs and finds a third of the matches.
    """
    # Precise upscaling maps pixel x of the doubled first octave to 2x; without it every keypoint
    # sits a quarter pixel right of and below the feature (measured: +0.25 px in x and y).
    sift = cv2.SIFT.create(nfeatures=0, contrastThreshold=OPENCV_CONTRAST_THRESHOLD, enable_precise_upscale=True)
    kps = sift.detect(gray, None)
    if not kps:
        return np.zeros((0, 4), np.float32), np.zeros((0, 128), np.uint8)
    if max_features > 0 and len(kps) > max_features:
        size = np.array([k.size for k in kps])
        keep = np.sort(np.argsort(-size, kind="stable")[:max_features])
        kps = [kps[i] for i in keep]
    kps, desc = sift.compute(gray, kps)
    if not kps or desc is None:
        return np.zeros((0, 4), np.float32), np.zeros((0, 128), np.uint8)
    kp = np.array([(k.pt[0], k.pt[1], 0.5 * k.size, np.deg2rad(k.angle)) for k in kps], dtype=np.float32)
    return kp, root_sift(np.asarray(desc, dtype=np.float32))


def sift_colmap(gray: NDArray[np.uint8], max_features: int, upsample: bool) -> tuple[NDArray[np.float32], NDArray[np.uint8]]:
    """pycolmap SIFT; keypoints converted from COLMAP (0.5) to Aerobase (0) pixel centres."""
    import pycolmap

    options = pycolmap.FeatureExtractionOptions()
    options.num_threads = 1
    options.sift.max_num_features = max_features
    options.sift.first_octave = -1 if upsample else 0
    extractor = pycolmap.FeatureExtractor.create(options, device=pycolmap.Device.cpu)
    kps, desc = extractor.extract_from_uint8_array(gray)
    kp = np.asarray(pycolmap.keypoints_to_matrix(kps), dtype=np.float32)
    if kp.shape[0] == 0:
        return np.zeros((0, 4), np.float32), np.zeros((0, 128), np.uint8)
    if kp.shape[1] == 6:  # affine shape: a11 a12 a21 a22 -> scale, orientation
        scale = np.sqrt(np.abs(kp[:, 2] * kp[:, 5] - kp[:, 3] * kp[:, 4]))
        kp = np.stack([kp[:, 0], kp[:, 1], scale, np.arctan2(kp[:, 4], kp[:, 2])], axis=1)
    kp[:, :2] -= 0.5
    return kp.astype(np.float32), np.asarray(desc.data, dtype=np.uint8)


def sharpness(gray: NDArray[np.uint8]) -> float:
    """Variance of the Laplacian (a standard focus measure)."""
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def extract_features(
    image: NDArray[np.uint8], full_width: int, full_height: int, settings: FeaturesConfig, key: str
) -> ImageFeatures:
    """The numpy kernel: features of one working-size BGR image, keypoints mapped to full resolution."""
    gray = np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
    if settings.extractor is FeatureExtractor.COLMAP_SIFT:
        kp, desc = sift_colmap(gray, settings.max_num_features, settings.upsample)
    else:
        kp, desc = sift_opencv(gray, settings.max_num_features)
    h, w = gray.shape
    sx, sy = w / full_width, h / full_height
    xi = np.clip(np.round(kp[:, 0]).astype(np.int64), 0, w - 1)
    yi = np.clip(np.round(kp[:, 1]).astype(np.int64), 0, h - 1)
    colors = image[yi, xi][:, ::-1].astype(np.uint8)  # BGR -> RGB
    full = kp.copy()
    # Pixel centres: (u + 0.5) scales, not u.
    full[:, 0] = (kp[:, 0] + 0.5) / sx - 0.5
    full[:, 1] = (kp[:, 1] + 0.5) / sy - 0.5
    full[:, 2] = kp[:, 2] / sx
    return ImageFeatures(
        keypoints=full.astype(np.float32),
        descriptors=np.ascontiguousarray(desc),
        colors=np.ascontiguousarray(colors),
        working_scale=float(sx),
        sharpness=sharpness(gray),
        cache_key=key,
    )


def _extract_task(task: FeatureTask, ws: Workspace, settings: FeaturesConfig) -> FeatureResult:
    """Dask task: extract and store one image's features (or reuse the cached file)."""
    t0 = time.perf_counter()
    if ws.features_cache_key(task.name) == task.cache_key:
        f = ws.load_features(task.name)
        return FeatureResult(task.name, len(f), f.sharpness, 0.0, True)
    img = load_working_image(Path(task.path), task.width, task.height, settings.max_image_size)
    feats = extract_features(img, task.width, task.height, settings, task.cache_key)
    ws.save_features(task.name, feats)
    return FeatureResult(task.name, len(feats), feats.sharpness, time.perf_counter() - t0, False)


def feature_tasks(records: list[ImageRecord], settings: FeaturesConfig) -> list[FeatureTask]:
    return [FeatureTask(r.name, str(r.path), r.width, r.height, cache_key(r.path, settings)) for r in records]


def run(ws: Workspace, cfg: Config, client: Client) -> StageReport:
    records = ws.load_images()
    require_georeference(records, ws.load_gcps() if ws.gcps_exist() else None, cfg)
    tasks = feature_tasks(records, cfg.features)
    t0 = time.perf_counter()
    results = map_tasks(client, _extract_task, tasks, ws, cfg.features, label="features", item_names=[t.name for t in tasks])
    seconds = time.perf_counter() - t0
    counts = [r.num_features for r in results]
    cached = sum(r.cached for r in results)
    logger.info(
        "features: %d images (%d reused from cache), median %d keypoints, %.1fs",
        len(results), cached, int(np.median(counts)) if counts else 0, seconds,
    )
    figures = {
        "features": {
            "images": len(results),
            "extracted": len(results) - cached,
            "reused": cached,
            "keypoints_median": int(np.median(counts)) if counts else 0,
            "keypoints_min": int(min(counts)) if counts else 0,
            "extractor": cfg.features.extractor.value,
            "working_size_px": cfg.features.max_image_size,
        },
        "sfm": {"seconds": {"features": round(seconds, 2)}},
    }
    return StageReport(figures=figures, outputs=tuple(ws.features_path(r.name) for r in records))


STAGE = StageSpec(
    name="features",
    run=run,
    config_fields=("features",),
    version=EXTRACTOR_VERSION,
    title="SIFT features per image",
)
