"""One orthophoto tile (one Dask task per tile).

For the tile's cells:

1. Heights from the DSM (bilinear at the cell centres).
2. The image of each cell from the flight-level seam labels; each cell is
   projected into that image with the true camera model and checked against
   the image frame and the image's z-buffer of the DSM. Cells the labelled
   image cannot see (occluded behind a building at full resolution, or
   beyond the coarse seam grid's detail) take the cheapest image that does
   see them; cells no image sees unoccluded take the cheapest image that has
   them in frame (counted as ``occluded_fill``).
3. Samples from the cached working images (bilinear or bicubic), times the
   flight-level exposure gains.
4. Two-band blending: the low band of the images is blended across seams on
   a coarse grid that extends past the tile by three blending sigmas, so a
   neighbouring tile computes the same correction along the shared border.

Returns the tile's file and small figures; the client streams tiles into the COG.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from models.raster import GridSpec, Window
from pipeline.ortho.blend import low_band_corrections
from pipeline.ortho.dsm import DsmWindow
from pipeline.ortho.exposure import normalized_xy, shading_factor
from pipeline.ortho.geometry import LocalProjector, inside_image
from pipeline.ortho.plan import ImageView, OrthoPlan, bounds_intersect, window_bounds
from pipeline.ortho.prep import load_height_range, load_occluders, sample_image
from pipeline.ortho.select import view_cost
from pipeline.ortho.visibility import (
    Occluders,
    ZBuffer,
    build_zbuffer,
    occluder_bounds,
    hidden_by,
    zbuffer_cell,
)
from pipeline.workspace import Workspace

F32 = NDArray[np.float32]
I64 = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class TileResult:
    """What one tile task made."""

    window: Window
    path: str
    covered: int  # cells with an image
    occluded_fill: int  # cells no image sees unoccluded, filled from an image that has them in frame
    images: tuple[int, ...]  # indices of the images that gave at least one cell


class _View:
    """One image as seen from one tile: projector, lazy z-buffer, cached pixels."""

    def __init__(self, view: ImageView, origin: NDArray[np.float64], occluders: Occluders, occ_bounds: tuple[float, float, float, float], interpolation: int, tol: float) -> None:
        self.view = view
        self.proj = LocalProjector(view.work_camera, view.pose, origin)
        self.cam = self.proj.camera
        self.gain = np.asarray(view.gain, np.float32)
        self.tol = tol
        self.interpolation = interpolation
        self._occ = occluders
        self._occ_bounds = occ_bounds
        self._zbuf: ZBuffer | None = None
        self._low: NDArray[np.uint8] | None = None
        fp = view.footprint
        self.local_footprint = (fp[0] - origin[0], fp[1] - origin[1], fp[2] - origin[0], fp[3] - origin[1])
        self.low_sx = view.low_size[0] / view.work_size[0]
        self.low_sy = view.low_size[1] / view.work_size[1]

    def zbuf(self) -> ZBuffer:
        if self._zbuf is None:
            occ = self._occ
            x0, y0, x1, y1 = self._occ_bounds
            sel = (occ.x >= x0) & (occ.x <= x1) & (occ.y >= y0) & (occ.y <= y1)
            cell = zbuffer_cell(occ.spacing, self.cam.focal_px, self.view.min_depth)
            self._zbuf = build_zbuffer(self.proj, Occluders(occ.x[sel], occ.y[sel], occ.z[sel], occ.spacing), cell)
        return self._zbuf

    def see(self, x: F32, y: F32, z: F32) -> tuple[F32, F32, BoolArray, BoolArray]:
        """(u, v, in frame, visible) of local points."""
        u, v, frame, behind = self.see_depth(x, y, z)
        return u, v, frame, frame & (behind <= 0)

    def see_depth(self, x: F32, y: F32, z: F32) -> tuple[F32, F32, BoolArray, F32]:
        """(u, v, in frame, metres behind the z-buffer surface: <= 0 is visible) of local points."""
        u, v, d, ok = self.proj.project(x, y, z)
        frame = ok & inside_image(u, v, self.cam.width, self.cam.height, 0.5)
        behind = np.full(frame.shape, np.inf, np.float32)
        if frame.any():
            behind[frame] = hidden_by(self.zbuf(), u[frame], v[frame], d[frame], self.cam.focal_px, self.tol)
        return u, v, frame, behind

    def cost(self, x: F32, y: F32, z: F32, gsd_ref: float, plan: OrthoPlan) -> F32:
        return view_cost(self.proj.center_local, self.view.camera.focal_px, x, y, z, gsd_ref, plan.params.view, self.view.blur_penalty)

    def sample(self, u: F32, v: F32) -> F32:
        """Gain-compensated colours at working-image pixels (all inside the frame)."""
        if u.shape[0] == 0:
            return np.zeros((0, 3), np.float32)
        arr = np.load(self.view.work_cache, mmap_mode="r")
        h, w = arr.shape[:2]
        c0 = max(0, int(math.floor(float(u.min()))) - 2)
        c1 = min(w, int(math.ceil(float(u.max()))) + 3)
        r0 = max(0, int(math.floor(float(v.min()))) - 2)
        r1 = min(h, int(math.ceil(float(v.max()))) + 3)
        crop = np.ascontiguousarray(arr[r0:r1, c0:c1])
        cols = sample_image(crop, u - np.float32(c0), v - np.float32(r0), self.interpolation)
        return self._balanced(cols, u, v)

    def _balanced(self, cols: F32, u: F32, v: F32) -> F32:
        """Colours times the image's gains, with its brightness field removed (u, v: working pixels)."""
        coeffs = self.view.shading
        if not any(coeffs):
            return cols * self.gain
        cam = self.cam
        x, y = normalized_xy(u, v, cam.cx, cam.cy, cam.width, cam.height)
        f = shading_factor(x, y, coeffs)
        return cols * (f[:, None] * self.gain[None, :])

    def sample_low(self, u: F32, v: F32) -> F32:
        if self._low is None:
            self._low = np.asarray(np.load(self.view.low_cache))
        ul = (u + np.float32(0.5)) * np.float32(self.low_sx) - np.float32(0.5)
        vl = (v + np.float32(0.5)) * np.float32(self.low_sy) - np.float32(0.5)
        return self._balanced(sample_image(self._low, ul, vl), u, v)


