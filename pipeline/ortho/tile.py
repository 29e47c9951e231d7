"""One orthophoto tile (one Dask task per tile).

For the tile's cells:

1. Heights from the DSM (bilinear at the cell centres; the nearest cell at height steps),
   sliced from the raw DSM copy the plan step wrote.
2. The image of each cell from the flight-level seam labels, seam cell by seam cell; each
   cell is projected with the true camera model into that image and tested against the image
   frame and the image's z-buffer of the DSM (made once per image by the preparation task).
   The per-point work runs in chunks that stay in the CPU cache. Cells the labelled image
   cannot see (occluded behind a building at full resolution, or beyond the coarse seam
   grid's detail) take the cheapest image that does see them; cells no image sees unoccluded
   take the least hidden image that has them in frame (counted as ``occluded_fill``). Cells of
   whole seam cells are projected by interpolation from the cells' corners
   (:class:`CellLattice`), exactly where the DSM is not smooth.
3. Two-band blending: the low band of the images is blended across seams on a coarse grid
   that extends past the tile by three blending sigmas, so a neighbouring tile computes the
   same correction along the shared border.
4. Per image, its cells are sampled from the memory-mapped image cache (bilinear or bicubic),
   times the flight-level gains and brightness field, plus the low-band correction, and
   scattered into the tile as 8-bit pixels.

Saves the tile's COG blocks, compressed here, and its pixel sums for the overviews
(:mod:`drone_io.cog_blocks`); returns where they lie and small figures.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from drone_io.cog_blocks import TileBlocks
from models.raster import GridSpec, Window
from pipeline.ortho.blend import blend_low, correction, fill_field
from pipeline.ortho.dsm import DsmWindow
from pipeline.ortho.exposure import normalized_xy, shading_factor
from pipeline.ortho.geometry import LocalProjector, inside_image
from pipeline.ortho.plan import ImageView, OrthoPlan, bounds_intersect, window_bounds
from pipeline.ortho.prep import sample_image
from pipeline.ortho.select import view_cost
from pipeline.ortho.visibility import ZBuffer, hidden_by
from pipeline.workspace import Workspace

F32 = NDArray[np.float32]
I64 = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class TileResult:
    """What one tile task made."""

    window: Window
    path: str  # the tile file: pixel sums and compressed COG blocks
    blocks: TileBlocks  # where they lie in it
    covered: int  # cells with an image
    occluded_fill: int  # cells no image sees unoccluded, filled from an image that has them in frame
    images: tuple[int, ...]  # indices of the images that gave at least one cell


class _View:
    """One image as seen from one tile: projector, its z-buffer, cached pixels."""

    def __init__(self, view: ImageView, origin: NDArray[np.float64], interpolation: int, tol: float) -> None:
        self.view = view
        self.proj = LocalProjector(view.work_camera, view.pose, origin)
        self.cam = self.proj.camera
        self.gain = np.asarray(view.gain, np.float32)
        self.tol = tol
        self.interpolation = interpolation
        self._zbuf: ZBuffer | None = None
        self._low: NDArray[np.uint8] | None = None
        self._lattice: F32 | None = None
        self._image: NDArray[np.uint8] | None = None
        self._corners: CornerMaps | None = None
        fp = view.footprint
        self.local_footprint = (fp[0] - origin[0], fp[1] - origin[1], fp[2] - origin[0], fp[3] - origin[1])
        self.low_sx = view.low_size[0] / view.work_size[0]
        self.low_sy = view.low_size[1] / view.work_size[1]

    def zbuf(self) -> ZBuffer | None:
        """The image's z-buffer, made once per image by the preparation task (None: it has none)."""
        if self._zbuf is None and self.view.zbuf_cache:
            self._zbuf = _load_zbuffer(self.view.zbuf_cache, self.view.zbuf_cell)
        return self._zbuf

    def see(self, x: F32, y: F32, z: F32) -> tuple[F32, F32, BoolArray, BoolArray]:
        """(u, v, in frame, visible) of local points."""
        u, v, frame, behind = self.see_depth(x, y, z)
        return u, v, frame, frame & (behind <= 0)

    def see_depth(self, x: F32, y: F32, z: F32) -> tuple[F32, F32, BoolArray, F32]:
        """(u, v, in frame, metres behind the z-buffer surface: <= 0 is visible) of local points."""
        u, v, d, ok = self.proj.project(x, y, z)
        return self.test_depth(u, v, d, ok)

    def see_projected(self, u: F32, v: F32, d: F32, ok: BoolArray) -> tuple[BoolArray, BoolArray]:
        """(in frame, visible) of points already projected to (u, v, depth, ok)."""
        _, _, frame, behind = self.test_depth(u, v, d, ok)
        return frame, frame & (behind <= 0)

    def corner_maps(self, lattice: "CellLattice") -> "CornerMaps":
        """The projection at the tile's seam-cell corners (made once per tile and image)."""
        if self._corners is None:
            self._corners = lattice.project(self.proj)
        return self._corners

    def test_depth(self, u: F32, v: F32, d: F32, ok: BoolArray) -> tuple[F32, F32, BoolArray, F32]:
        frame = ok & inside_image(u, v, self.cam.width, self.cam.height, 0.5)
        zb = self.zbuf()
        if zb is None:
            return u, v, np.zeros(frame.shape, bool), np.full(frame.shape, np.inf, np.float32)
        # Every point is looked up (points off the frame fall in the buffer's +inf ring): one
        # pass over the arrays instead of compressing them to the frame first.
        behind = hidden_by(zb, u, v, d, self.cam.focal_px, self.tol)
        behind[~frame] = np.inf
        return u, v, frame, behind

    def cost(self, x: F32, y: F32, z: F32, gsd_ref: float, plan: OrthoPlan) -> F32:
        return view_cost(self.proj.center_local, self.view.camera.focal_px, x, y, z, gsd_ref, plan.params.view, self.view.blur_penalty)

    def render(self, u: F32, v: F32, cx: F32, cy: F32, field: F32) -> NDArray[np.uint8]:
        """Final colours (n, 3) uint8 of points at working-image pixels (u, v), all inside the frame.

        The image is sampled straight from the memory-mapped cache (only the
        pages under the points are read), times the gains and the brightness
        field, plus the low-band correction ``field`` at coarse-grid positions
        (cx, cy). The brightness field is smooth across the frame, so it is
        evaluated (times the gains) on a lattice every ``_FIELD_STEP`` pixels
        and interpolated: a point gets the same factor whichever tile asks.
        """
        n = u.shape[0]
        if n == 0:
            return np.zeros((0, 3), np.uint8)
        if self._image is None:
            self._image = np.load(self.view.work_cache, mmap_mode="r")
        if self._lattice is None:
            self._lattice = self._gain_lattice()
        # 1-D points as rows of an image for cv2.remap (it takes at most 32767 per side).
        cols = _REMAP_COLS
        rows = -(-n // cols)
        maps = np.empty((4, rows * cols), np.float32)
        for i, a in enumerate((u, v, cx, cy)):
            maps[i, :n] = a
        maps[:, n:] = 0.0
        mu, mv, mx, my = (m.reshape(rows, cols) for m in maps)
        pix = cv2.remap(self._image, mu, mv, self.interpolation, borderMode=cv2.BORDER_REPLICATE)
        s = np.float32(1.0 / _FIELD_STEP)
        mu *= s
        mv *= s
        fac = cv2.remap(self._lattice, mu, mv, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        corr = cv2.remap(field, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out = cv2.add(cv2.multiply(pix, fac, dtype=cv2.CV_32F), corr, dtype=cv2.CV_8U)
        return np.asarray(out, np.uint8).reshape(rows * cols, 3)[:n]

    def _gain_lattice(self) -> F32:
        """(rows, cols, 3) gains times the brightness-field factor at every ``_FIELD_STEP``-th pixel."""
        cam = self.cam
        return _gain_lattice(cam.width, cam.height, cam.cx, cam.cy, tuple(self.view.shading), tuple(float(g) for g in self.view.gain))

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


@dataclass(frozen=True, eq=False)
class CornerMaps:
    """One image's projection at the corners of a tile's seam cells."""

    q: F32  # (6, R, C): u, v, depth, du/dz, dv/dz, corner height
    good: BoolArray  # (R - 1, C - 1): cells whose pixels may be interpolated
    ddepth_dz: float  # depth is affine in the point: its (constant) derivative in z


@dataclass(frozen=True, eq=False)
class CellLattice:
    """The seam cells (ki x ki pixels) over a tile and the local DSM heights at their corners.

    Inside a cell, a pixel's projection is the bilinear interpolation of the
    projections of the cell's corners (each at its own DSM height), plus the
    first-order term in the pixel's height above the interpolated surface:
    du/dz and dv/dz at the corners (central differences), interpolated likewise,
    times dz. Depth is affine in the point, so it comes out exact. What is left
    is second order in dz and in the cell's size; pixels more than ``_DZ_MAX``
    off the interpolated surface, and cells whose corners span more than
    ``_RANGE_MAX`` in height or leave the lens field, are projected exactly
    (building edges, trees). The test bounds the error far below 0.1 px.
    """

    ki: int
    x: F32  # (C,) local x of the corner columns
    y: F32  # (R,) local y of the corner rows
    z: F32  # (R, C) local heights at the corners
    weights: F32  # (4, ki*ki) weights of corners (r, c), (r, c+1), (r+1, c), (r+1, c+1) at a cell's pixel centres, row-major
    rough: BoolArray  # (R - 1, C - 1) cells whose corner heights span more than _RANGE_MAX

    @classmethod
    def build(cls, ki: int, x: F32, y: F32, z: F32) -> "CellLattice":
        t = (np.arange(ki, dtype=np.float64) + 0.5) / ki
        a, b = t[:, None], t[None, :]
        weights = np.stack([(1 - a) * (1 - b), (1 - a) * b, a * (1 - b), a * b]).reshape(4, ki * ki).astype(np.float32)
        z = np.asarray(z, np.float32)
        zz = np.stack([z[:-1, :-1], z[:-1, 1:], z[1:, :-1], z[1:, 1:]])
        rough = (zz.max(axis=0) - zz.min(axis=0)) > np.float32(_RANGE_MAX)
        return cls(ki, np.asarray(x, np.float32), np.asarray(y, np.float32), z, weights, rough)

    def project(self, proj: LocalProjector) -> CornerMaps:
        shape = self.z.shape
        X = np.broadcast_to(self.x[None, :], shape)
        Y = np.broadcast_to(self.y[:, None], shape)
        step = np.float32(_DZ_STEP)
        u, v, d, ok = proj.project(X, Y, self.z)
        u1, v1, _, ok1 = proj.project(X, Y, self.z + step)
        u0, v0, _, ok0 = proj.project(X, Y, self.z - step)
        ok &= ok1 & ok0
        s = np.float32(0.5 / _DZ_STEP)
        q = np.stack([u, v, d, (u1 - u0) * s, (v1 - v0) * s, self.z]).astype(np.float32)
        good = ok[:-1, :-1] & ok[:-1, 1:] & ok[1:, :-1] & ok[1:, 1:] & ~self.rough
        return CornerMaps(q, good, float(proj.pose.R[2, 2]))

    def interpolate(self, maps: CornerMaps, r: I64, c: I64, z: F32) -> tuple[F32, F32, F32, BoolArray]:
        """(u, v, depth, exact) at the pixels of cells (r, c), cell after cell (ki*ki pixels each, row-major).

        ``z`` holds the pixels' local heights; ``exact`` marks those the interpolation
        does not cover, which the caller projects exactly.
        """
        kk = self.ki * self.ki
        n = r.shape[0]
        q = maps.q
        corners = np.stack([q[:, r, c], q[:, r, c + 1], q[:, r + 1, c], q[:, r + 1, c + 1]], axis=-1)  # (6, n, 4)
        vals = np.matmul(corners.reshape(6 * n, 4), self.weights).reshape(6, n * kk)
        dz = z - vals[5]
        u = vals[3] * dz
        u += vals[0]
        v = vals[4] * dz
        v += vals[1]
        d = dz * np.float32(maps.ddepth_dz)
        d += vals[2]
        exact = np.abs(dz) > np.float32(_DZ_MAX)
        bad = ~maps.good[r, c]
        if bad.any():
            exact |= np.repeat(bad, kk)
        return u, v, d, exact


def _seam_cells(labels: NDArray[np.int32], sg: GridSpec, grid: GridSpec, window: Window) -> tuple[NDArray[np.int32], int, int, int] | None:
    """The seam cells over ``window`` when seam cells are whole blocks of ki x ki pixels of the grid.

    Returns (labels of the cells covering the window, ki, and the window's row and column
    offset inside the first cell), or None when the grids are not aligned.
    """
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
    return sub, ki, window.row_off - r0 * ki, window.col_off - c0 * ki


def _seam_labels_aligned(labels: NDArray[np.int32], sg: GridSpec, grid: GridSpec, window: Window) -> NDArray[np.int32] | None:
    """Seam labels for the pixels of ``window`` by repetition, when seam cells are whole pixel blocks."""
    cells = _seam_cells(labels, sg, grid, window)
    if cells is None:
        return None
    sub, ki, ro, co = cells
    big = np.repeat(np.repeat(sub, ki, axis=0), ki, axis=1)
    return np.ascontiguousarray(big[ro : ro + window.height, co : co + window.width])


def _cell_groups(
    sub: NDArray[np.int32], ki: int, ro: int, co: int, h: int, w: int
) -> tuple[dict[int, I64], dict[int, tuple[I64, I64]]]:
    """Flat pixel indices (h x w window) of each label's seam cells, cell by cell (no full-window scans).

    Returns (label -> indices, label -> (rows, cols) in ``sub`` of its cells that lie
    wholly inside the window): the indices start with those whole cells, ki*ki
    pixels each, row-major, in that order; the pixels of cut cells follow.
    """
    groups: dict[int, I64] = {}
    whole: dict[int, tuple[I64, I64]] = {}
    d = np.arange(ki, dtype=np.int64)
    for k in (int(i) for i in np.unique(sub)):
        if k < 0:
            continue
        cr, cc = np.nonzero(sub == k)
        cr, cc = cr.astype(np.int64), cc.astype(np.int64)
        rows = cr[:, None] * ki - ro + d[None, :]  # (cells, ki)
        cols = cc[:, None] * ki - co + d[None, :]
        okr = (rows >= 0) & (rows < h)
        okc = (cols >= 0) & (cols < w)
        full: BoolArray = np.asarray(okr.all(axis=1) & okc.all(axis=1), dtype=bool)
        if not full.all():
            order = np.argsort(~full, kind="stable")
            cr, cc, rows, cols, okr, okc, full = cr[order], cc[order], rows[order], cols[order], okr[order], okc[order], full[order]
        idx = rows[:, :, None] * w + cols[:, None, :]
        nfull = int(full.sum())
        whole[k] = (cr[:nfull], cc[:nfull])
        if nfull == cr.size:
            groups[k] = idx.ravel()
        else:
            groups[k] = np.concatenate([idx[:nfull].ravel(), idx[nfull:][okr[nfull:, :, None] & okc[nfull:, None, :]]])
    return groups, whole


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
    labels: NDArray[np.int32] | None,
    x: F32,
    y: F32,
    z: F32,
    views: dict[int, _View],
    plan: OrthoPlan,
    groups: dict[int, I64] | None = None,
    lattice: CellLattice | None = None,
    whole: dict[int, tuple[I64, I64]] | None = None,
) -> tuple[NDArray[np.int32], dict[int, list[tuple[I64, F32, F32]]], BoolArray]:
    """Final image per point (flat arrays): the seam label where it sees the point, else the best that does.

    Points the labelled image cannot see try the other candidates in order of
    their view cost at that point (so the choice depends on the point alone,
    not on the tile), testing visibility only as far as needed. Points no
    candidate sees unoccluded take the cheapest candidate that has them in
    frame, and are flagged ``occluded``.

    ``groups`` (label -> point indices) saves the scans of ``labels`` when the
    caller knows them (``labels`` may then be None). With ``lattice`` and
    ``whole`` (label -> its whole seam cells, whose pixels open its group), the
    pixels of whole cells are projected by :meth:`CellLattice.interpolate`.

    Returns (final labels, per image: parts of (point indices, u, v), occluded flags).
    """
    n = x.shape[0]
    final = np.full(n, -1, np.int32)
    occluded = np.zeros(n, bool)
    picks: dict[int, list[tuple[I64, F32, F32]]] = {}
    if groups is None:
        if labels is None:
            raise ValueError("_assign needs labels or groups")
        counts = np.bincount(labels + 1, minlength=1)
        groups = {k: np.flatnonzero(labels == k) for k in (int(i) for i in np.nonzero(counts[1:])[0])}
    for k, group in groups.items():
        if k not in views:
            continue
        parts = picks.setdefault(k, [])
        view = views[k]
        start = 0
        if lattice is not None and whole is not None and k in whole:
            cr, cc = whole[k]
            maps = view.corner_maps(lattice)
            kk = lattice.ki * lattice.ki
            step = max(1, _CHUNK // kk)
            for s in range(0, cr.shape[0], step):
                idx = group[s * kk : min(s + step, cr.shape[0]) * kk]
                zi = z[idx]
                u, v, d, exact = lattice.interpolate(maps, cr[s : s + step], cc[s : s + step], zi)
                ok = ~exact
                e = np.flatnonzero(exact)
                if e.size:
                    ie = idx[e]
                    u[e], v[e], d[e], ok[e] = view.proj.project(x[ie], y[ie], zi[e])
                frame, vis = view.see_projected(u, v, d, ok)
                good = frame & vis
                if good.all():
                    final[idx] = k
                    parts.append((idx, u, v))
                else:
                    final[idx[good]] = k
                    parts.append((idx[good], u[good], v[good]))
            start = cr.shape[0] * kk
        # In chunks that stay in the CPU cache through the projection and the visibility test.
        for s in range(start, group.size, _CHUNK):
            idx = group[s : s + _CHUNK]
            u, v, frame, vis = view.see(x[idx], y[idx], z[idx])
            good = frame & vis
            if good.all():
                final[idx] = k
                parts.append((idx, u, v))
            else:
                final[idx[good]] = k
                parts.append((idx[good], u[good], v[good]))
    pending = np.flatnonzero(final < 0)
    if pending.size and views:
        m = pending.size
        px, py, pz = x[pending], y[pending], z[pending]
        # The first candidate in order of view cost that sees the point is the cheapest one
        # that sees it (ties to the lower image index): every candidate whose footprint holds
        # the point is tested at once, image by image.
        best = np.full(m, -1, np.int32)
        best_cost = np.full(m, np.inf, np.float32)
        best_uv = np.zeros((2, m), np.float32)
        # Among the candidates that have the point in frame, the one it is least hidden from.
        first_frame = np.full(m, -1, np.int32)
        ff_behind = np.full(m, np.inf, np.float32)
        ff_uv = np.zeros((2, m), np.float32)
        # Points in raster order (y falling) let each footprint's rows be found by bisection.
        ny = -py
        rows_sorted = bool(np.all(ny[1:] >= ny[:-1]))
        for k in sorted(views):
            view = views[k]
            fx0, fy0, fx1, fy1 = view.local_footprint
            if rows_sorted:
                a = int(np.searchsorted(ny, np.float32(-fy1), "left"))
                b = int(np.searchsorted(ny, np.float32(-fy0), "right"))
                sel = a + np.flatnonzero((px[a:b] >= fx0) & (px[a:b] <= fx1))
            else:
                sel = np.flatnonzero((px >= fx0) & (px <= fx1) & (py >= fy0) & (py <= fy1))
            if sel.size == 0:
                continue
            sx, sy, sz = px[sel], py[sel], pz[sel]
            # Most fallback points are off this image (the flight's edge): project first, and
            # weigh the view and test the z-buffer only where the point is in frame.
            u, v, d, ok = view.proj.project(sx, sy, sz)
            f = np.flatnonzero(ok & inside_image(u, v, view.cam.width, view.cam.height, 0.5))
            zb = view.zbuf()
            if f.size == 0 or zb is None:
                continue
            sel, u, v = sel[f], u[f], v[f]
            behind = hidden_by(zb, u, v, d[f], view.cam.focal_px, view.tol)
            c = view.cost(sx[f], sy[f], sz[f], plan.gsd_m, plan)
            frame = np.isfinite(c)
            hit = np.flatnonzero(frame & (behind <= 0) & (c < best_cost[sel]))
            t = sel[hit]
            best[t] = k
            best_cost[t] = c[hit]
            best_uv[0, t] = u[hit]
            best_uv[1, t] = v[hit]
            hit = np.flatnonzero(frame & (behind < ff_behind[sel]))
            t = sel[hit]
            first_frame[t] = k
            ff_behind[t] = behind[hit]
            ff_uv[0, t] = u[hit]
            ff_uv[1, t] = v[hit]
        seen = best >= 0
        for k in (int(j) for j in np.unique(best[seen])):
            take = np.flatnonzero(best == k)
            final[pending[take]] = k
            picks.setdefault(k, []).append((pending[take], best_uv[0, take], best_uv[1, take]))
        rest = np.flatnonzero(~seen & (first_frame >= 0))
        for k in (int(j) for j in np.unique(first_frame[rest])):
            take = rest[first_frame[rest] == k]
            final[pending[take]] = k
            # Hidden by a little (a rough canopy, DSM noise): the least hidden view is kept.
            # Hidden by more (a building): flagged, and filled from the ground around it.
            occluded[pending[take]] = ff_behind[take] > np.float32(plan.params.fill_hidden_m)
            picks.setdefault(k, []).append((pending[take], ff_uv[0, take], ff_uv[1, take]))
    return final, picks, occluded


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
    dsm = DsmWindow.covering(plan.dsm, ext_bounds, pad=3)
    ctx = {v.index: _View(v, origin, p.interpolation, p.occlusion_tolerance_m) for v in cands}
    labels_map = np.load(plan.labels, mmap_mode="r")

    # -- full resolution: which image each cell comes from ---------------------------
    h, w = window.height, window.width
    lx, ly, wx, wy = _local_grid(grid, window, origin)
    zf = (dsm.sample(grid, window, p.edge_step_m) - np.float32(ground)).ravel()
    X = np.broadcast_to(lx[None, :], (h, w)).ravel()
    Y = np.broadcast_to(ly[:, None], (h, w)).ravel()
    cells = _seam_cells(labels_map, plan.seam_grid, grid, window)
    lattice: CellLattice | None = None
    whole: dict[int, tuple[I64, I64]] | None = None
    if cells is not None:
        groups, whole = _cell_groups(*cells, h, w)
        lattice = _cell_lattice(grid, window, cells, dsm, p.edge_step_m, origin)
    else:
        seam_full = _seam_labels(labels_map, plan.seam_grid, wx, wy).ravel()
        counts = np.bincount(seam_full + 1, minlength=1)
        groups = {k: np.flatnonzero(seam_full == k) for k in (int(i) for i in np.nonzero(counts[1:])[0])}
    final, picks, occluded = _assign(None, X, Y, zf, ctx, plan, groups, lattice, whole)
    del X, Y, zf, groups

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
        view = ctx[k]
        fx0, fy0, fx1, fy1 = view.local_footprint
        sel = np.flatnonzero((LX >= fx0) & (LX <= fx1) & (LY >= fy0) & (LY <= fy1))
        u, v, frame, vis = view.see(LX[sel], LY[sel], zl[sel])
        good = np.flatnonzero(frame & vis)
        cols = np.zeros((low_h * low_w, 3), np.float32)
        cols[sel[good]] = view.sample_low(u[good], v[good])
        valid = np.zeros(low_h * low_w, bool)
        valid[sel[good]] = True
        low_cols.append(cols.reshape(low_h, low_w, 3))
        low_valid.append(valid.reshape(low_h, low_w))
    low_lab = np.full(low_final.shape, -1, np.int32)
    for k, i in pos.items():
        low_lab[low_final == k] = i
    blended, covered = blend_low(low_cols, low_valid, low_lab.reshape(low_h, low_w), sigma_low)
    deltas: dict[int, F32] = {}
    offset = (window.row_off - ext.row_off, window.col_off - ext.col_off)
    for k, parts in picks.items():
        needed = _coarse_block([idx for idx, _, _ in parts if idx.size], w, f, offset)
        deltas[k] = correction(blended, covered, low_cols[pos[k]], low_valid[pos[k]], sigma_low, needed)

    # -- samples plus corrections, image by image ----------------------------------------
    rows_in_ext = ((np.arange(h) + (window.row_off - ext.row_off) + 0.5) / f - 0.5).astype(np.float32)
    cols_in_ext = ((np.arange(w) + (window.col_off - ext.col_off) + 0.5) / f - 0.5).astype(np.float32)
    rgb = np.zeros((h * w, 3), np.uint8)
    flat = rgb.view(_RGB8).ravel()  # one 3-byte item per pixel: a scatter moves whole pixels
    for k, parts in picks.items():
        field = np.ascontiguousarray(deltas[k], dtype=np.float32)
        for idx, u, v in parts:
            if idx.size:
                r = idx // w
                cx, cy = cols_in_ext[idx - r * w], rows_in_ext[r]
                np.put(flat, idx, np.ascontiguousarray(ctx[k].render(u, v, cx, cy, field)).view(_RGB8).ravel())
    n_occluded = int(occluded.sum())
    if n_occluded and p.fill_occluded:
        # Ground no image sees (behind a building at the flight's edge): the smooth colour of
        # the ground around it rather than the wall that hides it. Computed on the coarse grid
        # with its margin, so it does not depend on where the tile borders fall.
        idx = np.flatnonzero(occluded)
        r = idx // w
        fill = _sample_field(fill_field(blended, covered, sigma_low), cols_in_ext[idx - r * w], rows_in_ext[r])
        np.put(flat, idx, np.ascontiguousarray(cv2.add(fill, np.zeros_like(fill), dtype=cv2.CV_8U)).view(_RGB8).ravel())
    mask = (final >= 0).reshape(h, w)
    blocks = ws.save_ortho_tile(window, rgb.reshape(h, w, 3), mask, plan.blocks)
    used = tuple(sorted(int(k) for k, parts in picks.items() if any(part[0].size for part in parts)))
    return TileResult(window, str(ws.ortho_tile_path(window.row_off, window.col_off)), blocks, int(mask.sum()), n_occluded, used)


def _cell_lattice(
    grid: GridSpec, window: Window, cells: tuple[NDArray[np.int32], int, int, int], dsm: DsmWindow, step_m: float, origin: NDArray[np.float64]
) -> CellLattice:
    """The corners of the seam cells over ``window`` (from :func:`_seam_cells`) with their DSM heights, local frame."""
    sub, ki, ro, co = cells
    nr, nc = sub.shape
    res = grid.resolution
    # A grid whose cell centres are the seam cells' corners.
    cg = GridSpec(
        grid.crs, grid.x_min + (window.col_off - co - 0.5 * ki) * res, grid.y_max - (window.row_off - ro - 0.5 * ki) * res,
        ki * res, nc + 1, nr + 1,
    )
    cw = Window(0, 0, nc + 1, nr + 1)
    xs, ys = cg.cell_centers(cw)
    z = dsm.sample(cg, cw, step_m) - np.float32(origin[2])
    return CellLattice.build(ki, (xs - origin[0]).astype(np.float32), (ys - origin[1]).astype(np.float32), z)


def _coarse_block(parts: list[I64], w: int, f: int, offset: tuple[int, int]) -> tuple[int, int, int, int]:
    """(row0, row1, col0, col1) of the coarse cells that bilinear samples at the pixels ``parts``
    (flat indices in a ``w``-wide window at ``offset`` rows, cols inside the coarse grid) touch."""
    if not parts:
        return (0, 0, 0, 0)
    r0 = min(int(i.min()) for i in parts) // w
    r1 = max(int(i.max()) for i in parts) // w
    cols = [i % w for i in parts]
    c0 = min(int(c.min()) for c in cols)
    c1 = max(int(c.max()) for c in cols)
    dr, dc = offset
    return ((r0 + dr) // f - 1, (r1 + dr) // f + 2, (c0 + dc) // f - 1, (c1 + dc) // f + 2)


# Points per chunk of the per-point work (a few hundred kB per array: they stay in the CPU cache).
_CHUNK = 32768
# Points per row when 1-D samples go through cv2.remap.
_REMAP_COLS = 4096
# An 8-bit RGB pixel as one item.
_RGB8 = np.dtype((np.void, 3))
# Cell-lattice projection (CellLattice): pixels farther than _DZ_MAX (m) from the interpolated
# surface, and cells whose corners span more than _RANGE_MAX (m), are projected exactly;
# du/dz comes from central differences +-_DZ_STEP (m).
_DZ_MAX = 0.25
_RANGE_MAX = 2.0
_DZ_STEP = 0.5
# Spacing (working-image pixels) of the lattice on which an image's brightness field is evaluated.
_FIELD_STEP = 8


@functools.lru_cache(maxsize=32)
def _gain_lattice(width: int, height: int, cx: float, cy: float, shading: tuple[float, ...], gain: tuple[float, ...]) -> F32:
    """(rows, cols, 3) gains times the brightness-field factor at every ``_FIELD_STEP``-th pixel.

    A function of its arguments alone, kept per worker process (read-only): the tiles
    of one image share it instead of evaluating the field again.
    """
    if any(shading):
        gu = np.arange(0, width + _FIELD_STEP, _FIELD_STEP, dtype=np.float32)
        gv = np.arange(0, height + _FIELD_STEP, _FIELD_STEP, dtype=np.float32)
        uu = np.broadcast_to(gu[None, :], (gv.size, gu.size))
        vv = np.broadcast_to(gv[:, None], (gv.size, gu.size))
        x, y = normalized_xy(uu, vv, cx, cy, width, height)
        f = np.asarray(shading_factor(x, y, shading), dtype=np.float32)
    else:
        f = np.ones((height // _FIELD_STEP + 2, width // _FIELD_STEP + 2), np.float32)
    out = np.ascontiguousarray(f[..., None] * np.asarray(gain, np.float32)[None, None, :], dtype=np.float32)
    out.flags.writeable = False
    return out


def _load_zbuffer(path: str, cell: float) -> ZBuffer:
    """An image's z-buffer from its file, kept per worker process while the file is unchanged."""
    st = os.stat(path)
    return _load_zbuffer_cached(path, st.st_ino, st.st_mtime_ns, st.st_size, cell)


@functools.lru_cache(maxsize=24)
def _load_zbuffer_cached(path: str, inode: int, mtime_ns: int, size: int, cell: float) -> ZBuffer:
    depth = np.load(path)
    depth.flags.writeable = False
    return ZBuffer(depth, cell)


def _sample_field(field: F32, cx: F32, cy: F32) -> F32:
    """Bilinear samples (n, 3) of a coarse float field at fractional cell coordinates."""
    return sample_image(field.astype(np.float32), cx, cy)
