"""Densify: a depth map per image from its best neighbours, then multi-view consistency.

Two rounds of Dask tasks, one task per image each:
1. depth: undistort + rectify the reference against each neighbour (its chosen ones and those
   that chose it) at
   ``dense.depth_scale``, StereoSGBM with its left-right check, triangulate
   into the reference view and keep the depths the pairs agree on;
2. consistency: keep a depth only where ``dense.min_consistent_views`` views
   (the reference and its neighbours' depth maps) agree, averaging them.
A task holds one reference and its few neighbours; depth maps go to the
workspace as compressed NPZ, and the client keeps only their summaries.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from dask.base import tokenize
from distributed import Client

from drone_io.image_pixels import read_rgb_resized
from models.depthmap import DepthMap
from models.errors import ReconstructionError
from models.reconstruction import Reconstruction
from pipeline.config import Config
from pipeline.dense.consistency import View, backproject, consistent_depth
from pipeline.dense.records import DenseIndex, DepthSummary, ViewGeometry
from pipeline.dense.stereo import StereoOptions, combine_pair_depths, pair_depth, probe_depth_range
from pipeline.dense.views import NeighbourOptions, ViewPlan, estimate_gsd, plan_views
from pipeline.progress import map_tasks
from pipeline.stage import StageReport, StageSpec
from pipeline.workspace import Workspace, fingerprint

logger = logging.getLogger(__name__)

STAGE_NAME = "densify"
RAW = "raw"
FILTERED = "filtered"


@dataclass(frozen=True, eq=False)
class DepthTask:
    """One reference image, its neighbours and its depth range."""

    ref: ViewGeometry
    neighbours: tuple[ViewGeometry, ...]
    depth_min: float
    depth_max: float


def _gray(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def _read(view: ViewGeometry, scale: float) -> np.ndarray:
    cam = view.camera.scaled(scale)
    return read_rgb_resized(Path(view.path), (view.camera.width, view.camera.height), cam.width, cam.height)


def depth_task(task: DepthTask, ws: Workspace, scale: float, opts: StereoOptions, rel_tol: float, probe_near: float) -> int:
    """Dask task: the reference's depth map from its pairs; returns its valid pixel count."""
    name = task.ref.name
    if ws.depthmap_exists(name, RAW):  # finished by an earlier, killed run with the same inputs
        return ws.load_depthmap(name, RAW, with_colour=False).valid_count
    cam1 = task.ref.camera.scaled(scale)
    rgb1 = _read(task.ref, scale)
    gray1 = _gray(rgb1)
    depths = []
    weights = []
    d_min, d_max = task.depth_min, task.depth_max
    # The probe uses the shortest baseline: the smallest disparity range for the widest depth range.
    probe_with = min(task.neighbours, key=lambda v: float(np.linalg.norm(v.pose.center - task.ref.pose.center)), default=None)
    for nb in sorted(task.neighbours, key=lambda v: v is not probe_with):
        cam2 = nb.camera.scaled(scale)
        gray2 = _gray(_read(nb, scale))
        if nb is probe_with and probe_near > 0.0:
            # Widen the sparse range to what a coarse wide search finds (tree crowns, roofs).
            found = probe_depth_range(gray1, cam1, task.ref.pose, gray2, cam2, nb.pose, d_min, d_max, opts, probe_near)
            if found is not None:  # tie points bound the far side (ground) well; widen only the near side
                d_min = min(d_min, found[0])
        d = pair_depth(gray1, cam1, task.ref.pose, gray2, cam2, nb.pose, d_min, d_max, opts)
        if d is not None:
            depths.append(d)
            # Depth precision grows with the baseline: weight each pair by its square.
            weights.append(float(np.sum((nb.pose.center - task.ref.pose.center) ** 2)))
    if depths:
        depth, count = combine_pair_depths(depths, rel_tol, weights)
    else:
        depth, count = np.full(gray1.shape, np.nan, np.float32), np.zeros(gray1.shape, np.uint8)
    dm = DepthMap(image=name, scale=scale, depth=depth, rgb=rgb1, views=count)
    ws.save_depthmap(dm, RAW)
    return dm.valid_count


def consistency_task(task: DepthTask, ws: Workspace, scale: float, rel_tol: float, min_views: int) -> DepthSummary:
    """Dask task: the reference's multi-view consistent depth map and its summary."""
    name = task.ref.name
    if ws.depthmap_exists(name, FILTERED):
        dm = ws.load_depthmap(name, FILTERED, with_colour=False)
    else:
        ref = View(ws.load_depthmap(name, RAW), task.ref.camera.scaled(scale), task.ref.pose)
        neighbours = [
            View(ws.load_depthmap(nb.name, RAW, with_colour=False), nb.camera.scaled(scale), nb.pose)
            for nb in task.neighbours
            if ws.depthmap_exists(nb.name, RAW)
        ]
        dm = consistent_depth(ref, neighbours, rel_tol, min_views)
        ws.save_depthmap(dm, FILTERED)
    xyz, _, _ = backproject(View(dm, task.ref.camera.scaled(scale), task.ref.pose))
    if len(xyz) == 0:
        return DepthSummary(name, 0, (0.0, 0.0, 0.0, 0.0), 0.0, 0.0)
    lo = xyz.min(axis=0)
    hi = xyz.max(axis=0)
    return DepthSummary(name, len(xyz), (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])), float(lo[2]), float(hi[2]))


