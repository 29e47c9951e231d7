"""Fast tests of the ortho kernels on tiny inputs built here."""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import cv2

import numpy as np
import pytest

from models.camera import CameraModel
from models.footprint import footprint_bounds
from models.pose import Pose, world_to_camera_from_gimbal
from models.raster import Window
from pipeline.ortho.blend import low_band_corrections
from pipeline.ortho.exposure import overlap_stats, solve_gains
from pipeline.ortho.geometry import LocalProjector, inside_image, scaled_camera
from pipeline.ortho.seams import SeamInput, SeamSolver, SeamWeights, coarsen, seam_geometry_cost, solve_labels
from pipeline.ortho.select import ViewWeights, best_view, blur_penalties, view_cost
from pipeline.ortho.visibility import build_zbuffer, occluder_bounds, occluder_pool, occluders_from_grid, visible, zbuffer_cell

CAM = CameraModel("c", 640, 480, 500.0, 502.0, 321.3, 238.1, k1=-0.12, k2=0.03, p1=0.001, p2=-0.0007, k3=0.002)
UTM = np.array([512_345.0, 4_123_456.0, 0.0])


def _pose(x: float, y: float, z: float, pitch: float = -90.0, yaw: float = 10.0, roll: float = 0.0) -> Pose:
    return Pose.from_center(world_to_camera_from_gimbal(yaw, pitch, roll), UTM + np.array([x, y, z]))


# -- geometry -------------------------------------------------------------------------
def test_local_projector_matches_camera_model_at_utm_magnitudes() -> None:
    pose = _pose(3.0, -2.0, 60.0, pitch=-80.0)
    rng = np.random.default_rng(0)
    X = rng.uniform([-30, -30, -5], [30, 30, 15], (2000, 3))
    ref = CAM.project(pose.to_camera(X + UTM))
    origin = UTM + np.array([1.0, 2.0, 0.0])
    proj = LocalProjector(CAM, pose, origin)
    loc = (X + UTM - origin).astype(np.float32)
    u, v, d, ok = proj.project(loc[:, 0], loc[:, 1], loc[:, 2])
    inside = ok & inside_image(u, v, CAM.width, CAM.height)
    assert inside.sum() > 500
    err = np.hypot(u - ref[:, 0], v - ref[:, 1])[inside]
    assert err.max() < 0.01
    assert np.allclose(d[inside], pose.to_camera(X + UTM)[inside, 2], atol=1e-3)


def test_projector_rejects_points_behind_and_beyond_the_lens_field() -> None:
    proj = LocalProjector(CAM, _pose(0, 0, 50.0), UTM)
    pts = np.array([[0, 0, 80.0], [400.0, 0, 0], [0, 0, 0]], np.float32)  # above camera, far off-axis, nadir
    u, v, d, ok = proj.project(pts[:, 0], pts[:, 1], pts[:, 2])
    assert list(ok) == [False, False, True]
    assert not inside_image(u[:2], v[:2], CAM.width, CAM.height).any()


def test_scaled_camera_agrees_with_model_scaling() -> None:
    a = scaled_camera(CAM, 0.5, 0.5)
    b = CAM.scaled(0.5)
    assert (a.width, a.height) == (b.width, b.height)
    assert np.allclose([a.fx, a.fy, a.cx, a.cy], [b.fx, b.fy, b.cx, b.cy])


def test_footprint_contains_the_nadir_point() -> None:
    pose = _pose(0, 0, 50.0)
    fp = footprint_bounds(CAM, pose, 0.0, 10.0)
    assert fp is not None
    assert fp[0] < UTM[0] < fp[2] and fp[1] < UTM[1] < fp[3]
    # ~ 640 px * 50 m / 500 px = 64 m wide at the ground
    assert 55 < fp[2] - fp[0] < 80


# -- visibility against a box DSM -----------------------------------------------------
def _box_scene(res: float = 0.25) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs = (np.arange(-40, 40, res) + res / 2).astype(np.float32)
    ys = (np.arange(40, -40, -res) - res / 2).astype(np.float32)
    z = np.zeros((ys.size, xs.size), np.float32)
    z[np.ix_((ys > -4) & (ys < 4), (xs > 0) & (xs < 6))] = 10.0  # a 10 m box east of the nadir
    return xs, ys, z


def test_zbuffer_hides_the_ground_behind_a_box_and_keeps_the_rest() -> None:
    xs, ys, z = _box_scene()
    pose = Pose.from_center(world_to_camera_from_gimbal(0.0, -90.0), np.array([-10.0, 0.0, 40.0]))
    proj = LocalProjector(CAM, pose, np.zeros(3))
    occ = occluders_from_grid(xs, ys, z, 0.25, 0.5, floor=np.zeros_like(z))
    zb = build_zbuffer(proj, occ, zbuffer_cell(0.25, CAM.focal_px, 30.0))
    # Ground behind the box (seen from x=-10, h=40): shadow from x=6 to 6 + 10*16/30 = 11.3 m.
    probe_x = np.array([7.0, 9.0, 10.5, 13.0, -5.0, -1.0, 3.0], np.float32)
    probe_z = np.array([0, 0, 0, 0, 0, 0, 10.0], np.float32)
    u, v, d, ok = proj.project(probe_x, np.zeros_like(probe_x), probe_z)
    vis = visible(zb, u, v, d, CAM.focal_px, 0.5)
    # Analytic: the ray from (x, 0) to the camera clears the box iff its height at x=6 exceeds 10 m.
    expected = [False, False, False, True, True, True, True]
    assert list(vis) == expected


