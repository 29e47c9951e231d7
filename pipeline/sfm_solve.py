"""Solving the camera network with pycolmap: mapping, bundle adjustment, GPS checks, GCP adjustment.

Everything here works on a pycolmap reconstruction in the *local frame*
(working CRS minus an origin). The sfm stage wires these steps together; each
is small enough to test on its own.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pycolmap
from numpy.typing import NDArray

from models.similarity import Similarity
from pipeline.config import SfmConfig

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]


@contextlib.contextmanager
def quiet_colmap(verbose: bool = False) -> Iterator[None]:
    """Keep COLMAP's INFO chatter off the console unless asked for."""
    old = pycolmap.logging.minloglevel
    if not verbose:
        pycolmap.logging.minloglevel = 1
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = old


# -- mapping -----------------------------------------------------------------------------
def mapping_options(cfg: SfmConfig, use_priors: bool, min_matches: int, num_threads: int = -1) -> pycolmap.IncrementalPipelineOptions:
    """Incremental mapping: OPENCV intrinsics (f, k1, k2, p1, p2) refined; principal point held until final BA."""
    opts = pycolmap.IncrementalPipelineOptions()
    opts.multiple_models = True
    opts.min_model_size = max(2, cfg.min_model_size)
    opts.min_num_matches = min_matches
    opts.extract_colors = False  # colours come from the stored keypoint colours
    opts.num_threads = num_threads
    opts.ba_refine_focal_length = True
    opts.ba_refine_principal_point = False  # ill-posed while the model is small; refined in the final BA
    opts.ba_refine_extra_params = cfg.refine_distortion
    opts.use_prior_position = use_priors
    opts.use_robust_loss_on_prior_position = True
    return opts


def run_mapper(database: Path, image_dir: Path, out_dir: Path, opts: pycolmap.IncrementalPipelineOptions) -> list[pycolmap.Reconstruction]:
    """All partial models, largest first."""
    out_dir.mkdir(parents=True, exist_ok=True)
    models = pycolmap.incremental_mapping(str(database), str(image_dir), str(out_dir), opts)
    return sorted(models.values(), key=lambda r: r.num_reg_images(), reverse=True)


# -- pose priors -------------------------------------------------------------------------
def read_pose_priors(database: Path) -> list[pycolmap.PosePrior]:
    db = pycolmap.Database.open(str(database))
    try:
        return list(db.read_all_pose_priors())
    finally:
        db.close()


# -- geometry of a model ---------------------------------------------------------------------
def centers(rec: pycolmap.Reconstruction) -> dict[str, FloatArray]:
    """Projection centres of the registered images, by name."""
    return {rec.images[i].name: np.asarray(rec.images[i].projection_center(), dtype=np.float64) for i in rec.reg_image_ids()}


def apply_similarity(rec: pycolmap.Reconstruction, sim: Similarity) -> None:
    """Transform a model in place: x_new = s R x + t."""
    rec.transform(pycolmap.Sim3d(sim.scale, pycolmap.Rotation3d(sim.R), sim.t.reshape(3, 1)))


def image_id_by_name(rec: pycolmap.Reconstruction) -> dict[str, int]:
    return {img.name: int(i) for i, img in rec.images.items()}


def deregister(rec: pycolmap.Reconstruction, names: Sequence[str]) -> None:
    ids = image_id_by_name(rec)
    for n in names:
        image = rec.images[ids[n]]
        rec.deregister_frame(image.frame_id)


def filter_points(rec: pycolmap.Reconstruction, max_error_px: float, keep: set[int] | None = None) -> int:
    """Delete points whose mean reprojection error exceeds ``max_error_px``; returns how many."""
    rec.update_point_3d_errors()
    bad = [pid for pid, p in rec.points3D.items() if p.error > max_error_px and (keep is None or pid not in keep)]
    for pid in bad:
        rec.delete_point3D(pid)
    return len(bad)


# -- bundle adjustment -------------------------------------------------------------------------
@dataclass(frozen=True)
class BaResult:
    usable: bool
    residuals: int
    report: str


def _ba_options(cfg: SfmConfig, refine_intrinsics: bool, refine_principal_point: bool) -> pycolmap.BundleAdjustmentOptions:
    o = pycolmap.BundleAdjustmentOptions()
    o.refine_focal_length = refine_intrinsics
    o.refine_principal_point = refine_intrinsics and refine_principal_point
    o.refine_extra_params = refine_intrinsics and cfg.refine_distortion
    o.print_summary = False
    o.ceres.loss_function_type = pycolmap.LossFunctionType.SOFT_L1
    o.ceres.loss_function_scale = 1.0
    o.ceres.solver_options.max_num_iterations = cfg.ba_max_iterations
    o.ceres.solver_options.function_tolerance = 1e-6
    return o


def _summary(s: pycolmap.BundleAdjustmentSummary) -> BaResult:
    return BaResult(bool(s.is_solution_usable()), int(s.num_residuals), str(s.brief_report()))


def bundle_adjust_with_priors(
    rec: pycolmap.Reconstruction,
    priors: Sequence[pycolmap.PosePrior],
    cfg: SfmConfig,
    refine_intrinsics: bool = True,
) -> BaResult:
    """Global BA with GPS position priors (robust Cauchy loss); the priors hold the block's shape.

    pycolmap first aligns the model to the priors (RANSAC similarity), so the
    result is in the priors' frame.
    """
    config = pycolmap.BundleAdjustmentConfig()
    for i in rec.reg_image_ids():
        config.add_image(i)
    prior_opts = pycolmap.PosePriorBundleAdjustmentOptions()
    prior_opts.ceres.prior_position_loss_function_type = pycolmap.LossFunctionType.CAUCHY
    prior_opts.alignment_ransac.random_seed = 0
    adjuster = pycolmap.create_pose_prior_bundle_adjuster(
        _ba_options(cfg, refine_intrinsics, cfg.refine_principal_point), prior_opts, config, list(priors), rec
    )
    result = _summary(adjuster.solve())
    rec.update_point_3d_errors()
    return result


def bundle_adjust_fixed_points(
    rec: pycolmap.Reconstruction,
    constant_points: Sequence[int],
    cfg: SfmConfig,
    refine_intrinsics: bool,
) -> BaResult:
    """Global BA whose datum is a set of constant 3D points (control GCPs at their surveyed coordinates)."""
    config = pycolmap.BundleAdjustmentConfig()
    for i in rec.reg_image_ids():
        config.add_image(i)
    for pid in constant_points:
        config.add_constant_point(pid)
    adjuster = pycolmap.create_default_bundle_adjuster(_ba_options(cfg, refine_intrinsics, cfg.refine_principal_point), config, rec)
    result = _summary(adjuster.solve())
    rec.update_point_3d_errors()
    return result


# -- GCPs as tracked points ---------------------------------------------------------------------
def add_gcp_point(rec: pycolmap.Reconstruction, xyz: FloatArray, observations: Sequence[tuple[int, int]]) -> int | None:
    """A 3D point at ``xyz`` observed at (image_id, point2D_idx) keypoints; None if under two registered views."""
    track = pycolmap.Track()
    used = 0
    for image_id, idx in observations:
        if image_id in rec.images and rec.images[image_id].has_pose:
            image = rec.images[image_id]
            if image.points2D[idx].has_point3D():
                continue
            track.add_element(image_id, idx)
            used += 1
    if used < 2:
        return None
    return int(rec.add_point3D(np.asarray(xyz, dtype=np.float64).reshape(3, 1), track, np.array([255, 0, 255], np.uint8)))
