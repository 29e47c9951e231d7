"""Ortho: true orthomosaic from the DSM and the solved cameras (Dask: one task per image, then per tile).

1. Plan: GSD (median height above ground / focal px), the ortho grid at
   ``gsd_factor`` x GSD over the images' footprints, a coarse seam grid.
2. Per image (Dask): decode once at the working scale into a cache, sample
   the seam grid (visibility by DSM z-buffer, view cost, colour).
3. Flight level (client): exposure gains from overlaps; seam labels by
   alpha-expansion graph cuts (DSM height and slope, image difference).
4. Per tile (Dask): project every cell with the true camera model, check the
   labelled image sees it (else the best image that does), sample, blend in
   two bands; each task writes a tile file and returns its path.
   The task also compresses the tile's COG blocks (full resolution and the
   overviews whose blocks lie inside it) and keeps its pixel sums at a reduced level.
5. Client: add the sums up into the coarse overviews as the tiles come in,
   compress their few blocks, then write the COG from the tiles' blocks
   (drone_io.cog_blocks) and the preview PNG from the overview level nearest
   above its size.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from distributed import Client

from drone_io.cog_blocks import BlockPlan, CogBlockWriter
from drone_io.raster_grid import write_png
from models.errors import InputError
from models.geo import parse_crs
from models.image import SkippedItem
from models.raster import GridSpec, Window
from pipeline.config import Config, Interpolation, OrthoConfig
from pipeline.ortho import flight
from pipeline.ortho.dsm import heights_on_grid, import_dsm, pool_dsm
from pipeline.ortho.plan import ImageView, OrthoParams, OrthoPlan
from pipeline.ortho.prep import decode_view, prepare_image
from pipeline.ortho.seams import SeamWeights
from pipeline.ortho.select import ViewWeights
from pipeline.ortho.tile import TileResult, render_tile
from pipeline.ortho.visibility import occluder_pool
from pipeline.progress import iter_tasks, map_tasks, submit_tasks
from pipeline.stage import StageReport, StageSpec
from pipeline.workspace import Workspace, atomic_path

logger = logging.getLogger(__name__)


def params_from_config(oc: OrthoConfig) -> OrthoParams:
    return OrthoParams(
        low_factor=max(1, oc.blend_low_factor),
        blend_sigma_px=oc.blend_sigma_px,
        occlusion_tolerance_m=oc.occlusion_tolerance_m,
        edge_step_m=oc.dsm_edge_step_m,
        occlusion_cell_px=oc.occlusion_cell_px,
        fill_occluded=oc.fill_occluded,
        fill_hidden_m=oc.fill_hidden_m,
        pit_lift_m=oc.pit_lift_m,
        interpolation=cv2.INTER_CUBIC if oc.interpolation == Interpolation.BICUBIC else cv2.INTER_LINEAR,
        view=ViewWeights(angle=oc.view_angle_weight, gsd=oc.view_gsd_weight, sharpness=oc.view_sharpness_weight),
        seam=SeamWeights(seam=oc.seam_weight, height=oc.seam_height_weight, colour=oc.seam_colour_weight),
        seam_sweeps=oc.seam_sweeps,
    )


def _inputs(ws: Workspace, cfg: Config) -> list[Path]:
    return [ws.reconstruction_path, ws.dsm_path]


def _same_crs(a: str, b: str) -> bool:
    try:
        return bool(parse_crs(a).equals(parse_crs(b), ignore_axis_order=True))
    except InputError:
        return a == b


@dataclass(frozen=True, eq=False)
class FlightPlan:
    """Everything the tile tasks need, after the per-image and flight-level steps."""

    plan: OrthoPlan
    views: list[ImageView]
    jobs: list[tuple[Window, list[ImageView]]]  # tiles with their candidate images
    empty: list[Window]  # tiles no image reaches
    registered: int
    skipped: list[SkippedItem]
    seconds: dict[str, float]


def prepare_flight(ws: Workspace, cfg: Config, client: Client) -> FlightPlan:
    """Plan the grids, prepare every image (Dask), balance exposure and solve the seams."""
    oc = cfg.ortho
    t0 = time.perf_counter()
    if not ws.reconstruction_exists():
        raise InputError(f"no solved cameras in {ws.reconstruction_path}; run the sfm stage first")
    if not ws.dsm_path.exists():
        raise InputError(f"no DSM at {ws.dsm_path}; run the dem stage first")
    rec = ws.load_reconstruction()
    # One decode of the DSM: its raw copy (tiles slice it), the coarse min/max grid, an overview.
    with atomic_path(ws.ortho_dsm_path) as tmp_raw:
        dsm, hr, overview = import_dsm(ws.dsm_path, tmp_raw)
    dsm = dataclasses.replace(dsm, raw=str(ws.ortho_dsm_path))
    if dsm.grid.crs and not _same_crs(dsm.grid.crs, rec.crs):
        raise InputError(f"DSM {ws.dsm_path} is in {dsm.grid.crs} but the cameras are in {rec.crs}; rerun the dem stage")
    geo = flight.flight_geometry(rec, dsm, overview)
    res = oc.gsd_factor * geo.gsd_m
    grid = GridSpec.covering(rec.crs, *geo.bounds, res)
    z_hi = float(np.nanmax(hr.z_max)) if np.isfinite(hr.z_max).any() else geo.z_range[1]
    paths: dict[str, Path] = {}
    skipped: list[SkippedItem] = []
    if ws.images_exist():
        paths = {r.name: Path(r.path) for r in ws.load_images()}
    for name in sorted(rec.images):
        if name not in paths:
            skipped.append(SkippedItem(name, "no_image_file", f"registered image {name} has no ingested file; it is left out of the ortho"))
        elif name not in geo.footprints:
            skipped.append(SkippedItem(name, "no_footprint", f"image {name} does not look at the ground; it is left out of the ortho"))
    views = flight.image_views(rec, paths, geo.footprints, z_hi)
    if not views:
        raise InputError("no registered image has a readable file; run ingest and sfm on this flight first")
    params = params_from_config(oc)
    # The images decode on the workers while the client pools the occluder DSM and samples
    # the seam grid's heights (which the second per-image step needs).
    decoding = submit_tasks(
        client, decode_view, views, res, dsm.fill_height, params.low_factor, ws, label="ortho-decode", item_names=[v.name for v in views]
    )
    pool = occluder_pool(oc.occlusion_cell_px, res, geo.gsd_m, dsm.grid.resolution)
    if pool > 1:
        with atomic_path(ws.ortho_occluders_path) as tmp:
            pooled_grid = pool_dsm(dsm, pool, tmp)
        occluders = str(ws.ortho_occluders_path)
    else:
        # One DSM cell per occluder cell (the dem stage's DSM, at 2 x GSD by default): the raw copy
        # is the occluder DSM, with no pass over it and no second copy.
        occluders, pooled_grid = dsm.raw, dsm.grid
    ws.save_ortho_arrays(
        ws.ortho_heights_path,
        grid=np.array([hr.grid.x_min, hr.grid.y_max, hr.grid.resolution, hr.grid.width, hr.grid.height]),
        z_min=hr.z_min,
        z_max=hr.z_max,
    )
    seam_grid = flight.seam_grid_for(grid, geo.gsd_m, oc.seam_cell_gsd, oc.seam_max_cells, oc.seam_cell_min_m)
    seam_z = heights_on_grid(dsm, seam_grid, Window(0, 0, seam_grid.width, seam_grid.height))
    ws.save_ortho_array(ws.ortho_seam_heights_path, seam_z)
    plan = OrthoPlan(
        grid, seam_grid, geo.gsd_m, dsm, str(ws.ortho_heights_path), str(ws.ortho_labels_path), params,
        occluders, pooled_grid, str(ws.ortho_seam_heights_path),
        BlockPlan(grid.width, grid.height, oc.tile_size, oc.compression.value, oc.jpeg_quality, oc.preview_size_px),
    )
    if plan.blocks.tile_levels < 0:
        logger.warning(
            "ortho tile_size %d is not a multiple of the COG block (512 px): the client compresses every block "
            "and holds the mosaic's pixel sums at full resolution", oc.tile_size,
        )
    logger.info(
        "ortho grid %d x %d px at %.4f m (GSD %.4f m), seam grid %d x %d at %.3f m, %d images",
        grid.width, grid.height, res, geo.gsd_m, seam_grid.width, seam_grid.height, seam_grid.resolution, len(views),
    )
    t_plan = time.perf_counter()

    prepared = map_tasks(client, prepare_image, decoding, plan, ws, label="ortho-prep", item_names=[v.name for v in views])
    del decoding
    views = flight.with_blur_penalties([v for v, _ in prepared])
    inputs = [s for _, s in prepared]
    del prepared
    t_prep = time.perf_counter()
    views, inputs = flight.balance(views, inputs, oc.exposure_balance, oc.shading_correction)
    labels = flight.solve_seams(views, inputs, seam_grid, seam_z, params.seam, params.view.sharpness, params.seam_sweeps)
    del inputs
    ws.save_ortho_array(ws.ortho_labels_path, labels)
    t_seam = time.perf_counter()

    sigma_low = params.blend_sigma_px / params.low_factor
    margin = (int(math.ceil(3.0 * sigma_low)) + 2) * params.low_factor
    jobs: list[tuple[Window, list[ImageView]]] = []
    empty: list[Window] = []
    for w in grid.tiles(oc.tile_size):
        cands = flight.tile_candidates(grid, w, margin, views)
        if cands:
            jobs.append((w, cands))
        else:
            empty.append(w)
    seconds = {"plan": t_plan - t0, "prepare_images": t_prep - t_plan, "seams_and_exposure": t_seam - t_prep}
    return FlightPlan(plan, views, jobs, empty, len(rec.images), skipped, seconds)


def render_tiles(ws: Workspace, fp: FlightPlan, client: Client, writer: CogBlockWriter | None = None) -> list[TileResult]:
    """One Dask task per tile; each writes its tile file and returns its path and figures (in ``fp.jobs`` order).

    With a ``writer``, the tiles go into it in row-major order while the other tiles still
    render: a finished tile waits only for the tiles before it (few: the tasks are submitted
    in that order), so the client builds the overviews while the workers render.
    """
    results: list[TileResult | None] = [None] * len(fp.jobs)
    feed = _RowMajorFeed(writer, fp) if writer is not None else None
    names = [f"r{w.row_off}c{w.col_off}" for w, _ in fp.jobs]
    for i, result in iter_tasks(client, _tile_task, fp.jobs, fp.plan, ws, label="ortho-tile", item_names=names):
        results[i] = result
        if feed is not None:
            feed.finished(i, result)
    if feed is not None:
        feed.check_complete()
    return [r for r in results if r is not None]


class _RowMajorFeed:
    """Hands finished tiles (and the empty ones) to the COG writer in row-major order.

    The writer holds about one row of open overview blocks per level when fed in this
    order; a tile that finishes early waits here (as its small result) for the ones before it.
    """

    def __init__(self, writer: CogBlockWriter, fp: FlightPlan) -> None:
        self.writer = writer
        # Every tile in row-major order: its window and its index in fp.jobs (None: an empty tile).
        slots: list[tuple[Window, int | None]] = [(w, i) for i, (w, _) in enumerate(fp.jobs)] + [(w, None) for w in fp.empty]
        self.order = sorted(slots, key=lambda t: (t[0].row_off, t[0].col_off))
        self.ready: dict[int, TileResult] = {}
        self.next = 0

    def finished(self, job: int, result: TileResult) -> None:
        self.ready[job] = result
        while self.next < len(self.order):
            window, j = self.order[self.next]
            if j is None:
                self.writer.add_empty(window)
            elif j in self.ready:
                r = self.ready.pop(j)
                self.writer.add_tile(Path(r.path), r.blocks)
            else:
                return
            self.next += 1

    def check_complete(self) -> None:
        if self.next < len(self.order) or self.ready:
            raise RuntimeError(f"ortho: {len(self.order) - self.next} tiles never reached the COG writer")


def write_orthophoto(ws: Workspace, writer: CogBlockWriter) -> None:
    """Write the COG from the tiles' compressed blocks and the preview from the writer's overview sums.

    The tile files hand over compressed blocks and reduced pixel sums, so the client
    decodes nothing at full resolution and holds only the open blocks of the coarse
    levels (about a row of blocks per level) and the preview. The preview PNG is
    encoded on a second thread while the COG's blocks are copied (both release the GIL).
    """
    small, small_mask = writer.preview()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ortho-preview") as pool:
        preview = pool.submit(_write_preview_png, ws, small, small_mask)
        writer.write()
        preview.result()


def run(ws: Workspace, cfg: Config, client: Client) -> StageReport:
    oc = cfg.ortho
    fp = prepare_flight(ws, cfg, client)
    t0 = time.perf_counter()
    writer = CogBlockWriter(ws.orthophoto_path, fp.plan.grid, fp.plan.blocks)
    try:
        results = render_tiles(ws, fp, client, writer)
        t1 = time.perf_counter()
        write_orthophoto(ws, writer)
    finally:
        writer.discard()
    t2 = time.perf_counter()
    ws.clear_ortho_scratch(keep_images=oc.keep_image_cache)

    grid = fp.plan.grid
    covered = sum(r.covered for r in results)
    used = sorted({i for r in results for i in r.images})
    total_px = grid.width * grid.height
    seconds = dict(fp.seconds, tiles=t1 - t0, cog_and_preview=t2 - t1)
    figures = {
        "ortho": {
            "gsd_m": grid.resolution,
            "flight_gsd_m": fp.plan.gsd_m,
            "size_px": [grid.width, grid.height],
            "megapixels": round(total_px / 1e6, 3),
            "coverage_fraction": round(covered / total_px, 6) if total_px else 0.0,
            "images_used": len(used),
            "images_registered": fp.registered,
            "occluded_fill_px": sum(r.occluded_fill for r in results),
            "pits_lifted_px": sum(r.pits_lifted for r in results),
            "tiles": len(fp.jobs),
            "seam_cell_m": fp.plan.seam_grid.resolution,
            "crs": grid.crs,
            "bounds": list(grid.bounds),
            "compression": oc.compression.value,
            "gain_range": [min(min(v.gain) for v in fp.views), max(max(v.gain) for v in fp.views)],
            "seconds": {k: round(v, 3) for k, v in seconds.items()},
        }
    }
    for s in fp.skipped:
        logger.warning("ortho: %s", s.message)
    return StageReport(figures=figures, outputs=(ws.orthophoto_path, ws.orthophoto_preview_path), skipped=tuple(fp.skipped))


def _tile_task(job: tuple[Window, list[ImageView]], plan: OrthoPlan, ws: Workspace) -> TileResult:
    window, cands = job
    return render_tile(window, plan, cands, ws)


def _write_preview_png(ws: Workspace, data: np.ndarray, mask: np.ndarray) -> None:
    rgba = np.concatenate([data[:3], mask[None]], axis=0).astype(np.uint8)
    with atomic_path(ws.orthophoto_preview_path) as tmp:
        write_png(tmp, rgba)


STAGE = StageSpec(
    name="ortho",
    run=run,
    config_fields=("ortho",),
    inputs=_inputs,
    version=7,  # 2: per-image z-buffers, 16-px blending grid, uncompressed COG scratch; 3: cell-lattice projection;
    # 4: COG blocks compressed by the tile tasks; 5: coarse-to-fine seam solve; 6: occluder cells of image pixels
    # when the ortho is finer than the flight GSD; 7: ground in DSM pits looked for at the pits' rims
    title="true orthomosaic: visibility, seamlines, blending, COG",
)
