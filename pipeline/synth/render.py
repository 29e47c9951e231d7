"""Exact ray casting of the synthetic scene.

Every image sample is a ray through the true (distorted) camera. Terrain hits
are solved on a coarse grid of rays by a safeguarded Newton iteration (to
micrometres) and interpolated to the full grid as a correction to the
reference-plane hit, which is smooth in the image because the terrain is; box
hits are analytic slab tests against each building whose projection covers the
samples. The nearest hit wins, so occlusion is exact.

Geometry is in local coordinates (see :mod:`pipeline.synth.scene`).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from models.camera import CameraModel
from models.pose import Pose
from pipeline.synth.scene import Building, Terrain
from pipeline.synth.texture import GroundTexture

FloatArray = NDArray[np.float64]
F32 = NDArray[np.float32]
IntArray = NDArray[np.intp]

HIT_NONE = 0  # sky
HIT_GROUND = 1
HIT_ROOF = 2
HIT_WALL = 3

SKY_RGB = np.array([196.0, 212.0, 232.0], dtype=np.float32)
# Direction toward the sun, horizontal part (grid azimuth 140 degrees): lights the walls only.
_SUN_AZ = math.radians(140.0)
SUN_H = np.array([math.sin(_SUN_AZ), math.cos(_SUN_AZ)])
MAX_RANGE_M = 3000.0


@dataclass(frozen=True, eq=False)
class RayHits:
    """Nearest hits of a set of rays: ray parameter (camera depth when dirs have z_cam = 1)."""

    t: FloatArray  # (N,) inf where nothing is hit
    kind: NDArray[np.int8]  # HIT_* per ray
    building: NDArray[np.int32]  # building index for roof / wall hits, else -1
    face: NDArray[np.int8]  # 0: u-face, 1: v-face, 2: roof; -1 otherwise


# -- terrain ------------------------------------------------------------------------------
def intersect_terrain(
    terrain: Terrain,
    origin: FloatArray,
    dirs: FloatArray,
    tol: float = 1e-7,
    max_iter: int = 60,
    scan: int = 16,
) -> FloatArray:
    """Ray parameter of the first terrain crossing of each ray (inf when there is none)."""
    o = np.asarray(origin, dtype=np.float64)
    d = np.asarray(dirs, dtype=np.float64).reshape(-1, 3)
    n = d.shape[0]
    t_out = np.full(n, np.inf)
    bound = terrain.relief_bound + 0.01
    down = d[:, 2] < -1e-9
    if not down.any():
        return t_out
    dd = d[down]
    dz = dd[:, 2]
    t_top = np.maximum(0.0, (terrain.base_z + bound - o[2]) / dz)
    t_bot = (terrain.base_z - bound - o[2]) / dz

    def f(t: FloatArray, rays: FloatArray) -> FloatArray:
        x = o[0] + t * rays[:, 0]
        y = o[1] + t * rays[:, 1]
        return o[2] + t * rays[:, 2] - terrain.height(x, y)

    # Scan for the first sign change so grazing rays find the nearest crossing.
    lo = t_top.copy()
    hi = t_bot.copy()
    f_prev = f(lo, dd)
    found = f_prev <= 0.0  # already below at the top plane (camera under the bound: rare)
    hi = np.where(found, lo, hi)
    for k in range(1, scan + 1):
        tk = t_top + (t_bot - t_top) * (k / scan)
        fk = f(tk, dd)
        cross = (~found) & (fk <= 0.0)
        hi = np.where(cross, tk, hi)
        lo = np.where(cross, t_top + (t_bot - t_top) * ((k - 1) / scan), lo)
        found |= cross
    t = 0.5 * (lo + hi)
    active = np.nonzero(found)[0]
    for _ in range(max_iter):
        if active.size == 0:
            break
        ta = t[active]
        da = dd[active]
        h, gx, gy = terrain.height_and_gradient(o[0] + ta * da[:, 0], o[1] + ta * da[:, 1])
        fv = o[2] + ta * da[:, 2] - h
        done = np.abs(fv) < tol
        la = np.where(fv > 0, ta, lo[active])
        ha = np.where(fv <= 0, ta, hi[active])
        fp = da[:, 2] - gx * da[:, 0] - gy * da[:, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            tn = ta - fv / fp
        bad = ~np.isfinite(tn) | (tn < la) | (tn > ha) | (fp >= 0)
        tn = np.where(bad, 0.5 * (la + ha), tn)
        lo[active] = la
        hi[active] = ha
        t[active] = np.where(done, ta, tn)
        active = active[~done]
    t = np.where(found, t, np.inf)
    horizontal = t * np.hypot(dd[:, 0], dd[:, 1])
    t = np.where(horizontal > MAX_RANGE_M, np.inf, t)
    t_out[down] = t
    return t_out


# -- boxes --------------------------------------------------------------------------------
def slab_hits(b: Building, origin: FloatArray, dx: FloatArray, dy: FloatArray, dz: FloatArray) -> tuple[FloatArray, NDArray[np.int8]]:
    """Entry parameter of rays into one building's box (inf on a miss) and the entry face."""
    a = math.radians(b.rotation_deg)
    ca, sa = math.cos(a), math.sin(a)
    ou = (origin[0] - b.cx) * ca + (origin[1] - b.cy) * sa
    ov = -(origin[0] - b.cx) * sa + (origin[1] - b.cy) * ca
    oz = float(origin[2])
    du = dx * ca + dy * sa
    dv = -dx * sa + dy * ca
    with np.errstate(divide="ignore", invalid="ignore"):
        iu = 1.0 / du
        iv = 1.0 / dv
        iz = 1.0 / dz
        t1u = (-b.half_u - ou) * iu
        t2u = (b.half_u - ou) * iu
        t1v = (-b.half_v - ov) * iv
        t2v = (b.half_v - ov) * iv
        t1z = (b.bottom_z - oz) * iz
        t2z = (b.roof_z - oz) * iz
    nu = np.minimum(t1u, t2u)
    nv = np.minimum(t1v, t2v)
    nz = np.minimum(t1z, t2z)
    fu = np.maximum(t1u, t2u)
    fv = np.maximum(t1v, t2v)
    fz = np.maximum(t1z, t2z)
    t_near = np.maximum(np.maximum(nu, nv), nz)
    t_far = np.minimum(np.minimum(fu, fv), fz)
    hit = (t_near <= t_far) & (t_near > 0.0) & np.isfinite(t_near)
    face = np.where(nz >= np.maximum(nu, nv), 2, np.where(nu >= nv, 0, 1)).astype(np.int8)
    return np.where(hit, t_near, np.inf), face


