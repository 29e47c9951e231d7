"""The ortho stage on a small synthetic flight: accuracy against the true orthophoto, Dask == eager,
tile-size independence (seams and blending carry across tile borders), COG and preview outputs."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import pytest
import rasterio
from distributed import Client

from drone_io.cog import TiledRasterWriter, validate_cog
from drone_io.cog_blocks import read_tile_sums
from drone_io.raster_grid import read_raster_info
from models.raster import GridSpec, Window
from pipeline.cluster import dask_client
from pipeline.config import Compression, Config, RunConfig
from pipeline.ortho.quality import holes_inside, local_offsets, resample_to_grid
from pipeline.ortho.tile import TileResult, render_tile
from pipeline.ortho.visibility import zbuffer_cell
from pipeline.runner import run_stages
from pipeline.stages import ortho
from pipeline.workspace import Workspace
from tests.ortho_scene import Box, Scene, X0, Y0, make_scene


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Scene:
    root = tmp_path_factory.mktemp("ortho-scene")
    return make_scene(
        root,
        width_m=36.0,
        height_m=28.0,
        image_size=(240, 180),
        focal_px=300.0,
        spacing=(7.0, 8.0),
        boxes=[Box(X0 + 12, Y0 + 9, X0 + 19, Y0 + 16, 9.0), Box(X0 + 24, Y0 + 15, X0 + 29, Y0 + 21, 6.0)],
    )


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with dask_client(RunConfig(workers=1)) as c:
        yield c


def _config(**ortho: Any) -> Config:
    cfg = Config(run=RunConfig(workers=1))
    return dataclasses.replace(cfg, ortho=dataclasses.replace(cfg.ortho, **ortho))


def _workspace(root: Path, scene: Scene) -> Workspace:
    ws = Workspace(root)
    ws.ensure()
    ws.save_reconstruction(scene.rec)
    ws.save_images(scene.records, [])
    shutil.copy(scene.dsm_path, ws.dsm_path)
    return ws


def _read(path: Path) -> tuple[np.ndarray, np.ndarray, GridSpec]:
    with rasterio.open(path) as ds:
        rgb = np.moveaxis(ds.read([1, 2, 3]), 0, -1).astype(np.float32)
        mask = ds.dataset_mask() > 0
    return rgb, mask, read_raster_info(path).grid


@pytest.fixture(scope="module")
def finished(scene: Scene, client: Client, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = _workspace(tmp_path_factory.mktemp("ortho-run"), scene)
    cfg = _config(tile_size=128, compression=Compression.DEFLATE)
    run_stages(ws, cfg, client, [ortho.STAGE])
    return ws


def test_outputs_cog_crs_bounds_preview_stats(finished: Workspace, scene: Scene) -> None:
    ws = finished
    ok, errors, _ = validate_cog(ws.orthophoto_path)
    assert ok, errors
    with rasterio.open(ws.orthophoto_path) as ds:
        assert ds.crs.to_epsg() == 32633
        assert ds.count == 4  # RGB + alpha (DEFLATE)
        assert ds.overviews(1) or max(ds.width, ds.height) <= 512  # GDAL adds none below one block
        left, bottom, right, top = ds.bounds
    assert X0 - 1 <= left and right <= X0 + 37 and Y0 - 1 <= bottom and top <= Y0 + 29
    preview = cv2.imread(str(ws.orthophoto_preview_path), cv2.IMREAD_UNCHANGED)
    assert preview is not None and preview.shape[2] == 4
    stats = json.loads(ws.stats_path.read_text())["ortho"]
    assert stats["size_px"] == [ds.width, ds.height]
    assert stats["gsd_m"] == pytest.approx(stats["flight_gsd_m"])
    assert stats["coverage_fraction"] > 0.95
    assert stats["images_used"] >= 4
    assert not (ws.ortho_dir / "tiles").exists()  # scratch tiles removed


def test_geolocation_holes_and_buildings_against_truth(finished: Workspace, scene: Scene) -> None:
    rgb, mask, grid = _read(finished.orthophoto_path)
    truth = resample_to_grid(scene.texture, scene.grid, grid)
    dsm = resample_to_grid(scene.dsm, scene.grid, grid)
    outline = (cv2.morphologyEx(dsm, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 1.0).astype(np.uint8)
    # The outline band: 2 px either side (JPEG chroma subsampling and bilinear sampling mix a wall
    # pixel into its neighbours; a leaning building would put wall colour metres out).
    walls = cv2.dilate(outline, np.ones((5, 5), np.uint8)) > 0
    # Geolocation: local NCC at a grid of points, building outlines included.
    off = local_offsets(rgb, truth, mask, n_side=10, patch=21, search=5)
    assert len(off) >= 50
    assert off.rmse_px <= 1.0, off.dxy
    # No hole inside the flown area.
    assert holes_inside(mask, np.ones_like(mask)) == 0
    # Buildings stand where the truth has them: each roof (with a margin of ground) matches in place...
    for b in scene.boxes:
        c0, r1 = grid.world_to_cell(np.array([b.x0]), np.array([b.y0]))
        c1, r0 = grid.world_to_cell(np.array([b.x1]), np.array([b.y1]))
        sl = (slice(int(r0[0]) - 4, int(r1[0]) + 5), slice(int(c0[0]) - 4, int(c1[0]) + 5))
        big = (slice(sl[0].start - 4, sl[0].stop + 4), slice(sl[1].start - 4, sl[1].stop + 4))
        res = cv2.matchTemplate(truth[big].mean(2), rgb[sl].mean(2), cv2.TM_CCOEFF_NORMED)
        _, peak, _, loc = cv2.minMaxLoc(res)
        assert peak > 0.8 and loc == (4, 4), (b, loc, peak)
    # ... and no wall (magenta in the scene) lies on the ground beyond the outline band.
    magenta = (rgb[..., 0] > 180) & (rgb[..., 1] < 90) & (rgb[..., 2] > 180)
    assert int((magenta & ~walls).sum()) == 0


def _tile_pixels(r: TileResult) -> dict[str, np.ndarray]:
    """A tile's RGB (3, h, w) and mask from its pixel sums (kept at full resolution with 64-px tiles)."""
    sums = read_tile_sums(Path(r.path), r.blocks)
    assert sums.shape[:2] == (r.window.height, r.window.width)
    return {"rgb": np.moveaxis(sums[..., :3], -1, 0).astype(np.uint8), "mask": sums[..., 3] > 0}