def _seam_labels_aligned(labels: NDArray[np.int32], sg: GridSpec, grid: GridSpec, window: Window) -> NDArray[np.int32] | None:
    """Seam labels for the pixels of ``window`` by repetition, when seam cells are whole pixel blocks."""
    k = sg.resolution / grid.resolution
    ki = int(round(k))
    if abs(k - ki) > 1e-6 or abs(sg.x_min - grid.x_min) > 1e-6 * grid.resolution or abs(sg.y_max - grid.y_max) > 1e-6 * grid.resolution:
        return None
    r0, c0 = window.row_off // ki, window.col_off // ki
    r1 = (window.row_off + window.height - 1) // ki + 1
    c1 = (window.col_off + window.width - 1) // ki + 1
    sub = np.full((r1 - r0, c1 - c0), -1, np.int32)
    rr1, cc1 = min(r1, sg.height), min(c1, sg.width)
    sub[: rr1 - r0, : cc1 - c0] = labels[r0:rr1, c0:cc1]
    big = np.repeat(np.repeat(sub, ki, axis=0), ki, axis=1)
    ro, co = window.row_off - r0 * ki, window.col_off - c0 * ki
    return np.ascontiguousarray(big[ro : ro + window.height, co : co + window.width])


def _seam_labels(labels: NDArray[np.int32], sg: GridSpec, xs: NDArray[np.float64], ys: NDArray[np.float64]) -> NDArray[np.int32]:
    """Seam labels at world cell centres xs (per column) x ys (per row); -1 outside the seam grid."""
    sc = np.floor((xs - sg.x_min) / sg.resolution).astype(np.int64)
    sr = np.floor((sg.y_max - ys) / sg.resolution).astype(np.int64)
    okc = (sc >= 0) & (sc < sg.width)
    okr = (sr >= 0) & (sr < sg.height)
    out = np.full((ys.shape[0], xs.shape[0]), -1, np.int32)
    if not okc.any() or not okr.any():
        return out
    c0, c1 = int(sc[okc].min()), int(sc[okc].max()) + 1
    r0, r1 = int(sr[okr].min()), int(sr[okr].max()) + 1
    sub = np.asarray(labels[r0:r1, c0:c1], dtype=np.int32)
    picked = sub[np.ix_(np.clip(sr - r0, 0, r1 - r0 - 1), np.clip(sc - c0, 0, c1 - c0 - 1))]
    out[np.ix_(okr, okc)] = picked[np.ix_(okr, okc)]
    return out


