"""Fast unit tests of the SfM building blocks: pairs, priors, similarity, pixel conventions, I/O."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from drone_io.pointcloud import read_las_xyz, write_las
from drone_io.solved_cameras import SolvedCamera, update_camera_collection
from models.camera import CameraModel
from models.errors import GeoreferenceError
from models.features import ImageFeatures, PairGeometry, PairMatches, PairStat
from models.footprint import footprint, polygon_area
from models.gcp import GcpObservation, GcpSet, GroundControlPoint
from models.geo import HeightRef
from models.image import Attitude, GpsPosition, ImageRecord, PositionSource
from models.pose import Pose, world_to_camera_from_gimbal
from models.reconstruction import Reconstruction, RegisteredImage
from models.similarity import Similarity, fit_similarity, fit_similarity_robust
from pipeline.sfm.colmap_bridge import from_colmap_camera, to_colmap_camera, to_colmap_pixels
from pipeline.config import Config, FeatureExtractor, FeaturesConfig, IngestConfig
from pipeline.sfm.georegister import gps_std, prior_covariance, require_georeference, rmse, triangulate, well_spread
from pipeline.sfm.pairs import (
    CandidatePair,
    PairImage,
    PairSource,
    exhaustive_pairs,
    footprint_overlap,
    gps_pairs,
    retrieval_pairs,
    select_pairs,
    sequential_pairs,
)
from pipeline.stages.features import extract_features, root_sift, working_size
from pipeline.stages.matching import _Index, match_descriptors
from pipeline.workspace import Workspace

CAM = CameraModel("cam", 1600, 1200, 1440.0, 1440.0, 799.5 + 24.3, 599.5 - 21.7, -0.078, 0.0125, 0.0006, -0.0004)


def _record(name: str, lat: float = 34.75, lon: float = 113.65, alt: float = 160.0, **gps: float | None) -> ImageRecord:
    return ImageRecord(
        name=name,
        path=Path(f"/nonexistent/{name}"),
        width=1600,
        height=1200,
        camera_id="cam",
        gps=GpsPosition(lat, lon, alt, HeightRef.ORTHOMETRIC, gps.get("h"), gps.get("v")),
        position_source=PositionSource.EXIF,
    )


# -- pair selection ----------------------------------------------------------------------
def _grid(rows: int, cols: int, dx: float, dy: float, height: float = 57.6) -> list[PairImage]:
    """A nadir grid flight: lines along y (image top along the track), cols lines dx apart."""
    out = []
    for c in range(cols):
        for r in range(rows):
            pos = np.array([c * dx, r * dy, height])
            fp = footprint(CAM.without_distortion(), pos, Attitude(0.0, -90.0, 0.0), 0.0)
            out.append(PairImage(f"L{c}S{r}", pos, fp, float(c * rows + r)))
    return out


def test_nadir_footprint_area_and_overlap() -> None:
    cam = CAM.without_distortion()
    a = footprint(cam, np.array([0.0, 0.0, 57.6]), Attitude(0.0, -90.0, 0.0), 0.0)
    assert a is not None
    gsd = 57.6 / 1440.0
    assert math.isclose(polygon_area(a), 1600 * 1200 * gsd * gsd, rel_tol=0.02)
    # Shifting by a quarter of the footprint width leaves 75% overlap.
    b = footprint(cam, np.array([0.25 * 1600 * gsd, 0.0, 57.6]), Attitude(0.0, -90.0, 0.0), 0.0)
    assert b is not None
    assert footprint_overlap(a, b) == pytest.approx(0.75, abs=0.02)
    far = footprint(cam, np.array([5 * 1600 * gsd, 0.0, 57.6]), Attitude(0.0, -90.0, 0.0), 0.0)
    assert far is not None and footprint_overlap(a, far) == 0.0


def test_gps_pairs_add_cross_strip_pairs_from_footprints() -> None:
    # Shots 8 m apart along the lines, lines 22.4 m apart: 65% side overlap (64 m footprint across).
    images = _grid(rows=10, cols=3, dx=22.4, dy=8.0)
    knn_only = gps_pairs([PairImage(i.name, i.position, None, i.order) for i in images], neighbors=4)
    assert all(p.source is PairSource.GPS_NEIGHBOR for p in knn_only)
    with_fp = gps_pairs(images, neighbors=4, min_overlap=0.3)

    def cross(pairs: list[CandidatePair]) -> list[CandidatePair]:
        return [p for p in pairs if p.image1[:2] != p.image2[:2]]

    # The two nearest neighbours of a grid image lie on its own line (except at line ends);
    # footprint overlap adds the neighbouring line.
    def has_cross(pairs: list[CandidatePair]) -> set[str]:
        return {n for p in cross(pairs) for n in (p.image1, p.image2)}

    assert len(has_cross(knn_only)) < len(images) // 2
    assert has_cross(with_fp) == {i.name for i in images}
    assert len(with_fp) < len(exhaustive_pairs([i.name for i in images]))
    assert all(p.image1 < p.image2 for p in with_fp)


def test_gps_pairs_respect_distance_limit() -> None:
    images = _grid(rows=4, cols=1, dx=0.0, dy=100.0)
    assert gps_pairs(images, neighbors=3, max_distance_m=150.0, min_overlap=1.0) == gps_pairs(images, neighbors=1, min_overlap=1.0)


def test_no_gps_fallback_sequential_exhaustive_and_retrieval() -> None:
    images = [PairImage(f"img{i:02d}", None, None, float(i)) for i in range(8)]
    seq = sequential_pairs(images, overlap=2)
    assert {(p.image1, p.image2) for p in seq} >= {("img00", "img01"), ("img00", "img02"), ("img06", "img07")}
    pairs, needs_retrieval = select_pairs(images, 8, 0.0, 0.05, sequential_overlap=2, exhaustive_max_images=10)
    assert not needs_retrieval and len(pairs) == 28
    pairs, needs_retrieval = select_pairs(images, 8, 0.0, 0.05, sequential_overlap=2, exhaustive_max_images=5)
    assert needs_retrieval and len(pairs) == len(seq)
    hist = np.eye(4)[[0, 0, 1, 1, 2, 2, 3, 3]] + 0.01
    ret = retrieval_pairs([i.name for i in images], hist, neighbors=1)
    assert ("img00", "img01") in {(p.image1, p.image2) for p in ret}


# -- priors, similarity, georeference ------------------------------------------------------
def test_gps_prior_covariance_uses_rtk_std_or_default() -> None:
    ingest = IngestConfig(default_gps_std_horizontal_m=3.0, default_gps_std_vertical_m=5.0)
    assert gps_std(_record("a.jpg"), ingest) == (3.0, 5.0)
    assert gps_std(_record("b.jpg", h=0.02, v=0.03), ingest) == (0.02, 0.03)
    cov = prior_covariance(0.02, 0.03)
    assert np.allclose(cov, np.diag([0.0004, 0.0004, 0.0009]))


def test_similarity_fit_recovers_transform_and_rejects_outliers() -> None:
    rng = np.random.default_rng(1)
    src = rng.normal(size=(20, 3)) * 50
    angle = 0.3
    R = np.array([[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]])
    truth = Similarity(2.5, R, np.array([500000.0, 4000000.0, 100.0]))
    dst = truth.apply(src)
    sim = fit_similarity(src, dst)
    assert sim.scale == pytest.approx(2.5) and np.allclose(sim.R, R) and np.allclose(sim.t, truth.t)
    assert np.allclose(sim.inverse().apply(dst), src)
    dst[3] += 40.0
    robust, inliers = fit_similarity_robust(src, dst, threshold=1.0)
    assert not inliers[3] and inliers.sum() == 19
    assert np.allclose(robust.apply(src[inliers]), dst[inliers], atol=1e-6)
    pose = Pose.from_center(np.eye(3), np.array([1.0, 2.0, 3.0]))
    moved = truth.apply_pose(pose)
    assert np.allclose(moved.center, truth.apply(pose.center))


def test_require_georeference_without_gps_needs_three_spread_control_points() -> None:
    no_gps = [ImageRecord("a.jpg", Path("/x/a.jpg"), 100, 100, "cam")]
    cfg = Config()
    with pytest.raises(GeoreferenceError, match="none of the 1 images has GPS"):
        require_georeference(no_gps, None, cfg)
    line = tuple(GroundControlPoint(f"G{i}", 10.0 * i, 0.0, 0.0) for i in range(3))
    with pytest.raises(GeoreferenceError, match="one line"):
        require_georeference(no_gps, GcpSet("g.txt", "EPSG:32649", line, ()), cfg)
    spread = line + (GroundControlPoint("G9", 5.0, 30.0, 0.0),)
    require_georeference(no_gps, GcpSet("g.txt", "EPSG:32649", spread, ()), cfg)
    require_georeference([_record("b.jpg")], None, cfg)
    assert well_spread(np.array([[0, 0], [10, 0], [0, 10]])) and not well_spread(np.array([[0, 0], [1, 0]]))


def test_rmse_in_metres_and_gsd() -> None:
    from models.sfm_report import PositionResidual

    r = rmse([PositionResidual("a", 0.03, 0.04, 0.0), PositionResidual("b", -0.03, -0.04, 0.1)], gsd_m=0.05)
    assert r["horizontal"] == pytest.approx(0.05) and r["z"] == pytest.approx(math.sqrt(0.005))
    assert r["gsd"]["horizontal"] == pytest.approx(1.0)


def test_triangulate_recovers_ground_point() -> None:
    X = np.array([10.0, 5.0, 1.0])
    images = {}
    for k, cx in enumerate([-10.0, 0.0, 12.0]):
        R = world_to_camera_from_gimbal(0.0, -90.0, 0.0)
        images[f"i{k}"] = RegisteredImage(f"i{k}", "cam", Pose.from_center(R, np.array([cx, 0.0, 60.0])))
    rec = Reconstruction("EPSG:32649", {"cam": CAM}, images)
    obs = [GcpObservation("G", n, *rec.project(n, X[None])[0]) for n in images]
    assert np.allclose(triangulate(rec, obs), X, atol=1e-6)
    assert triangulate(rec, obs[:1]) is None


# -- pixel conventions -------------------------------------------------------------------
def test_colmap_camera_conversion_adds_half_pixel() -> None:
    pc = to_colmap_camera(CAM, 7)
    assert pc.model_name == "OPENCV" and pc.camera_id == 7
    assert pc.principal_point_x == pytest.approx(CAM.cx + 0.5)
    back = from_colmap_camera(pc, CAM)
    assert back == CAM
    # The same 3D point projects 0.5 px apart in the two conventions.
    pts = np.array([[0.3, -0.2, 1.0], [-0.4, 0.35, 1.0], [0.0, 0.0, 1.0]])
    ours = CAM.project(pts)
    theirs = np.asarray(pc.img_from_cam(pts))
    assert np.allclose(theirs, to_colmap_pixels(ours), atol=1e-9)


def _blob_image() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    h, w = 420, 560
    ys, xs = np.mgrid[0:h, 0:w].astype(float)
    img = np.full((h, w), 60.0)
    centres = []
    for gy in range(40, h - 40, 50):
        for gx in range(40, w - 40, 50):
            cx, cy = gx + rng.uniform(-0.5, 0.5), gy + rng.uniform(-0.5, 0.5)
            s = rng.uniform(4.0, 6.0)
            img += 150 * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * s * s))
            centres.append((cx, cy))
    return np.clip(img, 0, 255).astype(np.uint8), np.array(centres)


def _keypoint_bias(kp: np.ndarray, centres: np.ndarray) -> np.ndarray:
    d = np.linalg.norm(kp[:, None, :2] - centres[None], axis=2)
    near = d.min(axis=1) < 1.5
    return (kp[near, :2] - centres[d.argmin(axis=1)[near]]).mean(axis=0)


@pytest.mark.parametrize("extractor", [FeatureExtractor.OPENCV_SIFT, FeatureExtractor.COLMAP_SIFT])
def test_keypoints_follow_aerobase_pixel_centres(extractor: FeatureExtractor) -> None:
    """Blobs drawn at known sub-pixel centres come back unbiased (OpenCV's default upscale is +0.25 px)."""
    gray, centres = _blob_image()
    bgr = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    feats = extract_features(bgr, gray.shape[1], gray.shape[0], FeaturesConfig(extractor=extractor), "k")
    assert np.all(np.abs(_keypoint_bias(feats.keypoints, centres)) < 0.05)
    # Detected on a half-size working image, keypoints still land on the full-resolution centres.
    small = cv2.resize(bgr, (gray.shape[1] // 2, gray.shape[0] // 2), interpolation=cv2.INTER_AREA)
    half = extract_features(small, gray.shape[1], gray.shape[0], FeaturesConfig(extractor=extractor), "k")
    assert half.working_scale == pytest.approx(0.5)
    assert np.all(np.abs(_keypoint_bias(half.keypoints, centres)) < 0.15)


def test_working_size_and_root_sift() -> None:
    assert working_size(4000, 2250, 2000) == (2000, 1125)
    assert working_size(1600, 1200, 2000) == (1600, 1200)
    assert working_size(4000, 3000, 0) == (4000, 3000)
    d = root_sift(np.abs(np.random.default_rng(0).normal(size=(5, 128))).astype(np.float32) * 100)
    norms = np.linalg.norm(d.astype(float) / 512.0, axis=1)
    assert d.dtype == np.uint8 and np.allclose(norms, 1.0, atol=0.02)


def test_matching_finds_shifted_copy() -> None:
    gray, _ = _blob_image()
    noise = np.random.default_rng(3).integers(0, 40, gray.shape).astype(np.uint8)
    tex = cv2.GaussianBlur(cv2.add(gray, noise), (3, 3), 0)
    a = extract_features(cv2.cvtColor(tex, cv2.COLOR_GRAY2BGR), tex.shape[1], tex.shape[0], FeaturesConfig(), "a")
    shifted = np.roll(tex, (7, 11), axis=(0, 1))
    b = extract_features(cv2.cvtColor(shifted, cv2.COLOR_GRAY2BGR), tex.shape[1], tex.shape[0], FeaturesConfig(), "b")
    m = match_descriptors(_Index(a.descriptors), _Index(b.descriptors), 0.8, True)
    assert len(m) > 50
    d = b.keypoints[m[:, 1], :2] - a.keypoints[m[:, 0], :2]
    assert np.median(d, axis=0) == pytest.approx([11.0, 7.0], abs=0.05)


# -- workspace and writers ------------------------------------------------------------------
def test_workspace_features_and_matches_round_trip(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    f = ImageFeatures(
        np.arange(12, dtype=np.float32).reshape(3, 4), np.ones((3, 128), np.uint8), np.zeros((3, 3), np.uint8), 0.5, 12.5, "key"
    )
    ws.save_features("sub/a.jpg", f)
    assert ws.features_exist("sub/a.jpg") and ws.features_cache_key("sub/a.jpg") == "key"
    g = ws.load_features("sub/a.jpg")
    assert np.array_equal(g.keypoints, f.keypoints) and g.working_scale == 0.5 and g.sharpness == 12.5
    pm = PairMatches("a", "b", np.array([[0, 1], [2, 2]], np.uint32), 5, PairGeometry.CALIBRATED, np.eye(3), np.eye(3), np.zeros((3, 3)))
    ws.save_matches("batch-0", [pm])
    ws.save_matches("batch-1", [])
    got = ws.load_matches()
    assert len(got) == 1 and got[0].geometry is PairGeometry.CALIBRATED and np.array_equal(got[0].matches, pm.matches)
    ws.save_pair_stats([PairStat("a", "b", 5, 2, True, "gps_neighbor")])
    assert ws.load_pair_stats()[0].inliers == 2
    ws.clear_matches()
    assert ws.load_matches() == []


def test_las_round_trip_with_crs(tmp_path: Path) -> None:
    xyz = np.array([[742550.1234, 3848502.5678, 102.345], [742560.0, 3848510.0, 101.0]])
    rgb = np.array([[255, 0, 0], [0, 128, 255]], np.uint8)
    path = tmp_path / "sparse.laz"
    assert write_las(path, xyz, rgb, "EPSG:32649") == 2
    back, wkt = read_las_xyz(path)
    assert np.allclose(back, xyz, atol=0.0006)
    assert wkt is not None and "32649" in wkt or "UTM zone 49N" in (wkt or "")
    assert [p.name for p in tmp_path.iterdir()] == ["sparse.laz"]


def test_camera_collection_gets_solved_positions() -> None:
    fc = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1.0, 2.0]}, "properties": {"kind": "camera", "image": "a"}},
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1.1, 2.1]}, "properties": {"kind": "camera", "image": "b"}},
        ],
    }
    solved = {n: SolvedCamera(n, 113.0, 34.0, 1.0, 2.0, 3.0, 10.0, -90.0, 0.0) for n in ("a", "c")}
    out = update_camera_collection(fc, solved, {"b": {"unregistered_reason": "blur"}}, "EPSG:32649")
    by = {f["properties"]["image"]: f for f in out["features"]}
    assert by["a"]["geometry"]["coordinates"] == [113.0, 34.0] and by["a"]["properties"]["registered"]
    assert by["b"]["properties"]["registered"] is False and by["b"]["properties"]["unregistered_reason"] == "blur"
    assert "c" in by and fc["features"][0]["geometry"]["coordinates"] == [1.0, 2.0]  # input untouched