def test_occluder_cells_follow_the_coarser_of_ortho_and_image_pixels() -> None:
    # A 5 cm DSM under a 4.95 cm flight: 2 px occluder cells pool 2 DSM cells at the flight GSD ...
    assert occluder_pool(2.0, 0.0495, 0.0495, 0.05) == 2
    # ... and still 2 at half the GSD: the images hold no finer detail (the ortho pixel alone gave 1).
    assert occluder_pool(2.0, 0.02475, 0.0495, 0.05) == 2
    # Coarser than the flight GSD, the ortho pixel sets the cell.
    assert occluder_pool(2.0, 0.099, 0.0495, 0.05) == 4
    # Never less than one DSM cell.
    assert occluder_pool(2.0, 0.01, 0.01, 0.5) == 1


def test_zbuffer_splatted_in_chunks_is_the_one_pass_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.ortho import visibility

    xs, ys, z = _box_scene()
    pose = Pose.from_center(world_to_camera_from_gimbal(0.0, -90.0), np.array([-10.0, 0.0, 40.0]))
    proj = LocalProjector(CAM, pose, np.zeros(3))
    occ = occluders_from_grid(xs, ys, z + np.float32(0.3) * np.sin(xs)[None, :].astype(np.float32), 0.25, 0.5, floor=np.zeros_like(z))
    cell = zbuffer_cell(0.25, CAM.focal_px, 30.0)
    whole = build_zbuffer(proj, occ, cell)
    monkeypatch.setattr(visibility, "_SPLAT_CHUNK", 97)
    assert len(occ) > 20 * 97
    chunked = build_zbuffer(proj, occ, cell)
    assert np.isfinite(whole.depth).sum() > 100 and np.array_equal(whole.depth, chunked.depth)


