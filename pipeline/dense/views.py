"""Which views to match: neighbour selection, depth ranges and the flight's GSD.

Neighbours are chosen per reference image from the sparse points both images
see, scored the way OpenMVS ``SelectNeighborViews`` does: each shared point
adds a weight for its triangulation angle (best near ``angle_opt``, zero
outside [angle_min, angle_max]) times a weight for the scale (footprint size)
ratio. Pairs that share too small a fraction of the reference's points are
dropped. Everything here is small and runs on the client.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from models.reconstruction import Reconstruction

FloatArray = NDArray[np.float64]

# Images with fewer visible sparse points than this get a synthetic ground plane instead.
MIN_POINTS_PER_IMAGE = 30


@dataclass(frozen=True)
class NeighbourOptions:
    """How neighbour views are scored."""

    num_neighbors: int = 4
    angle_min_deg: float = 3.0  # shared points with a smaller triangulation angle count nothing
    angle_opt_deg: float = 12.0  # the weight rises to 1 at this angle
    angle_max_deg: float = 30.0  # and is 0 above this one
    min_overlap: float = 0.2  # fraction of the reference's sparse points the neighbour must also see
    depth_margin: float = 0.15  # relative widening of the sparse depth range on both sides
    candidates: int = 24  # nearest camera centres considered per reference
    coverage_decay: float = 0.35  # weight of a point already seen by k chosen neighbours: decay**k


@dataclass(frozen=True)
class ViewPlan:
    """What one depth-map task computes: the reference, its neighbours and its depth range."""

    image: str
    neighbors: tuple[str, ...]
    scores: tuple[float, ...]
    depth_min: float  # along the reference's optical axis, CRS units
    depth_max: float


def visible_points(rec: Reconstruction, name: str, xyz: FloatArray) -> tuple[NDArray[np.bool_], FloatArray]:
    """Which points project inside an image in front of it, and their depths along its axis."""
    pose = rec.images[name].pose
    cam = rec.camera_of(name)
    pc = pose.to_camera(xyz)
    uv = cam.project(pc)
    ok = (pc[:, 2] > 0) & cam.contains(uv) & np.isfinite(uv).all(axis=1)
    return ok, pc[:, 2]


def ground_plane_points(rec: Reconstruction, name: str, ground_z: float, n: int = 12) -> FloatArray:
    """An ``n`` x ``n`` grid of an image's pixels intersected with the plane z = ground_z."""
    cam = rec.camera_of(name)
    pose = rec.images[name].pose
    u, v = np.meshgrid(np.linspace(0, cam.width - 1, n), np.linspace(0, cam.height - 1, n))
    rays_cam = cam.pixel_to_ray(np.stack([u.ravel(), v.ravel()], axis=1))
    rays = rays_cam @ pose.R  # camera -> world directions
    c = pose.center
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (ground_z - c[2]) / rays[:, 2]
    s = np.where(s > 0, s, np.nan)
    pts = c + rays * s[:, None]
    return pts[np.isfinite(pts).all(axis=1)]


def scene_points(rec: Reconstruction, name: str, ground_z: float | None) -> FloatArray:
    """Sparse points an image sees; a ground-plane grid when it sees too few."""
    xyz = rec.points.xyz
    if len(xyz):
        ok, _ = visible_points(rec, name, xyz)
        if int(ok.sum()) >= MIN_POINTS_PER_IMAGE:
            return xyz[ok]
    if ground_z is None:
        ground_z = float(np.median(xyz[:, 2])) if len(xyz) else None
    if ground_z is None:
        return np.zeros((0, 3))
    return ground_plane_points(rec, name, ground_z)


def angle_weight(theta_deg: FloatArray, opts: NeighbourOptions) -> FloatArray:
    """OpenMVS-style triangulation-angle weight: (theta/opt)^1.5 below opt, 1 up to max, 0 outside."""
    t = np.asarray(theta_deg, dtype=np.float64)
    w = np.where(t < opts.angle_opt_deg, (t / opts.angle_opt_deg) ** 1.5, 1.0)
    return np.where((t < opts.angle_min_deg) | (t > opts.angle_max_deg), 0.0, w)


