"""``aerobase inspect`` on the two real image sets, and its cameras.geojson."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from pipeline.cli import main


def _inspect(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    code = main(["inspect", *args, "--json"])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, (json.loads(out) if code == 0 else {}), err


def _check_geojson(path: Path, n_images: int, lon_range: tuple[float, float], lat_range: tuple[float, float]) -> list[dict[str, Any]]:
    fc = json.loads(path.read_text())
    assert fc["type"] == "FeatureCollection" and "crs" not in fc  # RFC 7946: WGS84 lon/lat, no crs member
    points = [f for f in fc["features"] if f["geometry"]["type"] == "Point"]
    polys = [f for f in fc["features"] if f["geometry"]["type"] == "Polygon"]
    assert len(points) == n_images and all(f["properties"]["kind"] == "camera" for f in points)
    for f in points:
        lon, lat = f["geometry"]["coordinates"]
        assert lon_range[0] < lon < lon_range[1] and lat_range[0] < lat < lat_range[1]
    for f in polys:
        ring = np.array(f["geometry"]["coordinates"][0])
        assert ring.shape == (5, 2) and (ring[0] == ring[-1]).all()
        x, y = ring[:-1, 0], ring[:-1, 1]
        assert np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)) > 0  # counter-clockwise exterior
        centre = ring[:-1].mean(axis=0)
        p = f["properties"]
        assert abs(centre[0] - p["center_lon"]) < 5e-4 and abs(centre[1] - p["center_lat"]) < 5e-4
    return fc["features"]  # type: ignore[no-any-return]


@pytest.mark.slow
def test_inspect_brighton(copy_dataset: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flight = copy_dataset("brighton_beach", "images")
    out = tmp_path / "out" / "cams.geojson"
    code, j, _err = _inspect(capsys, str(flight), "--output", str(out))
    assert code == 0
    assert (j["images_total"], j["images_read"], j["images_used"]) == (18, 18, 18)
    assert j["images_skipped"] == [] and j["images_without_position"] == []
    assert [c["id"] for c in j["cameras"]] == ["dji fc300s 4000x2250 3.61mm"]
    assert j["position_sources"] == {"exif": 18}
    assert j["crs"] == "EPSG:32615"
    # Every image: GPS near Brighton Beach, Duluth; gimbal straight down; ~40 m above take-off.
    for im in j["images"]:
        assert 46.841 < im["lat"] < 46.844 and -91.996 < im["lon"] < -91.992 and 197 < im["alt"] < 200
        assert im["gimbal"]["pitch"] == pytest.approx(-90.0, abs=0.2)
        assert im["relative_altitude"] == pytest.approx(40.0, abs=0.5)
    assert j["gimbal_images"] == 18 and j["attitude_sources"] == {"gimbal": 18}
    assert j["ground_height_source"] == "relative_altitude"
    assert j["ground_height_m"] == pytest.approx(198.509 - 40.0, abs=0.2)
    assert j["gsd_m"] == pytest.approx(40.1 / (20.0 / 36.0 * 4000), rel=0.01)  # ~1.8 cm
    assert 0.55 < j["overlap"]["forward"] < 0.75 and j["overlap"]["strips"] == 3
    assert 10_000 < j["area_m2"] < 20_000
    assert j["duration_s"] == pytest.approx(124.0)
    assert j["geojson"] == str(out.resolve())
    feats = _check_geojson(out, 18, (-92.0, -91.99), (46.84, 46.845))
    first = next(f for f in feats if f["id"] == "DJI_0018.JPG")["properties"]
    assert first["gimbal_pitch"] == -89.9 and first["time"] == "2016-06-23T16:31:59.000Z"
    assert first["height_reference"] == "orthometric" and first["position_source"] == "exif"


@pytest.mark.slow
def test_inspect_seneca(copy_dataset: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flight = copy_dataset("seneca_subset", "images")
    code, j, _err = _inspect(capsys, str(flight), "-o", str(tmp_path))
    assert code == 0
    assert (j["images_read"], j["images_used"]) == (31, 31)
    assert all(41.035 < im["lat"] < 41.038 and -83.308 < im["lon"] < -83.304 for im in j["images"])
    assert all((im["width"], im["height"]) == (3600, 2700) for im in j["images"])
    assert len(j["cameras"]) == 1 and j["cameras"][0]["focal_source"] == "exif_focal_plane_resolution"
    assert j["crs"] == "EPSG:32617" and j["gimbal_images"] == 0
    # No RelativeAltitude: the ground comes from image motion (Tiffin, Ohio lies at about 230 m).
    assert j["ground_height_source"] == "image_motion"
    assert 200.0 < j["ground_height_m"] < 260.0
    assert 0.01 < j["gsd_m"] < 0.04
    _check_geojson(tmp_path / "cameras.geojson", 31, (-83.31, -83.30), (41.03, 41.04))


def test_inspect_text_and_crs_choice(copy_dataset: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flight = copy_dataset("brighton_beach", "images", limit=4)
    code = main(["inspect", str(flight), "--crs", "EPSG:4326", "-o", str(tmp_path / "c.geojson")])
    out, err = capsys.readouterr()
    assert code == 0 and "Traceback" not in out + err
    assert "Images: 4 found, 4 read, 4 with a position, 0 skipped" in out
    assert "CRS: EPSG:32615 (EPSG:4326 is geographic" in out
    assert "GSD: 1.80 cm" in out


def test_inspect_refuses_to_write_into_the_flight(
    copy_dataset: Callable[..., Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    flight = copy_dataset("brighton_beach", "images", limit=2)
    monkeypatch.chdir(flight)
    code = main(["inspect", str(flight)])
    out, err = capsys.readouterr()
    assert code == 2 and "never written to" in err and "Traceback" not in out + err
    assert not (flight / "cameras.geojson").exists()