def _assign(
    labels: NDArray[np.int32],
    x: F32,
    y: F32,
    z: F32,
    views: dict[int, _View],
    plan: OrthoPlan,
) -> tuple[NDArray[np.int32], dict[int, tuple[I64, F32, F32]], BoolArray]:
    """Final image per point (flat arrays): the seam label where it sees the point, else the best that does.

    Points the labelled image cannot see try the other candidates in order of
    their view cost at that point (so the choice depends on the point alone,
    not on the tile), testing visibility only as far as needed. Points no
    candidate sees unoccluded take the cheapest candidate that has them in
    frame, and are flagged ``occluded``.

    Returns (final labels, per image: (point indices, u, v), occluded flags).
    """
    n = labels.shape[0]
    final = np.full(n, -1, np.int32)
    occluded = np.zeros(n, bool)
    picks: dict[int, list[tuple[I64, F32, F32]]] = {}
    counts = np.bincount(labels + 1, minlength=1)
    for k in (int(i) for i in np.nonzero(counts[1:])[0]):
        if k not in views:
            continue
        idx = np.flatnonzero(labels == k)
        u, v, frame, vis = views[k].see(x[idx], y[idx], z[idx])
        good = frame & vis
        final[idx[good]] = k
        picks.setdefault(k, []).append((idx[good], u[good], v[good]))
    pending = np.flatnonzero(final < 0)
    if pending.size and views:
        keys = sorted(views)
        m = pending.size
        px, py, pz = x[pending], y[pending], z[pending]
        # Rank the candidates per point by view cost (cheap: no projection), only among those
        # whose footprint holds the point; then project each point into its candidates in
        # rank order until one sees it.
        cost = np.full((len(keys), m), np.inf, np.float32)
        for i, k in enumerate(keys):
            view = views[k]
            fx0, fy0, fx1, fy1 = view.local_footprint
            near = (px >= fx0) & (px <= fx1) & (py >= fy0) & (py <= fy1)
            if near.any():
                cost[i, near] = view.cost(px[near], py[near], pz[near], plan.gsd_m, plan)
        order = np.argsort(cost, axis=0, kind="stable")
        cols = np.arange(m)
        left = np.ones(m, bool)
        # Among the candidates that have the point in frame, the one it is least hidden from.
        first_frame = np.full(m, -1, np.int32)
        ff_behind = np.full(m, np.inf, np.float32)
        ff_uv = np.zeros((2, m), np.float32)
        for rank in range(len(keys)):
            cand = order[rank]
            active = left & np.isfinite(cost[cand, cols])
            if not active.any():
                break
            for i in (int(j) for j in np.unique(cand[active])):
                sel = np.flatnonzero(active & (cand == i))
                view = views[keys[i]]
                u, v, frame, behind = view.see_depth(px[sel], py[sel], pz[sel])
                better = frame & (behind < ff_behind[sel])
                first_frame[sel[better]] = i
                ff_behind[sel[better]] = behind[better]
                ff_uv[0, sel[better]] = u[better]
                ff_uv[1, sel[better]] = v[better]
                good = frame & (behind <= 0)
                take = sel[good]
                final[pending[take]] = keys[i]
                picks.setdefault(keys[i], []).append((pending[take], u[good], v[good]))
                left[take] = False
        rest = np.flatnonzero(left & (first_frame >= 0))
        for i in (int(j) for j in np.unique(first_frame[rest])):
            take = rest[first_frame[rest] == i]
            final[pending[take]] = keys[i]
            # Hidden by a little (a rough canopy, DSM noise): the least hidden view is kept.
            # Hidden by more (a building): flagged, and filled from the ground around it.
            occluded[pending[take]] = ff_behind[take] > np.float32(plan.params.fill_hidden_m)
            picks.setdefault(keys[i], []).append((pending[take], ff_uv[0, take], ff_uv[1, take]))
    merged = {
        k: (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]))
        for k, parts in picks.items()
    }
    return final, merged, occluded


def _local_grid(grid: GridSpec, window: Window, origin: NDArray[np.float64]) -> tuple[F32, F32, NDArray[np.float64], NDArray[np.float64]]:
    xs, ys = grid.cell_centers(window)
    return (xs - origin[0]).astype(np.float32), (ys - origin[1]).astype(np.float32), xs, ys


