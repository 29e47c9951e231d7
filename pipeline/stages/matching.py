"""Matching: candidate pairs from geometry, then descriptor matching and geometric verification.

Pairs come from :mod:`pipeline.sfm.pairs` (GPS neighbours + footprint overlap, or
the no-GPS fallback). Each Dask task takes a batch of ``pairs_per_task`` pairs,
matches descriptors (FLANN kd-trees, Lowe's ratio test, mutual check) and
verifies them with pycolmap's two-view geometry (E, F or H under RANSAC). The
verified inliers are stored per batch through the workspace.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
from distributed import Client
from numpy.typing import NDArray

from models.camera import CameraModel
from models.features import ImageFeatures, PairGeometry, PairMatches, PairStat
from models.image import ImageRecord
from models.footprint import attitude_for, footprint
from pipeline.config import Config, MatchingConfig
from pipeline.sfm.georegister import GpsFrame, gps_frame
from pipeline.sfm.pairs import (
    CandidatePair,
    PairImage,
    merge_pairs,
    retrieval_pairs,
    select_pairs,
    train_vocabulary,
    word_histogram,
)
from pipeline.progress import map_tasks
from pipeline.stage import StageReport, StageSpec
from pipeline.workspace import Workspace

logger = logging.getLogger(__name__)

# Geometries that make a pair usable by the mapper.
VERIFIED = {
    PairGeometry.CALIBRATED,
    PairGeometry.UNCALIBRATED,
    PairGeometry.PLANAR,
    PairGeometry.PANORAMIC,
    PairGeometry.PLANAR_OR_PANORAMIC,
}

# FLANN kd-tree settings: 4 randomised trees, 32 leaf checks (about 0.1 s per 8k x 8k query).
_FLANN_INDEX: dict[str, bool | int | float | str] = {"algorithm": 1, "trees": 4}
_FLANN_SEARCH: dict[str, bool | int | float | str] = {"checks": 32}


@dataclass(frozen=True)
class MatchTask:
    """One batch of pairs for one Dask task."""

    batch: str
    pairs: tuple[tuple[str, str, str], ...]  # (image1, image2, source)
    cameras: dict[str, CameraModel]  # image name -> its (initial) camera


# -- kernels ---------------------------------------------------------------------------
class _Index:
    """Descriptors of one image with a lazily built FLANN index."""

    def __init__(self, descriptors: NDArray[np.uint8]) -> None:
        self.desc = np.ascontiguousarray(descriptors, dtype=np.float32)
        self._index: cv2.flann.Index | None = None

    @property
    def index(self) -> cv2.flann.Index:
        if self._index is None:
            self._index = cv2.flann.Index(self.desc, _FLANN_INDEX)
        return self._index


def match_descriptors(a: _Index, b: _Index, max_ratio: float, cross_check: bool) -> NDArray[np.uint32]:
    """Putative matches (M, 2) between two images: ratio test, optionally mutual nearest neighbours."""
    if len(a.desc) < 2 or len(b.desc) < 2:
        return np.zeros((0, 2), np.uint32)
    idx, dist = b.index.knnSearch(a.desc, 2, params=_FLANN_SEARCH)
    # FLANN returns squared L2 distances.
    i1 = np.nonzero(dist[:, 0] < (max_ratio**2) * dist[:, 1])[0]
    i2 = idx[i1, 0].astype(np.int64)
    if cross_check and len(i1):
        # Mutual nearest neighbours: look back only from the candidates (a fraction of b).
        cand, inverse = np.unique(i2, return_inverse=True)
        back, _ = a.index.knnSearch(np.ascontiguousarray(b.desc[cand]), 1, params=_FLANN_SEARCH)
        keep = back[inverse, 0] == i1
        i1, i2 = i1[keep], i2[keep]
    return np.stack([i1, i2], axis=1).astype(np.uint32)


def verify_pair(
    cam1: CameraModel,
    xy1: NDArray[np.float64],
    cam2: CameraModel,
    xy2: NDArray[np.float64],
    matches: NDArray[np.uint32],
    settings: MatchingConfig,
) -> tuple[PairGeometry, NDArray[np.uint32], dict[str, NDArray[np.float64]]]:
    """Two-view geometry under RANSAC (pycolmap); returns (geometry, inlier matches, F/E/H)."""
    import pycolmap

    from pipeline.sfm.colmap_bridge import to_colmap_camera, to_colmap_pixels

    options = pycolmap.TwoViewGeometryOptions()
    options.min_num_inliers = settings.min_inliers
    options.ransac.max_error = settings.max_error_px
    options.ransac.random_seed = 0
    geom = pycolmap.estimate_two_view_geometry(
        to_colmap_camera(cam1, 1),
        to_colmap_pixels(xy1),
        to_colmap_camera(cam2, 2),
        to_colmap_pixels(xy2),
        np.ascontiguousarray(matches, dtype=np.uint32),
        options,
    )
    models: dict[str, NDArray[np.float64]] = {}
    for key in ("F", "E", "H"):
        m = getattr(geom, key)
        models[key] = np.zeros((3, 3)) if m is None else np.asarray(m, dtype=np.float64)
    inliers = np.asarray(geom.inlier_matches, dtype=np.uint32).reshape(-1, 2)
    return PairGeometry(int(geom.config)), inliers, models


def _match_batch(task: MatchTask, ws: Workspace, settings: MatchingConfig) -> list[PairStat]:
    """Dask task: match and verify one batch of pairs; store the verified ones."""
    feats: dict[str, ImageFeatures] = {}
    indices: dict[str, _Index] = {}

    def get(name: str) -> tuple[ImageFeatures, _Index]:
        if name not in feats:
            feats[name] = ws.load_features(name)
            indices[name] = _Index(feats[name].descriptors)
        return feats[name], indices[name]

    stats: list[PairStat] = []
    verified: list[PairMatches] = []
    for n1, n2, source in task.pairs:
        f1, i1 = get(n1)
        f2, i2 = get(n2)
        putative = match_descriptors(i1, i2, settings.max_ratio, settings.cross_check)
        geometry, inliers = PairGeometry.UNDEFINED, np.zeros((0, 2), np.uint32)
        models: dict[str, NDArray[np.float64]] = {}
        if len(putative) >= settings.min_inliers:
            geometry, inliers, models = verify_pair(task.cameras[n1], f1.xy, task.cameras[n2], f2.xy, putative, settings)
        ok = geometry in VERIFIED and len(inliers) >= settings.min_inliers
        stats.append(PairStat(n1, n2, int(len(putative)), int(len(inliers)) if ok else 0, ok, source))
        if ok:
            verified.append(PairMatches(n1, n2, inliers, int(len(putative)), geometry, models["F"], models["E"], models["H"]))
    ws.save_matches(task.batch, verified)
    return stats


# -- pair selection inputs -------------------------------------------------------------------
def pair_images(
    records: Sequence[ImageRecord], cameras: dict[str, CameraModel], frame: GpsFrame | None, ground_height_m: float | None
) -> list[PairImage]:
    """Positions (local frame) and ground footprints (height above ground, gimbal or best-known attitude)."""
    out = []
    for i, r in enumerate(records):
        order = r.capture_time if r.capture_time is not None else float(i)
        pos = frame.positions.get(r.name) if frame is not None else None
        fp = None
        if frame is not None and pos is not None:
            ground = ground_height_m
            if ground is None and r.gps is not None and r.relative_altitude_m is not None:
                ground = r.gps.alt - r.relative_altitude_m
            if ground is not None:
                att = attitude_for(r).attitude
                fp = footprint(cameras[r.camera_id], pos, att, ground - float(frame.origin[2]), frame.convergence_deg)
        out.append(PairImage(r.name, pos, fp, order))
    return out


def _retrieval(ws: Workspace, names: list[str], settings: MatchingConfig) -> list[CandidatePair]:
    """Flat-vocabulary retrieval pairs; loads one image's features at a time."""
    rng = np.random.default_rng(0)
    sample = []
    for n in names:
        d = ws.load_features(n).descriptors
        if len(d):
            sample.append(d[rng.choice(len(d), size=min(len(d), 200), replace=False)])
    vocab = train_vocabulary(np.concatenate(sample), words=1024)
    hists = np.array([word_histogram(ws.load_features(n).descriptors, vocab) for n in names])
    return retrieval_pairs(names, hists, settings.retrieval_neighbors)


