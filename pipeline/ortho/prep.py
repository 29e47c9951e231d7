"""Per-image preparation (two Dask tasks per image, the second on the first's result).

:func:`decode_view` decodes the image once, at the working scale (about one image
pixel per ortho pixel; JPEG DCT reduction when the ortho is coarser than the
images), and caches it as a raw .npy so tile tasks read only the crops they need
(memory-mapped); it also caches the image reduced to the blending grid and
measures its sharpness. It needs only the ortho grid's resolution, so it runs
while the client still pools the occluder DSM and samples the seam grid's heights.
:func:`prepare_image` then builds the image's z-buffer and samples it on the
flight-level seam grid: which seam cells it sees (in frame, not occluded by the
DSM), its view cost there and its colour.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from drone_io.image_pixels import exact_reduction, read_image_rgb
from models.errors import InputError
from models.raster import GridSpec, Window
from pipeline.ortho.dsm import HeightRange, floor_heights
from pipeline.ortho.exposure import normalized_xy
from pipeline.ortho.geometry import LocalProjector, inside_image
from pipeline.ortho.plan import ImageView, OrthoPlan, window_bounds, window_covering
from pipeline.ortho.seams import SeamInput
from pipeline.ortho.select import sharpness, view_cost
from pipeline.ortho.visibility import Occluders, build_zbuffer, occluder_bounds, occluder_cells, occluders_from_cells, visible, zbuffer_cell
from pipeline.workspace import Workspace

U8 = NDArray[np.uint8]
F32 = NDArray[np.float32]


def _file_key(path: str) -> tuple[str, int, int, int]:
    """A file's identity for the per-worker caches: a rewritten file (a new run) is another key."""
    st = os.stat(path)
    return (path, st.st_ino, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=2)
def _height_range(key: tuple[str, int, int, int], crs: str) -> HeightRange:
    with np.load(key[0]) as data:
        g = data["grid"]
        grid = GridSpec(crs, float(g[0]), float(g[1]), float(g[2]), int(g[3]), int(g[4]))
        return HeightRange(grid, data["z_min"], data["z_max"])


def load_height_range(plan: OrthoPlan) -> HeightRange:
    """The flight's coarse DSM height range, read once per worker process (every image reads it)."""
    return _height_range(_file_key(plan.height_range), plan.grid.crs)


# Occluder cells are found per block of this many occluder-grid cells a side, kept per worker.
_OCC_BLOCK = 512


@dataclass(frozen=True, eq=False)
class _OccluderCells:
    """The cells of one block that stand above their ground: grid row and column, height, jump."""

    rows: NDArray[np.int32]
    cols: NDArray[np.int32]
    z: F32
    jump: F32  # height above the lowest of the 3 x 3 neighbours


@functools.lru_cache(maxsize=64)
def _occluder_block(
    pooled_key: tuple[str, int, int, int], hr_key: tuple[str, int, int, int], og: GridSpec, br: int, bc: int, tol: float, fill: float
) -> _OccluderCells:
    """Occluder cells of block (br, bc) of the occluder grid, from the pooled DSM and the flight's floor.

    Every image reads the blocks under its footprint; neighbouring images share most of
    them, so each block is found once per worker instead of once per image. Memory stays
    bounded by the cache size, whatever the flight's size.
    """
    # Mapped for this block alone: a mapping kept open would hold every page read so far.
    pooled = np.load(pooled_key[0], mmap_mode="r")
    hr = _height_range(hr_key, og.crs)
    H, W = pooled.shape
    r0, c0 = br * _OCC_BLOCK, bc * _OCC_BLOCK
    r1, c1 = min(H, r0 + _OCC_BLOCK), min(W, c0 + _OCC_BLOCK)
    # One cell of margin (where the grid has it) so the 3 x 3 foot is whole at the block's edge.
    er0, ec0, er1, ec1 = max(0, r0 - 1), max(0, c0 - 1), min(H, r1 + 1), min(W, c1 + 1)
    win = Window(ec0, er0, ec1 - ec0, er1 - er0)
    z = np.array(pooled[win.slices], dtype=np.float32)
    del pooled
    xs, ys = og.cell_centers(win)
    floor = floor_heights(hr, xs, ys, fill)
    missing = np.isnan(z)
    if missing.any():
        z[missing] = floor[missing]  # no data: no occluder
    rows, cols, zk, jump = occluder_cells(z, floor, tol, Window(c0 - ec0, r0 - er0, c1 - c0, r1 - r0))
    cells = _OccluderCells((rows + er0).astype(np.int32), (cols + ec0).astype(np.int32), zk, jump)
    for a in (cells.rows, cells.cols, cells.z, cells.jump):
        a.flags.writeable = False
    return cells


