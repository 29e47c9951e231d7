from __future__ import annotations

import numpy as np
import pytest

from models.depthmap import DepthMap
from pipeline.dense.consistency import View, backproject, consistent_depth
from pipeline.dense.fusion import FusionOptions, clean_tile, merge, statistical_inliers, voxel_merge
from pipeline.dense.tiles import TileGrid, TileKey
from tests.dense_scenes import nadir_camera, nadir_pose, render_plane, texture


def test_voxel_merge_in_steps_equals_at_once() -> None:
    rng = np.random.default_rng(0)
    xyz = rng.uniform(0, 2, (5000, 3)) + [431000.0, 4583000.0, 100.0]
    rgb = rng.integers(0, 256, (5000, 3), dtype=np.uint8)
    once = voxel_merge(xyz, rgb, 0.25)
    steps = merge([voxel_merge(xyz[:2000], rgb[:2000], 0.25), voxel_merge(xyz[2000:], rgb[2000:], 0.25)], 0.25)
    a = np.lexsort(once.xyz.T)
    b = np.lexsort(steps.xyz.T)
    assert np.allclose(once.xyz[a], steps.xyz[b], atol=1e-9)
    assert np.array_equal(once.count[a], steps.count[b])
    assert int(once.count.sum()) == 5000
    assert len(once) == 8 * 8 * 8


def test_statistical_inliers_drops_far_points() -> None:
    rng = np.random.default_rng(1)
    plane = np.column_stack([rng.uniform(0, 10, 3000), rng.uniform(0, 10, 3000), rng.normal(0, 0.01, 3000)])
    outliers = np.array([[5.0, 5.0, 3.0], [2.0, 8.0, -4.0]])
    keep = statistical_inliers(np.vstack([plane, outliers]), 16, 2.0)
    assert not keep[-2:].any()
    assert keep[:-2].mean() > 0.97


def test_tiles_partition_the_cloud() -> None:
    rng = np.random.default_rng(2)
    xyz = np.column_stack([rng.uniform(0, 40, 20000), rng.uniform(0, 20, 20000), rng.normal(0, 0.02, 20000)])
    rgb = np.zeros((20000, 3), np.uint8)
    grid = TileGrid(20.0)
    opts = FusionOptions(voxel=0.3)
    whole = clean_tile(voxel_merge(xyz, rgb, opts.voxel), (0.0, 0.0, 40.0, 20.0), opts)
    parts = []
    for key in (TileKey(0, 0), TileKey(1, 0)):
        inside = grid.contains(key, xyz, margin=2.0)
        parts.append(clean_tile(voxel_merge(xyz[inside], rgb[inside], opts.voxel), grid.bounds(key), opts))
    assert len(parts[0]) + len(parts[1]) == pytest.approx(len(whole), rel=0.01)
    # No voxel is kept by both tiles.
    keys = [set(map(tuple, np.floor(p.xyz / opts.voxel).astype(int).tolist())) for p in parts]
    assert not keys[0] & keys[1]


def test_consistency_keeps_agreeing_depths_and_drops_outliers() -> None:
    tex = texture(1024)
    cam = nadir_camera(160, 120, 150.0)
    poses = [nadir_pose(0.0, 0.0, 100.0), nadir_pose(20.0, 0.0, 100.0), nadir_pose(0.0, 15.0, 100.0)]
    views = []
    for i, p in enumerate(poses):
        _, depth = render_plane(cam, p, tex)
        d = depth.astype(np.float32)
        views.append(View(DepthMap(f"v{i}", 1.0, d), cam, p))
    ref = views[0]
    bad = ref.depth.depth.copy()
    bad[60, 80] = 130.0  # a mismatch: no other view agrees
    ref = View(DepthMap("v0", 1.0, bad), cam, poses[0])
    out = consistent_depth(ref, views[1:], rel_tol=0.01, min_views=2)
    assert np.isnan(out.depth[60, 80])
    assert out.views is not None and out.views[60, 40] == 3  # seen by all three
    valid = np.isfinite(out.depth)
    assert valid.mean() > 0.5
    assert np.nanmax(np.abs(out.depth - views[0].depth.depth)) < 0.5
    xyz, _, _ = backproject(View(out, cam, poses[0]))
    assert np.abs(xyz[:, 2]).max() < 0.5
