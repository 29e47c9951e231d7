"""Flight-level steps of the ortho stage, run once on the client: grid planning, gains, seams.

Memory stays bounded: the seam grid is capped (``seam_max_cells``), and the
per-image seam samples are small (one value per seam cell in the image's
footprint).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import numpy as np
from numpy.typing import NDArray

from models.errors import ReconstructionError
from models.footprint import footprint_bounds
from models.raster import GridSpec, Window
from models.reconstruction import Reconstruction
from pipeline.ortho.dsm import DsmSource, HeightRange
from pipeline.ortho.exposure import PairSamples, fit_shading, overlap_stats_many, shading_factor, solve_gains
from pipeline.ortho.plan import ImageView
from pipeline.ortho.seams import SeamInput, SeamSolver, SeamWeights, seam_geometry_cost, solve_labels
from pipeline.ortho.select import blur_penalties

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlightGeometry:
    """Where the flight looks and how finely."""

    gsd_m: float  # median height above ground / focal length (px)
    footprints: dict[str, tuple[float, float, float, float]]
    bounds: tuple[float, float, float, float]  # union of the footprints, within the DSM
    z_range: tuple[float, float]  # lowest and highest DSM height


def flight_geometry(rec: Reconstruction, dsm: DsmSource, hr: HeightRange) -> FlightGeometry:
    """GSD and footprints of every registered image, against the DSM's height range."""
    if not rec.images:
        raise ReconstructionError("the reconstruction has no registered images; the ortho needs at least one")
    finite_lo = hr.z_min[np.isfinite(hr.z_min)]
    finite_hi = hr.z_max[np.isfinite(hr.z_max)]
    z_lo = float(finite_lo.min()) if finite_lo.size else dsm.fill_height
    z_hi = float(finite_hi.max()) if finite_hi.size else dsm.fill_height
    heights = []
    footprints: dict[str, tuple[float, float, float, float]] = {}
    for name, img in sorted(rec.images.items()):
        cam = rec.cameras[img.camera_id]
        c = img.pose.center
        g_lo, g_hi = hr.range_in((c[0] - 1.0, c[1] - 1.0, c[0] + 1.0, c[1] + 1.0), dsm.fill_height)
        ground = 0.5 * (g_lo + g_hi) if g_hi - g_lo < 5.0 else dsm.fill_height
        heights.append((float(c[2]) - ground) / cam.focal_px)
        fp = footprint_bounds(cam, img.pose, z_lo, max(z_lo, min(z_hi, float(c[2]) - 1.0)))
        if fp is not None:
            footprints[name] = fp
    positive = [h for h in heights if h > 0]
    if not positive or not footprints:
        raise ReconstructionError(
            "no camera of the reconstruction is above the DSM; check that the DSM and the cameras share a CRS and height reference"
        )
    gsd = float(np.median(positive))
    left, bottom, right, top = dsm.grid.bounds
    fx0 = min(b[0] for b in footprints.values())
    fy0 = min(b[1] for b in footprints.values())
    fx1 = max(b[2] for b in footprints.values())
    fy1 = max(b[3] for b in footprints.values())
    bounds = (max(fx0, left), max(fy0, bottom), min(fx1, right), min(fy1, top))
    if bounds[0] >= bounds[2] or bounds[1] >= bounds[3]:
        raise ReconstructionError("the images' footprints do not overlap the DSM; check the DSM's CRS and extent")
    return FlightGeometry(gsd, footprints, bounds, (z_lo, z_hi))


