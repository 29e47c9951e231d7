"""Ground footprints of images and the overlap between them (pure numpy).

A footprint is where the four image-corner rays of an initial camera meet a
horizontal ground plane. Polygons are (N, 2) arrays of x, y in a projected
CRS, counter-clockwise, not closed. Footprints of a pinhole camera on a plane
are convex, so intersections use convex clipping (Sutherland-Hodgman) and
coverage uses point-in-convex-polygon tests on a sample grid.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from models.camera import CameraModel
from models.image import Attitude, ImageRecord
from models.pose import Pose, rotation_from_gimbal

FloatArray = NDArray[np.float64]

# A corner ray must point at least this far below the horizon (sin of the angle) to hit the ground.
_MIN_DOWN = 0.05
# A corner further than this many flying heights from the camera is "at the horizon": no footprint.
_MAX_RANGE_FACTOR = 20.0


class AttitudeSource(str, enum.Enum):
    """Where the camera orientation of a footprint came from."""

    GIMBAL = "gimbal"  # DJI XMP gimbal yaw/pitch/roll
    FLIGHT = "flight"  # DJI XMP flight yaw, camera assumed nadir
    COURSE = "course"  # EXIF GPSTrack, camera assumed nadir, image top forward
    TRACK = "track"  # direction to the neighbouring images, nadir, image top forward
    NADIR = "nadir"  # nothing known: nadir, image top to north


@dataclass(frozen=True)
class CameraAttitude:
    """The attitude used for one image's footprint, and its source."""

    attitude: Attitude
    source: AttitudeSource


def attitude_for(rec: ImageRecord, track_yaw_deg: float | None = None) -> CameraAttitude:
    """Best available camera attitude of an image (yaw from true north, DJI convention)."""
    if rec.gimbal is not None:
        return CameraAttitude(rec.gimbal, AttitudeSource.GIMBAL)
    if rec.flight is not None:
        return CameraAttitude(Attitude(rec.flight.yaw, -90.0, 0.0), AttitudeSource.FLIGHT)
    if rec.course_deg is not None:
        return CameraAttitude(Attitude(rec.course_deg, -90.0, 0.0), AttitudeSource.COURSE)
    if track_yaw_deg is not None:
        return CameraAttitude(Attitude(track_yaw_deg, -90.0, 0.0), AttitudeSource.TRACK)
    return CameraAttitude(Attitude(0.0, -90.0, 0.0), AttitudeSource.NADIR)


def track_yaws(xy: FloatArray) -> list[float | None]:
    """Direction of travel (degrees clockwise from grid north) at each of a time-ordered sequence.

    Uses the central difference of the neighbours; None for a lone image or
    where the neighbours coincide.
    """
    pts = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    n = len(pts)
    out: list[float | None] = []
    for i in range(n):
        a = pts[max(0, i - 1)]
        b = pts[min(n - 1, i + 1)]
        d = b - a
        if n < 2 or float(np.hypot(d[0], d[1])) < 1e-6:
            out.append(None)
        else:
            out.append(math.degrees(math.atan2(d[0], d[1])) % 360.0)
    return out


def image_corners(camera: CameraModel) -> FloatArray:
    """The four outer pixel corners (pixel-centre convention), clockwise from top-left in the image."""
    w, h = camera.width, camera.height
    return np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]], dtype=np.float64)


def ground_intersections(
    camera: CameraModel, center: FloatArray, R_cam_to_world: FloatArray, ground_z: float, pixels: FloatArray
) -> FloatArray | None:
    """Where the rays of ``pixels`` meet the plane z = ground_z; None if any ray misses it."""
    c = np.asarray(center, dtype=np.float64).reshape(3)
    height = c[2] - ground_z
    if not height > 0:
        return None
    rays = camera.pixel_to_ray(np.asarray(pixels, dtype=np.float64)) @ np.asarray(R_cam_to_world).T
    if np.any(rays[:, 2] > -_MIN_DOWN):
        return None
    t = (ground_z - c[2]) / rays[:, 2]
    if np.any(t > _MAX_RANGE_FACTOR * height):
        return None
    return c[None, :2] + t[:, None] * rays[:, :2]