def test_unregistered_images_get_a_likely_reason() -> None:
    from pipeline.stages.sfm import ImageStat, _unregistered_reasons

    stats = {
        "ok": ImageStat(8000, 100.0),
        "water": ImageStat(120, 90.0),
        "blurred": ImageStat(3000, 10.0),
        "alone": ImageStat(8000, 95.0),
        "island": ImageStat(8000, 110.0),
        "odd": ImageStat(8000, 105.0),
        "moved": ImageStat(8000, 100.0),
        "x": ImageStat(8000, 100.0),
    }
    pairs = {"ok": 5, "water": 0, "blurred": 1, "island": 3, "odd": 2, "moved": 4}
    got = _unregistered_reasons(
        list(stats), {"ok", "x"}, {"island"}, {"moved": "moved: solved 40 m from its GPS"}, stats, pairs, Config()
    )
    assert {u.name: u.reason.value for u in got} == {
        "water": "too_few_features",
        "blurred": "blur",
        "alone": "no_overlap",
        "island": "other_model",
        "odd": "not_registered",
        "moved": "misregistered",
    }
    assert all(u.name in u.message for u in got)


def test_misregistration_uses_the_stated_gps_accuracy() -> None:
    from models.sfm_report import PositionResidual
    from pipeline.stages.sfm import _misregistered

    res = [
        PositionResidual("consumer", 10.0, 0.0, 0.0, 3.0, 5.0),
        PositionResidual("rtk", 0.5, 0.0, 0.0, 0.02, 0.03),
        PositionResidual("far", 20.0, 0.0, 0.0, 3.0, 5.0),
        PositionResidual("high", 0.0, 0.0, 30.0, 3.0, 5.0),
    ]
    assert [r.name for r in _misregistered(res, 5.0)] == ["rtk", "far", "high"]