def cast_rays(terrain: Terrain, buildings: tuple[Building, ...], origin: FloatArray, dirs: FloatArray) -> RayHits:
    """Nearest hit of every ray (exact; for checks and visibility, not the fast image path)."""
    o = np.asarray(origin, dtype=np.float64)
    d = np.asarray(dirs, dtype=np.float64).reshape(-1, 3)
    t = intersect_terrain(terrain, o, d)
    kind = np.where(np.isfinite(t), HIT_GROUND, HIT_NONE).astype(np.int8)
    bidx = np.full(d.shape[0], -1, np.int32)
    face = np.full(d.shape[0], -1, np.int8)
    for b in buildings:
        tb, fb = slab_hits(b, o, d[:, 0], d[:, 1], d[:, 2])
        closer = tb < t
        t = np.where(closer, tb, t)
        kind = np.where(closer, np.where(fb == 2, HIT_ROOF, HIT_WALL), kind).astype(np.int8)
        bidx = np.where(closer, b.index, bidx).astype(np.int32)
        face = np.where(closer, fb, face).astype(np.int8)
    return RayHits(t=t, kind=kind, building=bidx, face=face)


def point_visible(
    terrain: Terrain, buildings: tuple[Building, ...], center: FloatArray, point: FloatArray, tol: float = 0.02
) -> bool:
    """Whether the segment from a camera centre to a scene point is unobstructed."""
    c = np.asarray(center, dtype=np.float64)
    p = np.asarray(point, dtype=np.float64)
    d = (p - c)[None, :]
    hits = cast_rays(terrain, buildings, c, d)
    return bool(hits.t[0] >= 1.0 - tol / float(np.linalg.norm(p - c)))


