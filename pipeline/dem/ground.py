"""Ground classification of a point cloud: SMRF (Pingel et al. 2013) or cloth simulation, plus buildings.

Classes follow ASPRS: 1 unclassified, 2 ground, 6 building, 7 low point (noise).

The filters work on a *low surface*: a low percentile of the point heights per
cell (``SmrfOptions.cell``, 1 m), with the 10-90 % spread of the heights in the
cell. The DEM stage builds it once for the whole flight (``LowSurface``: 4 MB per
km² at 1 m), so the ground surface does not depend on how the cloud is tiled.

SMRF: a progressive morphological opening with disks of growing radius marks
cells that rise above the opened surface by more than ``slope * radius`` as
objects. The opening also removes raised natural terrain narrower than twice the
window (a lawn on a bench above a lake shore, a ridge between a forest floor and
a beach), so ground then *grows back* from the cells SMRF kept: an object cell
joins the ground when an 8-neighbour that is ground lies within ``grow_slope``
rise over run of it, its own points are not spread over more than
``grow_max_spread`` (vegetation is), and the opening first flagged it at a radius
of at least half ``grow_min_width`` (the radius that flags a cell is about half
the width of its object: a car goes at 1-2 m, a 30 m wide bench at 15 m). Walls
and tree crowns are steps that growth does not climb. The ground cells, interpolated, form a provisional
ground surface; a progressive closing then finds pits (clusters of stray points
under the ground), which are dropped before the final interpolation. A point is
ground when it lies within ``threshold + scalar * local slope`` of that surface.

Buildings are non-ground points more than ``min_height`` above that surface in
connected, smooth (roof-like) regions of at least ``min_area``. Points below the
surface by more than the ground test allows are low noise (stereo mismatches);
the DEMs leave them out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from models.raster import GridSpec, Window
from pipeline.dem.grid import cell_index, cell_percentiles, interpolate_fill, nearest_fill

FloatArray = NDArray[np.float64]
F32 = NDArray[np.float32]
BoolArray = NDArray[np.bool_]

UNCLASSIFIED = 1
GROUND = 2
BUILDING = 6
LOW_NOISE = 7

# A pit deeper than this (plus the slope allowance of its width) is a cluster of low outliers (m).
PIT_DEPTH = 2.0


@dataclass(frozen=True)
class SmrfOptions:
    """SMRF parameters (ODM's defaults)."""

    cell: float = 1.0  # minimum-surface cell size (m)
    slope: float = 0.15  # terrain slope (rise over run) that is still ground
    window: float = 18.0  # largest opening radius (m): objects up to twice this wide are removed
    threshold: float = 0.5  # elevation threshold (m) of the final point test
    scalar: float = 1.25  # elevation scalar: extra tolerance per unit of local slope
    cell_percentile: float = 0.0  # 0: the minimum per cell (lidar); e.g. 10: a robust low surface
    grow_slope: float = 0.5  # ground grows back into objects across steps up to this rise over run (0: off)
    grow_max_spread: float = 0.5  # ... but not into cells whose 10-90 % point heights spread more (m)
    grow_min_width: float = 12.0  # ... nor into objects narrower than this (m): cars, tree crowns, sheds


@dataclass(frozen=True)
class BuildingOptions:
    """When non-ground points count as a building."""

    min_height: float = 2.0  # above the ground surface (m)
    min_area: float = 12.0  # footprint (m^2)
    cell: float = 0.5  # grid cell for the footprint test (m)
    max_roughness: float = 0.10  # median RMS residual of local planes inside the footprint (m): roofs are planar
    plane_window: int = 5  # cells of the local plane fits (2.5 m at 0.5 m cells)


@dataclass(frozen=True, eq=False)
class GroundSurface:
    """A ground surface on a grid, with bilinear lookup."""

    grid: GridSpec
    z: F32  # (H, W), no NaN

    def sample(self, x: FloatArray, y: FloatArray) -> FloatArray:
        col, row = self.grid.world_to_cell(x, y)
        col = np.clip(col, 0, self.grid.width - 1)
        row = np.clip(row, 0, self.grid.height - 1)
        return np.asarray(ndimage.map_coordinates(self.z, [row, col], order=1, mode="nearest"), dtype=np.float64)

    def slope(self) -> F32:
        gy, gx = np.gradient(self.z.astype(np.float64), self.grid.resolution)
        return np.hypot(gx, gy).astype(np.float32)


def _grid_for(xyz: FloatArray, cell: float, crs: str = "") -> GridSpec:
    return GridSpec.covering(crs, float(xyz[:, 0].min()), float(xyz[:, 1].min()), float(xyz[:, 0].max()) + 1e-6, float(xyz[:, 1].max()) + 1e-6, cell)


# The upper percentile of a cell's heights for its spread (the lower one is the low surface's).
SPREAD_PERCENTILE = 90.0


@dataclass(frozen=True, eq=False)
class LowSurface:
    """What the ground filters see of a cloud: per cell a low height and the spread of the heights above it."""

    grid: GridSpec
    z: F32  # low percentile (``SmrfOptions.cell_percentile``) of the point heights; NaN: no points
    spread: F32  # 90th percentile minus ``z`` (m); NaN: no points


def low_surface_cells(grid: GridSpec, window: Window, xyz: FloatArray, percentile: float) -> tuple[F32, F32]:
    """The low surface's ``z`` and ``spread`` in ``window`` of ``grid``; exact for every cell whose points are all in ``xyz``.

    Lidar SMRF uses the minimum (``percentile`` 0). Photogrammetric clouds have stray low points
    in many cells, and a minimum surface full of such dips makes the morphological filter flag
    open ground as objects, so the DEM stage passes a low percentile instead.
    """
    (low, high), _ = cell_percentiles(grid, window, xyz, (percentile, SPREAD_PERCENTILE))
    return low, (high - low).astype(np.float32)


def low_surface(xyz: FloatArray, cell: float, percentile: float, crs: str = "") -> LowSurface:
    """The low surface of a whole point set on a grid covering it (the eager path)."""
    grid = _grid_for(xyz, cell, crs)
    z, spread = low_surface_cells(grid, Window(0, 0, grid.width, grid.height), xyz, percentile)
    return LowSurface(grid, z, spread)


def _disk(radius: int) -> NDArray[np.uint8]:
    return np.asarray(cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)), dtype=np.uint8)