def load_occluders(plan: OrthoPlan, hr: HeightRange, bounds: tuple[float, float, float, float], origin: NDArray[np.float64]) -> Occluders:
    """Occluders (local frame) from the flight's max-pooled DSM over ``bounds``.

    The same samples as :func:`occluders_from_grid` on the window (the window's border cells
    left out, their neighbourhood being cut), gathered from per-worker blocks of occluder cells.
    """
    og = plan.occluder_grid
    r = og.resolution
    owin = window_covering(og, (bounds[0] - r, bounds[1] - r, bounds[2] + r, bounds[3] + r))
    if owin.width <= 2 or owin.height <= 2:
        e = np.zeros(0, np.float32)
        return Occluders(e, e, e, r)
    # The window's inner cells.
    ir0, ic0 = owin.row_off + 1, owin.col_off + 1
    ir1, ic1 = owin.row_off + owin.height - 1, owin.col_off + owin.width - 1
    keys = (_file_key(plan.occluders), _file_key(plan.height_range))
    fill = float(origin[2])
    tol = plan.params.occlusion_tolerance_m
    parts = []
    for br in range(ir0 // _OCC_BLOCK, (ir1 - 1) // _OCC_BLOCK + 1):
        for bc in range(ic0 // _OCC_BLOCK, (ic1 - 1) // _OCC_BLOCK + 1):
            cells = _occluder_block(*keys, og, br, bc, tol, fill)
            sel = (cells.rows >= ir0) & (cells.rows < ir1) & (cells.cols >= ic0) & (cells.cols < ic1)
            parts.append((cells.rows[sel], cells.cols[sel], cells.z[sel], cells.jump[sel]))
    rows = np.concatenate([p[0] for p in parts])
    cols = np.concatenate([p[1] for p in parts])
    oxs, oys = og.cell_centers(owin)
    x = (oxs - origin[0]).astype(np.float32)[cols - owin.col_off]
    y = (oys - origin[1]).astype(np.float32)[rows - owin.row_off]
    z = np.concatenate([p[2] for p in parts]) - np.float32(origin[2])
    jump = np.concatenate([p[3] for p in parts])
    return occluders_from_cells(x, y, z, jump, r, tol)


def working_scale(view: ImageView, resolution: float, ground_z: float) -> float:
    """Image scale (<= 1) at which one image pixel is about one ortho pixel (``resolution``) at nadir."""
    height = float(view.center[2]) - ground_z
    if height <= 0:
        return 1.0
    image_gsd = height / view.camera.focal_px
    return float(min(1.0, image_gsd / resolution))


def _resize(img: U8, width: int, height: int) -> U8:
    if img.shape[1] == width and img.shape[0] == height:
        return img
    return np.asarray(cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA), dtype=np.uint8)


def sample_image(img: NDArray[Any], u: F32, v: F32, interpolation: int = cv2.INTER_LINEAR) -> F32:
    """Colours (n, 3) of an in-memory image at 1-D pixel coordinates (pixel-centre convention)."""
    n = u.shape[0]
    if n == 0:
        return np.zeros((0, 3), np.float32)
    cols = 4096
    rows = -(-n // cols)
    mu = np.full(rows * cols, -1.0, np.float32)
    mv = np.full(rows * cols, -1.0, np.float32)
    mu[:n] = u
    mv[:n] = v
    out = cv2.remap(img, mu.reshape(rows, cols), mv.reshape(rows, cols), interpolation, borderMode=cv2.BORDER_REPLICATE)
    return np.asarray(out.reshape(rows * cols, -1)[:n], dtype=np.float32)


def decode_view(view: ImageView, resolution: float, ground_z: float, low_factor: int, ws: Workspace) -> ImageView:
    """Dask task: decode the image at the working scale and cache it, with its blending-grid copy.

    Needs only the ortho grid's ``resolution`` and the flight's ground height, so the stage
    submits it before the occluder DSM and the seam grid exist and pools and samples those on
    the client while the images decode; :func:`prepare_image` then takes the returned view.
    """
    cam = view.camera
    scale = working_scale(view, resolution, ground_z)
    reduce = exact_reduction(cam.width, cam.height, int(math.floor(1.0 / scale + 1e-6)))
    img = read_image_rgb(Path(view.path), reduce)
    if img.shape[1] * reduce != cam.width or img.shape[0] * reduce != cam.height:
        raise InputError(
            f"image {view.path} decodes to {img.shape[1] * reduce}x{img.shape[0] * reduce} px but its camera "
            f"model says {cam.width}x{cam.height}; rerun from ingest so the models match the files"
        )
    work_w = max(1, int(round(cam.width * scale)))
    work_h = max(1, int(round(cam.height * scale)))
    work = _resize(img, work_w, work_h)
    del img
    f = max(1, low_factor)
    low_w, low_h = max(1, int(round(work_w / f))), max(1, int(round(work_h / f)))
    low = _resize(work, low_w, low_h)
    work_path = ws.ortho_image_cache_path(view.name, "work")
    low_path = ws.ortho_image_cache_path(view.name, "low")
    ws.save_ortho_array(work_path, work)
    ws.save_ortho_array(low_path, low)
    return dataclasses.replace(
        view,
        work_cache=str(work_path),
        work_size=(work_w, work_h),
        low_cache=str(low_path),
        low_size=(low_w, low_h),
        sharpness=sharpness(work),
    )


def prepare_image(view: ImageView, plan: OrthoPlan, ws: Workspace) -> tuple[ImageView, SeamInput]:
    """Dask task: the z-buffer of an image decoded by :func:`decode_view` and its seam-grid samples.

    Returns the filled view and the image's seam samples (small: one value per seam cell of
    its footprint), which go straight to the client instead of through a file.
    """
    cam = view.camera
    ground = plan.dsm.fill_height
    work_w, work_h = view.work_size
    low_w, low_h = view.low_size

    # -- samples on the seam grid -------------------------------------------------------
    sg = plan.seam_grid
    win = window_covering(sg, view.footprint)
    filled = dataclasses.replace(view, seam_window=win)
    if win.width == 0 or win.height == 0:
        empty = SeamInput(win, np.zeros((0, 0), bool), np.zeros((0, 0), np.float32), np.zeros((0, 0, 3), np.uint8), np.zeros((0, 0, 2), np.float32))
        return filled, empty
    seam_scale = min(1.0, (work_w / cam.width) * plan.grid.resolution / sg.resolution)
    seam_w, seam_h = max(1, int(round(cam.width * seam_scale))), max(1, int(round(cam.height * seam_scale)))
    # The blending copy itself when the sizes agree (they do at the default factors and the flight
    # GSD); reduced further from it when the seam cells are coarser (an ortho finer than the flight
    # GSD): a few kB instead of the working image, whose fractional area resize costs ~6 ms.
    if seam_w <= low_w and seam_h <= low_h:
        seam_img = _resize(np.load(view.low_cache), seam_w, seam_h)
    else:
        seam_img = _resize(np.load(view.work_cache), seam_w, seam_h)
    hr = load_height_range(plan)
    region = window_bounds(sg, win)
    z_lo, z_hi = hr.range_in(region, ground)
    x_mid, y_mid = 0.5 * (region[0] + region[2]), 0.5 * (region[1] + region[3])
    origin = np.array([x_mid, y_mid, ground])
    # Visibility at the working scale against the flight's occluder DSM (the same test as the
    # tiles make), so the coarse seam cells are not made blind around every building.
    work_cam = filled.work_camera
    proj = LocalProjector(work_cam, view.pose, origin)
    tol = plan.params.occlusion_tolerance_m
    occ = load_occluders(plan, hr, occluder_bounds(region, view.center, z_lo, z_hi), origin)
    zbuf = build_zbuffer(proj, occ, zbuffer_cell(occ.spacing, work_cam.focal_px, view.min_depth))
    # The tiles test their cells against this same buffer: it holds every occluder between the
    # footprint and the camera, so one buffer per image serves every tile, the same way.
    zbuf_path = ws.ortho_image_cache_path(view.name, "zbuf")
    ws.save_ortho_array(zbuf_path, zbuf.depth)
    filled = dataclasses.replace(filled, zbuf_cache=str(zbuf_path), zbuf_cell=zbuf.cell)
    z = np.asarray(np.load(plan.seam_heights, mmap_mode="r")[win.slices], dtype=np.float32)
    xs, ys = sg.cell_centers(win)
    X = np.broadcast_to((xs - x_mid).astype(np.float32)[None, :], z.shape)
    Y = np.broadcast_to((ys - y_mid).astype(np.float32)[:, None], z.shape)
    Z = (z - ground).astype(np.float32)
    u, v, d, ok = proj.project(X, Y, Z)
    valid = ok & inside_image(u, v, work_w, work_h, 0.5) & visible(zbuf, u, v, d, work_cam.focal_px, tol)
    cost = view_cost(proj.center_local, cam.focal_px, X, Y, Z, plan.gsd_m, plan.params.view)
    nx, ny = normalized_xy(u, v, work_cam.cx, work_cam.cy, work_w, work_h)
    nxy = np.stack([np.where(valid, nx, 0.0), np.where(valid, ny, 0.0)], axis=-1).astype(np.float32)
    # Colours from the image reduced to the seam grid's cell size.
    u = (u + np.float32(0.5)) * np.float32(seam_w / work_w) - np.float32(0.5)
    v = (v + np.float32(0.5)) * np.float32(seam_h / work_h) - np.float32(0.5)
    rgb = np.zeros(z.shape + (3,), np.uint8)
    if valid.any():
        cols = sample_image(seam_img, u[valid], v[valid])
        rgb[valid] = np.clip(np.rint(cols), 0, 255).astype(np.uint8)
    return filled, SeamInput(win, valid, np.where(valid, cost, np.float32(np.inf)).astype(np.float32), rgb, nxy)