# -- walls --------------------------------------------------------------------------------
def _smooth_box(s: FloatArray, a: float, b: float, w: float) -> FloatArray:
    """~1 on [a, b], ~0 outside, with smooth edges of width w."""
    lo = np.clip((s - a) / w + 0.5, 0.0, 1.0)
    hi = np.clip((b - s) / w + 0.5, 0.0, 1.0)
    return np.asarray(np.minimum(lo, hi), dtype=np.float64)


def wall_colour(b: Building, face: NDArray[np.int8], hx: FloatArray, hy: FloatArray, hz: FloatArray, dx: FloatArray, dy: FloatArray) -> F32:
    """Shaded colour (N, 3) of wall hits: plaster with floors of windows."""
    u, v = b.to_local(hx, hy)
    s = np.where(face == 0, v, u)
    au, av = b.axes
    # Outward normal of the entered face: opposite to the ray's component along the face axis.
    axis_x = np.where(face == 0, au[0], av[0])
    axis_y = np.where(face == 0, au[1], av[1])
    sign = -np.sign(dx * axis_x + dy * axis_y)
    nx, ny = sign * axis_x, sign * axis_y
    shade = 0.6 + 0.38 * np.maximum(0.0, nx * SUN_H[0] + ny * SUN_H[1])
    zz = hz - b.base_z
    in_floor = np.mod(zz, 3.0)
    win_v = _smooth_box(in_floor, 0.9, 2.3, 0.05) * (zz > 0.6) * (zz < b.height_m - 0.7)
    phase = 0.37 * b.index
    win_h = _smooth_box(np.mod(s + phase, 2.6), 0.6, 2.0, 0.05)
    window = win_v * win_h
    slab = _smooth_box(in_floor, -0.08, 0.08, 0.05) + _smooth_box(in_floor, 2.92, 3.08, 0.05)
    wall = np.asarray(b.wall_rgb, dtype=np.float64)
    grain = 1.0 + 0.05 * np.sin(7.1 * s + 3.3 * zz + b.index) * np.sin(2.3 * s - 5.9 * zz)
    glass = np.array([58.0, 74.0, 92.0])
    base = wall[None, :] * (grain * (1.0 - 0.25 * np.clip(slab, 0, 1)))[:, None]
    col = base * (1.0 - window)[:, None] + glass[None, :] * window[:, None]
    return np.asarray(col * shade[:, None], dtype=np.float32)


# -- the image renderer -----------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class RayGrid:
    """Undistorted normalised coordinates of every sample of a supersampled image.

    Sample (i, j) sits at pixel ((j + 0.5) / ss - 0.5, (i + 0.5) / ss - 0.5): ``ss`` x ``ss``
    samples per pixel, evenly spread. The camera ray of a sample is (xn, yn, 1) in the
    camera frame, so the ray parameter of a hit is its camera depth.
    """

    camera: CameraModel
    ss: int
    xn: F32  # (Hs, Ws)
    yn: F32
    coarse_rows: IntArray
    coarse_cols: IntArray
    row_i: IntArray  # per sample row: coarse cell index
    row_w: FloatArray  # per sample row: weight of the next coarse row
    col_j: IntArray
    col_w: FloatArray

    @classmethod
    def build(cls, camera: CameraModel, ss: int, stride: int = 8, block_rows: int = 256, workers: int = 1) -> "RayGrid":
        hs, ws = camera.height * ss, camera.width * ss
        us = (np.arange(ws) + 0.5) / ss - 0.5
        xn = np.empty((hs, ws), np.float32)
        yn = np.empty((hs, ws), np.float32)

        def block(r0: int) -> None:
            r1 = min(hs, r0 + block_rows)
            vs = (np.arange(r0, r1) + 0.5) / ss - 0.5
            uu, vv = np.meshgrid(us, vs)
            xd = np.stack([(uu - camera.cx) / camera.fx, (vv - camera.cy) / camera.fy], axis=-1)
            nrm = camera.undistort(xd, iterations=9)  # fixed point: ~3e-8 px after 8 iterations
            xn[r0:r1] = nrm[..., 0]
            yn[r0:r1] = nrm[..., 1]

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            list(pool.map(block, range(0, hs, block_rows)))
        rows = np.unique(np.append(np.arange(0, hs, stride), hs - 1))
        cols = np.unique(np.append(np.arange(0, ws, stride), ws - 1))
        ri = np.clip(np.searchsorted(rows, np.arange(hs), side="right") - 1, 0, len(rows) - 2)
        rw = (np.arange(hs) - rows[ri]) / (rows[ri + 1] - rows[ri])
        cj = np.clip(np.searchsorted(cols, np.arange(ws), side="right") - 1, 0, len(cols) - 2)
        cw = (np.arange(ws) - cols[cj]) / (cols[cj + 1] - cols[cj])
        return cls(camera, ss, xn, yn, rows, cols, ri, rw, cj, cw)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.xn.shape[0]), int(self.xn.shape[1])


