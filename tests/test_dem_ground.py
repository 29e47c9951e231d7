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