def test_block_occluders_match_the_window_kernel(tmp_path: Path) -> None:
    """Occluders gathered from per-worker blocks are the window kernel's samples, across block edges."""
    from models.raster import GridSpec
    from pipeline.ortho import prep
    from pipeline.ortho.dsm import DsmSource, HeightRange, floor_heights
    from pipeline.ortho.plan import OrthoParams, OrthoPlan

    rng = np.random.default_rng(3)
    h, w = 700, 900  # more than one block each way
    z = np.full((h, w), 100.0, np.float32) + rng.normal(0, 0.05, (h, w)).astype(np.float32)
    for _ in range(60):
        r, c = rng.integers(0, h - 20), rng.integers(0, w - 20)
        z[r : r + rng.integers(5, 20), c : c + rng.integers(5, 20)] = 100.0 + rng.uniform(2, 15)
    z[300:320, 400:430] = np.nan
    og = GridSpec("EPSG:32633", 500_000.0, 4_100_000.0, 0.1, w, h)
    np.save(tmp_path / "occ.npy", z)
    hg = GridSpec(og.crs, og.x_min, og.y_max, 3.2, -(-w // 32), -(-h // 32))
    zb = np.full((hg.height * 32, hg.width * 32), np.nan, np.float32)
    zb[:h, :w] = z
    blocks = zb.reshape(hg.height, 32, hg.width, 32)
    hr = HeightRange(hg, np.nanmin(blocks, axis=(1, 3)), np.nanmax(blocks, axis=(1, 3)))
    np.savez(tmp_path / "hr.npz", grid=np.array([hg.x_min, hg.y_max, hg.resolution, hg.width, hg.height]), z_min=hr.z_min, z_max=hr.z_max)
    dsm = DsmSource("", og, 100.0)
    # The fields load_occluders reads (the rest of a plan does not matter here).
    plan = cast(
        OrthoPlan,
        SimpleNamespace(grid=og, dsm=dsm, height_range=str(tmp_path / "hr.npz"), params=OrthoParams(), occluders=str(tmp_path / "occ.npy"), occluder_grid=og),
    )
    origin = np.array([og.x_min + 41.3, og.y_max - 37.9, 100.0])
    win = Window(37, 51, 610, 580)
    x0, y1 = og.x_min + win.col_off * og.resolution, og.y_max - win.row_off * og.resolution
    bounds = (x0 + 0.1, y1 - win.height * 0.1 + 0.1, x0 + win.width * 0.1 - 0.1, y1 - 0.1)
    got = prep.load_occluders(plan, hr, bounds, origin)
    # The window kernel on the same window.
    owin = prep.window_covering(og, (bounds[0] - 0.1, bounds[1] - 0.1, bounds[2] + 0.1, bounds[3] + 0.1))
    xs, ys = og.cell_centers(owin)
    oz = z[owin.slices] - np.float32(100.0)
    floor = floor_heights(hr, xs, ys, 100.0) - np.float32(100.0)
    oz = np.where(np.isnan(oz), floor, oz)
    want = occluders_from_grid(
        (xs - origin[0]).astype(np.float32), (ys - origin[1]).astype(np.float32), oz, 0.1, 0.5, floor, trim=1
    )
    assert len(got) == len(want) > 1000
    a = np.stack([got.x, got.y, got.z], axis=1)
    b = np.stack([want.x, want.y, want.z], axis=1)
    a, b = a[np.lexsort(a.T[::-1])], b[np.lexsort(b.T[::-1])]
    assert np.allclose(a, b, atol=1e-3)


def test_occluder_bounds_reach_toward_the_camera_only() -> None:
    b = occluder_bounds((0.0, 0.0, 10.0, 10.0), np.array([100.0, 5.0, 100.0]), 0.0, 20.0)
    assert b[0] == 0.0 and b[2] == pytest.approx(10.0 + 0.2 * 90.0)
    assert b[1] == 0.0 and b[3] == 10.0


# -- view selection -------------------------------------------------------------------
def test_best_view_prefers_nadir_then_sharp() -> None:
    x = np.array([0.0, 20.0], np.float32)
    y = np.zeros(2, np.float32)
    z = np.zeros(2, np.float32)
    w = ViewWeights()
    c_a = view_cost(np.array([0.0, 0.0, 50.0]), 1000.0, x, y, z, 0.05, w)
    c_b = view_cost(np.array([20.0, 0.0, 50.0]), 1000.0, x, y, z, 0.05, w)
    idx, any_valid = best_view(np.stack([c_a, c_b]), np.ones((2, 2), bool))
    assert list(idx) == [0, 1] and any_valid.all()
    # A blurred image loses where the geometry is nearly equal.
    x_mid = np.array([9.0], np.float32)
    pen = blur_penalties({"a": 10.0, "b": 100.0, "c": 100.0})
    c_a = view_cost(np.array([0.0, 0.0, 50.0]), 1000.0, x_mid, y[:1], z[:1], 0.05, w, pen["a"])
    c_b = view_cost(np.array([20.0, 0.0, 50.0]), 1000.0, x_mid, y[:1], z[:1], 0.05, w, pen["b"])
    assert c_b[0] < c_a[0]
    # Invalid views are never chosen.
    idx, _ = best_view(np.stack([c_a, c_b]), np.array([[True], [False]]))
    assert idx[0] == 0


# -- exposure -------------------------------------------------------------------------
def test_gains_recover_relative_exposure() -> None:
    rng = np.random.default_rng(1)
    truth = [1.0, 0.7, 1.3]
    base = rng.uniform(40, 200, (50, 50, 3)).astype(np.float32)
    imgs = [np.clip(base / g, 0, 255).astype(np.uint8) for g in truth]
    both = np.ones((50, 50), bool)
    stats = [s for s in (overlap_stats(i, j, imgs[i], imgs[j], both) for i, j in ((0, 1), (1, 2), (0, 2))) if s]
    gains = solve_gains(3, stats, sigma_g=1.0)
    ratio = gains[:, 1] / gains[0, 1]
    assert np.allclose(ratio, np.array(truth) / truth[0], rtol=0.03)


def test_small_solves_run_blas_on_the_calling_thread_alone() -> None:
    from pipeline.ortho.exposure import _blas_threads_setter, _one_blas_thread

    setter = _blas_threads_setter()
    if setter is None:
        pytest.skip("numpy is not built on OpenBLAS")
    previous = setter(3)
    try:
        with _one_blas_thread():
            assert setter(1) == 1
        assert setter(3) == 3  # restored on leaving
    finally:
        setter(previous)


def test_overlap_stats_of_many_pairs_match_each_pair_alone() -> None:
    from pipeline.ortho.exposure import overlap_stats_many

    rng = np.random.default_rng(3)
    sizes = (300, 5, 0, 120)  # a pair with too few cells and one with none are left out
    rgb_i = [rng.integers(0, 256, (k, 3)).astype(np.uint8) for k in sizes]
    rgb_j = [np.clip(x * rng.uniform(0.7, 1.3) + rng.normal(0, 4, x.shape), 0, 255).astype(np.uint8) for x in rgb_i]
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    many = overlap_stats_many(np.arange(4), np.arange(4) + 10, np.concatenate(rgb_i), np.concatenate(rgb_j), bounds)
    alone = [overlap_stats(p, p + 10, a[:, None], b[:, None], np.ones((a.shape[0], 1), bool)) for p, (a, b) in enumerate(zip(rgb_i, rgb_j))]
    assert [s.i for s in many] == [0, 3]
    assert many == [s for s in alone if s is not None]


def test_shared_cells_pair_the_same_ground_cells() -> None:
    from pipeline.ortho.flight import SharedCells

    rng = np.random.default_rng(8)
    wins = [Window(0, 0, 7, 5), Window(4, 2, 6, 6), Window(20, 20, 3, 3), Window(2, 3, 9, 4)]
    inputs = [SeamInput(w, rng.uniform(size=(w.height, w.width)) > 0.3, np.zeros((w.height, w.width), np.float32), np.zeros((w.height, w.width, 3), np.uint8)) for w in wins]
    runs = list(SharedCells.in_runs(inputs, max_cells=5))  # about one pair a run
    start = np.concatenate([[0], np.cumsum([inp.valid.size for inp in inputs])])

    def ground(k: int, flat: int) -> tuple[int, int]:
        r, c = divmod(flat - int(start[k]), wins[k].width)
        assert inputs[k].valid[r, c]
        return r + wins[k].row_off, c + wins[k].col_off

    seen = {}
    for shared in runs:
        for p, (i, j) in enumerate(zip(shared.i.tolist(), shared.j.tolist())):
            rows = range(shared.bounds[p], shared.bounds[p + 1])
            cells = [ground(i, int(shared.cell_i[r])) for r in rows]
            assert cells == [ground(j, int(shared.cell_j[r])) for r in rows]
            seen[(i, j)] = set(cells)
    assert len(runs) > 1 and list(seen) == sorted(seen)  # several runs, pairs in image order
    def seen_by(k: int) -> set[tuple[int, int]]:
        return {(r + wins[k].row_off, c + wins[k].col_off) for r, c in zip(*np.nonzero(inputs[k].valid))}

    for i in range(4):
        for j in range(i + 1, 4):
            assert seen.get((i, j), set()) == seen_by(i) & seen_by(j)


# -- seams ----------------------------------------------------------------------------
def _two_image_strip(h: int = 20, w: int = 40) -> tuple[list[SeamInput], np.ndarray, np.ndarray]:
    cols = np.arange(w, dtype=np.float32)[None, :].repeat(h, 0)
    cost_a = 0.02 * cols  # image A is nadir at the left, B at the right
    cost_b = 0.02 * (w - 1 - cols)
    rgb = np.full((h, w, 3), 120, np.uint8)
    valid = np.ones((h, w), bool)
    inputs = [SeamInput(Window(0, 0, w, h), valid, cost_a.astype(np.float32), rgb), SeamInput(Window(0, 0, w, h), valid, cost_b.astype(np.float32), rgb)]
    z = np.zeros((h, w), np.float32)
    z[6:14, 16:24] = 8.0  # a building on the Voronoi seam (column 19/20)
    return inputs, z, valid


def test_seam_goes_round_a_building_that_voronoi_cuts() -> None:
    inputs, z, _ = _two_image_strip()
    weights = SeamWeights()
    geo = seam_geometry_cost(z, 1.0, weights, ground_radius_m=6.0)
    solver = SeamSolver(z.shape, inputs, geo, 1.0, weights)
    building = z > 0
    voronoi = solver.labels.copy()
    assert len(np.unique(voronoi[building])) == 2  # the plain nearest-nadir seam cuts the building
    e0 = solver.energy()
    labels = solver.solve(3)
    assert solver.energy() < e0
    assert len(np.unique(labels[building])) == 1  # one image gives the whole roof
    # ... and the seam keeps off the building's walls: no label change next to it.
    ring = np.zeros_like(building)
    ring[5:15, 15:25] = True
    edges_h = labels[:, 1:] != labels[:, :-1]
    assert not (edges_h & ring[:, 1:] & ring[:, :-1]).any()


def test_expansion_move_is_optimal_on_a_tiny_grid() -> None:
    rng = np.random.default_rng(5)
    h, w, n = 3, 3, 3
    inputs = []
    for _ in range(n):
        rgb = rng.integers(0, 255, (h, w, 3)).astype(np.uint8)
        cost = rng.uniform(0, 2, (h, w)).astype(np.float32)
        valid = rng.uniform(size=(h, w)) > 0.2
        valid[0, 0] = True
        inputs.append(SeamInput(Window(0, 0, w, h), valid, np.where(valid, cost, np.inf).astype(np.float32), rgb))
    geo = rng.uniform(0, 1, (h, w)).astype(np.float32)
    weights = SeamWeights(seam=0.5)
    solver = SeamSolver((h, w), inputs, geo, 1.0, weights)
    for alpha in range(n):
        start = solver.labels.copy()
        start_cost = solver.cost.copy()
        region = [(r, c) for r in range(h) for c in range(w) if inputs[alpha].valid[r, c]]
        best = np.inf
        for pick in itertools.product([0, 1], repeat=len(region)):
            solver.labels = start.copy()
            solver.cost = start_cost.copy()
            for take, (r, c) in zip(pick, region):
                if take:
                    solver.labels[r, c] = alpha
                    solver.cost[r, c] = inputs[alpha].cost[r, c]
            best = min(best, solver.energy())
        solver.labels = start
        solver.cost = start_cost
        solver.expand(alpha)
        assert solver.energy() == pytest.approx(best, rel=1e-3, abs=1e-2)


def test_move_cut_is_the_largest_minimiser_of_the_binary_energy() -> None:
    """The move's min cut (max-flow from either terminal) minimises sum d x + sum w (1 - x_p) x_q
    exactly, and of the minimisers takes the largest set of cells (ties go to alpha)."""
    rng = np.random.default_rng(11)
    for trial in range(60):
        h, w = 3, 4
        region = rng.uniform(size=(h, w)) > 0.25
        # Mostly positive or mostly negative unaries, so the flow runs from either terminal;
        # small integers, so ties occur.
        d = rng.integers(-4, 5, (h, w)) + (3 if trial % 2 else -3)
        qh = np.zeros((h, w), np.int32)
        qv = np.zeros((h, w), np.int32)
        qh[:, :-1] = rng.integers(0, 4, (h, w - 1)) * (region[:, :-1] & region[:, 1:])
        qv[:-1, :] = rng.integers(0, 4, (h - 1, w)) * (region[:-1, :] & region[1:, :])
        cells = list(zip(*np.nonzero(region)))
        energies = {}
        for pick in itertools.product([0, 1], repeat=len(cells)):
            x = np.zeros((h, w), np.int64)
            for v, (r, c) in zip(pick, cells):
                x[r, c] = v
            e = (d * x).sum() + (qh[:, :-1] * (1 - x[:, :-1]) * x[:, 1:]).sum() + (qv[:-1, :] * (1 - x[:-1, :]) * x[1:, :]).sum()
            energies[pick] = int(e)
        best = min(energies.values())
        largest = np.any([np.array(p, bool) for p, e in energies.items() if e == best], axis=0)
        take = SeamSolver._min_cut(region, d.astype(np.float64), qh, qv)
        assert np.array_equal(take, largest)


def test_coarse_to_fine_solve_goes_round_the_building() -> None:
    inputs, z, _ = _two_image_strip()
    weights = SeamWeights()
    geo = seam_geometry_cost(z, 1.0, weights, ground_radius_m=6.0)
    start = SeamSolver(z.shape, inputs, geo, 1.0, weights).energy()
    assert 2.0 <= weights.coarse_cell_m  # the 1 m grid is solved on 2 m cells first
    solver = solve_labels(z.shape, inputs, geo, 1.0, weights, 3)
    labels = solver.labels
    building = z > 0
    assert solver.energy() < start
    assert len(np.unique(labels[building])) == 1
    ring = np.zeros_like(building)
    ring[5:15, 15:25] = True
    edges_h = labels[:, 1:] != labels[:, :-1]
    assert not (edges_h & ring[:, 1:] & ring[:, :-1]).any()


def _town_seam_problem(seed: int, h: int = 72, w: int = 96, n: int = 3) -> tuple[list[SeamInput], np.ndarray]:
    """n x n overlapping images over a textured town (boxes in the DSM), with noisy colours."""
    rng = np.random.default_rng(seed)
    z = np.zeros((h, w), np.float32)
    for _ in range(8):
        r, c = rng.integers(0, h - 8), rng.integers(0, w - 8)
        z[r : r + rng.integers(4, 9), c : c + rng.integers(4, 9)] = rng.uniform(3, 12)
    scene = cv2.GaussianBlur(rng.uniform(0, 255, (h, w, 3)).astype(np.float32), (0, 0), 2.0)
    inputs = []
    for i in range(n):
        for j in range(n):
            cy, cx = (i + 0.5) * h / n, (j + 0.5) * w / n
            r0, c0 = max(0, int(cy - 0.5 * h / n - 10)), max(0, int(cx - 0.5 * w / n - 12))
            r1, c1 = min(h, int(cy + 0.5 * h / n + 10)), min(w, int(cx + 0.5 * w / n + 12))
            rr, cc = np.mgrid[r0:r1, c0:c1]
            cost = (0.002 * ((rr - cy) ** 2 + (cc - cx) ** 2)).astype(np.float32)
            valid = rng.uniform(size=cost.shape) > 0.02
            noise = rng.normal(0, 3, (r1 - r0, c1 - c0, 3))
            rgb = np.clip(scene[r0:r1, c0:c1] * rng.uniform(0.9, 1.1) + noise, 0, 255).astype(np.uint8)
            inputs.append(SeamInput(Window(c0, r0, c1 - c0, r1 - r0), valid, np.where(valid, cost, np.inf).astype(np.float32), rgb))
    return inputs, z


def test_coarse_to_fine_reaches_the_single_level_energy() -> None:
    """The coarse-to-fine solve ends where the single-level solve does (within half a percent over
    a dozen problems, 2% on any one), at a fraction of its max-flow work."""
    weights = SeamWeights()
    single_total = pyramid_total = 0.0
    for seed in range(6):
        inputs, z = _town_seam_problem(seed)
        for cell in (0.5, 1.0):  # two coarse levels, one coarse level
            geo = seam_geometry_cost(z, cell, weights)
            single = SeamSolver(z.shape, inputs, geo, cell, weights)
            single.solve(2)
            pyramid = solve_labels(z.shape, inputs, geo, cell, weights, 2)
            assert pyramid.energy() <= 1.02 * single.energy()
            single_total += single.energy()
            pyramid_total += pyramid.energy()
    assert pyramid_total <= 1.005 * single_total


def test_coarsened_labels_are_valid_on_every_fine_cell() -> None:
    inputs, z = _town_seam_problem(1, h=33, w=47)  # odd sizes: blocks past the edge
    geo = seam_geometry_cost(z, 1.0, SeamWeights())
    (ch, cw), coarse, cgeo = coarsen(z.shape, inputs, geo, 2)
    assert (ch, cw) == (17, 24) and cgeo.shape == (17, 24)
    for fine, c in zip(inputs, coarse):
        for r, col in zip(*np.nonzero(c.valid)):
            gr, gc = r + c.window.row_off, col + c.window.col_off
            rows = [y for y in (2 * gr, 2 * gr + 1) if y < z.shape[0]]
            cols = [x for x in (2 * gc, 2 * gc + 1) if x < z.shape[1]]
            cells = [(y - fine.window.row_off, x - fine.window.col_off) for y in rows for x in cols]
            assert all(0 <= y < fine.window.height and 0 <= x < fine.window.width and fine.valid[y, x] for y, x in cells)
            assert c.cost[r, col] == pytest.approx(np.mean([fine.cost[y, x] for y, x in cells]), rel=1e-5)


def test_colour_lookup_matches_each_image() -> None:
    inputs, z = _town_seam_problem(2)
    solver = SeamSolver(z.shape, inputs, np.zeros_like(z), 1.0, SeamWeights())
    rng = np.random.default_rng(0)
    label = rng.integers(-1, len(inputs), 500).astype(np.int32)
    rows, cols = rng.integers(0, z.shape[0], 500), rng.integers(0, z.shape[1], 500)
    colour, ok = solver._colour_at(label, rows, cols)
    for k, r, c, col, good in zip(label, rows, cols, colour, ok):
        if k < 0:
            assert not good
            continue
        inp = inputs[k]
        rr, cc = r - inp.window.row_off, c - inp.window.col_off
        expect = 0 <= rr < inp.window.height and 0 <= cc < inp.window.width and bool(inp.valid[rr, cc])
        assert good == expect
        if expect:
            assert np.array_equal(col, inp.rgb[rr, cc].astype(np.float32))


# -- blending -------------------------------------------------------------------------
def test_low_band_crosses_a_seam_smoothly() -> None:
    h, w = 20, 40
    dark = np.full((h, w, 3), 80.0, np.float32)
    light = np.full((h, w, 3), 120.0, np.float32)
    labels = np.zeros((h, w), np.int32)
    labels[:, w // 2 :] = 1
    valid = np.ones((h, w), bool)
    (d0, d1), _ = low_band_corrections([dark, light], [valid, valid], labels, sigma=3.0)
    out = np.where(labels[..., None] == 0, dark + d0, light + d1)[10, :, 0]
    assert np.abs(np.diff(out)).max() < 10.0  # the 40-level step is spread out
    assert abs(out[0] - 80.0) < 2.0 and abs(out[-1] - 120.0) < 2.0  # far from the seam, untouched


def test_low_band_ignores_occluded_samples() -> None:
    h, w = 20, 40
    a = np.full((h, w, 3), 100.0, np.float32)
    b = np.full((h, w, 3), 100.0, np.float32)
    b[:, 25:] = 255.0  # garbage where B is occluded
    valid_b = np.ones((h, w), bool)
    valid_b[:, 25:] = False
    labels = np.zeros((h, w), np.int32)
    labels[:, 20:] = 1
    labels[:, 25:] = 0
    (d0, d1), _ = low_band_corrections([a, b], [np.ones((h, w), bool), valid_b], labels, sigma=3.0)
    assert np.abs(d0).max() < 1e-3 and np.abs(d1).max() < 1e-3


def test_aligned_seam_labels_match_the_general_lookup() -> None:
    from models.raster import GridSpec
    from pipeline.ortho.flight import seam_grid_for
    from pipeline.ortho.tile import _seam_labels, _seam_labels_aligned

    grid = GridSpec("EPSG:32633", 500_000.0, 4_000_100.0, 0.05, 1000, 700)
    sg = seam_grid_for(grid, 0.05, 16.0, 10**9)
    assert sg.resolution == pytest.approx(16 * 0.05) and sg.x_min == grid.x_min
    labels = np.random.default_rng(0).integers(-1, 9, sg.shape).astype(np.int32)
    for window in (Window(0, 0, 128, 128), Window(300, 257, 333, 200), Window(900, 600, 100, 100)):
        fast = _seam_labels_aligned(labels, sg, grid, window)
        xs, ys = grid.cell_centers(window)
        assert fast is not None and np.array_equal(fast, _seam_labels(labels, sg, xs, ys))


def test_hidden_by_measures_how_far_behind_the_surface() -> None:
    from pipeline.ortho.visibility import hidden_by

    xs, ys, z = _box_scene()
    pose = Pose.from_center(world_to_camera_from_gimbal(0.0, -90.0), np.array([-10.0, 0.0, 40.0]))
    proj = LocalProjector(CAM, pose, np.zeros(3))
    zb = build_zbuffer(proj, occluders_from_grid(xs, ys, z, 0.25, 0.5, floor=np.zeros_like(z)), zbuffer_cell(0.25, CAM.focal_px, 30.0))
    px = np.array([-5.0, 8.0], np.float32)
    u, v, d, _ = proj.project(px, np.zeros(2, np.float32), np.zeros(2, np.float32))
    behind = hidden_by(zb, u, v, d, CAM.focal_px, 0.5)
    assert behind[0] <= 0 and behind[1] > 2.0  # open ground; ground well behind the 10 m box


def test_shading_fit_recovers_the_fall_off() -> None:
    from pipeline.ortho.exposure import PairSamples, fit_shading

    rng = np.random.default_rng(4)
    a_true = (-0.35, 0.08)
    gains = [1.0, 0.8, 1.25, 1.1]
    n = 4000
    ground = rng.uniform(40, 200, n).astype(np.float32)
    xy = [(rng.uniform(-0.8, 0.8, n).astype(np.float32), rng.uniform(-0.6, 0.6, n).astype(np.float32)) for _ in gains]

    def seen(i: int) -> np.ndarray:
        r2 = xy[i][0] ** 2 + xy[i][1] ** 2
        return ground * gains[i] * np.exp(a_true[0] * r2 + a_true[1] * r2**2)

    pairs = [PairSamples(i, j, seen(i), seen(j), xy[i], xy[j]) for i in range(4) for j in range(i + 1, 4)]
    coeffs = fit_shading(pairs, [0, 0, 0, 0], 1, ridge_image=1.0, ridge=1e-6)
    assert np.allclose(coeffs[0, 5:], a_true, atol=0.03)
    assert np.abs(coeffs[:, :5]).max() < 0.05  # no per-image field was needed


def test_cell_lattice_projection_matches_the_exact_projection() -> None:
    from pipeline.ortho.tile import CellLattice

    ki, res, nr, nc = 16, 0.05, 24, 30
    x0, y0 = -12.0, 9.0  # top-left corner of the cells (local frame)

    def height(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        hills = 2.0 * np.sin(x / 7.0) * np.cos(y / 5.0) + 0.3 * x
        box = (x > -4.0) & (x < 3.0) & (y > 1.0) & (y < 5.0)
        return np.where(box, 9.0, hills).astype(np.float32)

    xc = (x0 + np.arange(nc + 1) * ki * res).astype(np.float32)
    yc = (y0 - np.arange(nr + 1) * ki * res).astype(np.float32)
    lat = CellLattice.build(ki, xc, yc, height(xc[None, :], yc[:, None]))
    for pose in (_pose(2.0, 1.0, 45.0, pitch=-90.0), _pose(-20.0, 15.0, 40.0, pitch=-65.0, yaw=40.0)):
        proj = LocalProjector(CAM, pose, UTM)
        maps = lat.project(proj)
        r, c = (a.ravel().astype(np.int64) for a in np.meshgrid(np.arange(nr), np.arange(nc), indexing="ij"))
        d = np.arange(ki)
        px = (x0 + (c[:, None, None] * ki + d[None, None, :] + 0.5) * res) * np.ones((1, ki, 1))
        py = (y0 - (r[:, None, None] * ki + d[None, :, None] + 0.5) * res) * np.ones((1, 1, ki))
        px, py = px.astype(np.float32).ravel(), py.astype(np.float32).ravel()
        pz = height(px, py)
        u, v, dep, exact = lat.interpolate(maps, r, c, pz)
        ue, ve, de, ok = proj.project(px, py, pz)
        inside = ok & inside_image(ue, ve, CAM.width, CAM.height)
        sel = inside & ~exact
        assert sel.sum() > 0.8 * inside.sum()  # most pixels are interpolated
        err = np.hypot(u - ue, v - ve)[sel]
        assert err.max() < 0.03  # far below 0.1 px (0.024 here: a strong lens distortion, 9 cm GSD)
        assert np.abs(dep - de)[sel].max() < 1e-3
        box = (px > -4.0) & (px < 3.0) & (py > 1.0) & (py < 5.0)
        edge = box & ~((px > -3.9) & (px < 2.9) & (py > 1.1) & (py < 4.9))
        assert exact[edge].all()  # the pixels along the box's edge are projected exactly


def test_dsm_step_cells_match_a_gather_over_every_cell() -> None:
    import cv2

    from pipeline.ortho.dsm import _step_cells

    rng = np.random.default_rng(7)
    z = rng.normal(0.0, 0.1, (60, 70)).astype(np.float32)
    z[10:25, 20:40] += 8.0  # a building
    z[40:44, 5:9] += 3.0
    span = cv2.dilate(z, np.ones((2, 2), np.uint8), anchor=(0, 0), borderType=cv2.BORDER_REPLICATE) - cv2.erode(
        z, np.ones((2, 2), np.uint8), anchor=(0, 0), borderType=cv2.BORDER_REPLICATE
    )
    for step in (0.5, 1.0, 2.5):  # fine target grids (dense path), coarse ones (sparse path), the edge of the block
        for fr, fc in (
            (np.repeat(np.arange(5, 55), 3), np.repeat(np.arange(0, 70), 2)),
            (np.arange(0, 60, 7), np.arange(3, 70, 9)),
            (np.clip(np.arange(50, 70), 0, 59), np.clip(np.arange(60, 75), 0, 69)),
        ):
            fr, fc = fr.astype(np.intp), fc.astype(np.intp)
            rr, cc = _step_cells(z, fr, fc, np.float32(step))
            want = set(zip(*np.nonzero(span[np.ix_(fr, fc)] > np.float32(step))))
            assert set(zip(rr.tolist(), cc.tolist())) == {(int(a), int(b)) for a, b in want}


def test_cells_ruled_out_of_a_frame_have_no_point_in_it() -> None:
    from pipeline.ortho.tile import CellLattice, _off_frame, _PendingCells

    ki, res, nr, nc = 16, 0.05, 40, 48
    rng = np.random.default_rng(3)
    xc = (-30.0 + np.arange(nc + 1) * ki * res).astype(np.float32)
    yc = (20.0 - np.arange(nr + 1) * ki * res).astype(np.float32)
    z4 = rng.uniform(0.0, 1.0, (nr, ki, nc, ki)).astype(np.float32)
    z4[5:12, :, 30:40, :] += 25.0  # a tall building: long prisms
    z4[8, :, 35, :8] -= 25.0  # a cell with its foot and its roof
    lat = CellLattice.build(ki, xc, yc, np.zeros((nr + 1, nc + 1), np.float32))
    rows, cols = (a.ravel().astype(np.intp) for a in np.meshgrid(np.arange(nr), np.arange(nc), indexing="ij"))
    cells = _PendingCells.build(lat, z4, rows, cols)
    for pose in (_pose(-8.0, -4.0, 45.0, pitch=-90.0), _pose(-20.0, 15.0, 40.0, pitch=-60.0, yaw=40.0)):
        proj = LocalProjector(CAM, pose, UTM)
        off = _off_frame(proj, cells)
        assert 0 < off.sum() < off.size  # the scene runs off the frame
        n = 400
        cell = np.repeat(np.flatnonzero(off), n)
        r, c = np.divmod(np.flatnonzero(off), nc)
        px = (xc[np.repeat(c, n)] + rng.uniform(0, ki * res, cell.size)).astype(np.float32)
        py = (yc[np.repeat(r, n)] - rng.uniform(0, ki * res, cell.size)).astype(np.float32)
        zc = z4[r, :, c, :].reshape(r.size, -1)
        lo, hi = np.repeat(zc.min(axis=1), n), np.repeat(zc.max(axis=1), n)
        pz = (lo + rng.uniform(0, 1, cell.size) * (hi - lo)).astype(np.float32)
        u, v, _, ok = proj.project(px, py, pz)
        assert not (ok & inside_image(u, v, CAM.width, CAM.height, 0.5)).any()


def test_dsm_block_sums_skip_holes_and_match_the_masked_sums() -> None:
    """The area-resize path (no holes) and the masked path agree; holes neither count nor spoil a block."""
    from pipeline.ortho.dsm import block_sum, _valid_block_sums

    rng = np.random.default_rng(3)
    z = (rng.random((42, 56)) * 30.0 + 250.0).astype(np.float32)
    total, count = _valid_block_sums(z, 7)
    assert np.all(count == 49.0)
    np.testing.assert_allclose(total, block_sum(z, 7), rtol=1e-6)
    holes = z.copy()
    holes[3, 4] = np.nan
    holes[7:14, 14:21] = np.nan  # one whole block
    holes[20, 30] = np.inf
    total, count = _valid_block_sums(holes, 7)
    assert count[0, 0] == 48.0 and count[1, 2] == 0.0 and count[2, 4] == 48.0 and count[1, 1] == 49.0
    assert np.isfinite(total).all()
    np.testing.assert_allclose(total[0, 0], float(z[:7, :7].sum(dtype=np.float64)) - float(z[3, 4]), rtol=1e-6)


def test_pit_rims_lift_enclosed_pits_only() -> None:
    """A pit walled in every direction takes its rim's height; a corridor, ground beside a wall and a ring open on
    any one side (axis or diagonal) keep theirs."""
    from pipeline.ortho.tile import pit_rims

    z = np.zeros((60, 60), np.float32)
    z[5:25, 5:25] = 9.0
    z[12:16, 12:16] = 0.0  # a pit in a roof (a hole in a canopy's DSM)
    z[30:55, 5:15] = 8.0
    z[30:55, 18:28] = 8.0  # a 3-cell corridor between two buildings
    z[30:55, 40:50] = 10.0  # ground on either side of a building
    out = pit_rims(z, 6)
    assert np.all(out[12:16, 12:16] == 9.0)
    assert np.all(out[z > 0] == z[z > 0])  # a top is its own rim
    assert np.all(out[30:55, 15:18] == 0.0) and np.all(out[30:55, 36:40] == 0.0) and np.all(out[30:55, 50:54] == 0.0)
    yy, xx = np.mgrid[0:41, 0:41]
    ring = np.where((np.hypot(yy - 20, xx - 20) >= 4) & (np.hypot(yy - 20, xx - 20) < 6), 7.0, 0.0).astype(np.float32)
    assert pit_rims(ring, 8)[20, 20] == 7.0
    assert pit_rims(ring, 3)[20, 20] == 0.0  # the rim lies beyond reach
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (-1, -1), (1, -1), (-1, 1)):
        open_ring = ring.copy()
        for s in range(20):
            open_ring[20 + s * dy, 20 + s * dx] = 0.0
        assert pit_rims(open_ring, 8)[20, 20] == 0.0, (dy, dx)