def _pits(z: F32, opts: SmrfOptions) -> BoolArray:
    """Cells that a progressive closing fills by more than a deep pit's allowance."""
    pits = np.zeros(z.shape, dtype=bool)
    last = z.astype(np.float32)
    for radius in range(1, int(math.ceil(opts.window / 2.0 / opts.cell)) + 1):
        closed = np.asarray(cv2.morphologyEx(last, cv2.MORPH_CLOSE, _disk(radius), borderType=cv2.BORDER_REPLICATE), dtype=np.float32)
        pits |= (closed - z) > PIT_DEPTH + opts.slope * radius * opts.cell
        last = closed
    return pits


def smrf_object_radius(z: F32, opts: SmrfOptions) -> NDArray[np.int16]:
    """SMRF on a filled low surface: for each cell the opening radius (in cells) that first flagged
    it as an object, i.e. lowered it by more than ``slope * radius`` (0: never, ground). The
    radius is about half the width of the object the cell belongs to."""
    first = np.zeros(z.shape, dtype=np.int16)
    last = z.astype(np.float32)
    for radius in range(1, int(math.ceil(opts.window / opts.cell)) + 1):
        opened = np.asarray(cv2.morphologyEx(last, cv2.MORPH_OPEN, _disk(radius), borderType=cv2.BORDER_REPLICATE), dtype=np.float32)
        first[((last - opened) > opts.slope * radius * opts.cell) & (first == 0)] = radius
        last = opened
    return first


