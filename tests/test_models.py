from __future__ import annotations

import numpy as np
import pyproj
import pytest

from models.camera import CameraModel
from models.codec import from_jsonable, to_jsonable
from models.errors import CRSError
from models.geo import Projector, cgcs2000_gk3_epsg, crs_label, resolve_working_crs, utm_epsg
from models.image import ImageRecord
from models.pose import (
    Pose,
    gimbal_from_rotation,
    matrix_from_quat,
    quat_from_matrix,
    rotation_angle_deg,
    slerp,
    world_to_camera_from_gimbal,
)
from models.raster import GridSpec, Window

CAM = CameraModel("c", 4000, 3000, 3000.0, 3010.0, 2040.0, 1470.0, k1=-0.08, k2=0.02, p1=3e-4, p2=-2e-4)


def test_distortion_roundtrip() -> None:
    rng = np.random.default_rng(1)
    xn = rng.uniform(-0.6, 0.6, size=(500, 2))
    np.testing.assert_allclose(CAM.undistort(CAM.distort(xn)), xn, atol=1e-10)


def test_project_and_ray_are_inverse() -> None:
    rng = np.random.default_rng(2)
    uv = rng.uniform([0, 0], [3999, 2999], size=(200, 2))
    rays = CAM.pixel_to_ray(uv)
    np.testing.assert_allclose(CAM.project(rays * 50.0), uv, atol=1e-6)


def test_project_matches_opencv() -> None:
    import cv2

    pts = np.array([[1.0, -2.0, 30.0], [-5.0, 4.0, 40.0], [0.1, 0.2, 10.0]])
    ref, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), CAM.K, CAM.dist_coeffs)
    np.testing.assert_allclose(CAM.project(pts), ref.reshape(-1, 2), atol=1e-9)


def test_points_behind_camera_are_nan() -> None:
    assert np.isnan(CAM.project(np.array([[0.0, 0.0, -1.0]]))).all()


def test_scaled_camera_keeps_pixel_centre_convention() -> None:
    half = CAM.scaled(0.5)
    X = np.array([[3.0, -2.0, 40.0]])
    full_uv = CAM.project(X)
    np.testing.assert_allclose(half.project(X), (full_uv + 0.5) * 0.5 - 0.5, atol=1e-9)


@pytest.mark.parametrize("yaw,pitch,roll", [(0, -90, 0), (45, -90, 0), (200, -60, 5), (359, -89.9, -3), (90, -30, 0)])
def test_gimbal_roundtrip(yaw: float, pitch: float, roll: float) -> None:
    R = world_to_camera_from_gimbal(yaw, pitch, roll)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    y2, p2, r2 = gimbal_from_rotation(R)
    assert rotation_angle_deg(R, world_to_camera_from_gimbal(y2, p2, r2)) < 1e-6


def test_nadir_image_top_points_to_yaw() -> None:
    # Yaw 90 (east), nadir: the optical axis points down, image "up" (-y) points east.
    R = world_to_camera_from_gimbal(90.0, -90.0, 0.0)
    cam_to_world = R.T
    np.testing.assert_allclose(cam_to_world[:, 2], [0, 0, -1], atol=1e-12)
    np.testing.assert_allclose(-cam_to_world[:, 1], [1, 0, 0], atol=1e-12)


def test_pose_center_and_transforms() -> None:
    R = world_to_camera_from_gimbal(30.0, -80.0, 2.0)
    C = np.array([500100.0, 3845000.0, 250.0])
    pose = Pose.from_center(R, C)
    np.testing.assert_allclose(pose.center, C)
    X = np.array([[500110.0, 3845020.0, 100.0]])
    np.testing.assert_allclose(pose.to_world(pose.to_camera(X)), X)


def test_slerp_halfway() -> None:
    qa = quat_from_matrix(world_to_camera_from_gimbal(10.0, -90.0))
    qb = quat_from_matrix(world_to_camera_from_gimbal(30.0, -90.0))
    mid = matrix_from_quat(slerp(qa, qb, 0.5))
    assert rotation_angle_deg(mid, world_to_camera_from_gimbal(20.0, -90.0)) < 1e-6


def test_utm_and_gk_zones() -> None:
    assert utm_epsg(113.65, 34.75) == 32649
    assert utm_epsg(-91.99, 46.85) == 32615
    assert utm_epsg(151.2, -33.9) == 32756
    assert cgcs2000_gk3_epsg(113.65) == 4547
    assert "114" in pyproj.CRS.from_epsg(4547).name
    assert "75" in pyproj.CRS.from_epsg(cgcs2000_gk3_epsg(75.2)).name


def test_resolve_working_crs() -> None:
    assert crs_label(resolve_working_crs("auto", 113.65, 34.75)) == "EPSG:32649"
    assert crs_label(resolve_working_crs("EPSG:4547", 113.65, 34.75)) == "EPSG:4547"
    assert crs_label(resolve_working_crs("EPSG:4490", 113.65, 34.75)) == "EPSG:4547"
    assert crs_label(resolve_working_crs("4326", 113.65, 34.75)) == "EPSG:32649"
    with pytest.raises(CRSError, match="EPSG:999999"):
        resolve_working_crs("EPSG:999999", 113.65, 34.75)


def test_projector_roundtrip_and_gk_vs_utm() -> None:
    utm = Projector.for_crs(pyproj.CRS.from_epsg(32649))
    gk = Projector.for_crs(pyproj.CRS.from_epsg(4547))
    xyz = utm.forward(113.65, 34.75, 120.0)
    np.testing.assert_allclose(utm.inverse(xyz)[0], [113.65, 34.75, 120.0], atol=1e-9)
    assert abs(gk.forward(114.0, 34.75)[0, 0] - 500000.0) < 1e-6  # CM 114E, no zone prefix
    assert abs(utm.grid_convergence_deg(113.65, 34.75)) < 3.0


def test_codec_roundtrip_image_record() -> None:
    from pathlib import Path

    rec = ImageRecord("a/b.jpg", Path("/x/a/b.jpg"), 10, 20, "cam")
    assert from_jsonable(ImageRecord, to_jsonable(rec)) == rec


def test_grid_covering_and_tiles() -> None:
    g = GridSpec.covering("EPSG:32649", 100.2, 200.1, 150.9, 260.0, 0.5)
    left, bottom, right, top = g.bounds
    assert left <= 100.2 and bottom <= 200.1 and right >= 150.9 and top >= 260.0
    tiles = list(g.tiles(64))
    assert sum(t.width * t.height for t in tiles) == g.width * g.height
    w = Window(10, 10, 20, 20).expanded(15, g.width, g.height)
    assert w.col_off == 0 and w.row_off == 0
    col, row = g.world_to_cell(*[a[:1] for a in g.cell_centers(Window(3, 4, 1, 1))])
    assert col[0] == pytest.approx(3) and row[0] == pytest.approx(4)