def test_tiles_agree_across_borders_and_dask_equals_eager(scene: Scene, client: Client, tmp_path: Path) -> None:
    ws = _workspace(tmp_path / "a", scene)
    cfg = _config(tile_size=64, keep_image_cache=True)
    fp = ortho.prepare_flight(ws, cfg, client)
    assert fp.plan.blocks.kept_level == 0
    job = fp.jobs[len(fp.jobs) // 2]
    eager = render_tile(job[0], fp.plan, job[1], ws)
    eager_data = _tile_pixels(eager)
    results = ortho.render_tiles(ws, fp, client)
    small = {r.window: _tile_pixels(r) for r in results}
    dask_data = small[job[0]]
    assert np.array_equal(eager_data["rgb"], dask_data["rgb"]) and np.array_equal(eager_data["mask"], dask_data["mask"])

    # The same flight in one big tile: the mosaic must not depend on where tile borders fall.
    big_fp = dataclasses.replace(fp, jobs=[(next(iter(fp.plan.grid.tiles(10_000))), fp.views)], empty=[])
    (whole,) = ortho.render_tiles(ws, big_fp, client)
    full = _tile_pixels(whole)
    diffs = []
    for window, data in small.items():
        ref = full["rgb"][:, window.row_off : window.row_off + window.height, window.col_off : window.col_off + window.width]
        m = data["mask"] & full["mask"][window.slices]
        assert np.array_equal(data["mask"], full["mask"][window.slices])
        diffs.append(np.abs(data["rgb"].astype(int) - ref.astype(int))[:, m].ravel())
    d = np.concatenate(diffs)
    assert d.max() <= 3 and d.mean() < 0.05


def test_jpeg_cog_from_block_aligned_tiles(finished: Workspace, scene: Scene, client: Client, tmp_path: Path) -> None:
    """With 512 px tiles the tile tasks compress the COG's JPEG blocks themselves: the COG is valid,
    RGB (YCbCr JPEG) with an internal mask equal to the lossless run's, pixels within JPEG error of it."""
    ws = _workspace(tmp_path / "jpeg", scene)
    run_stages(ws, _config(tile_size=512, compression=Compression.JPEG), client, [ortho.STAGE])
    ok, errors, warnings = validate_cog(ws.orthophoto_path)
    assert ok and not warnings, (errors, warnings)
    with rasterio.open(ws.orthophoto_path) as ds:
        assert ds.count == 3 and ds.compression.value == "JPEG" and ds.photometric.value == "YCbCr"
    rgb, mask, grid = _read(ws.orthophoto_path)
    ref, ref_mask, ref_grid = _read(finished.orthophoto_path)
    assert grid == ref_grid and np.array_equal(mask, ref_mask)
    mse = float(np.mean((rgb[mask] - ref[mask]) ** 2))
    # This scene's sharp saturated colours are hard on 4:2:0 JPEG: GDAL's own JPEG COG of the
    # lossless mosaic gives 34.3 dB, these blocks 34.1 dB.
    assert 10 * np.log10(255.0**2 / mse) >= 33.0
    preview = cv2.imread(str(ws.orthophoto_preview_path), cv2.IMREAD_UNCHANGED)
    assert preview.shape[:2] == mask.shape and np.array_equal(preview[..., 3] > 0, mask)


def test_an_image_that_decodes_to_another_size_fails_the_chained_preparation(scene: Scene, client: Client, tmp_path: Path) -> None:
    """The decode task's error reaches the client through the per-image task chained on it."""
    from models.errors import InputError

    ws = _workspace(tmp_path / "run", scene)
    bad = tmp_path / "small.jpg"
    cv2.imwrite(str(bad), np.zeros((60, 80, 3), np.uint8))
    records = [dataclasses.replace(r, path=bad) if i == 0 else r for i, r in enumerate(scene.records)]
    ws.save_images(records, [])
    with pytest.raises(InputError, match="decodes to"):
        ortho.prepare_flight(ws, _config(tile_size=128), client)


class _RecordingWriter:
    """Stands in for CogBlockWriter: records the windows it is fed, in order."""

    def __init__(self) -> None:
        self.fed: list[tuple[int, int]] = []

    def add_tile(self, path: Path, blocks: Any) -> None:
        self.fed.append((blocks.row_off, blocks.col_off))

    def add_empty(self, window: Any) -> None:
        self.fed.append((window.row_off, window.col_off))


def test_finished_tiles_reach_the_writer_in_row_major_order_whatever_order_they_finish() -> None:
    grid = GridSpec("EPSG:32615", 0.0, 100.0, 1.0, 300, 250)
    windows = list(grid.tiles(64))
    empty = windows[1::4]
    jobs = [(w, []) for w in windows if w not in empty]
    fp = ortho.FlightPlan(None, [], jobs, empty, 0, [], {})  # type: ignore[arg-type]
    writer = _RecordingWriter()
    feed = ortho._RowMajorFeed(writer, fp)  # type: ignore[arg-type]
    finish = list(range(len(jobs)))
    np.random.default_rng(3).shuffle(finish)
    for n, j in enumerate(finish):
        w = jobs[j][0]
        r = TileResult(w, "tile", w, 0, 0, ())  # type: ignore[arg-type]  # its window stands in for its blocks
        feed.finished(j, r)
        if n < len(finish) - 1:
            with pytest.raises(RuntimeError, match="never reached the COG writer"):
                feed.check_complete()
    feed.check_complete()
    assert writer.fed == sorted((w.row_off, w.col_off) for w in windows)


def test_an_ortho_finer_than_the_images_keeps_the_flight_gsd_occluders(scene: Scene, client: Client, tmp_path: Path) -> None:
    """At half the flight GSD the occluder DSM and the z-buffer cells follow the images' pixel, not the ortho's."""
    ws = _workspace(tmp_path / "run", scene)
    cfg = _config(tile_size=128, gsd_factor=0.5)
    fp = ortho.prepare_flight(ws, cfg, client)
    dsm_res = fp.plan.dsm.grid.resolution
    og = fp.plan.occluder_grid
    cell_px = cfg.ortho.occlusion_cell_px
    assert round(og.resolution / dsm_res) == round(cell_px * fp.plan.gsd_m / dsm_res) > round(cell_px * fp.plan.grid.resolution / dsm_res)
    for v in fp.views:
        assert v.zbuf_cell == zbuffer_cell(og.resolution, v.work_camera.focal_px, v.min_depth)
        rows, cols = (int(np.ceil(n / v.zbuf_cell)) + 1 for n in (v.work_size[1], v.work_size[0]))
        assert np.load(v.zbuf_cache).shape == (rows, cols)


def test_one_dsm_cell_per_occluder_cell_reads_the_raw_dsm_copy(scene: Scene, client: Client, tmp_path: Path) -> None:
    """With occluder cells of one DSM cell the plan points at the raw DSM copy: no pooling pass, no second copy."""
    ws = _workspace(tmp_path / "run", scene)
    fp = ortho.prepare_flight(ws, _config(tile_size=128, occlusion_cell_px=0.3), client)
    assert fp.plan.occluders == fp.plan.dsm.raw and fp.plan.occluder_grid == fp.plan.dsm.grid
    assert not ws.ortho_occluders_path.exists()
    assert all(np.isfinite(np.load(v.zbuf_cache)).any() for v in fp.views)


def test_ground_in_a_dsm_pit_is_taken_from_the_surface_closed_over_it(scene: Scene, client: Client, tmp_path: Path) -> None:
    """Holes dug into a roof of the DSM (the scene's roof is whole: DSM holes, as in a tree canopy's DSM) hide their
    floor from every image; lifted to their rims, their pixels are the roof's, not a smooth fill."""
    b = scene.boxes[0]  # 7 x 7 m, 9 m high
    dsm = scene.dsm.copy()
    g = scene.grid
    xs, ys = g.cell_centers(Window(0, 0, g.width, g.height))
    pits = [(b.x0 + 1.5, b.y0 + 1.5), (b.x0 + 4.0, b.y0 + 3.5)]  # 1.2 m squares, down to the ground
    for x0, y0 in pits:
        dsm[np.ix_((ys >= y0) & (ys < y0 + 1.2), (xs >= x0) & (xs < x0 + 1.2))] -= np.float32(b.height)
    runs = {}
    for lift, tile in ((0.0, 128), (2.0, 128), (2.0, 64)):
        ws = _workspace(tmp_path / f"lift{lift:g}-{tile}", scene)
        with TiledRasterWriter(ws.dsm_path, g) as wr:
            wr.write(Window(0, 0, g.width, g.height), dsm)
        run_stages(ws, _config(tile_size=tile, compression=Compression.DEFLATE, pit_lift_m=lift), client, [ortho.STAGE])
        rgb, mask, grid = _read(ws.orthophoto_path)
        runs[lift, tile] = (rgb, grid, json.loads(ws.stats_path.read_text())["ortho"])
    (rgb_off, grid, off), (rgb_on, _, on), (rgb_small, _, small) = runs[0.0, 128], runs[2.0, 128], runs[2.0, 64]
    truth = resample_to_grid(scene.texture, g, grid)
    ox, oy = grid.cell_centers(Window(0, 0, grid.width, grid.height))
    pit = np.zeros((grid.height, grid.width), bool)
    for x0, y0 in pits:  # the ortho pixels inside a pit, one pixel in from its edge
        m = grid.resolution
        pit[np.ix_((oy >= y0 + m) & (oy < y0 + 1.2 - m), (ox >= x0 + m) & (ox < x0 + 1.2 - m))] = True
    n = int(pit.sum())
    err_off = float(np.abs(rgb_off[pit] - truth[pit]).mean())
    err_on = float(np.abs(rgb_on[pit] - truth[pit]).mean())
    print(f"pit pixels {n}: lifted {on['pits_lifted_px']}, filled {off['occluded_fill_px']} -> {on['occluded_fill_px']}; "
          f"mean error {err_off:.1f} -> {err_on:.1f} DN")
    assert off["pits_lifted_px"] == 0 and off["occluded_fill_px"] >= n  # hidden from every image at the DSM's height
    assert on["pits_lifted_px"] >= n and on["occluded_fill_px"] == off["occluded_fill_px"] - on["pits_lifted_px"]
    assert err_on < 0.5 * err_off and err_on < 8.0
    # Tiles of another size lift the same pixels the same way (the blend's window edge aside: 3 grey levels).
    assert small["pits_lifted_px"] == on["pits_lifted_px"]
    assert float(np.abs(rgb_small[pit] - rgb_on[pit]).max()) <= 3.0