def batches(pairs: Sequence[CandidatePair], size: int) -> list[MatchTask]:
    """Pairs grouped so a task reuses each image's index; names are deterministic."""
    ordered = sorted(pairs, key=lambda p: (p.image1, p.image2))
    size = max(1, size)
    return [
        MatchTask(
            batch=f"batch-{k // size:05d}",
            pairs=tuple((p.image1, p.image2, p.source.value) for p in ordered[k : k + size]),
            cameras={},
        )
        for k in range(0, len(ordered), size)
    ]


def run(ws: Workspace, cfg: Config, client: Client) -> StageReport:
    t0 = time.perf_counter()
    records = ws.load_images()
    cameras = ws.load_cameras()
    georef = ws.load_georef()
    frame = gps_frame(records, georef)
    ground = georef.get("ground_height_m")
    images = pair_images(records, cameras, frame, float(ground) if ground is not None else None)
    m = cfg.matching
    pairs, needs_retrieval = select_pairs(
        images, m.gps_neighbors, m.max_gps_distance_m, m.min_footprint_overlap, m.sequential_overlap, m.exhaustive_max_images
    )
    if needs_retrieval:
        pairs = merge_pairs(pairs, _retrieval(ws, [r.name for r in records], m))
    t_pairs = time.perf_counter() - t0
    by_source = Counter(p.source.value for p in pairs)
    logger.info("matching: %d candidate pairs for %d images (%s)", len(pairs), len(records), dict(by_source))

    cam_of = {r.name: cameras[r.camera_id] for r in records}
    tasks = [
        MatchTask(t.batch, t.pairs, {n: cam_of[n] for p in t.pairs for n in p[:2]})
        for t in batches(pairs, m.pairs_per_task)
    ]
    ws.clear_matches()
    t1 = time.perf_counter()
    results = map_tasks(client, _match_batch, tasks, ws, m, label="matching", item_names=[t.batch for t in tasks])
    t_match = time.perf_counter() - t1
    stats = [s for batch in results for s in batch]
    ws.save_pair_stats(stats)
    n_verified = sum(s.verified for s in stats)
    logger.info("matching: %d of %d pairs verified in %.1fs", n_verified, len(stats), t_match)
    figures = {
        "sfm": {
            "pairs_tried": len(stats),
            "pairs_verified": n_verified,
            "pairs_by_source": dict(sorted(by_source.items())),
            "seconds": {"pairs": round(t_pairs, 2), "matching": round(t_match, 2)},
        }
    }
    outputs = (ws.pair_stats_path, ws.matches_dir)
    return StageReport(figures=figures, outputs=outputs)


STAGE = StageSpec(
    name="matching",
    run=run,
    config_fields=("matching",),
    version=1,
    title="select pairs from GPS and footprints; match and verify",
)