def footprint(
    camera: CameraModel, center: FloatArray, attitude: Attitude, ground_z: float, grid_convergence_deg: float = 0.0
) -> FloatArray | None:
    """Ground polygon (4, 2), counter-clockwise, of an image; None when a corner misses the ground.

    ``center`` is the camera position (x, y, z) in the projected CRS, ``attitude``
    the DJI-convention gimbal angles from true north; the grid convergence turns
    the yaw to grid north.
    """
    R = rotation_from_gimbal(attitude.yaw - grid_convergence_deg, attitude.pitch, attitude.roll)
    pts = ground_intersections(camera, center, R, ground_z, image_corners(camera))
    return None if pts is None else ccw(pts)


def principal_range(camera: CameraModel, center: FloatArray, attitude: Attitude, ground_z: float) -> float | None:
    """Distance from the camera to the ground along the optical axis (m); None when it misses."""
    R = rotation_from_gimbal(attitude.yaw, attitude.pitch, attitude.roll)
    pp = np.array([[camera.cx, camera.cy]])
    hit = ground_intersections(camera, center, R, ground_z, pp)
    if hit is None:
        return None
    c = np.asarray(center, dtype=np.float64).reshape(3)
    return float(np.linalg.norm(np.array([hit[0, 0] - c[0], hit[0, 1] - c[1], ground_z - c[2]])))


