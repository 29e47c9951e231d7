"""The synthetic flight generator (``aerobase synth``): unit tests of its pieces and
end-to-end checks of a rendered flight against its own ground truth.

The slow tests use the ``small`` preset rendered once per session (``conftest.synthetic_small_render``) and check
the four properties every later accuracy figure rests on:

1. a GCP's ground coordinate projects, with the true camera (distortion included), to its
   recorded pixel, and the target's centre is visible there in the JPEG;
2. EXIF and XMP read back with an independent reader (exifread) give the values put in;
3. images and the true orthophoto agree where a ground point is visible;
4. the log's positions at the image times (after the known clock offset) are the true centres.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import cv2
import exifread
import numpy as np
import pytest
import rasterio

from drone_io.exif_writer import ExifFields, ExifGps, build_exif, embed_metadata, xpacket
from drone_io.gcp_writer import format_odm_gcp_list
from drone_io.geotiff_writer import open_geotiff_writer
from drone_io.images import read_image_record
from drone_io.logs.tlog_writer import write_tlog
from drone_io.reconstruction_io import read_reconstruction_json
from drone_io.xmp import build_dji_xmp
from models.camera import CameraModel
from models.gcp import GcpObservation, GcpSet, GroundControlPoint
from models.geo import HeightRef, Projector, parse_crs
from models.pose import Pose, world_to_camera_from_gimbal
from models.raster import GridSpec, Window
from models.track import AttitudeSeries, FlightTrack, PositionSeries, TriggerEvents
from pipeline.synth import SynthOptions, SynthResult, render_flight
from pipeline.synth.flight import plan_flight
from pipeline.synth.presets import PRESETS, resolve_preset
from pipeline.synth.render import (
    HIT_GROUND,
    HIT_ROOF,
    HIT_WALL,
    RayGrid,
    TerrainDepth,
    cast_rays,
    intersect_terrain,
    slab_hits,
)
from pipeline.synth.scene import Building, RoofKind, Terrain, scene_from_json
from models.errors import ConfigError, CRSError

DJI_NS = "http://www.dji.com/drone-dji/1.0/"
RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"


def _terrain() -> Terrain:
    return Terrain(
        base_z=100.0,
        slope_x=0.003,
        slope_y=-0.002,
        amplitudes=(2.0, 0.6, 0.25),
        kx=(0.02, -0.03, 0.07),
        ky=(0.012, 0.04, -0.08),
        phases=(0.3, 1.7, 2.9),
    )


def _camera(width: int = 400, height: int = 300) -> CameraModel:
    f = 0.9 * width
    return CameraModel("cam", width, height, f, f, (width - 1) / 2 + 0.015 * width, (height - 1) / 2 - 0.018 * height,
                       k1=-0.078, k2=0.0125, p1=0.00062, p2=-0.00041)


# -- ray casting --------------------------------------------------------------------------
def test_terrain_intersection_lands_on_the_surface() -> None:
    terrain = _terrain()
    rng = np.random.default_rng(3)
    origin = np.array([5.0, -3.0, 160.0])
    dirs = np.column_stack([rng.uniform(-0.8, 0.8, 500), rng.uniform(-0.8, 0.8, 500), -np.ones(500)])
    t = intersect_terrain(terrain, origin, dirs)
    assert np.all(np.isfinite(t))
    hit = origin + t[:, None] * dirs
    assert np.max(np.abs(hit[:, 2] - terrain.height(hit[:, 0], hit[:, 1]))) < 1e-6
    up = intersect_terrain(terrain, origin, np.array([[0.1, 0.0, 0.2]]))
    assert np.isinf(up[0])


def test_slab_hits_roof_from_above_and_wall_from_the_side() -> None:
    b = Building(0, 10.0, 20.0, 4.0, 3.0, 30.0, 100.0, 112.0, 90.0, RoofKind.GRAVEL, (200, 200, 200), (120, 120, 120))
    origin = np.array([10.0, 20.0, 160.0])
    t, face = slab_hits(b, origin, np.array([0.0]), np.array([0.0]), np.array([-1.0]))
    assert t[0] == pytest.approx(48.0) and face[0] == 2
    # From far to the side, level with the walls: enters through a wall.
    side = np.array([10.0 - 50.0 * math.cos(math.radians(30)), 20.0 - 50.0 * math.sin(math.radians(30)), 105.0])
    d = np.array([math.cos(math.radians(30)), math.sin(math.radians(30)), 0.0])
    t, face = slab_hits(b, side, d[None, 0], d[None, 1], d[None, 2])
    assert t[0] == pytest.approx(46.0) and face[0] == 0
    # A miss.
    t, _ = slab_hits(b, origin, np.array([1.0]), np.array([0.0]), np.array([-0.01]))
    assert np.isinf(t[0])


def test_cast_rays_takes_the_nearest_hit() -> None:
    terrain = _terrain()
    b = Building(0, 0.0, 0.0, 5.0, 5.0, 0.0, 100.0, 110.0, 80.0, RoofKind.GRAVEL, (200, 200, 200), (120, 120, 120))
    origin = np.array([0.0, -30.0, 150.0])
    targets = np.array([[0.0, 0.0, 110.0], [0.0, -20.0, float(terrain.height(np.array(0.0), np.array(-20.0)))]])
    hits = cast_rays(terrain, (b,), origin, targets - origin)
    assert hits.kind[0] == HIT_ROOF and hits.t[0] == pytest.approx(1.0, abs=1e-9)
    assert hits.kind[1] == HIT_GROUND and hits.t[1] == pytest.approx(1.0, abs=1e-7)
    # A ray at the building's wall from the low side.
    wall = cast_rays(terrain, (b,), np.array([0.0, -30.0, 104.0]), np.array([[0.0, 1.0, 0.0]]))
    assert wall.kind[0] == HIT_WALL and wall.t[0] == pytest.approx(25.0)


def test_ray_grid_reprojects_onto_its_sample_positions() -> None:
    cam = _camera()
    rays = RayGrid.build(cam, ss=2)
    i = np.array([0, 17, 300, 599])
    j = np.array([0, 455, 23, 799])
    pc = np.column_stack([rays.xn[i, j], rays.yn[i, j], np.ones(4)]).astype(np.float64)
    uv = cam.project(pc)
    expected = np.column_stack([(j + 0.5) / 2 - 0.5, (i + 0.5) / 2 - 0.5])
    assert np.max(np.abs(uv - expected)) < 1e-4


def test_interpolated_terrain_depths_lie_on_the_terrain() -> None:
    terrain = _terrain()
    cam = _camera(800, 600)
    rays = RayGrid.build(cam, ss=2)
    for pitch in (-90.0, -50.0):
        pose = Pose.from_center(world_to_camera_from_gimbal(33.0, pitch, 0.4), np.array([3.0, -2.0, 157.6]))
        depth = TerrainDepth.build(terrain, rays, pose)
        hs, _ = rays.shape
        R = pose.R
        xn = rays.xn.astype(np.float64)
        yn = rays.yn.astype(np.float64)
        dx = xn * R[0, 0] + yn * R[1, 0] + R[2, 0]
        dy = xn * R[0, 1] + yn * R[1, 1] + R[2, 1]
        dz = xn * R[0, 2] + yn * R[1, 2] + R[2, 2]
        t = depth.rows(0, hs, dz)
        assert np.isfinite(t).mean() > 0.99
        # Against the exact crossing of a random subset of the rays: the hit moves along its
        # ray by far less than the ground size of a pixel there.
        rng = np.random.default_rng(5)
        i = rng.integers(0, hs, 3000)
        j = rng.integers(0, rays.shape[1], 3000)
        d = np.column_stack([dx[i, j], dy[i, j], dz[i, j]])
        exact = intersect_terrain(terrain, pose.center, d)
        ok = np.isfinite(exact)
        norm = np.linalg.norm(d[ok], axis=1)
        shift = np.abs(t[i, j][ok] - exact[ok]) * norm
        pixel = exact[ok] * norm / cam.fx
        assert np.max(shift / pixel) < 0.01
        if pitch == -90.0:
            assert np.max(shift) < 5e-4


# -- flight plan ---------------------------------------------------------------------------
def test_small_plan_has_sixteen_shots_with_the_requested_overlaps() -> None:
    preset = PRESETS["small"]
    plan = plan_flight(preset, 100.0, lambda x, y: 100.0)
    assert len(plan.shots) == 16 and plan.n_lines == 4 and plan.shots_per_line == 4
    assert plan.front_overlap >= preset.front_overlap - 1e-9
    assert plan.side_overlap >= preset.side_overlap - 1e-9
    centers = np.array([s.center for s in plan.shots])
    assert np.allclose(centers[:, 2], 100.0 + preset.altitude_agl_m, atol=1e-9)
    # Shots lie on the trajectory at exact milliseconds.
    for s in plan.shots:
        assert np.allclose(plan.trajectory.position(s.t_ms / 1000.0)[0], s.center, atol=1e-9)
    # Consecutive shots of one line are one front spacing apart.
    step = np.linalg.norm(centers[1] - centers[0])
    assert step == pytest.approx(plan.shot_spacing_m, abs=0.01)


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError):
        resolve_preset(SynthOptions(preset="huge"))
    with pytest.raises(ConfigError):
        resolve_preset(SynthOptions(oblique_deg=-10.0))
    with pytest.raises(ConfigError):
        resolve_preset(SynthOptions(front_overlap=1.2))
    assert resolve_preset(SynthOptions(altitude_agl_m=72.0)).gsd_m == pytest.approx(0.05)


# -- writers -------------------------------------------------------------------------------
def _tiny_jpeg() -> bytes:
    img = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return enc.tobytes()


def _exif_fields(gps: ExifGps | None) -> ExifFields:
    return ExifFields(
        make="Aerobase",
        model="SynthCam",
        width=64,
        height=48,
        datetime_original=datetime(2024, 5, 18, 10, 31, 7),
        subsec_original="370",
        focal_length_mm=11.88,
        focal_length_35mm=32,
        sensor_width_mm=13.2,
        sensor_height_mm=9.9,
        gps=gps,
    )


def test_exif_and_xmp_writer_round_trip(tmp_path: Path) -> None:
    xmp = xpacket(build_dji_xmp({"RelativeAltitude": 57.61, "GimbalYawDegree": -178.5, "GimbalPitchDegree": -89.7}))
    data = embed_metadata(_tiny_jpeg(), build_exif(_exif_fields(ExifGps(34.7512345, 113.6598765, 157.891))), xmp)
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape == (48, 64, 3)
    tags = exifread.process_file(io.BytesIO(data), details=False)
    lat = [float(v.num) / float(v.den) for v in tags["GPS GPSLatitude"].values]
    assert lat[0] + lat[1] / 60 + lat[2] / 3600 == pytest.approx(34.7512345, abs=1e-9)
    assert str(tags["EXIF DateTimeOriginal"]) == "2024:05:18 10:31:07"
    path = tmp_path / "IMG_0001.JPG"
    path.write_bytes(data)
    rec = read_image_record(path, "IMG_0001.JPG")
    assert rec.gps is not None and rec.gps.lon == pytest.approx(113.6598765, abs=1e-9)
    assert rec.gps.alt == pytest.approx(157.891, abs=1e-3)
    # A naive EXIF time (no offset tag) is read as UTC.
    assert rec.capture_time == pytest.approx(datetime(2024, 5, 18, 10, 31, 7, tzinfo=timezone.utc).timestamp() + 0.37, abs=1e-6)
    assert rec.relative_altitude_m == pytest.approx(57.61)
    assert rec.gimbal is not None and rec.gimbal.yaw == pytest.approx(-178.5) and rec.gimbal.pitch == pytest.approx(-89.7)
    assert rec.sensor_width_mm == pytest.approx(13.2)
    # Without GPS: no GPS IFD at all.
    bare = embed_metadata(_tiny_jpeg(), build_exif(_exif_fields(None)), None)
    assert not any(k.startswith("GPS") for k in exifread.process_file(io.BytesIO(bare), details=False))


def test_tlog_writer_round_trip(tmp_path: Path) -> None:
    from pymavlink import mavutil

    t0 = 1_716_000_000.0
    t = t0 + np.arange(0, 5.0, 0.1)
    lat = 34.75 + np.arange(len(t)) * 1e-6
    lon = np.full(len(t), 113.65)
    alt = np.full(len(t), 157.6)
    track = FlightTrack(
        source="x.tlog",
        format="mavlink_tlog",
        positions=PositionSeries(t, lat, lon, alt, HeightRef.ELLIPSOIDAL),
        attitude=AttitudeSeries(t, np.full(len(t), 181.5), np.full(len(t), -4.0), np.zeros(len(t))),
        triggers=TriggerEvents(t=np.array([t0 + 1.234]), lat=np.array([34.7500123]), lon=np.array([113.65]), alt=np.array([157.6])),
    )
    path = tmp_path / "x.tlog"
    n = write_tlog(path, track, boot_unix_s=t0 - 30.0, home_alt_m=100.0)
    conn = mavutil.mavlink_connection(str(path))
    seen: dict[str, list[Any]] = {}
    while (msg := conn.recv_match(blocking=False)) is not None:
        seen.setdefault(msg.get_type(), []).append(msg)
    assert sum(len(v) for v in seen.values()) == n
    gp = seen["GLOBAL_POSITION_INT"]
    assert len(gp) == len(t)
    assert gp[3]._timestamp == pytest.approx(t[3], abs=1e-6)
    assert gp[3].lat == round(lat[3] * 1e7) and gp[3].relative_alt == 57600
    assert seen["GPS_RAW_INT"][0].alt_ellipsoid == 157600
    cf = seen["CAMERA_FEEDBACK"][0]
    assert cf.time_usec == round((t0 + 1.234) * 1e6) and cf.lat == 347500123
    st = seen["SYSTEM_TIME"][0]
    assert st.time_unix_usec / 1e6 - st.time_boot_ms / 1e3 == pytest.approx(t0 - 30.0, abs=1e-3)
    assert math.degrees(seen["ATTITUDE"][0].yaw) == pytest.approx(181.5 - 360.0, abs=1e-4)


def test_gcp_writer_odm_format() -> None:
    gcps = GcpSet(
        source="t",
        crs="EPSG:32649",
        points=(GroundControlPoint("GCP01", 500000.12345, 3845000.5, 101.25), GroundControlPoint("CHK01", 1.0, 2.0, 3.0, True)),
        observations=(GcpObservation("GCP01", "IMG_0001.JPG", 812.3456, 401.0), GcpObservation("CHK01", "IMG_0002.JPG", 1.0, 2.0)),
    )
    text = format_odm_gcp_list(gcps)
    lines = text.splitlines()
    assert lines[0] == "EPSG:32649"
    assert lines[1] == "500000.1235 3845000.5000 101.2500 812.346 401.000 IMG_0001.JPG GCP01"
    assert lines[2].split()[-1] == "CHK01"


def test_geotiff_writer_windows(tmp_path: Path) -> None:
    grid = GridSpec("EPSG:4547", 38500000.0, 3850000.0, 0.05, 300, 260)
    path = tmp_path / "a.tif"
    with open_geotiff_writer(path, grid, 1, "float32") as w:
        for win in grid.tiles(256):
            w.write(win, np.full((win.height, win.width), win.col_off + 0.5, np.float32))
    with rasterio.open(path) as ds:
        assert ds.crs.to_epsg() == 4547 and ds.res == (0.05, 0.05)
        a = ds.read(1)
    assert a[0, 0] == 0.5 and a[-1, -1] == 256.5
    assert Window(0, 0, 1, 1).slices == (slice(0, 1), slice(0, 1))


# -- a tiny render: reproducibility and options ----------------------------------------------
def _digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_tiny_render_is_byte_for_byte_reproducible(tmp_path: Path) -> None:
    a = render_flight(tmp_path / "a", SynthOptions(preset="tiny", seed=5, workers=2))
    b = render_flight(tmp_path / "b", SynthOptions(preset="tiny", seed=5, workers=1))
    assert a.n_images == 4
    da, db = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert da == db
    c = render_flight(tmp_path / "c", SynthOptions(preset="tiny", seed=6))
    assert _digest(tmp_path / "c")["images/IMG_0001.JPG"] != da["images/IMG_0001.JPG"]


def test_tiny_render_without_gps_oblique_in_cgcs2000(tmp_path: Path) -> None:
    out = tmp_path / "o"
    result = render_flight(out, SynthOptions(preset="tiny", seed=1, no_gps=True, oblique_deg=-60.0, crs="EPSG:4547"))
    assert result.crs == "EPSG:4547" and result.gimbal_pitch_deg == -60.0
    doc = json.loads((out / "truth" / "scene.json").read_text())
    assert doc["gps_noise"]["stripped_from_images"] is True
    for p in sorted((out / "images").glob("*.JPG")):
        rec = read_image_record(p, p.name)
        assert rec.gps is None
        assert rec.gimbal is not None and rec.gimbal.pitch == pytest.approx(-60.0, abs=1.5)
    truth = read_reconstruction_json(out / "truth" / "cameras.json")
    assert truth.crs == "EPSG:4547"
    # The scene sits near Zhengzhou in GK CM 114E: false easting 500 km, about 32 km west of the CM.
    center = np.mean([img.pose.center for img in truth.images.values()], axis=0)
    assert 460_000 < center[0] < 475_000 and 3_840_000 < center[1] < 3_850_000
    with rasterio.open(out / "truth" / "dsm.tif") as ds:
        assert ds.crs.to_epsg() == 4547


def test_geographic_crs_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CRSError):
        render_flight(tmp_path, SynthOptions(preset="tiny", crs="EPSG:4326"))


# -- the small preset, rendered once ----------------------------------------------------------
@pytest.fixture(scope="module")
def small(synthetic_small_render: tuple[Path, SynthResult]) -> tuple[Path, SynthResult]:
    return synthetic_small_render


def _scene(out: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((out / "truth" / "scene.json").read_text())
    return doc


def _bilinear(img: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    out = cv2.remap(img, u.astype(np.float32).reshape(1, -1), v.astype(np.float32).reshape(1, -1), cv2.INTER_LINEAR)
    return np.asarray(out).reshape(len(u), -1)


@pytest.mark.slow
def test_small_render_writes_the_contract_layout(small: tuple[Path, SynthResult]) -> None:
    out, result = small
    images = sorted((out / "images").glob("IMG_*.JPG"))
    assert len(images) == result.n_images == 16
    assert (out / "logs" / "flight.tlog").stat().st_size > 10_000
    doc = _scene(out)
    for key in ("crs", "clock_offset_s", "gsd_m", "altitude_agl_m", "overlap", "gps_noise", "seed", "preset", "camera", "gcps", "ground_height_m", "buildings"):
        assert key in doc
    assert doc["crs"] == "EPSG:32649" and doc["seed"] == 7 and doc["preset"] == "small"
    truth = read_reconstruction_json(out / "truth" / "cameras.json")
    cam = next(iter(truth.cameras.values()))
    assert (cam.width, cam.height) == (1600, 1200) and cam.k1 < -0.05 and cam.p1 != 0 and cam.p2 != 0
    assert 0.01 <= abs(cam.cx - (cam.width - 1) / 2) / cam.width <= 0.03
    assert 0.01 <= abs(cam.cy - (cam.height - 1) / 2) / cam.height <= 0.03
    assert sorted(truth.images) == [p.name for p in images]
    names = [g["name"] for g in doc["gcps"]]
    assert sum(n.startswith("CHK") for n in names) == 3 and sum(n.startswith("GCP") for n in names) == 5
    for name in ("dsm", "dtm", "orthophoto", "buildings"):
        with rasterio.open(out / "truth" / f"{name}.tif") as ds:
            assert ds.crs.to_epsg() == 32649 and ds.res == pytest.approx((0.04, 0.04))
    with rasterio.open(out / "truth" / "dsm.tif") as ds:
        dsm = ds.read(1)
    with rasterio.open(out / "truth" / "dtm.tif") as ds:
        dtm = ds.read(1)
    with rasterio.open(out / "truth" / "buildings.tif") as ds:
        mask = ds.read(1)
    assert np.all(dsm >= dtm) and mask.any()
    assert np.all(dsm[mask == 0] == dtm[mask == 0]) and np.all(dsm[mask == 1] - dtm[mask == 1] > 2.0)
    assert "Rendered 16 images" in result.describe()


@pytest.mark.slow
def test_gcps_project_to_their_recorded_pixels_and_are_visible(small: tuple[Path, SynthResult]) -> None:
    out, _ = small
    truth = read_reconstruction_json(out / "truth" / "cameras.json")
    doc = _scene(out)
    targets = {g["name"]: g for g in doc["gcps"]}
    lines = (out / "gcp_list.txt").read_text().splitlines()
    assert lines[0] == "EPSG:32649"
    per_point: dict[str, int] = {}
    worst_proj = worst_corner = 0.0
    for line in lines[1:]:
        x, y, z, px, py, image, name = line.split()
        per_point[name] = per_point.get(name, 0) + 1
        X = np.array([[float(x), float(y), float(z)]])
        uv = truth.project(image, X)[0]
        worst_proj = max(worst_proj, float(np.hypot(uv[0] - float(px), uv[1] - float(py))))
        gray = cv2.imread(str(out / "images" / image), cv2.IMREAD_GRAYSCALE).astype(np.float32)
        # The checker's saddle point, found in the JPEG from the recorded pixel.
        start = np.array([[[float(px), float(py)]]], np.float32)
        found = cv2.cornerSubPix(gray, start.copy(), (4, 4), (-1, -1), (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-4))
        worst_corner = max(worst_corner, float(np.hypot(*(found[0, 0] - start[0, 0]))))
        # White quadrants (s*t > 0) are bright and black ones dark, at the projected quadrant centres.
        g = targets[name]
        a = math.radians(g["rotation_deg"])
        u_ax = np.array([math.cos(a), math.sin(a)])
        v_ax = np.array([-math.sin(a), math.cos(a)])
        q = 0.25 * g["size_m"]
        quads = np.array([[float(x), float(y)] + (su * q * u_ax + sv * q * v_ax) for su, sv in ((1, 1), (-1, -1), (-1, 1), (1, -1))])
        quv = truth.project(image, np.column_stack([quads, np.full(4, float(z))]))
        vals = _bilinear(gray, quv[:, 0], quv[:, 1])[:, 0]
        assert min(vals[:2]) > max(vals[2:]) + 120, (image, name, vals)
    assert worst_proj < 0.5
    assert worst_corner < 0.5
    assert set(per_point) == set(targets) and min(per_point.values()) >= 3
    print(f"GCP reprojection max {worst_proj:.4f} px; checker centre in JPEG within {worst_corner:.3f} px")


@pytest.mark.slow
def test_exif_and_xmp_read_back_with_exifread(small: tuple[Path, SynthResult]) -> None:
    out, _ = small
    doc = _scene(out)
    cam = doc["camera"]
    for entry in doc["images"]:
        with open(out / "images" / entry["name"], "rb") as fh:
            tags = exifread.process_file(fh, details=True, debug=True)
        assert str(tags["Image Make"]) == "Aerobase" and str(tags["Image Model"]) == "SynthCam"
        stamp, sub = entry["camera_time"].split(".")
        assert str(tags["EXIF DateTimeOriginal"]) == stamp and str(tags["EXIF SubSecTimeOriginal"]) == sub
        assert "EXIF OffsetTimeOriginal" not in tags
        focal = tags["EXIF FocalLength"].values[0]
        assert float(focal.num) / float(focal.den) == pytest.approx(doc["camera_sensor"]["focal_length_mm"], abs=1e-3)
        assert int(str(tags["EXIF FocalLengthIn35mmFilm"])) == doc["camera_sensor"]["focal_length_35mm"]
        assert int(str(tags["EXIF ExifImageWidth"])) == cam["width"] and int(str(tags["EXIF ExifImageLength"])) == cam["height"]
        res = tags["EXIF FocalPlaneXResolution"].values[0]
        assert int(str(tags["EXIF FocalPlaneResolutionUnit"])) == 3
        assert cam["width"] / (float(res.num) / float(res.den)) * 10 == pytest.approx(doc["camera_sensor"]["sensor_width_mm"], abs=1e-6)

        def dms(key: str) -> float:
            d, m, s = (float(v.num) / float(v.den) for v in tags[key].values)
            return d + m / 60 + s / 3600

        lon, lat, alt = entry["gps_lon_lat_alt"]
        assert dms("GPS GPSLatitude") == pytest.approx(lat, abs=1e-9) and str(tags["GPS GPSLatitudeRef"]) == "N"
        assert dms("GPS GPSLongitude") == pytest.approx(lon, abs=1e-9) and str(tags["GPS GPSLongitudeRef"]) == "E"
        a = tags["GPS GPSAltitude"].values[0]
        assert float(a.num) / float(a.den) == pytest.approx(alt, abs=1e-3)

        xmp = ElementTree.fromstring(bytes(tags["Image ApplicationNotes"].values).decode("utf-8"))
        desc = xmp.find(f".//{{{RDF_NS}}}Description")
        assert desc is not None
        dji = {k.split("}")[1]: float(v) for k, v in desc.attrib.items() if k.startswith(f"{{{DJI_NS}}}")}
        gy, gp, gr = entry["gimbal_yaw_pitch_roll_deg"]
        fy, fp, fr = entry["flight_yaw_pitch_roll_deg"]
        expected = {
            "AbsoluteAltitude": alt,
            "RelativeAltitude": entry["relative_altitude_m"],
            "GimbalYawDegree": gy,
            "GimbalPitchDegree": gp,
            "GimbalRollDegree": gr,
            "FlightYawDegree": fy,
            "FlightPitchDegree": fp,
            "FlightRollDegree": fr,
        }
        for key, value in expected.items():
            assert dji[key] == pytest.approx(value, abs=0.005 + 1e-9), key


@pytest.mark.slow
def test_xmp_yaw_and_true_pose_agree_about_true_north(small: tuple[Path, SynthResult]) -> None:
    """At nadir, true north in the image is the image-up direction turned by -(GimbalYaw + GimbalRoll).

    (Near pitch -90 the DJI roll turns the camera about the vertical too.) Grid convergence
    is 1.5 degrees here, so a yaw taken as grid-relative would fail by that much.
    """
    out, _ = small
    doc = _scene(out)
    truth = read_reconstruction_json(out / "truth" / "cameras.json")
    proj = Projector.for_crs(parse_crs(doc["crs"]))
    for entry in doc["images"]:
        lon, lat, alt = entry["lon_lat_alt"]
        ground = doc["ground_height_m"]
        pts = proj.forward(np.array([lon, lon]), np.array([lat, lat + 1e-4]), np.array([ground, ground]))
        uv = truth.project(entry["name"], pts)
        n = uv[1] - uv[0]
        angle_cw_from_up = math.degrees(math.atan2(n[0], -n[1]))
        yaw, _pitch, roll = entry["gimbal_yaw_pitch_roll_deg"]
        diff = (angle_cw_from_up + yaw + roll + 180.0) % 360.0 - 180.0
        assert abs(diff) < 0.05, (entry["name"], angle_cw_from_up, yaw, roll)


@pytest.mark.slow
def test_orthophoto_agrees_with_the_images_where_visible(small: tuple[Path, SynthResult]) -> None:
    out, _ = small
    doc = _scene(out)
    scene = scene_from_json(doc)
    ox, oy = scene.origin
    truth = read_reconstruction_json(out / "truth" / "cameras.json")
    cam = next(iter(truth.cameras.values()))
    with rasterio.open(out / "truth" / "orthophoto.tif") as ds:
        ortho = np.ascontiguousarray(ds.read().transpose(1, 2, 0)).astype(np.float32)
        T = ds.transform
    rng = np.random.default_rng(11)
    diffs = []
    n_visible = n_hidden = 0
    xmin, ymin, xmax, ymax = scene.extent
    for name in sorted(truth.images):
        img = cv2.imread(str(out / "images" / name))[:, :, ::-1].astype(np.float32)
        pose = truth.images[name].pose
        x = rng.uniform(xmin + 1, xmax - 1, 6000)
        y = rng.uniform(ymin + 1, ymax - 1, 6000)
        # Stay clear of roof edges, where a point's colour changes across the wall.
        edge = np.zeros(len(x), bool)
        for b in scene.buildings:
            edge |= b.contains(x, y, margin=0.3) & ~b.contains(x, y, margin=-0.3)
        x, y = x[~edge], y[~edge]
        P = np.column_stack([x, y, scene.top_height(x, y)])
        uv = cam.project(pose.to_camera(P + np.array([ox, oy, 0.0])))
        inside = cam.contains(uv, margin=2.0)
        P, uv = P[inside], uv[inside]
        # Visible: the camera ray through the projected pixel hits the point itself.
        rays = cam.pixel_to_ray(uv) @ pose.R
        centre = pose.center - np.array([ox, oy, 0.0])
        hits = cast_rays(scene.terrain, scene.buildings, centre, rays)
        hit_pts = centre + hits.t[:, None] * rays
        visible = np.linalg.norm(hit_pts - P, axis=1) < 0.01
        n_visible += int(visible.sum())
        n_hidden += int((~visible).sum())
        P, uv = P[visible], uv[visible]
        a = _bilinear(img, uv[:, 0], uv[:, 1])
        col = (P[:, 0] + ox - T.c) / T.a - 0.5
        row = (P[:, 1] + oy - T.f) / T.e - 0.5
        b = _bilinear(ortho, col, row)
        diffs.append(a - b)
    d = np.vstack(diffs)
    rms = np.sqrt(np.mean(d**2, axis=0))
    bias = np.mean(d, axis=0)
    p95 = np.percentile(np.abs(d), 95, axis=0)
    print(f"ortho vs image over {len(d)} visible points ({n_hidden} hidden skipped): RMS {rms}, bias {bias}, p95 {p95} DN")
    assert n_visible > 10_000 and n_hidden > 100
    assert np.all(rms < 4.0) and np.all(np.abs(bias) < 1.0) and np.all(p95 < 8.0)


@pytest.mark.slow
def test_log_positions_at_image_times_are_the_true_centres(small: tuple[Path, SynthResult]) -> None:
    from pymavlink import mavutil

    out, _ = small
    doc = _scene(out)
    truth = read_reconstruction_json(out / "truth" / "cameras.json")
    proj = Projector.for_crs(parse_crs(doc["crs"]))
    conn = mavutil.mavlink_connection(str(out / "logs" / "flight.tlog"))
    fixes = []
    feedback = []
    system_time = []
    while (msg := conn.recv_match(blocking=False)) is not None:
        kind = msg.get_type()
        if kind == "GLOBAL_POSITION_INT":
            fixes.append((msg._timestamp, msg.lat / 1e7, msg.lon / 1e7, msg.alt / 1e3))
        elif kind == "CAMERA_FEEDBACK":
            feedback.append(msg.time_usec / 1e6)
        elif kind == "SYSTEM_TIME":
            system_time.append((msg._timestamp, msg.time_unix_usec / 1e6))
    f = np.array(fixes)
    assert 9.0 < 1.0 / np.median(np.diff(f[:, 0])) < 11.0
    assert all(abs(a - b) < 1e-6 for a, b in system_time)  # the log clock is UTC
    offset = doc["clock_offset_s"]
    errors = []
    for entry in doc["images"]:
        camera_time = read_image_record(out / "images" / entry["name"], entry["name"]).capture_time
        assert camera_time is not None
        t = camera_time - offset
        lat = np.interp(t, f[:, 0], f[:, 1])
        lon = np.interp(t, f[:, 0], f[:, 2])
        alt = np.interp(t, f[:, 0], f[:, 3])
        xyz = proj.forward(np.array([lon]), np.array([lat]), np.array([alt]))[0]
        errors.append(float(np.linalg.norm(xyz - truth.images[entry["name"]].pose.center)))
    assert len(feedback) == len(doc["images"])
    assert np.allclose(sorted(feedback), [e["log_time_unix"] for e in doc["images"]], atol=1e-6)
    print(f"log vs true centres: max {max(errors) * 1000:.1f} mm, mean {np.mean(errors) * 1000:.1f} mm")
    assert max(errors) < 0.02


@pytest.mark.slow
def test_ingest_reads_the_synthetic_images(small: tuple[Path, SynthResult]) -> None:
    out, _ = small
    doc = _scene(out)
    truth = read_reconstruction_json(out / "truth" / "cameras.json")
    proj = Projector.for_crs(parse_crs(doc["crs"]))
    for entry in doc["images"]:
        rec = read_image_record(out / "images" / entry["name"], entry["name"])
        assert rec.camera_id in truth.cameras
        assert (rec.width, rec.height) == (1600, 1200)
        assert rec.gps is not None
        xyz = proj.forward(np.array([rec.gps.lon]), np.array([rec.gps.lat]), np.array([rec.gps.alt]))[0]
        err = xyz - truth.images[entry["name"]].pose.center
        assert np.allclose(err, entry["gps_noise_enu_m"], atol=0.01)


@pytest.fixture
def restore_logging() -> Any:
    """``cli.main`` points the root logger at this test's stderr; put the old handlers back after."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_cli_passes_the_flight_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import pipeline.synth
    from pipeline.cli import main

    seen: list[SynthOptions] = []

    class _Result:
        def describe(self) -> str:
            return "ok"

    def fake(out_dir: Path, options: SynthOptions | None = None) -> _Result:
        assert options is not None
        seen.append(options)
        return _Result()

    monkeypatch.setattr(pipeline.synth, "render_flight", fake)
    argv = ["synth", str(tmp_path), "--preset", "medium", "--crs", "EPSG:4547", "--seed", "3", "--no-gps", "--oblique", "-60",
            "--front-overlap", "0.8", "--side-overlap", "0.7", "--altitude", "80", "--gps-sigma", "1.5"]
    assert main(argv) == 0
    o = seen[0]
    assert (o.preset, o.crs, o.seed, o.no_gps, o.oblique_deg) == ("medium", "EPSG:4547", 3, True, -60.0)
    assert (o.front_overlap, o.side_overlap, o.altitude_agl_m, o.gps_sigma_h_m) == (0.8, 0.7, 80.0, 1.5)


@pytest.mark.usefixtures("restore_logging")
def test_cli_rejects_a_bad_pitch_without_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.cli import main

    assert main(["synth", str(tmp_path / "x"), "--oblique", "-10"]) == 2
    assert "gimbal pitch" in capsys.readouterr().err


def test_rendering_again_replaces_a_previous_flight_and_refuses_other_folders(tmp_path: Path) -> None:
    out = tmp_path / "f"
    render_flight(out, SynthOptions(preset="tiny"))
    extra = out / "images" / "IMG_0099.JPG"
    extra.write_bytes(b"old")
    render_flight(out, SynthOptions(preset="tiny"))
    assert not extra.exists() and len(list((out / "images").glob("*.JPG"))) == 4
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError):
        render_flight(other, SynthOptions(preset="tiny"))
