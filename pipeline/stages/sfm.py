"""Structure from motion: map with GPS priors, self-calibrate, reject misregistrations, georegister.

Steps (each timed into ``sfm.seconds``):

1. mapping: a pycolmap database from the stored features and verified pairs,
   GPS positions as pose priors (RTK standard deviations when the images state
   them, the configured default otherwise); incremental mapping keeps the
   largest partial model and reports the others.
2. ba: a global bundle adjustment with the GPS priors holding the block's
   shape while the intrinsics (f, principal point, k1, k2, p1, p2) are refined,
   which is what keeps nadir grids from doming; images solved where their GPS
   rules out (beyond ``misregistration_sigmas``) are removed and the block is
   adjusted again.
3. georegistration: control GCPs (triangulated from their observations) move
   the model onto the surveyed datum, then enter a final adjustment as fixed
   points with their image observations; checkpoints stay out and are only
   measured. Without GPS the control points alone georeference the model.

Outputs: the typed reconstruction in the workspace (full image resolution,
working CRS), a COLMAP text model, ``sparse.laz`` and ``cameras.geojson``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pycolmap
from distributed import Client
from numpy.typing import NDArray

from drone_io.colmap_text import write_colmap_text
from drone_io.pointcloud import write_las
from drone_io.geojson import write_geojson
from drone_io.solved_cameras import SolvedCamera, update_camera_collection
from models.camera import CameraModel
from models.errors import GeoreferenceError, ReconstructionError
from models.features import ImageFeatures
from models.gcp import GcpObservation, GcpSet
from models.geo import Projector, crs_label
from models.image import ImageRecord
from models.pose import gimbal_from_rotation
from models.reconstruction import Reconstruction
from models.sfm_report import (
    GeoreferenceSource,
    PositionResidual,
    SfmReport,
    UnregisteredImage,
    UnregisteredReason,
)
from models.similarity import Similarity, fit_similarity_robust
from pipeline.sfm.colmap_bridge import DatabaseImage, build_database, reprojection_errors, to_aerobase
from pipeline.config import Config, Mapper
from pipeline.sfm.georegister import (
    GpsFrame,
    gcp_crs,
    gcps_in_crs,
    gps_frame,
    gps_std,
    local_origin,
    observations_by_point,
    prior_covariance,
    require_georeference,
    residual_table,
    rmse,
    triangulate,
    well_spread,
)
from pipeline.sfm.solve import (
    BaResult,
    Calibration,
    Refine,
    add_gcp_point,
    apply_similarity,
    bundle_adjust,
    centers,
    deregister,
    filter_points,
    global_mapping_options,
    mapping_options,
    quiet_colmap,
    read_pose_priors,
    run_mapper,
    self_calibrate,
)
from pipeline.stage import StageReport, StageSpec
from pipeline.workspace import Workspace, atomic_path, read_json

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]

# Points whose mean reprojection error exceeds this (px) are dropped after the final adjustment.
MAX_POINT_ERROR_PX = 4.0


@dataclass
class Timer:
    seconds: dict[str, float] = field(default_factory=dict)
    _t: float = field(default_factory=time.perf_counter)

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + now - self._t, 2)
        self._t = now


@dataclass(frozen=True, eq=False)
class Frame:
    """The frame SfM works in: CRS, local origin, GPS positions (local) and GCP coordinates (local)."""

    crs: str
    crs_wkt: str
    origin: FloatArray
    gps: GpsFrame | None
    control: dict[str, FloatArray]
    checkpoints: dict[str, FloatArray]


def working_frame(gps: GpsFrame | None, gcps: GcpSet | None, cfg: Config) -> Frame:
    if gps is not None:
        crs, wkt, origin = gps.crs, gps.crs_wkt, gps.origin
    else:
        if gcps is None:
            raise GeoreferenceError(
                "the images carry GPS but ingest chose no working CRS, and there are no GCPs; rerun with "
                "--rerun-from ingest, or pass --crs EPSG:N"
            )
        c = gcp_crs(gcps, cfg.inputs.crs)
        crs, wkt = crs_label(c), c.to_wkt()
        pts = gcps_in_crs(gcps.control, gcps.crs, wkt)
        origin = local_origin(np.array(list(pts.values())))
    control: dict[str, FloatArray] = {}
    checkpoints: dict[str, FloatArray] = {}
    if gcps is not None:
        control = {k: v - origin for k, v in gcps_in_crs(gcps.control, gcps.crs, wkt).items()}
        checkpoints = {k: v - origin for k, v in gcps_in_crs(gcps.checkpoints, gcps.crs, wkt).items()}
    return Frame(crs, wkt, origin, gps, control, checkpoints)


@dataclass(frozen=True)
class ImageStat:
    features: int
    sharpness: float


def _with_gcp_keypoints(feats: ImageFeatures, extra: list[GcpObservation]) -> ImageFeatures:
    """Append GCP observations as keypoints (so they can join tracks in the model)."""
    if not extra:
        return feats
    kp = np.array([[o.px, o.py, 1.0, 0.0] for o in extra], dtype=np.float32)
    return replace(
        feats,
        keypoints=np.concatenate([feats.keypoints, kp]),
        colors=np.concatenate([feats.colors, np.full((len(extra), 3), 255, np.uint8)]),
    )


# -- steps -----------------------------------------------------------------------------------
def _database(
    ws: Workspace,
    cfg: Config,
    records: Sequence[ImageRecord],
    frame: Frame,
    gcps: GcpSet | None,
) -> tuple[dict[str, ImageStat], dict[str, NDArray[np.uint8]], dict[tuple[str, str], int], Any]:
    """Build the mapping database; returns per-image stats, keypoint colours, GCP keypoint indices, ids."""
    cameras = ws.load_cameras()
    stats: dict[str, ImageStat] = {}
    colors: dict[str, NDArray[np.uint8]] = {}
    gcp_index: dict[tuple[str, str], int] = {}
    obs_by_image: dict[str, list[GcpObservation]] = {}
    if gcps is not None:
        for o in gcps.observations:
            obs_by_image.setdefault(o.image, []).append(o)

    def load(name: str) -> ImageFeatures:
        feats = ws.load_features(name)
        stats[name] = ImageStat(len(feats), feats.sharpness)
        extra = obs_by_image.get(name, [])
        for k, o in enumerate(extra):
            gcp_index[(name, o.point)] = len(feats) + k
        out = _with_gcp_keypoints(feats, extra)
        colors[name] = out.colors
        return out

    use_priors = frame.gps is not None and cfg.sfm.use_gps_priors
    images = []
    for r in records:
        pos = frame.gps.positions.get(r.name) if frame.gps is not None else None
        cov = prior_covariance(*gps_std(r, cfg.ingest)) if pos is not None else None
        images.append(DatabaseImage(r.name, r.camera_id, pos if use_priors else None, cov if use_priors else None))
    ids = build_database(ws.sfm_database_path, cameras, images, load, ws.load_matches())
    return stats, colors, gcp_index, ids


def _gps_residuals(rec: pycolmap.Reconstruction, frame: Frame, records: Sequence[ImageRecord], cfg: Config) -> list[PositionResidual]:
    if frame.gps is None:
        return []
    solved = centers(rec)
    by_name = {r.name: r for r in records}
    out = []
    for name, c in sorted(solved.items()):
        g = frame.gps.positions.get(name)
        if g is None:
            continue
        h, v = gps_std(by_name[name], cfg.ingest)
        d = c - g
        out.append(PositionResidual(name, float(d[0]), float(d[1]), float(d[2]), h, v))
    return out


def _misregistered(residuals: Sequence[PositionResidual], sigmas: float) -> list[PositionResidual]:
    """Images solved where their GPS (at its stated accuracy) rules out."""
    return [
        r for r in residuals if r.horizontal > sigmas * r.std_horizontal_m or abs(r.dz) > sigmas * r.std_vertical_m
    ]


def _triangulate_points(
    rec: pycolmap.Reconstruction, gcps: GcpSet, names: Sequence[str], templates: dict[str, CameraModel], camera_names: dict[int, str]
) -> dict[str, tuple[FloatArray, int]]:
    """Triangulate ground points from their observations with the current (local-frame) cameras."""
    aero = to_aerobase(rec, "", templates, camera_names, np.zeros(3))
    obs = observations_by_point(gcps, set(aero.images))
    out = {}
    for n in names:
        X = triangulate(aero, obs.get(n, []))
        if X is not None:
            out[n] = (X, len(obs[n]))
    return out


def _ground_residuals(
    measured: dict[str, tuple[FloatArray, int]], truth: dict[str, FloatArray], is_checkpoint: bool
) -> list[PositionResidual]:
    out = []
    for name in sorted(measured):
        X, n = measured[name]
        d = X - truth[name]
        out.append(PositionResidual(name, float(d[0]), float(d[1]), float(d[2]), is_checkpoint=is_checkpoint, observations=n))
    return out


def _gsd(rec: pycolmap.Reconstruction) -> float:
    """Median ground sampling distance (m/px at full resolution): point depth over focal length."""
    values = []
    for i in rec.reg_image_ids():
        img = rec.images[i]
        pts = img.get_observation_points2D()
        if len(pts) < 10:
            continue
        xyz = np.array([rec.points3D[p.point3D_id].xyz for p in pts[:: max(1, len(pts) // 200)]])
        z = (img.cam_from_world() * xyz)[:, 2]
        values.append(float(np.median(z)) / float(rec.cameras[img.camera_id].mean_focal_length()))
    return float(np.median(values)) if values else float("nan")


def _unregistered_reasons(
    names: Sequence[str],
    registered: set[str],
    other_models: set[str],
    misregistered: dict[str, str],
    stats: dict[str, ImageStat],
    verified_pairs: dict[str, int],
    cfg: Config,
) -> list[UnregisteredImage]:
    sharp = [s.sharpness for s in stats.values() if s.sharpness > 0]
    median_sharp = float(np.median(sharp)) if sharp else 0.0
    out = []
    for n in names:
        if n in registered:
            continue
        s = stats.get(n, ImageStat(0, 0.0))
        if n in misregistered:
            out.append(UnregisteredImage(n, UnregisteredReason.MISREGISTERED, misregistered[n]))
        elif s.features < cfg.sfm.min_features:
            out.append(UnregisteredImage(n, UnregisteredReason.TOO_FEW_FEATURES, f"{n}: only {s.features} features (fewer than {cfg.sfm.min_features}); featureless ground, water or over-exposure"))
        elif median_sharp > 0 and s.sharpness < cfg.sfm.blur_ratio * median_sharp:
            out.append(UnregisteredImage(n, UnregisteredReason.BLUR, f"{n}: sharpness {s.sharpness:.0f} is {s.sharpness / median_sharp:.0%} of the flight median; the image is likely blurred"))
        elif verified_pairs.get(n, 0) == 0:
            out.append(UnregisteredImage(n, UnregisteredReason.NO_OVERLAP, f"{n}: no candidate pair passed geometric verification; it does not overlap its neighbours enough"))
        elif n in other_models:
            out.append(UnregisteredImage(n, UnregisteredReason.OTHER_MODEL, f"{n}: registered only in a smaller partial model, which was dropped"))
        else:
            out.append(UnregisteredImage(n, UnregisteredReason.NOT_REGISTERED, f"{n}: {verified_pairs[n]} verified pair(s), but the mapper could not place it consistently"))
    return out


def _partial_models(models: Sequence[pycolmap.Reconstruction]) -> tuple[tuple[int, ...], set[str]]:
    """Sizes of the separate parts (largest first) and the images only the dropped parts hold.

    The mapper may also build smaller models over images the largest one already
    holds; only models that add images count as separate parts.
    """
    seen = set(centers(models[0]))
    sizes = [len(seen)]
    others: set[str] = set()
    for m in models[1:]:
        new = set(centers(m)) - seen
        if new:
            sizes.append(len(new))
            others |= new
            seen |= new
    return tuple(sizes), others


def _point_colors(rec: pycolmap.Reconstruction, colors: dict[str, NDArray[np.uint8]]) -> None:
    for pid in rec.point3D_ids():
        p = rec.points3D[pid]
        el = p.track.elements[0]
        c = colors.get(rec.images[el.image_id].name)
        if c is not None and el.point2D_idx < len(c):
            p.color = c[el.point2D_idx]


# -- the stage -------------------------------------------------------------------------------
def run(ws: Workspace, cfg: Config, client: Client) -> StageReport:
    timer = Timer()
    records = ws.load_images()
    gcps = ws.load_gcps() if ws.gcps_exist() else None
    require_georeference(records, gcps, cfg)
    frame = working_frame(gps_frame(records, ws.load_georef()), gcps, cfg)
    cameras = ws.load_cameras()
    names = [r.name for r in records]

    # 1. mapping
    stats, colors, gcp_index, ids = _database(ws, cfg, records, frame, gcps)
    use_priors = frame.gps is not None and cfg.sfm.use_gps_priors
    opts: pycolmap.IncrementalPipelineOptions | pycolmap.GlobalPipelineOptions
    if cfg.sfm.mapper is Mapper.GLOBAL:
        opts = global_mapping_options(cfg.matching.min_inliers, cfg.sfm.min_model_size)
    else:
        opts = mapping_options(use_priors and cfg.sfm.priors_in_mapping, cfg.matching.min_inliers, cfg.sfm.min_model_size)
    image_dir = Path(records[0].path).parent
    with quiet_colmap():
        models = run_mapper(ws.sfm_database_path, image_dir, ws.work_dir / "sfm" / "mapper", opts)
    if not models:
        raise ReconstructionError(
            f"structure from motion found no model for the {len(records)} images: no pair of images shares enough "
            "verified matches to start one. Check the image overlap (at least 60-70% forward) and that the images are sharp."
        )
    rec = models[0]
    sizes, other_models = _partial_models(models)
    if len(sizes) > 1:
        logger.warning(
            "the flight broke into %d partial models (%s images); keeping the largest (%d of %d images)",
            len(sizes), ", ".join(map(str, sizes)), sizes[0], len(records),
        )
    timer.lap("mapping")

    # 2. global adjustment with priors (self-calibration), misregistration rejection
    camera_names = {v: k for k, v in ids.camera_ids.items()}
    misregistered: dict[str, str] = {}
    priors = read_pose_priors(ws.sfm_database_path) if use_priors else []

    def adjust(r: pycolmap.Reconstruction, refine: Refine) -> BaResult:
        return bundle_adjust(r, cfg.sfm, refine, priors=priors)

    with quiet_colmap():
        rec, calibration = self_calibrate(rec, cfg.sfm, adjust)
        logger.info(
            "self-calibration: focal length %s (mean reprojection %.3f px held, %.3f px free)",
            "refined" if calibration.focal_refined else "kept at its EXIF value",
            calibration.error_focal_held_px, calibration.error_focal_free_px,
        )
        for _round in range(3):
            if not use_priors and frame.gps is not None:
                _align_to_gps(rec, frame, cfg)
            flagged = [
                r
                for r in _misregistered(_gps_residuals(rec, frame, records, cfg), cfg.sfm.misregistration_sigmas)
                if r.name not in misregistered
            ]
            if not flagged:
                break
            for r in flagged:
                misregistered[r.name] = (
                    f"{r.name}: solved {r.horizontal:.1f} m horizontally and {r.dz:+.1f} m vertically from its GPS, "
                    f"beyond {cfg.sfm.misregistration_sigmas:g} sigma (GPS 1-sigma {r.std_horizontal_m:g} m / "
                    f"{r.std_vertical_m:g} m); removed from the model"
                )
                logger.warning("misregistration: %s", misregistered[r.name])
            deregister(rec, [r.name for r in flagged])
            adjust(rec, Refine.calibration(cfg.sfm, calibration.focal_refined))
    timer.lap("ba")

    # 3. georegistration with GCPs
    source = GeoreferenceSource.GPS
    control_measured: dict[str, tuple[FloatArray, int]] = {}
    check_measured: dict[str, tuple[FloatArray, int]] = {}
    if gcps is not None and frame.control:
        source = _adjust_with_gcps(rec, frame, gcps, gcp_index, ids.image_ids, cameras, camera_names, cfg, calibration.focal_refined)
    filter_points(rec, MAX_POINT_ERROR_PX)
    if gcps is not None:
        control_measured = _triangulate_points(rec, gcps, list(frame.control), cameras, camera_names)
        check_measured = _triangulate_points(rec, gcps, list(frame.checkpoints), cameras, camera_names)
    timer.lap("georegistration")

    # Results and exports.
    _point_colors(rec, colors)
    registered = set(centers(rec))
    gsd = _gsd(rec)
    gps_res = _gps_residuals(rec, frame, records, cfg)
    control_res = _ground_residuals(control_measured, frame.control, False)
    check_res = _ground_residuals(check_measured, frame.checkpoints, True)
    errors = reprojection_errors(rec)
    verified_pairs: dict[str, int] = {}
    for s in ws.load_pair_stats():
        if s.verified:
            verified_pairs[s.image1] = verified_pairs.get(s.image1, 0) + 1
            verified_pairs[s.image2] = verified_pairs.get(s.image2, 0) + 1
    unregistered = _unregistered_reasons(names, registered, other_models, misregistered, stats, verified_pairs, cfg)
    for u in unregistered:
        logger.warning("not registered (%s): %s", u.reason.value, u.message)

    aero = to_aerobase(rec, frame.crs, cameras, camera_names, frame.origin)
    ws.save_reconstruction(aero)
    report = SfmReport(
        crs=frame.crs,
        georeferenced_by=source,
        gsd_m=gsd,
        images_total=len(records),
        models=sizes,
        unregistered=tuple(unregistered),
        gps_residuals=tuple(gps_res),
        gcp_residuals=tuple(control_res + check_res),
    )
    ws.save_sfm_report(report)
    full = pycolmap.Reconstruction(rec)
    apply_similarity(full, Similarity.translation(frame.origin))
    write_colmap_text(full, ws.colmap_model_dir)
    write_las(ws.sparse_cloud_path, aero.points.xyz, aero.points.rgb, frame.crs_wkt)
    _write_geojson(ws, aero, frame, gps_res, unregistered)
    timer.lap("export")

    figures = _figures(aero, report, errors, ws, cfg, timer, misregistered, calibration)
    logger.info(
        "sfm: %d of %d images registered, %d points, reprojection %.2f px mean, GSD %.1f cm",
        len(registered), len(records), len(aero.points), figures["sfm"]["reprojection_error_px"]["mean"], 100 * gsd,
    )
    outputs = (ws.reconstruction_path, ws.sparse_points_path, ws.sfm_report_path, ws.sparse_cloud_path, ws.cameras_geojson_path, ws.colmap_model_dir)
    return StageReport(figures=figures, outputs=outputs)


def _align_to_gps(rec: pycolmap.Reconstruction, frame: Frame, cfg: Config) -> None:
    """Without prior BA: a robust similarity from solved centres to GPS."""
    assert frame.gps is not None
    solved = centers(rec)
    common = [n for n in solved if n in frame.gps.positions]
    if len(common) < 3:
        raise GeoreferenceError(f"only {len(common)} registered images have GPS; at least 3 are needed to georeference")
    src = np.array([solved[n] for n in common])
    dst = np.array([frame.gps.positions[n] for n in common])
    thr = cfg.sfm.misregistration_sigmas * cfg.ingest.default_gps_std_horizontal_m
    sim, _ = fit_similarity_robust(src, dst, thr)
    apply_similarity(rec, sim)


def _adjust_with_gcps(
    rec: pycolmap.Reconstruction,
    frame: Frame,
    gcps: GcpSet,
    gcp_index: dict[tuple[str, str], int],
    image_ids: dict[str, int],
    cameras: dict[str, CameraModel],
    camera_names: dict[int, str],
    cfg: Config,
    focal_refined: bool,
) -> GeoreferenceSource:
    """Move the model onto the control points, then adjust with them held at their surveyed coordinates."""
    tri = _triangulate_points(rec, gcps, list(frame.control), cameras, camera_names)
    names = sorted(tri)
    src = np.array([tri[n][0] for n in names]).reshape(-1, 3)
    dst = np.array([frame.control[n] for n in names]).reshape(-1, 3)
    spread = len(names) >= 3 and well_spread(dst[:, :2])
    if frame.gps is None and not spread:
        raise GeoreferenceError(
            f"the flight has no GPS and only {len(names)} control point(s) ({', '.join(names) or 'none'}) are seen "
            "in two or more registered images and spread out; three well-spread control points are needed. "
            "Nothing georeferenced was written."
        )
    if spread:

        sim, inliers = fit_similarity_robust(src, dst, threshold=max(0.5, 20 * cfg.sfm.gcp_std_m))

        dropped = [n for n, ok in zip(names, inliers) if not ok]
        if dropped:
            logger.warning("control points disagree with the others and were left out of the alignment: %s", ", ".join(dropped))
    elif names:
        sim = Similarity.translation(np.mean(dst - src, axis=0))
    else:
        logger.warning("no control point is seen in two registered images; GCPs were not used")
        return GeoreferenceSource.GPS
    apply_similarity(rec, sim)

    # Control points as fixed points with their observations; the adjustment then moves the cameras.
    point_ids = []
    for n in names:
        obs = [(image_ids[o.image], gcp_index[(o.image, o.point)]) for o in gcps.observations if o.point == n and (o.image, o.point) in gcp_index]
        pid = add_gcp_point(rec, frame.control[n], obs)
        if pid is not None:
            point_ids.append(pid)
    if len(point_ids) >= 3 or frame.gps is None:
        with quiet_colmap():
            # With GPS the intrinsics were calibrated under the GPS priors over the whole block; keep them.
            # The control points hold the datum and the shape while principal point and distortion
            # settle (the focal length stays as self-calibration left it). Holding every intrinsic
            # instead left the synthetic flight's cameras 1.7 GSD off horizontally; this, 0.9.
            bundle_adjust(rec, cfg.sfm, Refine.calibration(cfg.sfm, focal_refined), constant_points=point_ids)
    for pid in point_ids:
        rec.delete_point3D(pid)
    return GeoreferenceSource.GCP if frame.gps is None else GeoreferenceSource.GPS_GCP


def _write_geojson(
    ws: Workspace,
    aero: Reconstruction,
    frame: Frame,
    gps_res: Sequence[PositionResidual],
    unregistered: Sequence[UnregisteredImage],
) -> None:
    """Update ingest's cameras.geojson with the solved positions (or write it when there is none)."""
    res = {g.name: g for g in gps_res}
    names = sorted(aero.images)
    solved: dict[str, SolvedCamera] = {}
    if names:
        xyz = np.array([aero.images[n].pose.center for n in names])
        lonlat = Projector(frame.crs_wkt).inverse(xyz)
        conv = frame.gps.convergence_deg if frame.gps is not None else 0.0
        for i, n in enumerate(names):
            yaw, pitch, roll = gimbal_from_rotation(aero.images[n].pose.R)
            extra: dict[str, Any] = {}
            if n in res:
                g = res[n]
                extra = {"gps_dx_m": round(g.dx, 4), "gps_dy_m": round(g.dy, 4), "gps_dz_m": round(g.dz, 4)}
            x, y, z = (float(v) for v in xyz[i])
            solved[n] = SolvedCamera(
                n, float(lonlat[i, 0]), float(lonlat[i, 1]), x, y, z, (yaw + conv) % 360.0, pitch, roll, extra
            )
    why = {u.name: {"unregistered_reason": u.reason.value, "unregistered_message": u.message} for u in unregistered}
    existing = read_json(ws.cameras_geojson_path) if ws.cameras_geojson_path.exists() else None
    fc = update_camera_collection(existing, solved, why, frame.crs)
    with atomic_path(ws.cameras_geojson_path) as tmp:
        write_geojson(tmp, fc)


