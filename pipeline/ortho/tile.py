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
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from models.raster import GridSpec, Window
from pipeline.ortho.blend import low_band_corrections
from pipeline.ortho.dsm import fill_nearest, heights_on_grid
from pipeline.ortho.geometry import LocalProjector, inside_image
from pipeline.ortho.plan import ImageView, OrthoPlan, bounds_intersect, window_bounds, window_covering
from pipeline.ortho.prep import load_height_range, sample_image
from pipeline.ortho.select import view_cost
from pipeline.ortho.visibility import Occluders, ZBuffer, build_zbuffer, occluder_bounds, occluders_from_grid, visible
from pipeline.workspace import Workspace
from drone_io.raster_grid import read_band_window

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
        self.low_sx = view.low_size[0] / view.work_size[0]
        self.low_sy = view.low_size[1] / view.work_size[1]

    def zbuf(self) -> ZBuffer:
        if self._zbuf is None:
            occ = self._occ
            x0, y0, x1, y1 = self._occ_bounds
            sel = (occ.x >= x0) & (occ.x <= x1) & (occ.y >= y0) & (occ.y <= y1)
            self._zbuf = build_zbuffer(self.proj, Occluders(occ.x[sel], occ.y[sel], occ.z[sel], occ.spacing))
        return self._zbuf

    def see(self, x: F32, y: F32, z: F32) -> tuple[F32, F32, BoolArray, BoolArray]:
        """(u, v, in frame, visible) of local points."""
        u, v, d, ok = self.proj.project(x, y, z)
        frame = ok & inside_image(u, v, self.cam.width, self.cam.height, 0.5)
        vis = np.zeros_like(frame)
        if frame.any():
            vis[frame] = visible(self.zbuf(), u[frame], v[frame], d[frame], self.cam.focal_px, self.tol)
        return u, v, frame, vis

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
        return cols * self.gain

    def sample_low(self, u: F32, v: F32) -> F32:
        if self._low is None:
            self._low = np.asarray(np.load(self.view.low_cache))
        ul = (u + np.float32(0.5)) * np.float32(self.low_sx) - np.float32(0.5)
        vl = (v + np.float32(0.5)) * np.float32(self.low_sy) - np.float32(0.5)
        return sample_image(self._low, ul, vl) * self.gain


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
) -> tuple[NDArray[np.int32], dict[int, tuple[I64, F32, F32]], int]:
    """Final image per point (flat arrays): the seam label where it sees the point, else the best that does.

    Returns (final labels, per image: (point indices, u, v), occluded_fill count).
    """
    n = labels.shape[0]
    final = np.full(n, -1, np.int32)
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
    occluded_fill = 0
    if pending.size and views:
        px, py, pz = x[pending], y[pending], z[pending]
        best = np.full(pending.size, np.inf, np.float32)
        best_any = np.full(pending.size, np.inf, np.float32)
        who = np.full(pending.size, -1, np.int32)
        who_any = np.full(pending.size, -1, np.int32)
        uv: dict[int, tuple[F32, F32]] = {}
        for k, view in views.items():
            u, v, frame, vis = view.see(px, py, pz)
            if not frame.any():
                continue
            uv[k] = (u, v)
            c = view.cost(px, py, pz, plan.gsd_m, plan)
            better = vis & (c < best)
            best[better] = c[better]
            who[better] = k
            better_any = frame & (c < best_any)
            best_any[better_any] = c[better_any]
            who_any[better_any] = k
        fill = (who < 0) & (who_any >= 0)
        occluded_fill = int(fill.sum())
        who = np.where(fill, who_any, who)
        for k in (int(i) for i in np.unique(who[who >= 0])):
            sel = who == k
            final[pending[sel]] = k
            u, v = uv[k]
            picks.setdefault(k, []).append((pending[sel], u[sel], v[sel]))
    merged = {
        k: (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]))
        for k, parts in picks.items()
    }
    return final, merged, occluded_fill


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

    # -- occluders: DSM cells between the tile (with its blending margin) and the cameras --
    hr = load_height_range(ws, plan)
    z_lo, z_hi = hr.range_in(ext_bounds, ground)
    occ_bounds = {v.index: occluder_bounds(ext_bounds, v.center, z_lo, z_hi) for v in cands}
    if occ_bounds:
        ob = list(occ_bounds.values())
        union = (min(b[0] for b in ob), min(b[1] for b in ob), max(b[2] for b in ob), max(b[3] for b in ob))
    else:
        union = ext_bounds
    dsm_grid = plan.dsm.grid
    dwin = window_covering(dsm_grid, union)
    if dwin.width > 0 and dwin.height > 0:
        z_occ = fill_nearest(read_band_window(Path(plan.dsm.path), dwin), ground)
        dxs, dys = dsm_grid.cell_centers(dwin)
        reach = max(1, int(math.ceil(max(z_hi - z_lo, 0.0) / dsm_grid.resolution)) + 1)
        occ = occluders_from_grid(
            (dxs - origin[0]).astype(np.float32), (dys - origin[1]).astype(np.float32), (z_occ - ground).astype(np.float32),
            dsm_grid.resolution, p.occlusion_tolerance_m, reach,
        )
    else:
        occ = Occluders(np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros(0, np.float32), dsm_grid.resolution)

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
    zf = (heights_on_grid(plan.dsm, grid, window, p.edge_step_m) - np.float32(ground)).ravel()
    X = np.broadcast_to(lx[None, :], (h, w)).ravel()
    Y = np.broadcast_to(ly[:, None], (h, w)).ravel()
    seam_full = _seam_labels(labels_map, plan.seam_grid, wx, wy).ravel()
    final, picks, occluded_fill = _assign(seam_full, X, Y, zf, ctx, plan)

    # -- coarse grid: the same choice, then the low-band corrections --------------------
    llx, lly, lwx, lwy = _local_grid(low_grid, Window(0, 0, low_w, low_h), origin)
    zl = (heights_on_grid(plan.dsm, low_grid, Window(0, 0, low_w, low_h), p.edge_step_m) - np.float32(ground)).ravel()
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
    deltas = low_band_corrections(low_cols, low_valid, low_lab.reshape(low_h, low_w), sigma_low)

    # -- samples + corrections ------------------------------------------------------
    out = np.zeros((h * w, 3), np.float32)
    rows_in_ext = (np.arange(h) + (window.row_off - ext.row_off) + 0.5) / f - 0.5
    cols_in_ext = (np.arange(w) + (window.col_off - ext.col_off) + 0.5) / f - 0.5
    for k, (idx, u, v) in picks.items():
        cols = ctx[k].sample(u, v)
        r = idx // w
        c = idx % w
        corr = _sample_field(deltas[pos[k]], cols_in_ext[c].astype(np.float32), rows_in_ext[r].astype(np.float32))
        out[idx] = cols + corr
    mask = final >= 0
    rgb = np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(h, w, 3)
    rgb[~mask.reshape(h, w)] = 0
    path = ws.ortho_tile_path(window.row_off, window.col_off)
    ws.save_ortho_arrays(path, rgb=np.moveaxis(rgb, -1, 0), mask=mask.reshape(h, w))
    used = tuple(sorted(int(k) for k in picks if picks[k][0].size))
    return TileResult(window, str(path), int(mask.sum()), occluded_fill, used)


def _sample_field(field: F32, cx: F32, cy: F32) -> F32:
    """Bilinear samples (n, 3) of a coarse float field at fractional cell coordinates."""
    return sample_image(field.astype(np.float32), cx, cy)
