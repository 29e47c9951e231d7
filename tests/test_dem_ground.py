from __future__ import annotations

import numpy as np
import pytest

from pipeline.dem.ground import (
    BUILDING,
    GROUND,
    BuildingOptions,
    SmrfOptions,
    building_points,
    classify,
    csf_ground,
    ground_surface_from,
    smrf_ground,
)


def synthetic_cloud(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sloped noisy ground (120 m square), a 24 x 16 m box 9 m tall, a rough 'tree'. Returns xyz, is_ground, is_building."""
    rng = np.random.default_rng(seed)
    n = 60000
    xy = rng.uniform(0, 120, size=(n, 2))
    ground_z = 50.0 + 0.05 * xy[:, 0] + 1.5 * np.sin(xy[:, 1] / 20.0)
    z = ground_z + rng.normal(0, 0.05, n)
    in_box = (np.abs(xy[:, 0] - 60) < 12) & (np.abs(xy[:, 1] - 60) < 8)
    z[in_box] = 50.0 + 0.05 * 60 + 1.5 * np.sin(3.0) + 9.0 + rng.normal(0, 0.05, in_box.sum()) + 0.1 * (xy[in_box, 1] - 60)
    tree = np.hypot(xy[:, 0] - 25, xy[:, 1] - 95) < 4
    z[tree] = ground_z[tree] + rng.uniform(3, 8, tree.sum())
    xyz = np.column_stack([xy + [500000.0, 4000000.0], z])
    return xyz, ~(in_box | tree), in_box


def test_smrf_separates_box_and_tree() -> None:
    xyz, is_ground, is_building = synthetic_cloud()
    ground, surface = smrf_ground(xyz, SmrfOptions())
    assert ground[is_ground].mean() > 0.97
    assert (~ground[~is_ground]).mean() > 0.97
    # The provisional surface runs under the box at ground level.
    zs = surface.sample(np.array([500060.0]), np.array([4000060.0]))
    assert zs[0] == pytest.approx(50.0 + 3.0 + 1.5 * np.sin(3.0), abs=0.5)
    buildings = building_points(xyz, ground, surface, BuildingOptions())
    cls = classify(xyz, ground, buildings)
    assert (cls[is_building] == BUILDING).mean() > 0.9
    tree = ~is_ground & ~is_building
    assert (cls[tree] == BUILDING).mean() < 0.1
    assert (cls[is_ground] == GROUND).mean() > 0.97


def test_csf_separates_box() -> None:
    xyz, is_ground, is_building = synthetic_cloud(1)
    ground = csf_ground(xyz, cloth_resolution=1.0)
    assert ground[is_ground].mean() > 0.9
    assert (~ground[is_building]).mean() > 0.97
    surface = ground_surface_from(xyz, ground, 1.0)
    zs = surface.sample(np.array([500060.0]), np.array([4000060.0]))
    assert zs[0] == pytest.approx(50.0 + 3.0 + 1.5 * np.sin(3.0), abs=0.7)


def test_low_points_are_noise() -> None:
    from pipeline.dem.ground import LOW_NOISE, below_ground

    xyz, is_ground, is_building = synthetic_cloud(2)
    rng = np.random.default_rng(5)
    sink = np.column_stack([rng.uniform(500080, 500086, 40), rng.uniform(4000010, 4000016, 40), np.full(40, 40.0)])
    allxyz = np.vstack([xyz, sink])
    ground, surface = smrf_ground(allxyz, SmrfOptions())
    low = below_ground(allxyz, surface, 0.5, 1.25)
    cls = classify(allxyz, ground, building_points(allxyz, ground, surface, BuildingOptions()), low)
    assert (cls[-40:] == LOW_NOISE).all()
    assert (cls[:-40] == LOW_NOISE).mean() < 0.001


def test_courtyard_stays_ground() -> None:
    rng = np.random.default_rng(4)
    n = 50000
    xy = rng.uniform(0, 100, size=(n, 2))
    z = 20.0 + rng.normal(0, 0.03, n)
    ring = (np.abs(xy[:, 0] - 50) < 14) & (np.abs(xy[:, 1] - 50) < 14)
    court = (np.abs(xy[:, 0] - 50) < 6) & (np.abs(xy[:, 1] - 50) < 6)
    z[ring & ~court] += 10.0  # a block around a 12 m courtyard
    xyz = np.column_stack([xy + [300000.0, 5000000.0], z])
    ground, surface = smrf_ground(xyz, SmrfOptions())
    assert ground[court].mean() > 0.95
    assert (~ground[ring & ~court]).mean() > 0.97


def test_raised_terrain_narrower_than_window_stays_ground() -> None:
    from tests.demscene import dem_scene

    scene = dem_scene(density=2.0)
    opts = SmrfOptions(cell_percentile=10.0)
    ground, surface = smrf_ground(scene.xyz, opts)
    plain_ground = scene.kind == "ground"
    # SMRF alone cuts the 34 m wide arm of the bench down to the plain ...
    smrf_only, _ = smrf_ground(scene.xyz, SmrfOptions(cell_percentile=10.0, grow_slope=0.0))
    assert smrf_only[scene.arm & plain_ground].mean() < 0.6
    # ... ground growing back from the rest of the bench keeps it, and stops at the car, the trees and the roofs.
    assert ground[scene.arm & plain_ground].mean() > 0.97
    assert ground[plain_ground].mean() > 0.97
    for kind, share in (("car", 0.95), ("tree", 0.9), ("building", 0.99)):
        assert (~ground[scene.kind == kind]).mean() > share, kind
    on_arm = scene.arm & plain_ground
    err = surface.sample(scene.xyz[on_arm, 0], scene.xyz[on_arm, 1]) - scene.terrain[on_arm]
    assert np.median(np.abs(err)) < 0.1


def test_grow_ground_climbs_ramps_not_steps() -> None:
    from pipeline.dem.ground import grow_ground

    z = np.zeros((20, 40), np.float32)
    z[:, 10:20] = np.linspace(0.0, 4.0, 10)[None, :]  # a ramp of 0.44 per cell (0.31 per metre along a diagonal) ...
    z[:, 20:] = 4.0  # ... up to a plateau
    z[5:9, 30:34] = 5.5  # a 1.5 m box on the plateau
    z[12:15, 25:28] = 4.3  # a low step: 0.3 m
    seeds = np.zeros(z.shape, bool)
    seeds[:, :5] = True
    eligible = np.ones(z.shape, bool)
    eligible[0, :] = False  # e.g. vegetation: never joins
    out = grow_ground(z, seeds, eligible, 0.5)
    assert out[1:, :].sum() == 19 * 40 - 16  # everything but the box
    assert not out[5:9, 30:34].any()
    assert out[0, :5].all() and not out[0, 5:].any()
    # Steeper than the ramp along rows and diagonals: growth stops at its foot (column 10, z = 0).
    assert (grow_ground(z, seeds, eligible, 0.3) == (seeds | (eligible & (np.arange(40)[None, :] < 11)))).all()


def test_csf_on_the_low_surface_ignores_low_outliers() -> None:
    from pipeline.dem.ground import csf_cells, ground_test, low_surface, surface_from_cells

    xyz, is_ground, is_building = synthetic_cloud(3)
    rng = np.random.default_rng(6)
    sink = np.column_stack([rng.uniform(500030, 500034, 60), rng.uniform(4000030, 4000034, 60), np.full(60, 30.0)])
    allxyz = np.vstack([xyz, sink])
    opts = SmrfOptions(cell_percentile=10.0)
    low = low_surface(allxyz, opts.cell, opts.cell_percentile)
    surface = surface_from_cells(low, csf_cells(low, 1.0, opts), opts)
    ground = ground_test(allxyz, surface, opts.threshold, opts.scalar)[:-60]
    assert ground[is_ground].mean() > 0.95
    assert (~ground[is_building]).mean() > 0.97


def test_ground_does_not_grow_onto_a_car() -> None:
    """A photogrammetric car is a smooth 1.4 m blob: 1 m cells can step up its hood by less than the
    growth slope allows. Growth only enters objects at least ``grow_min_width`` wide; a car is 2 m."""
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 50, (75000, 2))
    base = 0.02 * xy[:, 0] + rng.normal(0, 0.03, len(xy))
    z = base + 1.4 * np.exp(-(((xy[:, 0] - 25.5) / 1.8) ** 4) - ((xy[:, 1] - 25.5) / 1.1) ** 2)
    roof = z - base > 1.0
    xyz = np.column_stack([xy + [400000.0, 5000000.0], z])
    climbed, _ = smrf_ground(xyz, SmrfOptions(cell_percentile=10.0, grow_min_width=0.0))
    assert climbed[roof].mean() > 0.9  # what the width test prevents
    ground, _ = smrf_ground(xyz, SmrfOptions(cell_percentile=10.0))
    assert not ground[roof].any()
    assert ground[z - base < 0.05].mean() > 0.99