def _world_dirs(R: FloatArray, xn: FloatArray, yn: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """World directions R^T (xn, yn, 1), componentwise (deterministic, no BLAS)."""
    dx = xn * R[0, 0] + yn * R[1, 0] + R[2, 0]
    dy = xn * R[0, 1] + yn * R[1, 1] + R[2, 1]
    dz = xn * R[0, 2] + yn * R[1, 2] + R[2, 2]
    return dx, dy, dz


def _sample_bbox(camera: CameraModel, pose: Pose, b: Building, ss: int, shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """Sample-space (r0, r1, c0, c1) covering a building's projection, None when out of view."""
    pts = b.edge_points()
    pc = pose.to_camera(pts)
    hs, ws = shape
    if np.any(pc[:, 2] <= 0.05):
        if np.all(pc[:, 2] <= 0.05):
            return None
        return (0, hs, 0, ws)
    uv = camera.project(pc)
    s = (uv + 0.5) * ss - 0.5
    margin = 3 * ss
    c0 = int(math.floor(s[:, 0].min())) - margin
    c1 = int(math.ceil(s[:, 0].max())) + margin + 1
    r0 = int(math.floor(s[:, 1].min())) - margin
    r1 = int(math.ceil(s[:, 1].max())) + margin + 1
    c0, c1 = max(0, c0), min(ws, c1)
    r0, r1 = max(0, r0), min(hs, r1)
    if c0 >= c1 or r0 >= r1:
        return None
    return (r0, r1, c0, c1)


@dataclass(frozen=True, eq=False)
class TerrainDepth:
    """Terrain hit depths of every sample of one view.

    Solved exactly on the coarse rays of the :class:`RayGrid`, stored as the
    correction ``delta = t - t_plane`` to the hit of the reference plane
    ``z = base_z``, and interpolated bilinearly: ``delta`` is as smooth as the
    terrain, so the interpolated hits lie on the terrain to well under a millimetre.
    """

    rays: RayGrid
    z_ref: float
    center: FloatArray
    delta: FloatArray  # (coarse rows, coarse cols), NaN where a coarse ray misses

    @classmethod
    def build(cls, terrain: Terrain, rays: RayGrid, pose: Pose) -> "TerrainDepth":
        R = pose.R
        C = pose.center
        xc = rays.xn[np.ix_(rays.coarse_rows, rays.coarse_cols)].astype(np.float64)
        yc = rays.yn[np.ix_(rays.coarse_rows, rays.coarse_cols)].astype(np.float64)
        cdx, cdy, cdz = _world_dirs(R, xc, yc)
        t_c = intersect_terrain(terrain, C, np.stack([cdx, cdy, cdz], axis=-1).reshape(-1, 3)).reshape(xc.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            delta = np.where(np.isfinite(t_c) & (cdz < 0), t_c - (terrain.base_z - C[2]) / cdz, np.nan)
        return cls(rays, terrain.base_z, C, delta)

    def rows(self, r0: int, r1: int, dz: FloatArray) -> FloatArray:
        """Depths of sample rows [r0, r1) given their world direction z components; inf on a miss."""
        rays = self.rays
        cj, cw = rays.col_j, rays.col_w
        ri = rays.row_i[r0:r1]
        rw = rays.row_w[r0:r1][:, None]
        d0 = self.delta[ri]
        d1 = self.delta[ri + 1]
        delta = (1 - rw) * ((1 - cw) * d0[:, cj] + cw * d0[:, cj + 1]) + rw * ((1 - cw) * d1[:, cj] + cw * d1[:, cj + 1])
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (self.z_ref - self.center[2]) / dz + delta
        return np.asarray(np.where(np.isfinite(t) & (dz < -1e-9), t, np.inf), dtype=np.float64)


def render_radiance(
    terrain: Terrain,
    buildings: tuple[Building, ...],
    texture: GroundTexture,
    rays: RayGrid,
    pose: Pose,
    chunk_rows: int = 96,
) -> F32:
    """The noise-free image (H, W, 3) float32 RGB 0..255 of a camera with local ``pose``."""
    camera = rays.camera
    ss = rays.ss
    hs, ws = rays.shape
    R = pose.R
    C = pose.center
    depth = TerrainDepth.build(terrain, rays, pose)
    boxes = [(b, _sample_bbox(camera, pose, b, ss, (hs, ws))) for b in buildings]
    boxes_in_view = [(b, bb) for b, bb in boxes if bb is not None]

    out = np.empty((camera.height, camera.width, 3), np.float32)
    step = max(ss, (chunk_rows // ss) * ss)
    for r0 in range(0, hs, step):
        r1 = min(hs, r0 + step)
        xn = rays.xn[r0:r1].astype(np.float64)
        yn = rays.yn[r0:r1].astype(np.float64)
        dx, dy, dz = _world_dirs(R, xn, yn)
        t = depth.rows(r0, r1, dz)
        kind = np.where(np.isfinite(t), HIT_GROUND, HIT_NONE).astype(np.int8)
        bidx = np.full(t.shape, -1, np.int32)
        face = np.full(t.shape, -1, np.int8)
        for b, bb in boxes_in_view:
            assert bb is not None
            br0, br1, bc0, bc1 = bb
            a0, a1 = max(r0, br0), min(r1, br1)
            if a0 >= a1:
                continue
            sl = (slice(a0 - r0, a1 - r0), slice(bc0, bc1))
            tb, fb = slab_hits(b, C, dx[sl], dy[sl], dz[sl])
            closer = tb < t[sl]
            if not closer.any():
                continue
            t[sl] = np.where(closer, tb, t[sl])
            kind[sl] = np.where(closer, np.where(fb == 2, HIT_ROOF, HIT_WALL), kind[sl])
            bidx[sl] = np.where(closer, b.index, bidx[sl])
            face[sl] = np.where(closer, fb, face[sl])
        finite = np.isfinite(t)
        tt = np.where(finite, t, 0.0)
        hx = C[0] + tt * dx
        hy = C[1] + tt * dy
        col, row = texture.texel_coords(hx, hy)
        rgb = texture.sample_grid(col, row).astype(np.float32)
        walls = kind == HIT_WALL
        if walls.any():
            wb = bidx[walls]
            wf = face[walls]
            whx, why = hx[walls], hy[walls]
            whz = C[2] + tt[walls] * dz[walls]
            wdx, wdy = dx[walls], dy[walls]
            wc = np.empty((int(walls.sum()), 3), np.float32)
            for k in np.unique(wb):
                m = wb == k
                wc[m] = wall_colour(buildings[int(k)], wf[m], whx[m], why[m], whz[m], wdx[m], wdy[m])
            rgb[walls] = wc
        rgb[~finite] = SKY_RGB
        h = (r1 - r0) // ss
        block = np.zeros((h, ws // ss, 3), np.float32)
        for sa in range(ss):
            for sb in range(ss):
                block += rgb[sa::ss, sb::ss]
        out[r0 // ss : r0 // ss + h] = block * np.float32(1.0 / (ss * ss))
    return out