def grow_ground(z: F32, ground: BoolArray, eligible: BoolArray, max_step: float) -> BoolArray:
    """``ground`` plus every ``eligible`` cell joined to it by a chain of 8-neighbours whose heights
    differ by at most ``max_step`` per cell of distance (diagonals: times sqrt 2).

    One connected-components pass over the graph of such links, so the result does not depend
    on the order of growth.
    """
    h, w = z.shape
    nodes = ground | eligible
    idx = np.arange(h * w).reshape(h, w)
    rows: list[NDArray[np.int64]] = []
    cols: list[NDArray[np.int64]] = []
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        a = (slice(0, h - dr), slice(max(0, -dc), w - max(0, dc)))
        b = (slice(dr, h), slice(max(0, dc), w - max(0, -dc)) if dc >= 0 else slice(0, w + dc))
        with np.errstate(invalid="ignore"):
            link = nodes[a] & nodes[b] & (np.abs(z[a] - z[b]) <= max_step * math.hypot(dr, dc))
        rows.append(idx[a][link])
        cols.append(idx[b][link])
    i = np.concatenate(rows)
    j = np.concatenate(cols)
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(h * w, h * w))
    _, labels = connected_components(graph, directed=False)
    seeded = np.zeros(labels.max() + 1, dtype=bool)
    seeded[labels[ground.ravel()]] = True
    return ground | (nodes & seeded[labels].reshape(h, w))


def smrf_cells(low: LowSurface, opts: SmrfOptions) -> BoolArray:
    """Ground cells of a low surface: SMRF's non-object cells, grown back into smooth objects at
    least ``grow_min_width`` wide (raised terrain) across gentle steps (see the module notes)."""
    valid = np.isfinite(low.z)
    if not valid.any():
        return valid
    z = nearest_fill(low.z) - float(np.nanmin(low.z))
    radius = smrf_object_radius(z, opts)
    ground = valid & (radius == 0)
    if opts.grow_slope > 0.0 and ground.any():
        min_radius = max(1, int(math.ceil(opts.grow_min_width / 2.0 / opts.cell)))
        with np.errstate(invalid="ignore"):
            eligible = valid & (radius >= min_radius) & (low.spread <= opts.grow_max_spread)
        ground = grow_ground(np.where(valid, z, np.nan).astype(np.float32), ground, eligible, opts.grow_slope * opts.cell)
    return ground


def surface_from_cells(low: LowSurface, ground: BoolArray, opts: SmrfOptions) -> GroundSurface:
    """The ground surface through the ground cells of a low surface, everything else interpolated.

    A progressive closing of the interpolated ground then finds pits (clusters of stray points
    under the ground, which the opening keeps); they are removed and the surface interpolated
    again. The closing runs on the ground without objects, so courtyards between buildings are
    not pits.
    """
    if not ground.any():
        filled = nearest_fill(low.z)
        return GroundSurface(low.grid, np.nan_to_num(filled, nan=0.0).astype(np.float32))
    base = float(np.nanmin(low.z[ground]))
    provisional = np.where(ground, low.z - base, np.nan).astype(np.float32)
    surface = interpolate_fill(provisional, ~np.isfinite(provisional))
    pits = _pits(surface, opts)
    if pits.any():
        provisional[pits] = np.nan
        surface = interpolate_fill(provisional, ~np.isfinite(provisional))
    return GroundSurface(low.grid, (nearest_fill(surface) + base).astype(np.float32))


def smrf_surface(xyz: FloatArray, opts: SmrfOptions) -> GroundSurface:
    """SMRF's provisional ground surface of a point set (the eager path: low surface, ground
    cells, interpolation)."""
    low = low_surface(xyz, opts.cell, opts.cell_percentile)
    return surface_from_cells(low, smrf_cells(low, opts), opts)


def ground_test(xyz: FloatArray, surface: GroundSurface, threshold: float, scalar: float) -> BoolArray:
    """Points within ``threshold + scalar * local slope`` of the ground surface."""
    zs = surface.sample(xyz[:, 0], xyz[:, 1])
    s = GroundSurface(surface.grid, surface.slope()).sample(xyz[:, 0], xyz[:, 1])
    return np.asarray(np.abs(xyz[:, 2] - zs) <= threshold + scalar * s)


