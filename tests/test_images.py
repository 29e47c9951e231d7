"""Image metadata reading: real JPEGs (Brighton Beach, Seneca), TIFF and DNG, times, broken files."""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import piexif
import pytest

from tests.conftest import dataset_path
from drone_io.images import ImageReadError, read_image_record, sniff_kind
from drone_io.xmp import build_dji_xmp, parse_dji_xmp
from tests.ingest_helpers import camera_tiff, with_exif_of, write
from models.image import ImageIndex, PositionSource
from models.sensors import FocalSource, build_cameras, focal_px_estimate


def _utc(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc).timestamp()


def _piexif_latlon(path: Path) -> tuple[float, float, float]:
    """GPS decoded by an independent library (piexif), to check ours."""
    gps = piexif.load(str(path))["GPS"]

    def dms(v: tuple[tuple[int, int], ...], ref: bytes) -> float:
        d = sum(n / den / 60.0**i for i, (n, den) in enumerate(v))
        return -d if ref in (b"S", b"W") else d

    lat = dms(gps[piexif.GPSIFD.GPSLatitude], gps[piexif.GPSIFD.GPSLatitudeRef])
    lon = dms(gps[piexif.GPSIFD.GPSLongitude], gps[piexif.GPSIFD.GPSLongitudeRef])
    n, d = gps[piexif.GPSIFD.GPSAltitude]
    return lat, lon, n / d


def test_brighton_dji_exif_and_xmp() -> None:
    folder = dataset_path("brighton_beach", "images")
    rec = read_image_record(folder / "DJI_0018.JPG", "DJI_0018.JPG")
    assert (rec.width, rec.height) == (4000, 2250)
    assert (rec.make, rec.model) == ("DJI", "FC300S")
    assert rec.position_source is PositionSource.EXIF
    assert rec.gps is not None
    lat, lon, alt = _piexif_latlon(folder / "DJI_0018.JPG")
    assert rec.gps.lat == pytest.approx(lat, abs=1e-9) and rec.gps.lat == pytest.approx(46.8426071, abs=1e-6)
    assert rec.gps.lon == pytest.approx(lon, abs=1e-9) and rec.gps.lon < 0  # west
    assert rec.gps.alt == pytest.approx(alt) == pytest.approx(198.309)
    assert rec.relative_altitude_m == pytest.approx(39.8)
    assert rec.gimbal is not None and rec.gimbal.pitch == pytest.approx(-89.9)
    assert rec.gimbal.yaw == pytest.approx(45.0) and rec.gimbal.roll == pytest.approx(0.0)
    assert rec.flight is not None and (rec.flight.yaw, rec.flight.pitch, rec.flight.roll) == pytest.approx((46.0, 1.8, 3.0))
    assert rec.focal_length_mm == pytest.approx(3.61) and rec.focal_length_35mm == pytest.approx(20.0)
    assert rec.capture_time == _utc("2016-06-23 16:31:59") and not rec.time_zone_known
    f, how = focal_px_estimate(rec)
    assert how is FocalSource.FOCAL_35MM and f == pytest.approx(20.0 / 36.0 * 4000)


def test_seneca_resized_canon_uses_pixel_size_and_focal_plane() -> None:
    folder = dataset_path("seneca_subset", "images")
    rec = read_image_record(folder / "IMG_0471.jpg", "IMG_0471.jpg")
    # EXIF says 4000x3000; the pixels were resized to 3600x2700.
    assert (rec.width, rec.height) == (3600, 2700)
    assert rec.gps is not None
    lat, lon, alt = _piexif_latlon(folder / "IMG_0471.jpg")
    assert (rec.gps.lat, rec.gps.lon, rec.gps.alt) == pytest.approx((lat, lon, alt), abs=1e-9)
    assert rec.relative_altitude_m is None and rec.gimbal is None
    assert rec.course_deg == pytest.approx(141815 / 638)
    # FocalPlaneXResolution refers to the 4000-pixel original: the sensor is ~6.2 mm wide.
    assert rec.sensor_width_mm == pytest.approx(6.1976, abs=1e-3)
    f, how = focal_px_estimate(rec)
    assert how is FocalSource.FOCAL_PLANE and f == pytest.approx(4.3 / 6.1976 * 3600, rel=1e-3)


