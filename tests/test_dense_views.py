from __future__ import annotations

import numpy as np
import pytest

from models.reconstruction import Reconstruction, RegisteredImage, SparsePoints
from pipeline.dense.views import NeighbourOptions, angle_weight, estimate_gsd, plan_views
from tests.dense_scenes import nadir_camera, nadir_pose


def grid_flight(nx: int = 4, ny: int = 3, dx: float = 30.0, dy: float = 20.0, height: float = 100.0, with_points: bool = True) -> Reconstruction:
    cam = nadir_camera(640, 480, 600.0)
    images = {}
    for j in range(ny):
        for i in range(nx):
            name = f"IMG_{j}{i}.JPG"
            images[name] = RegisteredImage(name, cam.camera_id, nadir_pose(i * dx, j * dy, height))
    pts = SparsePoints.empty()
    if with_points:
        rng = np.random.default_rng(0)
        xyz = np.column_stack([rng.uniform(-50, nx * dx + 20, 4000), rng.uniform(-40, ny * dy + 20, 4000), rng.normal(0.0, 1.0, 4000)])
        pts = SparsePoints(xyz, np.zeros((4000, 3), np.uint8), np.zeros(4000), np.full(4000, 2, np.int32))
    return Reconstruction("EPSG:32633", {cam.camera_id: cam}, images, pts)


def test_angle_weight() -> None:
    opts = NeighbourOptions(angle_min_deg=3.0, angle_opt_deg=12.0, angle_max_deg=45.0)
    w = angle_weight(np.array([1.0, 6.0, 12.0, 30.0, 50.0]), opts)
    assert w[0] == 0.0 and w[-1] == 0.0
    assert w[1] == pytest.approx(0.5**1.5)
    assert w[2] == 1.0 and w[3] == 1.0


@pytest.mark.parametrize("with_points", [True, False])
def test_plan_views_picks_overlapping_neighbours(with_points: bool) -> None:
    rec = grid_flight(with_points=with_points)
    plans = plan_views(rec, NeighbourOptions(num_neighbors=4), ground_z=0.0)
    assert set(plans) == set(rec.images)
    p = plans["IMG_11.JPG"]
    assert len(p.neighbors) == 4
    # The direct neighbours along and across the lines come first; no camera farther than one step away.
    assert set(p.neighbors[:2]) <= {"IMG_10.JPG", "IMG_12.JPG", "IMG_01.JPG", "IMG_21.JPG"}
    c = rec.images["IMG_11.JPG"].pose.center
    for n in p.neighbors:
        assert np.linalg.norm(rec.images[n].pose.center - c) < 40.0
    assert 80.0 < p.depth_min < 90.0 and 110.0 < p.depth_max < 120.0  # the range plus its 15% margin


def test_plan_views_skips_too_small_parallax() -> None:
    rec = grid_flight(nx=2, ny=1, dx=2.0)  # 2 m baseline at 100 m: about 1 degree
    assert plan_views(rec, NeighbourOptions(), ground_z=0.0) == {}


def test_estimate_gsd() -> None:
    rec = grid_flight()
    assert estimate_gsd(rec) == pytest.approx(100.0 / 600.0, rel=0.02)
    assert estimate_gsd(grid_flight(with_points=False), ground_z=0.0) == pytest.approx(100.0 / 600.0, rel=0.01)