def smrf_ground(xyz: FloatArray, opts: SmrfOptions) -> tuple[BoolArray, GroundSurface]:
    """Which points are ground, and the ground surface they were tested against."""
    surface = smrf_surface(xyz, opts)
    return ground_test(xyz, surface, opts.threshold, opts.scalar), surface


def csf_ground(xyz: FloatArray, cloth_resolution: float, class_threshold: float = 0.5) -> BoolArray:
    """Cloth simulation filter (Zhang et al. 2016) via the cloth-simulation-filter package."""
    import CSF

    csf = CSF.CSF()
    csf.params.bSloopSmooth = True
    csf.params.cloth_resolution = cloth_resolution
    csf.params.class_threshold = class_threshold
    csf.params.rigidness = 2
    origin = xyz.mean(axis=0)
    csf.setPointCloud((xyz - origin).astype(np.float64))
    ground = CSF.VecInt()
    other = CSF.VecInt()
    csf.do_filtering(ground, other, False)
    mask = np.zeros(len(xyz), dtype=bool)
    mask[np.asarray(ground, dtype=np.int64)] = True
    return mask


def ground_surface_from(xyz: FloatArray, ground: BoolArray, cell: float) -> GroundSurface:
    """A ground surface interpolated from the ground points (for CSF, which returns none)."""
    grid = _grid_for(xyz, cell)
    window = Window(0, 0, grid.width, grid.height)
    flat, inside = cell_index(grid, window, xyz[ground, 0], xyz[ground, 1])
    total = np.bincount(flat[inside], weights=xyz[ground, 2][inside], minlength=grid.width * grid.height)
    n = np.bincount(flat[inside], minlength=grid.width * grid.height)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (total / n).reshape(grid.height, grid.width).astype(np.float32)
    z = interpolate_fill(z, ~np.isfinite(z))
    return GroundSurface(grid, nearest_fill(z))


def csf_cells(low: LowSurface, cloth_resolution: float, opts: SmrfOptions) -> BoolArray:
    """Ground cells of a low surface by cloth simulation: one point per cell at its low height,
    pits (clusters of stray low points, which hold the inverted cloth up) left out."""
    valid = np.isfinite(low.z)
    if np.count_nonzero(valid) < 3:
        return valid
    base = float(np.nanmin(low.z))
    keep = valid & ~_pits((nearest_fill(low.z) - base).astype(np.float32), opts)
    xs, ys = low.grid.cell_centers(Window(0, 0, low.grid.width, low.grid.height))
    xx, yy = np.meshgrid(xs, ys)
    pts = np.column_stack([xx[keep], yy[keep], low.z[keep].astype(np.float64)])
    out = np.zeros(low.z.shape, dtype=bool)
    out[keep] = csf_ground(pts, cloth_resolution, opts.threshold)
    return out