def point_weights(rec: Reconstruction, ref: str, other: str, pts: FloatArray, opts: NeighbourOptions) -> FloatArray:
    """Per scene point of the reference: angle weight x scale weight of seeing it from ``other`` (0 if unseen)."""
    w = np.zeros(len(pts))
    if len(pts) == 0:
        return w
    ok, depth_o = visible_points(rec, other, pts)
    if not ok.any():
        return w
    p = pts[ok]
    c_r = rec.images[ref].pose.center
    c_o = rec.images[other].pose.center
    a = p - c_r
    b = p - c_o
    cosang = np.einsum("ij,ij->i", a, b) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    theta = np.degrees(np.arccos(np.clip(cosang, -1.0, 1.0)))
    # Footprint (scale) ratio of a pixel in the two images at the point.
    depth_r = rec.images[ref].pose.to_camera(p)[:, 2]
    f_r = rec.camera_of(ref).focal_px
    f_o = rec.camera_of(other).focal_px
    ratio = (depth_r / f_r) / (depth_o[ok] / f_o)
    w[ok] = angle_weight(theta, opts) * np.minimum(ratio, 1.0 / ratio) ** 2
    return w


def choose_neighbours(weights: dict[str, FloatArray], opts: NeighbourOptions) -> list[tuple[float, str]]:
    """Greedy choice that rewards covering the reference's points not yet covered.

    Each pick adds, per point, its weight times ``coverage_decay`` to the power of
    how many chosen neighbours already see that point, so the set spreads over
    the whole reference image (its edges and corners too) instead of piling onto
    the centre (OpenMVS weighs the covered area the same way).
    """
    covered = np.zeros(len(next(iter(weights.values())))) if weights else np.zeros(0)
    chosen: list[tuple[float, str]] = []
    left = dict(weights)
    while left and len(chosen) < opts.num_neighbors:
        decay = opts.coverage_decay**covered
        gains = {n: float(np.sum(w * decay)) for n, w in left.items()}
        best = max(sorted(gains), key=lambda n: gains[n])
        if gains[best] <= 0.0:
            break
        chosen.append((gains[best], best))
        covered += left.pop(best) > 0.0
    return chosen


def depth_range(depths: FloatArray, margin: float) -> tuple[float, float]:
    """A robust depth range (2nd..98th percentile) widened by ``margin`` on both sides."""
    d = depths[np.isfinite(depths) & (depths > 0)]
    lo, hi = np.percentile(d, [2.0, 98.0])
    return float(lo * (1.0 - margin)), float(hi * (1.0 + margin))


def plan_views(rec: Reconstruction, opts: NeighbourOptions, ground_z: float | None = None) -> dict[str, ViewPlan]:
    """A :class:`ViewPlan` for every image that has usable neighbours."""
    names = sorted(rec.images)
    centers = np.array([rec.images[n].pose.center for n in names])
    plans: dict[str, ViewPlan] = {}
    for i, ref in enumerate(names):
        pts = scene_points(rec, ref, ground_z)
        if len(pts) < 4:
            continue
        depths = rec.images[ref].pose.to_camera(pts)[:, 2]
        d_min, d_max = depth_range(depths, opts.depth_margin)
        dist = np.linalg.norm(centers - centers[i], axis=1)
        order = [j for j in np.argsort(dist) if j != i][: opts.candidates]
        weights: dict[str, FloatArray] = {}
        for j in order:
            w = point_weights(rec, ref, names[j], pts, opts)
            if np.count_nonzero(w) >= opts.min_overlap * len(pts):
                weights[names[j]] = w
        chosen = choose_neighbours(weights, opts)
        if chosen:
            plans[ref] = ViewPlan(
                image=ref,
                neighbors=tuple(n for _, n in chosen),
                scores=tuple(round(s, 3) for s, _ in chosen),
                depth_min=d_min,
                depth_max=d_max,
            )
    return plans


def estimate_gsd(rec: Reconstruction, ground_z: float | None = None) -> float:
    """Ground sampling distance (CRS units per full-resolution pixel).

    Per image: the median depth of the scene points it sees divided by its focal
    length in pixels; the flight's GSD is the median over images.
    """
    values = []
    for name in sorted(rec.images):
        pts = scene_points(rec, name, ground_z)
        if len(pts) == 0:
            continue
        depth = rec.images[name].pose.to_camera(pts)[:, 2]
        values.append(float(np.median(depth)) / rec.camera_of(name).focal_px)
    if not values:
        return math.nan
    return float(np.median(values))