def test_sensor_table_fallback_without_35mm(tmp_path: Path) -> None:
    p = write(tmp_path / "a.tif", camera_tiff(40, 30, make="DJI", model="FC6310", focal_mm=8.8, focal35=None))
    rec = read_image_record(p, "a.tif")
    f, how = focal_px_estimate(rec)
    assert how is FocalSource.SENSOR_TABLE and f == pytest.approx(8.8 / 13.2 * 40)


def test_tiff_exif_gps_time_offset_and_xmp(tmp_path: Path) -> None:
    xmp = build_dji_xmp({"RelativeAltitude": 50.2, "GimbalPitchDegree": -88.5, "GimbalYawDegree": 10.0, "RtkFlag": 50,
                         "RtkStdLon": 0.03, "RtkStdLat": 0.04, "RtkStdHgt": 0.06})
    p = write(tmp_path / "a.tif", camera_tiff(40, 30, subsec="25", offset="+02:00", xmp=xmp, lat=-33.5, lon=151.25))
    rec = read_image_record(p, "a.tif")
    assert rec.file_format == "tiff" and (rec.width, rec.height) == (40, 30)
    assert rec.gps is not None and (rec.gps.lat, rec.gps.lon, rec.gps.alt) == pytest.approx((-33.5, 151.25, 210.5), abs=1e-6)
    assert rec.capture_time == pytest.approx(_utc("2024-05-01 08:20:30") + 0.25) and rec.time_zone_known
    assert rec.relative_altitude_m == pytest.approx(50.2)
    assert rec.gimbal is not None and rec.gimbal.pitch == pytest.approx(-88.5)
    assert rec.gps.rtk_fixed is True
    assert rec.gps.std_horizontal_m == pytest.approx(0.05) and rec.gps.std_vertical_m == pytest.approx(0.06)


def test_dng_size_from_raw_subifd_and_zone_from_gps_time(tmp_path: Path) -> None:
    data = camera_tiff(60, 40, dng=True, big_endian=True, gps_time=("2024:05:01", 8, 20, 29.6))
    rec = read_image_record(write(tmp_path / "a.dng", data), "a.dng")
    assert rec.file_format == "dng"
    assert (rec.width, rec.height) == (60, 40)  # DefaultCropSize of the raw, not the 8x6 preview in IFD0
    assert rec.gps is not None and rec.gps.lat == pytest.approx(46.5)
    # Camera clock 10:20:30 without an offset tag; GPS time 08:20:29.6 UTC -> zone +02:00.
    assert rec.time_zone_known and rec.capture_time == pytest.approx(_utc("2024-05-01 08:20:30"))


def test_orientation_swaps_size(tmp_path: Path) -> None:
    rec = read_image_record(write(tmp_path / "r.tif", camera_tiff(40, 30, orientation=6)), "r.tif")
    assert (rec.width, rec.height, rec.orientation) == (30, 40, 6)


def test_truncated_tiff(tmp_path: Path) -> None:
    data = camera_tiff(64, 64)
    p = write(tmp_path / "t.tif", data[: len(data) - 1000])
    with pytest.raises(ImageReadError, match="truncated") as exc:
        read_image_record(p, "t.tif")
    assert str(p) in str(exc.value) and exc.value.reason == "truncated_tiff"


@pytest.fixture
def seneca_jpeg(tmp_path: Path) -> Path:
    src = dataset_path("seneca_subset", "images", "IMG_0471.jpg")
    return Path(shutil.copy(src, tmp_path / "IMG_0471.jpg"))