def plane_residual(z: F32, valid: BoolArray, window: int) -> F32:
    """RMS residual of a least-squares plane fitted to the valid cells of each ``window`` x ``window``
    neighbourhood (NaN where fewer than 4 cells are valid). Roof facets fit planes; tree crowns,
    domed and patchy, do not."""
    h, w = z.shape
    wt = valid.astype(np.float64)
    zz = np.where(valid, z, 0.0).astype(np.float64)
    zz -= float(zz[valid].mean()) if valid.any() else 0.0
    zz = np.where(valid, zz, 0.0)

    def box(a: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.asarray(cv2.boxFilter(a, -1, (window, window), normalize=False, borderType=cv2.BORDER_CONSTANT), dtype=np.float64)

    # Cell indices centred on the grid keep the sums well conditioned.
    vv, uu = np.mgrid[0:h, 0:w].astype(np.float64)
    uu -= w / 2.0
    vv -= h / 2.0
    s_w, s_u, s_v = box(wt), box(wt * uu), box(wt * vv)
    s_uu, s_uv, s_vv = box(wt * uu * uu), box(wt * uu * vv), box(wt * vv * vv)
    s_z, s_uz, s_vz, s_zz = box(zz), box(zz * uu), box(zz * vv), box(zz * zz)
    M = np.stack([np.stack([s_w, s_u, s_v], -1), np.stack([s_u, s_uu, s_uv], -1), np.stack([s_v, s_uv, s_vv], -1)], -2)
    r = np.stack([s_z, s_uz, s_vz], -1)
    ok = s_w >= 4
    M[~ok] = np.eye(3)
    M[..., 1, 1] += 1e-3  # a tiny ridge: cells in one line give a slope-free fit, not a singular system
    M[..., 2, 2] += 1e-3
    p = np.linalg.solve(M, r[..., None])[..., 0]
    res = np.maximum(s_zz - np.einsum("...i,...i->...", p, r), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rms = np.sqrt(res / np.maximum(s_w, 1.0))
    return np.where(ok & valid, rms, np.nan).astype(np.float32)


def building_points(xyz: FloatArray, ground: BoolArray, surface: GroundSurface, opts: BuildingOptions) -> BoolArray:
    """Non-ground points on large, smooth regions well above the ground surface."""
    hag = xyz[:, 2] - surface.sample(xyz[:, 0], xyz[:, 1])
    cand = ~ground & (hag > opts.min_height)
    out = np.zeros(len(xyz), dtype=bool)
    if cand.sum() < 3:
        return out
    grid = _grid_for(xyz, opts.cell)
    window = Window(0, 0, grid.width, grid.height)
    flat, _ = cell_index(grid, window, xyz[:, 0], xyz[:, 1])
    size = grid.width * grid.height
    n = np.bincount(flat[cand], minlength=size)
    zsum = np.bincount(flat[cand], weights=xyz[cand, 2], minlength=size)
    occupied = (n > 0).reshape(grid.height, grid.width)
    with np.errstate(invalid="ignore", divide="ignore"):
        zc = np.where(n > 0, zsum / np.maximum(n, 1), np.nan).reshape(grid.height, grid.width).astype(np.float32)
    # Close one-cell gaps so a roof is one region.
    region = ndimage.binary_closing(occupied, structure=np.ones((3, 3), bool), iterations=1) | occupied
    labels, count = ndimage.label(region, structure=np.ones((3, 3), bool))
    if count == 0:
        return out
    rough = plane_residual(zc, occupied, opts.plane_window)
    idx = np.arange(1, count + 1)
    # Roughness inside the footprint: the rim holds wall points (tall buildings, oblique views).
    interior = ndimage.binary_erosion(region, structure=np.ones((3, 3), bool), iterations=2)
    occ_labels = np.where(occupied & interior & np.isfinite(rough), labels, 0)
    area = np.asarray(ndimage.sum(occupied, labels, idx)) * opts.cell**2
    inner_cells = np.asarray(ndimage.sum(occ_labels > 0, labels, idx))
    rough_med = np.where(inner_cells >= 4, np.asarray(ndimage.median(np.nan_to_num(rough), occ_labels, idx), dtype=np.float64), np.inf)
    is_building = np.zeros(count + 1, dtype=bool)
    is_building[1:] = (area >= opts.min_area) & (rough_med <= opts.max_roughness)
    point_label = labels.ravel()[flat]
    out = cand & is_building[point_label]
    return out


def below_ground(xyz: FloatArray, surface: GroundSurface, threshold: float, scalar: float) -> BoolArray:
    """Points below the ground surface by more than the ground test allows (``threshold`` +
    ``scalar`` x local slope): mismatches that nothing can stand on, ASPRS low noise."""
    zs = surface.sample(xyz[:, 0], xyz[:, 1])
    s = GroundSurface(surface.grid, surface.slope()).sample(xyz[:, 0], xyz[:, 1])
    return (xyz[:, 2] - zs) < -(threshold + scalar * s)


def classify(xyz: FloatArray, ground: BoolArray, buildings: BoolArray, low: BoolArray | None = None) -> NDArray[np.uint8]:
    """ASPRS class codes from the ground, building and low-noise masks."""
    cls = np.full(len(xyz), UNCLASSIFIED, dtype=np.uint8)
    cls[ground] = GROUND
    cls[buildings & ~ground] = BUILDING
    if low is not None:
        cls[low & ~ground] = LOW_NOISE
    return cls