def seam_grid_for(grid: GridSpec, gsd: float, cell_gsd: float, max_cells: int, min_cell_m: float = 0.0) -> GridSpec:
    """The flight-level seam grid: about ``cell_gsd`` x GSD (at least ``min_cell_m``) cells, coarser if the flight is large.

    Its cells are a whole number of ortho pixels and share the ortho grid's
    origin, so a tile expands labels to pixels by repetition.
    """
    area = grid.width * grid.height * grid.resolution**2
    want = max(cell_gsd * gsd, min_cell_m, grid.resolution, math.sqrt(area / max(1, max_cells)))
    k = max(1, int(math.ceil(want / grid.resolution - 1e-9)))
    return GridSpec(grid.crs, grid.x_min, grid.y_max, k * grid.resolution, -(-grid.width // k), -(-grid.height // k))


def _overlaps(inputs: list[SeamInput]) -> list[tuple[int, int, tuple[slice, slice], tuple[slice, slice]]]:
    """Pairs of images whose seam windows overlap, with the shared part in each one's arrays."""
    out = []
    for i in range(len(inputs)):
        a = inputs[i]
        for j in range(i + 1, len(inputs)):
            b = inputs[j]
            inter = a.window.intersection(b.window)
            if not (inter.width and inter.height):
                continue
            out.append((i, j, inter.relative_to(a.window).slices, inter.relative_to(b.window).slices))
    return out


@dataclass(frozen=True)
class SharedCells:
    """The cells each of some overlapping pairs of images both see, as flat indices into every
    image's seam samples laid end to end (image order, row-major): pair p's are rows
    ``bounds[p]:bounds[p + 1]`` of ``cell_i`` (in image ``i[p]``) and ``cell_j`` (in ``j[p]``)."""

    i: NDArray[np.int64]
    j: NDArray[np.int64]
    cell_i: NDArray[np.int64]
    cell_j: NDArray[np.int64]
    bounds: NDArray[np.int64]

    @classmethod
    def in_runs(cls, inputs: list[SeamInput], max_cells: int = 1 << 18) -> Iterator["SharedCells"]:
        """Every overlapping pair, in image order, in runs of about ``max_cells`` shared cells (a
        flight's overlaps hold millions: what is gathered per run stays a few MB); pairs that
        share no valid cell are left out."""
        start = np.concatenate([[0], np.cumsum([inp.valid.size for inp in inputs])])
        run: tuple[list[int], list[int], list[NDArray[np.int64]], list[NDArray[np.int64]]] = ([], [], [], [])
        cells = 0
        for i, j, sa, sb in _overlaps(inputs):
            a, b = inputs[i], inputs[j]
            rr, cc = np.nonzero(a.valid[sa] & b.valid[sb])
            if rr.size == 0:
                continue
            run[0].append(i)
            run[1].append(j)
            run[2].append(start[i] + (rr + sa[0].start) * a.window.width + (cc + sa[1].start))
            run[3].append(start[j] + (rr + sb[0].start) * b.window.width + (cc + sb[1].start))
            cells += rr.size
            if cells >= max_cells:
                yield cls._of(*run)
                run, cells = ([], [], [], []), 0
        if run[0]:
            yield cls._of(*run)

    @classmethod
    def _of(cls, pi: list[int], pj: list[int], cell_i: list[NDArray[np.int64]], cell_j: list[NDArray[np.int64]]) -> "SharedCells":
        bounds = np.concatenate([[0], np.cumsum([c.size for c in cell_i])]).astype(np.int64)
        return cls(np.array(pi, np.int64), np.array(pj, np.int64), np.concatenate(cell_i), np.concatenate(cell_j), bounds)


def deshaded(inp: SeamInput, coeffs: tuple[float, ...]) -> SeamInput:
    """The seam samples with the image's brightness field removed."""
    if inp.nxy is None or not any(coeffs):
        return inp
    f = shading_factor(inp.nxy[..., 0], inp.nxy[..., 1], coeffs)
    rgb = np.clip(inp.rgb.astype(np.float32) * f[..., None], 0, 255).astype(np.uint8)
    return replace(inp, rgb=rgb)


def _shading_samples(inputs: list[SeamInput]) -> list[PairSamples]:
    """About 400 cells of each overlap (of at least 16) between images with image positions."""
    with_xy = np.array([inp.nxy is not None for inp in inputs])
    nxy = np.concatenate([inp.nxy.reshape(-1, 2) if inp.nxy is not None else np.zeros((inp.valid.size, 2), np.float32) for inp in inputs])
    rgb = np.concatenate([inp.rgb.reshape(-1, 3) for inp in inputs])
    out = []
    for shared in SharedCells.in_runs(inputs):
        size = np.diff(shared.bounds)
        use = np.flatnonzero((size >= 16) & with_xy[shared.i] & with_xy[shared.j]).tolist()
        if not use:
            continue
        picks = [np.arange(shared.bounds[p], shared.bounds[p + 1], max(1, int(size[p]) // 400)) for p in use]
        bounds = np.concatenate([[0], np.cumsum([r.size for r in picks])])
        rows = np.concatenate(picks)
        samples = []
        for cells in (shared.cell_i[rows], shared.cell_j[rows]):
            c = rgb[cells]
            grey = ((c[:, 0].astype(np.float64) + c[:, 1] + c[:, 2]) / 3.0).astype(np.float32)  # the mean of the channels
            samples.append((grey, nxy[cells]))
        (grey_i, xy_i), (grey_j, xy_j) = samples
        for k, p in enumerate(use):
            s, e = bounds[k], bounds[k + 1]
            out.append(PairSamples(int(shared.i[p]), int(shared.j[p]), grey_i[s:e], grey_j[s:e], (xy_i[s:e, 0], xy_i[s:e, 1]), (xy_j[s:e, 0], xy_j[s:e, 1])))
    return out


def balance(views: list[ImageView], inputs: list[SeamInput], enabled: bool, shading: bool = True) -> tuple[list[ImageView], list[SeamInput]]:
    """Brightness fields (per image, with the lens fall-off per camera) and gains per image and
    channel, from the seam-grid overlaps.

    Returns the views with ``shading`` and ``gain`` set, and the seam samples with the
    fields removed (what the seam solve compares).
    """
    if not enabled or len(views) < 2:
        return views, inputs
    if shading:
        cams = sorted({v.camera.camera_id for v in views})
        camera_of = [cams.index(v.camera.camera_id) for v in views]
        coeffs = fit_shading(_shading_samples(inputs), camera_of, len(cams))
        for c in range(len(cams)):
            k = coeffs[camera_of.index(c)]
            logger.info("lens fall-off of %s: exp(%.3f r^2 + %.3f r^4)", cams[c], k[5], k[6])
        views = [replace(v, shading=tuple(float(t) for t in k)) for v, k in zip(views, coeffs)]
        inputs = [deshaded(inp, v.shading) for inp, v in zip(inputs, views)]
    rgb = np.concatenate([inp.rgb.reshape(-1, 3) for inp in inputs])
    stats = [
        s for shared in SharedCells.in_runs(inputs)
        for s in overlap_stats_many(shared.i, shared.j, rgb[shared.cell_i], rgb[shared.cell_j], shared.bounds)
    ]
    gains = solve_gains(len(views), stats)
    logger.info("exposure gains from %d overlaps: %.3f .. %.3f", len(stats), float(gains.min()), float(gains.max()))
    return [replace(v, gain=(float(g[0]), float(g[1]), float(g[2]))) for v, g in zip(views, gains)], inputs


def with_blur_penalties(views: list[ImageView]) -> list[ImageView]:
    pen = blur_penalties({v.name: v.sharpness for v in views})
    return [replace(v, blur_penalty=pen.get(v.name, 0.0)) for v in views]


def solve_seams(
    views: list[ImageView],
    inputs: list[SeamInput],
    seam_grid: GridSpec,
    z: NDArray[np.float32],
    weights: SeamWeights,
    view_sharp_weight: float,
    sweeps: int,
) -> NDArray[np.int32]:
    """Seam labels (image index per seam cell, -1 where no image sees the cell)."""
    prepared = []
    for v, inp in zip(views, inputs):
        g = np.asarray(v.gain, np.float32)
        rgb = np.clip(inp.rgb.astype(np.float32) * g, 0, 255).astype(np.uint8)
        cost = inp.cost + np.float32(view_sharp_weight * v.blur_penalty)
        prepared.append(SeamInput(inp.window, inp.valid, cost.astype(np.float32), rgb, inp.nxy))
    geo = seam_geometry_cost(z, seam_grid.resolution, weights)
    solver = solve_labels(seam_grid.shape, prepared, geo, seam_grid.resolution, weights, sweeps)
    if logger.isEnabledFor(logging.INFO):  # the best-view start's energy is for the log alone
        e0 = SeamSolver(seam_grid.shape, prepared, geo, seam_grid.resolution, weights).energy()
        logger.info("seam solve: energy %.1f -> %.1f on %d x %d cells", e0, solver.energy(), seam_grid.width, seam_grid.height)
    return solver.labels


def image_views(
    rec: Reconstruction, paths: dict[str, Path], footprints: dict[str, tuple[float, float, float, float]], z_max: float
) -> list[ImageView]:
    """The images the ortho can use, indexed in name order; ``z_max`` is the DSM's highest point."""
    views: list[ImageView] = []
    for name in sorted(rec.images):
        if name not in footprints or name not in paths:
            continue
        img = rec.images[name]
        min_depth = max(1.0, 0.8 * (float(img.pose.center[2]) - z_max))
        views.append(ImageView(len(views), name, str(paths[name]), rec.cameras[img.camera_id], img.pose, footprints[name], min_depth))
    return views


def tile_candidates(grid: GridSpec, window: Window, margin_px: int, views: list[ImageView]) -> list[ImageView]:
    """Images whose footprint reaches the tile or its blending margin."""
    from pipeline.ortho.plan import bounds_intersect, window_bounds

    ext = window.expanded(margin_px, grid.width, grid.height)
    b = window_bounds(grid, ext)
    return [v for v in views if bounds_intersect(v.footprint, b)]