def _figures(
    aero: Reconstruction,
    report: SfmReport,
    errors: FloatArray,
    ws: Workspace,
    cfg: Config,
    timer: Timer,
    misregistered: dict[str, str],
    calibration: Calibration,
) -> dict[str, Any]:
    gsd = report.gsd_m
    pair_stats = ws.load_pair_stats()
    gps = rmse(report.gps_residuals, gsd)
    control = rmse([r for r in report.gcp_residuals if not r.is_checkpoint], gsd)
    checks = rmse([r for r in report.gcp_residuals if r.is_checkpoint], gsd)
    cams = {
        cid: {
            "fx": c.fx, "fy": c.fy,
            "cx_offset_px": c.cx - (c.width - 1) / 2.0, "cy_offset_px": c.cy - (c.height - 1) / 2.0,
            "k1": c.k1, "k2": c.k2, "p1": c.p1, "p2": c.p2,
        }
        for cid, c in aero.cameras.items()
    }

    def split(d: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        metres = {k: v for k, v in d.items() if k != "gsd"}
        return metres, d.get("gsd", {})

    gps_m, gps_gsd = split(gps)
    ctl_m, ctl_gsd = split(control)
    chk_m, chk_gsd = split(checks)
    sfm: dict[str, Any] = {
        "images_registered": len(aero.images),
        "images_total": report.images_total,
        "points": len(aero.points),
        "reprojection_error_px": {
            "mean": float(np.mean(errors)) if len(errors) else float("nan"),
            "median": float(np.median(errors)) if len(errors) else float("nan"),
        },
        "pairs_tried": len(pair_stats),
        "pairs_verified": sum(s.verified for s in pair_stats),
        "gps_residual_m": gps_m,
        "gps_residual_gsd": gps_gsd,
        "gps_residuals": residual_table(report.gps_residuals, gsd),
        "gsd_m": gsd,
        "models": list(report.models),
        "georeferenced_by": report.georeferenced_by.value,
        "crs": report.crs,
        "unregistered": [{"image": u.name, "reason": u.reason.value, "message": u.message} for u in report.unregistered],
        "misregistered": sorted(misregistered),
        "cameras": cams,
        "calibration": {
            "focal_refined": calibration.focal_refined,
            "reprojection_focal_held_px": calibration.error_focal_held_px,
            "reprojection_focal_free_px": calibration.error_focal_free_px,
        },
        "seconds": timer.seconds,
    }
    gcp: dict[str, Any] = {
        "control_rmse_m": ctl_m,
        "control_rmse_gsd": ctl_gsd,
        "checkpoint_rmse_m": chk_m,
        "checkpoint_rmse_gsd": chk_gsd,
        "residuals": residual_table(report.gcp_residuals, gsd),
    }
    return {"sfm": sfm, "gcp": gcp}


STAGE = StageSpec(
    name="sfm",
    run=run,
    config_fields=("sfm", "ingest.default_gps_std_horizontal_m", "ingest.default_gps_std_vertical_m", "inputs.crs"),
    version=1,
    title="structure from motion with GPS priors, self-calibration and GCPs",
)