def render_tile(window: Window, plan: OrthoPlan, views: list[ImageView], ws: Workspace) -> TileResult:
    """Dask task: orthorectify, choose, blend and save one tile; returns its file and figures."""
    grid = plan.grid
    p = plan.params
    f = p.low_factor
    sigma_low = p.blend_sigma_px / f
    margin = (int(math.ceil(3.0 * sigma_low)) + 2) * f
    ext = window.expanded(margin, grid.width, grid.height)
    ext_bounds = window_bounds(grid, ext)
    low_w, low_h = -(-ext.width // f), -(-ext.height // f)
    low_grid = GridSpec(grid.crs, ext_bounds[0], ext_bounds[3], grid.resolution * f, low_w, low_h)
    ground = plan.dsm.fill_height
    tb = window_bounds(grid, window)
    origin = np.array([0.5 * (tb[0] + tb[2]), 0.5 * (tb[1] + tb[3]), ground])
    cands = [v for v in views if bounds_intersect(v.footprint, ext_bounds)]

    # -- one DSM read: the tile with its blending margin, and every cell that can hide it --
    hr = load_height_range(ws, plan)
    z_lo, z_hi = hr.range_in(ext_bounds, ground)
    occ_bounds = {v.index: occluder_bounds(ext_bounds, v.center, z_lo, z_hi) for v in cands}
    boxes = list(occ_bounds.values()) + [ext_bounds]
    union = (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))
    occ = load_occluders(plan, hr, union, origin)
    dsm = DsmWindow.covering(plan.dsm, ext_bounds, pad=3)

    def local_bounds(b: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        return (b[0] - origin[0], b[1] - origin[1], b[2] - origin[0], b[3] - origin[1])

    ctx = {
        v.index: _View(v, origin, occ, local_bounds(occ_bounds[v.index]), p.interpolation, p.occlusion_tolerance_m)
        for v in cands
    }
    labels_map = np.load(plan.labels, mmap_mode="r")

    # -- full resolution: which image each cell comes from ---------------------------
    h, w = window.height, window.width
    lx, ly, wx, wy = _local_grid(grid, window, origin)
    zf = (dsm.sample(grid, window, p.edge_step_m) - np.float32(ground)).ravel()
    X = np.broadcast_to(lx[None, :], (h, w)).ravel()
    Y = np.broadcast_to(ly[:, None], (h, w)).ravel()
    aligned = _seam_labels_aligned(labels_map, plan.seam_grid, grid, window)
    seam_full = (aligned if aligned is not None else _seam_labels(labels_map, plan.seam_grid, wx, wy)).ravel()
    final, picks, occluded = _assign(seam_full, X, Y, zf, ctx, plan)

    # -- coarse grid: the same choice, then the low-band corrections --------------------
    llx, lly, lwx, lwy = _local_grid(low_grid, Window(0, 0, low_w, low_h), origin)
    zl = (dsm.sample(low_grid, Window(0, 0, low_w, low_h), p.edge_step_m) - np.float32(ground)).ravel()
    LX = np.broadcast_to(llx[None, :], (low_h, low_w)).ravel()
    LY = np.broadcast_to(lly[:, None], (low_h, low_w)).ravel()
    seam_low = _seam_labels(labels_map, plan.seam_grid, lwx, lwy).ravel()
    low_final, _, _ = _assign(seam_low, LX, LY, zl, ctx, plan)
    involved = sorted(set(picks) | {int(k) for k in np.unique(low_final) if k >= 0})
    pos = {k: i for i, k in enumerate(involved)}
    low_cols: list[F32] = []
    low_valid: list[BoolArray] = []
    for k in involved:
        u, v, frame, vis = ctx[k].see(LX, LY, zl)
        good = frame & vis
        cols = np.zeros((low_h * low_w, 3), np.float32)
        cols[good] = ctx[k].sample_low(u[good], v[good])
        low_cols.append(cols.reshape(low_h, low_w, 3))
        low_valid.append(good.reshape(low_h, low_w))
    low_lab = np.full(low_final.shape, -1, np.int32)
    for k, i in pos.items():
        low_lab[low_final == k] = i
    deltas, low_fill = low_band_corrections(low_cols, low_valid, low_lab.reshape(low_h, low_w), sigma_low)

    # -- samples + corrections ------------------------------------------------------
    out = np.zeros((h * w, 3), np.float32)
    rows_in_ext = ((np.arange(h) + (window.row_off - ext.row_off) + 0.5) / f - 0.5).astype(np.float32)
    cols_in_ext = ((np.arange(w) + (window.col_off - ext.col_off) + 0.5) / f - 0.5).astype(np.float32)
    for k, (idx, u, v) in picks.items():
        cols = ctx[k].sample(u, v)
        corr = _sample_field(deltas[pos[k]], cols_in_ext[idx % w], rows_in_ext[idx // w])
        out[idx] = cols + corr
    mask = final >= 0
    n_occluded = int(occluded.sum())
    if n_occluded and p.fill_occluded:
        # Ground no image sees (behind a building at the flight's edge): the smooth colour of
        # the ground around it rather than the wall that hides it. Computed on the coarse grid
        # with its margin, so it does not depend on where the tile borders fall.
        idx = np.flatnonzero(occluded)
        out[idx] = _sample_field(low_fill, cols_in_ext[idx % w], rows_in_ext[idx // w])
    rgb = np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(h, w, 3)
    rgb[~mask.reshape(h, w)] = 0
    path = ws.ortho_tile_path(window.row_off, window.col_off)
    ws.save_ortho_arrays(path, rgb=np.moveaxis(rgb, -1, 0), mask=mask.reshape(h, w))
    used = tuple(sorted(int(k) for k in picks if picks[k][0].size))
    return TileResult(window, str(path), int(mask.sum()), n_occluded, used)


def _sample_field(field: F32, cx: F32, cy: F32) -> F32:
    """Bilinear samples (n, 3) of a coarse float field at fractional cell coordinates."""
    return sample_image(field.astype(np.float32), cx, cy)
