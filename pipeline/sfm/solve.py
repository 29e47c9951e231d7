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
from typing import Callable, Iterator, Sequence

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
def mapping_options(use_priors: bool, min_matches: int, min_model_size: int, num_threads: int = -1) -> pycolmap.IncrementalPipelineOptions:
    """Incremental mapping with the intrinsics held at their initial (EXIF) values.

    A nadir block over flat ground cannot tell focal length from flying height,
    nor radial distortion from focal length, while the model is a handful of
    images: refined there they drift (on the synthetic flight to 5x the true
    focal length) and registration stalls. Held fixed, every shared flight
    registers; the final adjustment, with GPS priors or control points fixing
    the scale, then solves f, principal point, k1, k2, p1 and p2.
    """
    opts = pycolmap.IncrementalPipelineOptions()
    opts.multiple_models = True
    opts.min_model_size = max(2, min_model_size)
    opts.min_num_matches = min_matches
    opts.extract_colors = False  # colours come from the stored keypoint colours
    opts.num_threads = num_threads
    opts.ba_refine_focal_length = False
    opts.ba_refine_principal_point = False
    opts.ba_refine_extra_params = False
    opts.mapper.abs_pose_refine_focal_length = False
    opts.mapper.abs_pose_refine_extra_params = False
    opts.use_prior_position = use_priors
    opts.use_robust_loss_on_prior_position = True
    return opts


def global_mapping_options(min_matches: int, min_model_size: int, num_threads: int = -1) -> pycolmap.GlobalPipelineOptions:
    """Global mapping (rotation averaging, global positioning, BA) with the intrinsics held, as above."""
    opts = pycolmap.GlobalPipelineOptions()
    opts.min_num_matches = min_matches
    opts.min_model_size = max(2, min_model_size)
    opts.num_threads = num_threads
    ba = opts.mapper.bundle_adjustment
    ba.refine_focal_length = False
    ba.refine_principal_point = False
    ba.refine_extra_params = False
    ba.ceres.use_gpu = False
    opts.mapper.global_positioning.use_gpu = False
    return opts


def run_mapper(
    database: Path,
    image_dir: Path,
    out_dir: Path,
    opts: pycolmap.IncrementalPipelineOptions | pycolmap.GlobalPipelineOptions,
) -> list[pycolmap.Reconstruction]:
    """All partial models, largest first (incremental or global mapping, by the options given)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(opts, pycolmap.GlobalPipelineOptions):
        models = pycolmap.global_mapping(str(database), str(image_dir), str(out_dir), opts)
    else:
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


@dataclass(frozen=True)
class Refine:
    """Which intrinsics a bundle adjustment refines."""

    focal: bool
    principal_point: bool
    distortion: bool

    @classmethod
    def nothing(cls) -> "Refine":
        return cls(False, False, False)

    @classmethod
    def calibration(cls, cfg: SfmConfig, focal: bool) -> "Refine":
        return cls(focal, cfg.refine_principal_point, cfg.refine_distortion)


def _ba_options(cfg: SfmConfig, refine: Refine) -> pycolmap.BundleAdjustmentOptions:
    o = pycolmap.BundleAdjustmentOptions()
    o.refine_focal_length = refine.focal
    o.refine_principal_point = refine.principal_point
    o.refine_extra_params = refine.distortion
    o.print_summary = False
    o.ceres.loss_function_type = pycolmap.LossFunctionType.SOFT_L1
    o.ceres.loss_function_scale = 1.0
    o.ceres.solver_options.max_num_iterations = cfg.ba_max_iterations
    # Tight: along the weak directions of a nadir block (tilt vs position, k1 vs scale) the cost
    # is flat and a loose tolerance stops a GSD short (measured on the synthetic flight).
    o.ceres.solver_options.function_tolerance = 1e-9
    return o


def bundle_adjust(
    rec: pycolmap.Reconstruction,
    cfg: SfmConfig,
    refine: Refine,
    priors: Sequence[pycolmap.PosePrior] = (),
    constant_points: Sequence[int] = (),
) -> BaResult:
    """Global bundle adjustment of every registered image.

    With ``priors`` the GPS positions (covariance-weighted, robust Cauchy loss)
    hold the block's shape and datum; pycolmap first aligns the model to them
    (RANSAC similarity), so the result is in the priors' frame. With
    ``constant_points`` (control GCPs at their surveyed coordinates) those fix
    the datum. With neither, two cameras fix the gauge.
    """
    if priors and constant_points:
        raise ValueError("pose priors re-align the model, which would move constant points; use one or the other")
    config = pycolmap.BundleAdjustmentConfig()
    for i in rec.reg_image_ids():
        config.add_image(i)
    for pid in constant_points:
        config.add_constant_point(pid)
    options = _ba_options(cfg, refine)
    if priors:
        prior_opts = pycolmap.PosePriorBundleAdjustmentOptions()
        prior_opts.ceres.prior_position_loss_function_type = pycolmap.LossFunctionType.CAUCHY
        prior_opts.alignment_ransac.random_seed = 0
        adjuster = pycolmap.create_pose_prior_bundle_adjuster(options, prior_opts, config, list(priors), rec)
    else:
        if not constant_points:
            config.fix_gauge(pycolmap.BundleAdjustmentGauge.TWO_CAMS_FROM_WORLD)
        adjuster = pycolmap.create_default_bundle_adjuster(options, config, rec)
    s = adjuster.solve()
    rec.update_point_3d_errors()
    return BaResult(bool(s.is_solution_usable()), int(s.num_residuals), str(s.brief_report()))


@dataclass(frozen=True)
class Calibration:
    """Outcome of :func:`self_calibrate`."""

    focal_refined: bool
    error_focal_held_px: float
    error_focal_free_px: float


def self_calibrate(
    rec: pycolmap.Reconstruction,
    cfg: SfmConfig,
    adjust: Callable[[pycolmap.Reconstruction, Refine], BaResult],
) -> tuple[pycolmap.Reconstruction, Calibration]:
    """Refine principal point and distortion; refine the focal length too only where the images determine it.

    A nadir block over nearly flat ground cannot tell focal length from flying
    height: freed, the focal length wanders along that valley (0.3% on the
    synthetic flight, lifting every camera by 3 GSD) while the reprojection
    error does not move. So the model is first adjusted with the focal length
    held; the focal length is then freed on a copy, and kept only when that
    lowers the mean reprojection error by ``cfg.focal_min_gain`` (as when the
    EXIF focal length is simply wrong).
    """
    adjust(rec, Refine.calibration(cfg, focal=False))
    held = float(rec.compute_mean_reprojection_error())
    trial = pycolmap.Reconstruction(rec)
    adjust(trial, Refine.calibration(cfg, focal=True))
    free = float(trial.compute_mean_reprojection_error())
    keep_free = free < (1.0 - cfg.focal_min_gain) * held
    return (trial if keep_free else rec), Calibration(keep_free, held, free)


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