def _ground_z(ws: Workspace) -> float | None:
    if ws.georef_exists():
        value = ws.load_georef().get("ground_height_m")
        return float(value) if value is not None else None
    return None


def _geometry(rec: Reconstruction, paths: dict[str, str], name: str) -> ViewGeometry:
    img = rec.images[name]
    return ViewGeometry(name=name, path=paths[name], camera=rec.cameras[img.camera_id], pose=img.pose)


def neighbour_options(cfg: Config) -> NeighbourOptions:
    d = cfg.dense
    return NeighbourOptions(
        num_neighbors=d.num_neighbors,
        angle_min_deg=d.min_angle_deg,
        angle_opt_deg=d.optimal_angle_deg,
        angle_max_deg=d.max_angle_deg,
        min_overlap=d.min_overlap,
    )


def stereo_options(cfg: Config) -> StereoOptions:
    d = cfg.dense
    return StereoOptions(
        block_size=d.block_size, max_disparities=d.max_disparities, uniqueness_ratio=d.uniqueness_ratio, speckle_window=d.speckle_window
    )


def tasks_for(rec: Reconstruction, plans: dict[str, ViewPlan], paths: dict[str, str], symmetric: bool = False) -> list[DepthTask]:
    """One task per planned image; ``symmetric`` adds the images that chose it as a neighbour."""
    chosen_by: dict[str, list[str]] = {n: [] for n in plans}
    for name, plan in sorted(plans.items()):
        for nb in plan.neighbors:
            if nb in chosen_by and name not in plans[nb].neighbors:
                chosen_by[nb].append(name)
    tasks = []
    for name, plan in sorted(plans.items()):
        nbs = list(plan.neighbors) + (chosen_by[name] if symmetric else [])
        tasks.append(
            DepthTask(
                ref=_geometry(rec, paths, name),
                neighbours=tuple(_geometry(rec, paths, n) for n in nbs),
                depth_min=plan.depth_min,
                depth_max=plan.depth_max,
            )
        )
    return tasks


def run(ws: Workspace, cfg: Config, client: Client) -> StageReport:
    rec = ws.load_reconstruction()
    paths = {r.name: str(r.path) for r in ws.load_images()}
    missing = sorted(set(rec.images) - set(paths))
    if missing:
        raise ReconstructionError(f"{len(missing)} registered images have no ingest record (first: {missing[0]}); rerun from ingest")
    ground_z = _ground_z(ws)
    gsd = estimate_gsd(rec, ground_z)
    if not math.isfinite(gsd) or gsd <= 0:
        raise ReconstructionError("cannot estimate the GSD: the reconstruction has no sparse points and ingest found no ground height")
    plans = plan_views(rec, neighbour_options(cfg), ground_z)
    no_neighbours = sorted(set(rec.images) - set(plans))
    for name in no_neighbours:
        logger.warning("%s: no neighbour view with enough overlap and parallax; it gets no depth map", name)
    ws.reset_task_dir(STAGE_NAME, tokenize(cfg.values("dense"), fingerprint(ws.reconstruction_path), sorted(paths.items())))
    ws.save_view_plans(plans)
    # Pairs are made symmetric: if i chose j, j also matches i, so that an area only i and j see
    # gets a depth in both maps and can pass the consistency check.
    tasks = tasks_for(rec, plans, paths, symmetric=True)
    names = [t.ref.name for t in tasks]
    scale = cfg.dense.depth_scale
    sopts = stereo_options(cfg)
    tol = cfg.dense.depth_tolerance
    raw_counts = map_tasks(client, depth_task, tasks, ws, scale, sopts, tol, cfg.dense.probe_near_fraction, label="densify-depth", item_names=names)
    summaries = map_tasks(
        client, consistency_task, tasks, ws, scale, tol, cfg.dense.min_consistent_views, label="densify-consistency", item_names=names
    )
    index = DenseIndex(crs=rec.crs, gsd_m=gsd, depth_scale=scale, images=tuple(summaries))
    ws.save_dense_index(index)
    with_depth = sum(1 for s in summaries if s.points > 0)
    logger.info("GSD %.4f m; %d of %d images have a depth map", gsd, with_depth, len(rec.images))
    figures = {
        "dense": {
            "gsd_m": round(gsd, 5),
            "images_with_depth": with_depth,
            "images_without_neighbours": no_neighbours,
            "depth_pixels_two_view": int(sum(raw_counts)),
            "depth_pixels_consistent": int(sum(s.points for s in summaries)),
            "mean_neighbours": round(float(np.mean([len(t.neighbours) for t in tasks])) if tasks else 0.0, 2),
        }
    }
    return StageReport(figures=figures, outputs=(ws.dense_index_path, ws.view_plans_path))


STAGE = StageSpec(
    name=STAGE_NAME,
    run=run,
    config_fields=("dense",),
    version=1,
    title="depth maps per image (rectified SGBM) and multi-view consistency",
)
