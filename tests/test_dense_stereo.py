from __future__ import annotations

import numpy as np
import pytest

from pipeline.dense.stereo import StereoOptions, combine_pair_depths, pair_depth, rectify
from tests.dense_scenes import nadir_camera, nadir_pose, render_plane, texture


@pytest.fixture(scope="module")
def tex() -> np.ndarray:
    return texture()


@pytest.mark.parametrize(
    "offset, yaw2, k1",
    [((20.0, 0.0), 0.0, 0.0), ((0.0, -18.0), 0.0, 0.0), ((15.0, 10.0), 7.0, -0.08)],
    ids=["along-x", "along-y", "diagonal-rotated-distorted"],
)
def test_pair_depth_on_plane(tex: np.ndarray, offset: tuple[float, float], yaw2: float, k1: float) -> None:
    cam = nadir_camera(k1=k1)
    p1 = nadir_pose(0.0, 0.0, 100.0)
    p2 = nadir_pose(offset[0], offset[1], 101.0, yaw=yaw2)
    img1, true1 = render_plane(cam, p1, tex)
    img2, _ = render_plane(cam, p2, tex)
    depth = pair_depth(img1, cam, p1, img2, cam, p2, 80.0, 120.0, StereoOptions())
    assert depth is not None
    valid = np.isfinite(depth)
    # The neighbour sees most of the reference image.
    assert valid.mean() > 0.5
    err = np.abs(depth[valid] - true1[valid]) / true1[valid]
    assert np.median(err) < 0.003  # 0.3 m at 100 m, well under a pixel of disparity
    assert np.percentile(err, 95) < 0.01


def test_rectify_degenerate_baseline() -> None:
    cam = nadir_camera()
    p1 = nadir_pose(0.0, 0.0, 100.0)
    assert rectify(cam, p1, cam, nadir_pose(0.0, 0.0, 60.0), StereoOptions()) is None
    assert rectify(cam, p1, cam, p1, StereoOptions()) is None


def test_combine_pair_depths() -> None:
    a = np.full((2, 2), 100.0, np.float32)
    b = np.array([[100.4, np.nan], [150.0, 100.2]], np.float32)
    c = np.array([[99.8, 100.1], [100.0, np.nan]], np.float32)
    depth, count = combine_pair_depths([a, b, c], 0.01)
    assert count.tolist() == [[3, 2], [2, 2]]
    assert depth[1, 0] == pytest.approx(100.0)
    assert depth[0, 0] == pytest.approx((100.0 + 100.4 + 99.8) / 3, rel=1e-6)