# -- polygons -------------------------------------------------------------------------
def signed_area(poly: FloatArray) -> float:
    p = np.asarray(poly, dtype=np.float64)
    if len(p) < 3:
        return 0.0
    x, y = p[:, 0], p[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def polygon_area(poly: FloatArray) -> float:
    return abs(signed_area(poly))


def ccw(poly: FloatArray) -> FloatArray:
    """The polygon with counter-clockwise vertex order."""
    p = np.asarray(poly, dtype=np.float64)
    return p if signed_area(p) >= 0 else p[::-1].copy()


def clip_convex(subject: FloatArray, clip: FloatArray) -> FloatArray:
    """Intersection of a polygon with a convex polygon (both counter-clockwise); (M, 2), M may be 0."""
    out = [np.asarray(p, dtype=np.float64) for p in np.asarray(subject, dtype=np.float64)]
    c = np.asarray(clip, dtype=np.float64)
    for i in range(len(c)):
        if not out:
            break
        a, b = c[i], c[(i + 1) % len(c)]
        edge = b - a

        def inside(p: FloatArray) -> bool:
            return bool(edge[0] * (p[1] - a[1]) - edge[1] * (p[0] - a[0]) >= 0.0)

        def cross_point(p: FloatArray, q: FloatArray) -> FloatArray:
            d = q - p
            den = edge[0] * d[1] - edge[1] * d[0]
            if den == 0.0:
                return p
            t = (edge[0] * (a[1] - p[1]) - edge[1] * (a[0] - p[0])) / den
            return p + t * d

        inp = out
        out = []
        prev = inp[-1]
        for cur in inp:
            if inside(cur):
                if not inside(prev):
                    out.append(cross_point(prev, cur))
                out.append(cur)
            elif inside(prev):
                out.append(cross_point(prev, cur))
            prev = cur
    return np.array(out, dtype=np.float64).reshape(-1, 2)


def intersection_area(a: FloatArray, b: FloatArray) -> float:
    """Area shared by two convex counter-clockwise polygons."""
    return polygon_area(clip_convex(a, b))


def contains_convex(poly: FloatArray, points: FloatArray) -> NDArray[np.bool_]:
    """Which points (N, 2) lie inside a convex counter-clockwise polygon (edges included)."""
    p = np.asarray(poly, dtype=np.float64)
    q = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    inside = np.ones(len(q), dtype=bool)
    for i in range(len(p)):
        a, b = p[i], p[(i + 1) % len(p)]
        e = b - a
        inside &= e[0] * (q[:, 1] - a[1]) - e[1] * (q[:, 0] - a[0]) >= -1e-9
    return inside


# -- overlap ----------------------------------------------------------------------------
@dataclass(frozen=True)
class OverlapStats:
    """Overlap figures of a set of footprints (fractions 0-1 of a footprint's area)."""

    images: int  # footprints used
    # Mean share of a footprint covered by its better along-track neighbour (same strip).
    forward: float | None
    # Mean share of a footprint covered by the best single image of another strip.
    side: float | None
    # Mean share of a footprint seen by at least one other image.
    covered_by_others: float
    # Mean number of images that see a covered ground point.
    views_mean: float
    # Share of the covered ground seen by at least 3 images (what SfM needs).
    share_3plus_views: float
    strips: int  # flight lines found
    area_m2: float  # ground covered by the union of footprints


def split_strips(xy: FloatArray, turn_deg: float = 45.0, gap_factor: float = 3.0) -> list[int]:
    """Strip (flight-line) label of each position of a time-ordered sequence.

    Consecutive legs that keep their direction (within ``turn_deg``) and are
    no longer than ``gap_factor`` times the median leg form a run. An image at
    the junction of two runs (the ends of a turn) joins the longer one, so a
    short cross leg between two lines is not a strip of its own.
    """
    pts = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    n = len(pts)
    if n <= 1:
        return [0] * n
    legs = np.diff(pts, axis=0)
    lengths = np.hypot(legs[:, 0], legs[:, 1])
    med = float(np.median(lengths))
    cos_max = math.cos(math.radians(turn_deg))
    run_of_leg = [0]
    for k in range(1, n - 1):
        same = lengths[k] > 1e-6 and lengths[k - 1] > 1e-6
        same = same and float(np.dot(legs[k], legs[k - 1])) / (lengths[k] * lengths[k - 1]) >= cos_max
        if med > 0 and (lengths[k] > gap_factor * med or lengths[k - 1] > gap_factor * med):
            same = False
        run_of_leg.append(run_of_leg[-1] if same else run_of_leg[-1] + 1)
    run_size: dict[int, int] = {}
    for r in run_of_leg:
        run_size[r] = run_size.get(r, 0) + 1
    raw: list[int] = []
    for i in range(n):
        cands = [run_of_leg[k] for k in (i - 1, i) if 0 <= k < n - 1]
        raw.append(max(cands, key=lambda r: (run_size[r], -r)))
    # Renumber 0, 1, 2... in order of appearance.
    order: dict[int, int] = {}
    return [order.setdefault(r, len(order)) for r in raw]


def _bboxes(polys: list[FloatArray]) -> FloatArray:
    return np.array([[p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()] for p in polys])


def overlap_stats(polys: list[FloatArray], strips: list[int], max_samples: int = 250_000) -> OverlapStats | None:
    """Overlap figures for time-ordered footprints with their strip labels."""
    n = len(polys)
    if n == 0:
        return None
    areas = np.array([polygon_area(p) for p in polys])
    bb = _bboxes(polys)
    # Candidate pairs: bounding boxes that touch.
    ov = (bb[:, None, 0] <= bb[None, :, 2]) & (bb[None, :, 0] <= bb[:, None, 2])
    ov &= (bb[:, None, 1] <= bb[None, :, 3]) & (bb[None, :, 1] <= bb[:, None, 3])
    np.fill_diagonal(ov, False)
    shared: dict[tuple[int, int], float] = {}
    for i, j in zip(*np.nonzero(np.triu(ov))):
        a = intersection_area(polys[i], polys[j])
        if a > 0:
            shared[(int(i), int(j))] = a
            shared[(int(j), int(i))] = a

    forward: list[float] = []
    side: list[float] = []
    for i in range(n):
        if areas[i] <= 0:
            continue
        nb = [j for j in (i - 1, i + 1) if 0 <= j < n and strips[j] == strips[i]]
        if nb:
            forward.append(max(shared.get((i, j), 0.0) for j in nb) / areas[i])
        others = [shared.get((i, j), 0.0) for j in range(n) if strips[j] != strips[i]]
        if others and len(set(strips)) > 1:
            side.append(max(others) / areas[i])

    # Coverage on a sample grid over all footprints.
    x0, y0 = float(bb[:, 0].min()), float(bb[:, 1].min())
    x1, y1 = float(bb[:, 2].max()), float(bb[:, 3].max())
    cell = max(math.sqrt(max((x1 - x0) * (y1 - y0), 1e-9) / max_samples), 1e-3)
    nx = max(1, int(math.ceil((x1 - x0) / cell)))
    ny = max(1, int(math.ceil((y1 - y0) / cell)))
    xs = x0 + (np.arange(nx) + 0.5) * cell
    ys = y0 + (np.arange(ny) + 0.5) * cell
    count = np.zeros((ny, nx), dtype=np.int32)
    for p, b in zip(polys, bb):
        c0, c1 = np.searchsorted(xs, b[0]), np.searchsorted(xs, b[2], side="right")
        r0, r1 = np.searchsorted(ys, b[1]), np.searchsorted(ys, b[3], side="right")
        if c1 <= c0 or r1 <= r0:
            continue
        gx, gy = np.meshgrid(xs[c0:c1], ys[r0:r1])
        inside = contains_convex(p, np.column_stack([gx.ravel(), gy.ravel()])).reshape(gx.shape)
        count[r0:r1, c0:c1] += inside
    covered = count > 0
    area = float(covered.sum()) * cell * cell
    views_mean = float(count[covered].mean()) if covered.any() else 0.0
    share3 = float((count >= 3).sum() / covered.sum()) if covered.any() else 0.0
    by_others: list[float] = []
    for p, b in zip(polys, bb):
        c0, c1 = np.searchsorted(xs, b[0]), np.searchsorted(xs, b[2], side="right")
        r0, r1 = np.searchsorted(ys, b[1]), np.searchsorted(ys, b[3], side="right")
        gx, gy = np.meshgrid(xs[c0:c1], ys[r0:r1])
        inside = contains_convex(p, np.column_stack([gx.ravel(), gy.ravel()])).reshape(gx.shape)
        if inside.any():
            by_others.append(float((count[r0:r1, c0:c1][inside] >= 2).mean()))
    return OverlapStats(
        images=n,
        forward=float(np.mean(forward)) if forward else None,
        side=float(np.mean(side)) if side else None,
        covered_by_others=float(np.mean(by_others)) if by_others else 0.0,
        views_mean=views_mean,
        share_3plus_views=share3,
        strips=len(set(strips)),
        area_m2=area,
    )


def footprint_bounds(
    camera: CameraModel, pose: Pose, z_low: float, z_high: float, samples_per_edge: int = 16
) -> tuple[float, float, float, float] | None:
    """(x_min, y_min, x_max, y_max) of the ground an image can see between two heights.

    Rays through the image border are intersected with the planes z_low and
    z_high; rays near the horizon are cut at 8x the flying height. None when
    the camera looks up.
    """
    w, h = camera.width, camera.height
    s = np.linspace(0.0, 1.0, samples_per_edge)
    xs = -0.5 + s * w
    ys = -0.5 + s * h
    border = np.concatenate(
        [
            np.stack([xs, np.full_like(xs, -0.5)], 1),
            np.stack([xs, np.full_like(xs, h - 0.5)], 1),
            np.stack([np.full_like(ys, -0.5), ys], 1),
            np.stack([np.full_like(ys, w - 0.5), ys], 1),
            np.array([[camera.cx, camera.cy]]),
        ]
    )
    rays_cam = camera.pixel_to_ray(border)
    rays = rays_cam @ pose.R  # camera -> world: R^T d, row-vector form
    c = pose.center
    pts = []
    for zp in (z_low, z_high):
        height = c[2] - zp
        if height <= 0:
            continue
        down = -rays[:, 2]
        max_dist = 8.0 * height
        dist = np.where(down > 1e-6, height / np.maximum(down, 1e-6), np.inf)
        dist = np.minimum(dist, max_dist)
        p = c[None, :] + rays * dist[:, None]
        pts.append(p[:, :2])
    if not pts:
        return None
    allp = np.concatenate(pts)
    return (float(allp[:, 0].min()), float(allp[:, 1].min()), float(allp[:, 0].max()), float(allp[:, 1].max()))
