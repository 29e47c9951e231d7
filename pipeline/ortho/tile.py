"""One orthophoto tile (one Dask task per tile).

For the tile's cells:

1. Heights from the DSM (bilinear at the cell centres; the nearest cell at height steps),
   sliced from the raw DSM copy the plan step wrote.
2. The image of each cell from the flight-level seam labels, seam cell by seam cell; each
   cell is projected with the true camera model into that image and tested against the image
   frame and the image's z-buffer of the DSM (made once per image by the preparation task).
   The tile is padded out to whole seam cells and worked on as (cells, ki, ki) blocks, in
   chunks that stay in the CPU cache; its pixels are projected by interpolation from the
   cells' corners (:class:`CellLattice`), exactly where the DSM is not smooth. Cells the
   labelled image cannot see (occluded behind a building at full resolution, or beyond the
   coarse seam grid's detail) take the cheapest image that does see them; cells no image sees
   unoccluded take the least hidden image that has them in frame (counted as ``occluded_fill``),
   unless they lie in a pit of the DSM (a hole in a canopy's DSM, most often) and an image sees
   them lifted to the pit's rim (counted as ``pits_lifted``).
3. Two-band blending: the low band of the images is blended across seams on a coarse grid
   that extends past the tile by three blending sigmas, so a neighbouring tile computes the
   same correction along the shared border.
4. Per image, its cells are sampled from the memory-mapped image cache (bilinear or bicubic),
   times the flight-level gains and brightness field, plus the low-band correction, and
   written into the tile as 8-bit pixels, cell block by cell block. The two smooth fields are
   taken at the seam cells' corners and interpolated with the projection's cell weights.

Saves the tile's COG blocks, compressed here, and its pixel sums for the overviews
(:mod:`drone_io.cog_blocks`); returns where they lie and small figures.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from drone_io.cog_blocks import TileBlocks
from models.raster import GridSpec, Window
from pipeline.ortho.blend import blend_low, correction, fill_field
from pipeline.ortho.dsm import DsmWindow, block_reduce
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
    pits_lifted: int = 0  # cells in a DSM pit that no image sees, taken from an image that sees them at the pit's rim


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

    def visible(self, u: F32, v: F32, d: F32, ok: BoolArray) -> BoolArray:
        """Whether points already projected to (u, v, depth, ok) are in frame and not hidden."""
        frame = ok & inside_image(u, v, self.cam.width, self.cam.height, 0.5)
        zb = self.zbuf()
        if zb is None:
            return np.zeros(frame.shape, bool)
        # Every point is looked up (points off the frame fall in the buffer's +inf ring).
        # hidden_by(...) <= 0 rearranged, d - (nearest + tol + d * cell / f) <= 0, to one
        # multiply, one subtraction and the comparison.
        near = zb.lookup(u, v)
        lhs = d * np.float32(1.0 - zb.cell / self.cam.focal_px)
        lhs -= np.float32(self.tol)
        return frame & (lhs <= near)

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

    def _pixels(self) -> NDArray[np.uint8]:
        if self._image is None:
            self._image = _map_npy(self.view.work_cache)
        return self._image

    def _factors(self) -> F32:
        if self._lattice is None:
            self._lattice = self._gain_lattice()
        return self._lattice

    def render(self, u: F32, v: F32, cx: F32, cy: F32, field: F32) -> NDArray[np.uint8]:
        """Final colours (..., 3) uint8 of points at working-image pixels (u, v), given as 2-D maps of one shape.

        The image is sampled straight from the memory-mapped cache (only the
        pages under the points are read), times the gains and the brightness
        field, plus the low-band correction ``field`` at coarse-grid positions
        (cx, cy). The brightness field is smooth across the frame, so it is
        evaluated (times the gains) on a lattice every ``_FIELD_STEP`` pixels
        and interpolated: a point gets the same factor whichever tile asks.
        Each pass is one SIMD cv2 call over the maps (at most 32767 a side).
        Used for scattered points; whole seam cells go through :meth:`render_cells`.
        """
        pix = cv2.remap(self._pixels(), u, v, self.interpolation, borderMode=cv2.BORDER_REPLICATE)
        s = np.float32(1.0 / _FIELD_STEP)
        fac = cv2.remap(self._factors(), u * s, v * s, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        corr = cv2.remap(field, cx, cy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return np.asarray(cv2.add(cv2.multiply(pix, fac, dtype=cv2.CV_32F), corr, dtype=cv2.CV_8U), np.uint8)

    def corner_factors(self, lattice: "CellLattice", field: F32, cx: F32, cy: F32) -> F32:
        """(6, R, C) at the tile's seam-cell corners: gains times brightness field (3), low-band correction (3).

        ``cx`` (C,) and ``cy`` (R,) are the corners' coarse-grid positions. Both fields are
        smooth (the brightness field over the frame, the correction a blur three blending
        sigmas wide), so inside a cell they are interpolated from its corners with the
        projection's weights (:meth:`render_cells`) instead of sampled pixel by pixel.
        The corners of cells the projection does not interpolate (rough, or beyond the
        lens field) are sampled at their own projection, clamped to the frame (a corner
        with no finite projection at the frame's origin).
        """
        q = self.corner_maps(lattice).q
        s = np.float32(1.0 / _FIELD_STEP)
        mu = np.nan_to_num(q[0] * s, nan=0.0, posinf=0.0, neginf=0.0)
        mv = np.nan_to_num(q[1] * s, nan=0.0, posinf=0.0, neginf=0.0)
        fac = cv2.remap(self._factors(), mu, mv, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        shape = q.shape[1:]
        mx = np.ascontiguousarray(np.broadcast_to(cx[None, :], shape))
        my = np.ascontiguousarray(np.broadcast_to(cy[:, None], shape))
        corr = cv2.remap(field, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return np.ascontiguousarray(np.concatenate([fac, corr], axis=2).transpose(2, 0, 1), dtype=np.float32)

    def render_cells(self, part: "_CellPart", lattice: "CellLattice", factors: F32) -> NDArray[np.uint8]:
        """Final colours (n * ki, ki, 3) uint8 of a chunk of seam cells, cell after cell.

        The image is sampled at the pixels' projections; the gains, brightness field and
        correction come from ``factors`` (:meth:`corner_factors`) interpolated with the
        cell weights in one matrix product, channel plane by plane.
        """
        pix = cv2.remap(self._pixels(), part.u, part.v, self.interpolation, borderMode=cv2.BORDER_REPLICATE)
        vals = lattice.spread(factors, part.rows, part.cols).reshape(6, *part.u.shape)
        planes = cv2.split(pix)
        out = [cv2.add(cv2.multiply(planes[i], vals[i], dtype=cv2.CV_32F), vals[3 + i], dtype=cv2.CV_8U) for i in range(3)]
        return np.asarray(cv2.merge(out), np.uint8)

    def render_points(self, u: F32, v: F32, cx: F32, cy: F32, field: F32) -> NDArray[np.uint8]:
        """:meth:`render` of 1-D points: (n, 3) uint8, the points packed as rows of a 2-D map."""
        n = u.shape[0]
        if n == 0:
            return np.zeros((0, 3), np.uint8)
        cols = _REMAP_COLS
        rows = -(-n // cols)
        maps = np.zeros((4, rows * cols), np.float32)
        for i, a in enumerate((u, v, cx, cy)):
            maps[i, :n] = a
        mu, mv, mx, my = (m.reshape(rows, cols) for m in maps)
        return self.render(mu, mv, mx, my, field).reshape(rows * cols, 3)[:n]

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
            self._low = _load_low(self.view.low_cache)
        ul = (u + np.float32(0.5)) * np.float32(self.low_sx) - np.float32(0.5)
        vl = (v + np.float32(0.5)) * np.float32(self.low_sy) - np.float32(0.5)
        return self._balanced(sample_image(self._low, ul, vl), u, v)


@dataclass(frozen=True, eq=False)
class _PendingCells:
    """The seam cells that hold points of a fallback search, as prisms: (8, cells) corner coordinates."""

    of: NDArray[np.intp]  # (points,) each point's cell
    x: F32  # (8, cells) local x of each cell's prism corners
    y: F32
    z: F32

    @classmethod
    def build(cls, lattice: "CellLattice", z4: F32, rows: NDArray[np.intp], cols: NDArray[np.intp]) -> "_PendingCells":
        """The cells of points in seam-cell rows/cols ``rows``/``cols``; ``z4`` (R, ki, C, ki) the pixels' heights."""
        cell = rows * z4.shape[2] + cols
        present = np.bincount(cell, minlength=z4.shape[0] * z4.shape[2]) > 0
        of = (np.cumsum(present) - 1)[cell]  # a count, not a sort: cells are few, points many
        r, c = np.divmod(np.flatnonzero(present), z4.shape[2])
        zc = z4[r, :, c, :]
        lo, hi = zc.min(axis=(1, 2)), zc.max(axis=(1, 2))
        x0, x1, y0, y1 = lattice.x[c], lattice.x[c + 1], lattice.y[r], lattice.y[r + 1]
        x = np.stack([x0, x1, x0, x1, x0, x1, x0, x1])
        y = np.stack([y0, y0, y1, y1, y0, y0, y1, y1])
        z = np.stack([lo, lo, lo, lo, hi, hi, hi, hi])
        return cls(of.astype(np.intp), x, y, z)


@dataclass(frozen=True, eq=False)
class _CellPart:
    """A chunk of one image's seam cells in a tile, with the projections of their pixels."""

    rows: I64  # (n,) seam-cell rows of the chunk's cells
    cols: I64  # (n,) seam-cell columns
    u: F32  # (n * ki, ki) working-image pixel u of the cells' pixels, cell after cell
    v: F32  # (n * ki, ki)
    any_good: bool  # whether the image sees any of the pixels


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
        shape = (3, *self.z.shape)
        X = np.broadcast_to(self.x[None, None, :], shape)
        Y = np.broadcast_to(self.y[None, :, None], shape)
        step = np.float32(_DZ_STEP)
        # The corners at their height and +-_DZ_STEP, in one call.
        u3, v3, d3, ok3 = proj.project(X, Y, np.stack([self.z, self.z + step, self.z - step]))
        u, u1, u0 = u3
        v, v1, v0 = v3
        d = d3[0]
        ok = np.asarray(ok3.all(axis=0), dtype=bool)
        s = np.float32(0.5 / _DZ_STEP)
        q = np.stack([u, v, d, (u1 - u0) * s, (v1 - v0) * s, self.z]).astype(np.float32)
        good = ok[:-1, :-1] & ok[:-1, 1:] & ok[1:, :-1] & ok[1:, 1:] & ~self.rough
        return CornerMaps(q, good, float(proj.pose.R[2, 2]))

    def spread(self, q: F32, r: I64, c: I64) -> F32:
        """(m, n * ki * ki): values ``q`` (m, R, C) at the corners interpolated to the pixels of cells (r, c), cell after cell."""
        m, n = q.shape[0], r.shape[0]
        corners = np.stack([q[:, r, c], q[:, r, c + 1], q[:, r + 1, c], q[:, r + 1, c + 1]], axis=-1)  # (m, n, 4)
        return np.matmul(corners.reshape(m * n, 4), self.weights).reshape(m, n * self.ki * self.ki)

    def interpolate(self, maps: CornerMaps, r: I64, c: I64, z: F32) -> tuple[F32, F32, F32, BoolArray]:
        """(u, v, depth, exact) at the pixels of cells (r, c), cell after cell (ki*ki pixels each, row-major).

        ``z`` holds the pixels' local heights; ``exact`` marks those the interpolation
        does not cover, which the caller projects exactly.
        """
        kk = self.ki * self.ki
        vals = self.spread(maps.q, r, c)
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


def _off_frame(proj: LocalProjector, cells: _PendingCells) -> BoolArray:
    """Per cell of ``cells``: whether every point of it is certainly off the frame of ``proj``'s image.

    A cell's points lie in the prism over the cell between its lowest and highest
    height; a pinhole camera maps it inside the hull of the 8 projected corners. The
    lens distortion bends the hull's edges by a fraction of their length (under
    ``_FRAME_BEND`` of it within the trusted lens field), so the box of the projected
    corners must clear the frame by that fraction of its size plus ``_FRAME_SLACK`` px.
    Cells with a corner behind the camera or beyond the lens field are never ruled out.
    """
    u, v, _, ok = proj.project(cells.x, cells.y, cells.z)
    u0, u1, v0, v1 = u.min(axis=0), u.max(axis=0), v.min(axis=0), v.max(axis=0)
    margin = np.float32(_FRAME_SLACK) + np.float32(_FRAME_BEND) * np.maximum(u1 - u0, v1 - v0)
    lo = np.float32(0.5) - margin
    cam = proj.camera
    return np.asarray(ok.all(axis=0), dtype=bool) & (
        (u1 < lo) | (v1 < lo) | (u0 > np.float32(cam.width - 1.5) + margin) | (v0 > np.float32(cam.height - 1.5) + margin)
    )


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


def _assign_cells(
    sub: NDArray[np.int32], lattice: "CellLattice", z: F32, x: F32, y: F32, views: dict[int, _View]
) -> tuple[NDArray[np.int32], dict[int, list[_CellPart]]]:
    """The labelled image of every pixel of the seam cells ``sub`` where it sees the pixel, cell block by cell block.

    ``z`` (R*ki, C*ki) holds the local heights of the pixels the cells cover, ``x`` and
    ``y`` their local x per column and y per row. A label's cells are handled in
    chunks that stay in the CPU cache, as (cells, ki, ki) blocks read from and written
    to the 2-D arrays with one index per cell (no per-pixel gathers or scatters);
    their pixels are projected by :meth:`CellLattice.interpolate` and tested against
    the image frame and z-buffer (:meth:`_View.visible`).

    Returns (label per pixel, -1 where the labelled image does not see it; per image,
    the chunks of its cells with every pixel's (u, v)).
    """
    ki = lattice.ki
    kk = ki * ki
    nr, nc = sub.shape
    final = np.full((nr, ki, nc, ki), -1, np.int32)
    z4 = z.reshape(nr, ki, nc, ki)
    xc, yc = x.reshape(nc, ki), y.reshape(nr, ki)
    parts: dict[int, list[_CellPart]] = {}
    step = max(1, min(_CHUNK // kk, _REMAP_MAX // ki))
    for k in (int(i) for i in np.unique(sub)):
        if k not in views:
            continue
        view = views[k]
        maps = view.corner_maps(lattice)
        found = parts.setdefault(k, [])
        cr, cc = (a.astype(np.int64) for a in np.nonzero(sub == k))
        for s in range(0, cr.shape[0], step):
            r, c = cr[s : s + step], cc[s : s + step]
            n = r.shape[0]
            zi = z4[r, :, c, :].reshape(n * kk)
            u, v, d, exact = lattice.interpolate(maps, r, c, zi)
            ok = ~exact
            e = np.flatnonzero(exact)
            if e.size:
                cell, rem = np.divmod(e, kk)
                i, j = np.divmod(rem, ki)
                u[e], v[e], d[e], ok[e] = view.proj.project(xc[c[cell], j], yc[r[cell], i], zi[e])
            good = view.visible(u, v, d, ok)
            if good.all():
                final[r, :, c, :] = k
            else:
                final[r, :, c, :] = np.where(good, np.int32(k), np.int32(-1)).reshape(n, ki, ki)
            found.append(_CellPart(r, c, u.reshape(n * ki, ki), v.reshape(n * ki, ki), bool(good.any())))
    return final.reshape(nr * ki, nc * ki), parts


def _assign(
    labels: NDArray[np.int32], x: F32, y: F32, z: F32, views: dict[int, _View], plan: OrthoPlan
) -> NDArray[np.int32]:
    """Final image per point (flat arrays): the label where it sees the point, else the best image that does (:func:`_fallback`)."""
    final = np.full(x.shape[0], -1, np.int32)
    counts = np.bincount(labels + 1, minlength=1)
    for k in (int(i) for i in np.nonzero(counts[1:])[0]):
        if k not in views:
            continue
        group = np.flatnonzero(labels == k)
        view = views[k]
        # In chunks that stay in the CPU cache through the projection and the visibility test.
        for s in range(0, group.size, _CHUNK):
            idx = group[s : s + _CHUNK]
            u, v, frame, vis = view.see(x[idx], y[idx], z[idx])
            final[idx[frame & vis]] = k
    pending = np.flatnonzero(final < 0)
    if pending.size and views:
        best, _, _, _ = _fallback(x[pending], y[pending], z[pending], views, plan)
        final[pending] = best
    return final


def _fallback(
    px: F32, py: F32, pz: F32, views: dict[int, _View], plan: OrthoPlan, cells: _PendingCells | None = None
) -> tuple[NDArray[np.int32], F32, F32, BoolArray]:
    """The image of points their labelled image does not see: (image or -1, u, v, occluded).

    Points try the other candidates in order of their view cost at that point (so the
    choice depends on the point alone, not on the tile), testing visibility only as
    far as needed. Points no candidate sees unoccluded take the candidate they are least
    hidden from among those that have them in frame; ``occluded`` flags those hidden by
    more than ``fill_hidden_m``. With ``cells`` (the seam cells the points lie in), the
    points of cells an image certainly has off its frame are not projected into it (most
    of the points off the flight's edge).
    """
    m = px.shape[0]
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
        if sel.size and cells is not None:
            sel = sel[~_off_frame(view.proj, cells)[cells.of[sel]]]
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
    # Hidden by a little (a rough canopy, DSM noise): the least hidden view is kept.
    # Hidden by more (a building): flagged, and filled from the ground around it.
    rest = (best < 0) & (first_frame >= 0)
    occluded = rest & (ff_behind > np.float32(plan.params.fill_hidden_m))
    best = np.where(rest, first_frame, best)
    u = np.where(rest, ff_uv[0], best_uv[0])
    v = np.where(rest, ff_uv[1], best_uv[1])
    return best, u, v, occluded


def _lift_pits(
    best: NDArray[np.int32], bu: F32, bv: F32, occ: BoolArray, x: F32, y: F32, z: F32,
    views: dict[int, _View], plan: OrthoPlan, origin: NDArray[np.float64],
) -> int:
    """Points of a fallback search that no image sees (``occ``), looked for again over the DSM's pits; returns how many were found.

    A point in a pit of the DSM, lower than the surface in every direction within
    ``pit_lift_m`` (most often a hole in a tree canopy's DSM, which the crowns
    around hide from every view), is lifted to the pit's rim (:func:`pit_rims`),
    and the first image in order of view cost that sees it at that height gives
    it: ``best``, ``bu``, ``bv`` and ``occ`` are updated in place. Ground beside a
    wall, in an alley or in a corner is open in some direction and keeps its
    height, so it is still filled. The rims depend on the DSM within
    ``pit_lift_m`` of a point alone, so tiles agree on them (as on the heights:
    up to how a DSM hole at the edge of the block read is filled).
    """
    sel = np.flatnonzero(occ)
    g = plan.dsm.grid
    r = max(1, int(round(plan.params.pit_lift_m / g.resolution)))
    # The rims are found on the DSM max-pooled by q (at most _PIT_RIM_CELLS cells per ray, so the
    # dilations cost q^3 less), and a point is lifted only when its whole pooled cell lies in a pit:
    # a pooled cell that holds any wall or roof cell is as high as they are and no pit. Blocks start
    # on multiples of q, so every tile pools the same cells.
    q = max(1, -(-r // _PIT_RIM_CELLS))
    wx, wy = x[sel].astype(np.float64) + origin[0], y[sel].astype(np.float64) + origin[1]
    bounds = (float(wx.min()), float(wy.min()), float(wx.max()), float(wy.max()))
    block = DsmWindow.covering(plan.dsm, bounds, pad=r + 2 * q + 3, align=q)
    col, row = block.grid.world_to_cell(wx, wy)
    h, w = block.z.shape
    rr = np.clip(np.rint(row), 0, h - 1).astype(np.intp)
    cc = np.clip(np.rint(col), 0, w - 1).astype(np.intp)
    pooled = block_reduce(block.z, q, np.fmax)
    qr, qc = rr // q, cc // q
    rims = pit_rims(pooled, -(-r // q))[qr, qc]
    # The point's own cell must lie in the pit: a point beside a wall, between a ground cell and a
    # roof cell, is not lifted by the roof's height.
    tol = np.float32(plan.params.occlusion_tolerance_m)
    zr = rims - np.float32(origin[2])
    lifted = np.flatnonzero((rims - pooled[qr, qc] > tol) & (zr > z[sel] + tol))
    if lifted.size == 0:
        return 0
    sel = sel[lifted]
    b2, u2, v2, occ2 = _fallback(x[sel], y[sel], zr[lifted], views, plan)
    seen = np.flatnonzero((b2 >= 0) & ~occ2)
    t = sel[seen]
    best[t], bu[t], bv[t], occ[t] = b2[seen], u2[seen], v2[seen], False
    return int(seen.size)


def pit_rims(z: F32, r: int) -> F32:
    """Per cell of a height grid: the lowest, over 8 directions, of the highest height within ``r`` cells along that direction.

    It equals the cell's own height unless every direction climbs above it within
    ``r`` cells (about ``r`` cells' length along the diagonals too): a pit, which
    gets the height of the lowest climb round it, its rim. A corridor, a corner or
    ground beside a wall stays at its height (a direction along or away from the
    walls never climbs). Eight dilations by one-sided line kernels: the axis ones are
    OpenCV's fast rectangular case, the diagonal ones cost one pass per cell of the line.
    """
    z = np.ascontiguousarray(z, dtype=np.float32)
    rd = max(1, int(round(r / math.sqrt(2.0))))
    out: F32 | None = None
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1)):
        # cv2.dilate: dst(p) = max over the kernel's cells k of src(p + k - anchor).
        if dx and dy:  # the diagonal line from the centre of a (2n+1)^2 kernel
            n = rd
            kernel = np.zeros((2 * n + 1, 2 * n + 1), np.uint8)
            steps = np.arange(n + 1)
            kernel[n + steps * dy, n + steps * dx] = 1
            anchor = (n, n)
        else:  # a row or column of ones anchored at the end the line starts from
            n = r
            kernel = np.ones((n + 1, 1) if dy else (1, n + 1), np.uint8)
            anchor = (0 if dx >= 0 else n, 0 if dy >= 0 else n)
        m = np.asarray(cv2.dilate(z, kernel, anchor=anchor, borderType=cv2.BORDER_REPLICATE), np.float32)
        out = m if out is None else np.minimum(out, m, out=out)
    assert out is not None
    return out


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
    # The seam cells over the tile (one cell per pixel when the seam grid is not made of
    # whole pixel blocks); their pixels are padded out to whole cells, window at (ro, co).
    h, w = window.height, window.width
    cells = _seam_cells(labels_map, plan.seam_grid, grid, window)
    if cells is None:
        xs, ys = grid.cell_centers(window)
        cells = (_seam_labels(labels_map, plan.seam_grid, xs, ys), 1, 0, 0)
    sub, ki, ro, co = cells
    padded = Window(window.col_off - co, window.row_off - ro, sub.shape[1] * ki, sub.shape[0] * ki)
    px_all, py_all, _, _ = _local_grid(grid, padded, origin)
    z_all = dsm.sample(grid, padded, p.edge_step_m) - np.float32(ground)
    lattice = _cell_lattice(grid, window, cells, dsm, p.edge_step_m, origin)
    final_all, cell_parts = _assign_cells(sub, lattice, z_all, px_all, py_all, ctx)
    final = final_all[ro : ro + h, co : co + w]
    # Pixels their labelled image does not see: the best image that does (raster order).
    pending = np.flatnonzero(final < 0)
    picks: dict[int, list[tuple[I64, F32, F32]]] = {}
    occluded = np.zeros(0, np.int64)
    n_lifted = 0
    unfilled = pending  # pixels no image has
    if pending.size and ctx:
        pr, pc = np.divmod(pending, w)
        pcells = _PendingCells.build(lattice, z_all.reshape(sub.shape[0], ki, sub.shape[1], ki), (pr + ro) // ki, (pc + co) // ki)
        fx, fy, fz = px_all[co + pc], py_all[ro + pr], z_all[ro + pr, co + pc]
        best, bu, bv, occ = _fallback(fx, fy, fz, ctx, plan, pcells)
        if occ.any() and p.pit_lift_m > 0:
            n_lifted = _lift_pits(best, bu, bv, occ, fx, fy, fz, ctx, plan, origin)
        final[pr, pc] = best
        unfilled = pending[best < 0]
        occluded = pending[occ]
        for k in (int(j) for j in np.unique(best[best >= 0])):
            take = np.flatnonzero(best == k)
            picks[k] = [(pending[take], bu[take], bv[take])]
    # Each image's pixels' extent in the window (rows, cols), for the blending grid block it samples.
    extent: dict[int, tuple[int, int, int, int]] = {}
    for k, chunks in cell_parts.items():
        rows = np.concatenate([c.rows for c in chunks]) * ki - ro
        cols = np.concatenate([c.cols for c in chunks]) * ki - co
        extent[k] = (max(0, int(rows.min())), min(h - 1, int(rows.max()) + ki - 1), max(0, int(cols.min())), min(w - 1, int(cols.max()) + ki - 1))
    for k, parts in picks.items():
        idx = parts[0][0]
        r0, r1, c0, c1 = int(idx[0]) // w, int(idx[-1]) // w, int((idx % w).min()), int((idx % w).max())
        if k in extent:
            e = extent[k]
            r0, r1, c0, c1 = min(r0, e[0]), max(r1, e[1]), min(c0, e[2]), max(c1, e[3])
        extent[k] = (r0, r1, c0, c1)

    # -- coarse grid: the same choice, then the low-band corrections --------------------
    llx, lly, lwx, lwy = _local_grid(low_grid, Window(0, 0, low_w, low_h), origin)
    zl = (dsm.sample(low_grid, Window(0, 0, low_w, low_h), p.edge_step_m) - np.float32(ground)).ravel()
    LX = np.broadcast_to(llx[None, :], (low_h, low_w)).ravel()
    LY = np.broadcast_to(lly[:, None], (low_h, low_w)).ravel()
    seam_low = _seam_labels(labels_map, plan.seam_grid, lwx, lwy).ravel()
    low_final = _assign(seam_low, LX, LY, zl, ctx, plan)
    involved = sorted(set(extent) | {int(k) for k in np.unique(low_final) if k >= 0})
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
    dr, dc = window.row_off - ext.row_off, window.col_off - ext.col_off
    for k, (r0, r1, c0, c1) in extent.items():
        needed = ((r0 + dr) // f - 1, (r1 + dr) // f + 2, (c0 + dc) // f - 1, (c1 + dc) // f + 2)
        deltas[k] = correction(blended, covered, low_cols[pos[k]], low_valid[pos[k]], sigma_low, needed)

    # -- samples plus corrections, image by image ----------------------------------------
    # Coarse-grid positions of the padded pixels' rows and columns.
    rows_in_ext = ((np.arange(padded.height) + (padded.row_off - ext.row_off) + 0.5) / f - 0.5).astype(np.float32)
    cols_in_ext = ((np.arange(padded.width) + (padded.col_off - ext.col_off) + 0.5) / f - 0.5).astype(np.float32)
    # ... and of the seam cells' corners (pixel edges every ki pixels).
    corner_cy = ((np.arange(sub.shape[0] + 1) * ki + (padded.row_off - ext.row_off)) / f - 0.5).astype(np.float32)
    corner_cx = ((np.arange(sub.shape[1] + 1) * ki + (padded.col_off - ext.col_off)) / f - 0.5).astype(np.float32)
    rgb_all = np.zeros((padded.height, padded.width, 3), np.uint8)
    rgb_cells = rgb_all.reshape(sub.shape[0], ki, sub.shape[1], ki, 3)
    for k, chunks in cell_parts.items():
        factors = ctx[k].corner_factors(lattice, np.ascontiguousarray(deltas[k], dtype=np.float32), corner_cx, corner_cy)
        for c in chunks:
            # Every pixel of the cells, seen or not: the ones the image does not see are
            # overwritten below (or cleared), which costs less than compressing the chunk.
            n = c.rows.shape[0]
            rgb_cells[c.rows, :, c.cols, :] = ctx[k].render_cells(c, lattice, factors).reshape(n, ki, ki, 3)
    rgb = rgb_all[ro : ro + h, co : co + w]
    if unfilled.size:
        rgb[unfilled // w, unfilled % w] = 0
    if pending.size:
        for k, parts in picks.items():
            field = np.ascontiguousarray(deltas[k], dtype=np.float32)
            for idx, u, v in parts:
                r, cidx = np.divmod(idx, w)
                rgb[r, cidx] = ctx[k].render_points(u, v, cols_in_ext[co + cidx], rows_in_ext[ro + r], field)
    n_occluded = int(occluded.size)
    if n_occluded and p.fill_occluded:
        # Ground no image sees (behind a building at the flight's edge): the smooth colour of
        # the ground around it rather than the wall that hides it. Computed on the coarse grid
        # with its margin, so it does not depend on where the tile borders fall.
        r, cidx = np.divmod(occluded, w)
        fill = _sample_field(fill_field(blended, covered, sigma_low), cols_in_ext[co + cidx], rows_in_ext[ro + r])
        rgb[r, cidx] = cv2.add(fill, np.zeros_like(fill), dtype=cv2.CV_8U).reshape(-1, 3)
    mask = (final >= 0).reshape(h, w)
    blocks = ws.save_ortho_tile(window, rgb.reshape(h, w, 3), mask, plan.blocks)
    used = tuple(sorted({k for k, chunks in cell_parts.items() if any(c.any_good for c in chunks)} | set(picks)))
    return TileResult(window, str(ws.ortho_tile_path(window.row_off, window.col_off)), blocks, int(mask.sum()), n_occluded, used, n_lifted)


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


# Points per chunk of the per-point work (a few hundred kB per array: they stay in the CPU cache).
_CHUNK = 32768
# Points per row when 1-D samples go through cv2.remap.
_REMAP_COLS = 4096
# The longest side of a map given to cv2.remap (it takes less than 32767).
_REMAP_MAX = 32000
# Cell-lattice projection (CellLattice): pixels farther than _DZ_MAX (m) from the interpolated
# surface, and cells whose corners span more than _RANGE_MAX (m), are projected exactly;
# du/dz comes from central differences +-_DZ_STEP (m).
_DZ_MAX = 0.25
_RANGE_MAX = 2.0
_DZ_STEP = 0.5
# Cells per ray (at most) on which pit rims are looked for (_lift_pits): the DSM is max-pooled to
# keep the rays this short.
_PIT_RIM_CELLS = 16
# Margin by which a seam cell's projected corners must clear the frame for the cell to be ruled
# out of an image without projecting its points: _FRAME_SLACK working-image pixels plus
# _FRAME_BEND times the size of their box (a bound on the lens distortion's bending of the
# hull's edges: about 0.75 |k1| r l of an edge of normalised length l at radius r).
_FRAME_SLACK = 2.0
_FRAME_BEND = 0.5
# Spacing (working-image pixels) of the lattice on which an image's brightness field is evaluated
# (a low-order polynomial over the frame: bilinear between lattice points errs by (32 px)^2 / 8
# times its curvature, 2e-5 of the factor on the bench flight; the lattice of every image of a
# flight stays small enough to be kept per worker).
_FIELD_STEP = 32


@functools.lru_cache(maxsize=128)
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
    return _load_zbuffer_cached(path, _stamp(path), cell)


def _load_low(path: str) -> NDArray[Any]:
    """An image's blending copy from its file, kept per worker process while the file is unchanged.

    Small (the image reduced by the blending factor), but read by every tile the image reaches.
    """
    return _load_low_cached(path, _stamp(path))


def _map_npy(path: str) -> NDArray[Any]:
    """A .npy file memory-mapped read-only, as ``np.load(path, mmap_mode="r")``.

    A tile maps each of its images anew (a kept mapping would hold every page it read), but
    the header is parsed once per worker process while the file is unchanged: np.load's
    header parsing costs several times the mapping itself.
    """
    shape, dtype, offset = _npy_layout(path, _stamp(path))
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)


@functools.lru_cache(maxsize=256)
def _npy_layout(path: str, stamp: tuple[int, int, int]) -> tuple[tuple[int, ...], np.dtype[Any], int]:
    """(shape, dtype, data offset) of a C-ordered .npy file."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(fh)
        if fortran:
            raise ValueError(f"{path}: a Fortran-ordered array, not an image cache")
        return tuple(shape), np.dtype(dtype), fh.tell()


def _stamp(path: str) -> tuple[int, int, int]:
    st = os.stat(path)
    return (st.st_ino, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=24)
def _load_zbuffer_cached(path: str, stamp: tuple[int, int, int], cell: float) -> ZBuffer:
    depth = np.load(path)
    depth.flags.writeable = False
    return ZBuffer(depth, cell)


@functools.lru_cache(maxsize=64)
def _load_low_cached(path: str, stamp: tuple[int, int, int]) -> NDArray[Any]:
    data = np.load(path)
    data.flags.writeable = False
    return np.asarray(data)


def _sample_field(field: F32, cx: F32, cy: F32) -> F32:
    """Bilinear samples (n, 3) of a coarse float field at fractional cell coordinates."""
    return sample_image(field.astype(np.float32), cx, cy)
