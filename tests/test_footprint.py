"""Footprints and overlap against synthetic ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.camera import CameraModel
from models.footprint import (
    AttitudeSource,
    attitude_for,
    clip_convex,
    contains_convex,
    footprint,
    intersection_area,
    overlap_stats,
    polygon_area,
    principal_range,
    split_strips,
    track_yaws,
)
from models.image import Attitude, ImageRecord

CAM = CameraModel("c", 4000, 3000, 3000.0, 3000.0, 1999.5, 1499.5)
NADIR_NORTH = Attitude(0.0, -90.0, 0.0)


def test_nadir_footprint_size_and_orientation() -> None:
    poly = footprint(CAM, np.array([1000.0, 2000.0, 150.0]), NADIR_NORTH, 50.0)
    assert poly is not None
    xs, ys = poly[:, 0], poly[:, 1]
    assert xs.max() - xs.min() == pytest.approx(4000 / 3000 * 100)  # image width runs east
    assert ys.max() - ys.min() == pytest.approx(3000 / 3000 * 100)
    assert poly.mean(axis=0) == pytest.approx([1000.0, 2000.0])
    assert polygon_area(poly) == pytest.approx(133.333 * 100, rel=1e-4)
    assert principal_range(CAM, np.array([0.0, 0.0, 150.0]), NADIR_NORTH, 50.0) == pytest.approx(100.0)


def test_yaw_and_grid_convergence_turn_the_footprint() -> None:
    east = footprint(CAM, np.array([0.0, 0.0, 100.0]), Attitude(90.0, -90.0, 0.0), 0.0)
    assert east is not None
    assert np.ptp(east[:, 1]) == pytest.approx(133.333, rel=1e-4)  # width now runs north-south
    turned = footprint(CAM, np.array([0.0, 0.0, 100.0]), Attitude(30.0, -90.0, 0.0), 0.0, grid_convergence_deg=30.0)
    assert turned is not None
    assert np.ptp(turned[:, 0]) == pytest.approx(133.333, rel=1e-4)  # yaw 30 from true north = grid north


def test_oblique_footprint_and_horizon() -> None:
    tilted = footprint(CAM, np.array([0.0, 0.0, 100.0]), Attitude(0.0, -60.0, 0.0), 0.0)
    assert tilted is not None
    assert tilted[:, 1].mean() > 20.0  # looks forward (north)
    assert footprint(CAM, np.array([0.0, 0.0, 100.0]), Attitude(0.0, -10.0, 0.0), 0.0) is None
    assert footprint(CAM, np.array([0.0, 0.0, 10.0]), NADIR_NORTH, 20.0) is None  # below the ground


def test_polygon_clipping() -> None:
    a = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], dtype=float)
    assert intersection_area(a, a + 5) == pytest.approx(25.0)
    assert intersection_area(a, a + 20) == 0.0
    diamond = np.array([[5, -2], [12, 5], [5, 12], [-2, 5]], dtype=float)  # area 98, four 2x4 tips outside
    assert polygon_area(clip_convex(diamond, a)) == pytest.approx(98.0 - 4 * 4.0)
    assert contains_convex(a, np.array([[5, 5], [11, 5], [10, 10]])).tolist() == [True, False, True]


def _grid(n_strips: int, per_strip: int, forward_m: float, side_m: float) -> tuple[list[np.ndarray], np.ndarray]:
    polys, xy = [], []
    for s in range(n_strips):
        order = range(per_strip) if s % 2 == 0 else reversed(range(per_strip))
        for k in order:
            c = np.array([s * side_m, k * forward_m, 150.0])
            heading = 0.0 if s % 2 == 0 else 180.0
            p = footprint(CAM, c, Attitude(heading, -90.0, 0.0), 50.0)
            assert p is not None
            polys.append(p)
            xy.append(c[:2])
    return polys, np.array(xy)


def test_overlap_of_a_lawnmower_grid() -> None:
    polys, xy = _grid(3, 6, forward_m=20.0, side_m=40.0)
    strips = split_strips(xy)
    assert strips == [0] * 6 + [1] * 6 + [2] * 6
    ov = overlap_stats(polys, strips)
    assert ov is not None
    assert ov.forward == pytest.approx(1 - 20.0 / 100.0)
    assert ov.side == pytest.approx(1 - 40.0 / 133.333, rel=1e-3)
    assert ov.strips == 3
    # Union: 133.3 + 2 * 40 wide, 100 + 5 * 20 long.
    assert ov.area_m2 == pytest.approx((133.333 + 80.0) * 200.0, rel=0.01)
    # Only the outer 40 x 20 m corners of the four corner images are seen by no other image.
    assert ov.covered_by_others == pytest.approx(1.0 - 4 * (40.0 * 20.0 / 13333.3) / 18, abs=0.003)
    assert ov.views_mean > 3.0


def test_track_yaws() -> None:
    yaws = track_yaws(np.array([[0.0, 0.0], [0.0, 10.0], [10.0, 10.0]]))
    assert yaws[0] == pytest.approx(0.0) and yaws[1] == pytest.approx(45.0) and yaws[2] == pytest.approx(90.0)
    assert track_yaws(np.array([[0.0, 0.0]])) == [None]


def test_attitude_priority() -> None:
    base = ImageRecord(name="a", path=Path("/a"), width=10, height=10, camera_id="c")
    assert attitude_for(base).source is AttitudeSource.NADIR
    assert attitude_for(base, 30.0).source is AttitudeSource.TRACK
    from dataclasses import replace

    course = replace(base, course_deg=12.0)
    assert attitude_for(course, 30.0).attitude.yaw == 12.0
    flight = replace(course, flight=Attitude(50.0, 3.0, 1.0))
    assert attitude_for(flight).source is AttitudeSource.FLIGHT and attitude_for(flight).attitude.pitch == -90.0
    gimbal = replace(flight, gimbal=Attitude(45.0, -80.0, 0.5))
    assert attitude_for(gimbal).attitude == Attitude(45.0, -80.0, 0.5)