def test_broken_jpegs_have_reasons(tmp_path: Path, seneca_jpeg: Path) -> None:
    data = seneca_jpeg.read_bytes()
    cases = {
        "empty.jpg": (b"", "empty_file", "empty"),
        "half.jpg": (data[: len(data) // 2], "truncated_jpeg", "truncated"),
        "head.jpg": (data[:3000], "corrupt_jpeg", "frame header"),
        "text.jpg": (b"hello world", "not_an_image", "not a JPEG"),
    }
    img = cv2.imread(str(seneca_jpeg), cv2.IMREAD_REDUCED_COLOR_8)
    ok, png = cv2.imencode(".png", img)
    cases["png.jpg"] = (png.tobytes(), "png_renamed", "PNG")
    for name, (content, reason, words) in cases.items():
        p = write(tmp_path / name, content)
        with pytest.raises(ImageReadError, match=words) as exc:
            read_image_record(p, name)
        assert exc.value.reason == reason and str(p) in str(exc.value)


def test_trailing_bytes_after_eoi_are_fine(tmp_path: Path, seneca_jpeg: Path) -> None:
    p = write(tmp_path / "pad.jpg", seneca_jpeg.read_bytes() + b"\x00" * 300)
    assert read_image_record(p, "pad.jpg").gps is not None


def test_no_exif_is_a_record_without_position(tmp_path: Path, seneca_jpeg: Path) -> None:
    img = cv2.imread(str(seneca_jpeg), cv2.IMREAD_REDUCED_COLOR_8)
    ok, jpg = cv2.imencode(".jpg", img)
    rec = read_image_record(write(tmp_path / "plain.jpg", jpg.tobytes()), "plain.jpg")
    assert rec.position_source is PositionSource.NONE and rec.gps is None and not rec.has_position
    assert (rec.width, rec.height) == (img.shape[1], img.shape[0])
    assert rec.capture_time is None and any("no EXIF" in w for w in rec.warnings)


def test_resized_copy_is_a_second_camera(tmp_path: Path, seneca_jpeg: Path) -> None:
    img = cv2.imread(str(seneca_jpeg), cv2.IMREAD_REDUCED_COLOR_2)
    ok, jpg = cv2.imencode(".jpg", img)
    small = write(tmp_path / "small.jpg", with_exif_of(seneca_jpeg.read_bytes(), jpg.tobytes()))
    a = read_image_record(seneca_jpeg, "IMG_0471.jpg")
    b = read_image_record(small, "small.jpg")
    assert (b.width, b.height) == (1800, 1350) and b.gps == a.gps
    cams = build_cameras([a, b])
    assert len(cams) == 2
    assert cams[b.camera_id].focal_px == pytest.approx(cams[a.camera_id].focal_px / 2, rel=1e-6)


def test_sniff_kind() -> None:
    assert sniff_kind(b"") == "empty"
    assert sniff_kind(b"\xff\xd8\xff\xe1") == "jpeg"
    assert sniff_kind(b"II*\x00") == "tiff" and sniff_kind(b"MM\x00*") == "tiff"
    assert sniff_kind(b"II+\x00") == "bigtiff"
    assert sniff_kind(b"\x89PNG\r\n\x1a\n") == "png"


def test_xmp_element_form_and_dji_misspelling() -> None:
    packet = (
        b"<x:xmpmeta><rdf:Description><drone-dji:RelativeAltitude>+60.10</drone-dji:RelativeAltitude>"
        b"<drone-dji:GpsLongtitude>114.05</drone-dji:GpsLongtitude></rdf:Description></x:xmpmeta>"
    )
    x = parse_dji_xmp(packet)
    assert x.relative_altitude == pytest.approx(60.1) and x.gps_longitude == pytest.approx(114.05)


def test_image_index_resolves_relative_and_unique_bare_names() -> None:
    idx = ImageIndex(["a/DJI_0001.JPG", "b/DJI_0001.JPG", "DJI_0002.JPG", "c/DJI_0003.JPG"])
    assert idx.lookup("a/DJI_0001.JPG") == "a/DJI_0001.JPG"
    assert idx.lookup("DJI_0002.JPG") == "DJI_0002.JPG"
    assert idx.lookup("DJI_0003.JPG") == "c/DJI_0003.JPG"
    assert idx.lookup("DJI_0009.JPG") is None
    assert idx.lookup("dji_0002.jpg") == "DJI_0002.JPG" and idx.lookup("C/dji_0003.jpg") == "c/DJI_0003.JPG"
    with pytest.raises(ValueError, match="a/DJI_0001.JPG and b/DJI_0001.JPG"):
        idx.lookup("DJI_0001.JPG")


def test_every_real_image_reads_with_gps() -> None:
    for folder, n in (("brighton_beach", 18), ("seneca_subset", 31)):
        paths = sorted(dataset_path(folder, "images").iterdir())
        recs = [read_image_record(p, p.name) for p in paths]
        assert len(recs) == n
        assert all(r.gps is not None and np.isfinite(r.gps.alt) for r in recs)
        assert all(r.capture_time is not None for r in recs)
