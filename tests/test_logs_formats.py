"""Readers on small realistic samples (AirData, Litchi, GPX, geo.txt, MRK, tlog) and on broken files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from drone_io.logs import LogReadOptions, detect_format, read_log
from drone_io.logs.clean import clean_fixes
from drone_io.logs.common import euler_from_quat_ned, gps_to_utc
from models.errors import LogFormatError
from tests import logkit
from tests.conftest import dataset_path


@pytest.fixture(scope="module")
def flight() -> logkit.Flight:
    return logkit.lawnmower()


# -- spike filter -----------------------------------------------------------------------
def _line(n: int = 50, speed: float = 10.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    t = np.arange(n, dtype=float)
    lat = 47.0 + t * speed / 111_320.0
    lon = np.full(n, 8.0)
    alt = np.full(n, 500.0)
    return t, lat, lon, alt


def test_clean_drops_isolated_spike_and_counts_it() -> None:
    t, lat, lon, alt = _line()
    lat[20] += 0.01  # ~1.1 km away for one fix
    r = clean_fixes(t, lat, lon, alt)
    assert r.reasons == {"spike": 1} and 20 not in r.kept and len(r.kept) == 49


def test_clean_drops_displaced_run_and_vertical_jump() -> None:
    t, lat, lon, alt = _line()
    lon[30:35] += 0.02  # a jump that lasts 5 fixes, then returns
    alt[10] += 400.0
    r = clean_fixes(t, lat, lon, alt)
    assert r.reasons == {"spike": 6}
    assert not set(range(30, 35)) & set(r.kept.tolist()) and 10 not in r.kept


def test_clean_invalid_values_in_order() -> None:
    t, lat, lon, alt = _line(10)
    lat[1] = lon[1] = 0.0
    lat[2] = math.nan
    lat[3] = 95.0
    t[5] = t[4]
    valid = np.ones(10, dtype=bool)
    valid[6] = False
    r = clean_fixes(t, lat, lon, alt, valid=valid)
    assert r.reasons == {"zero": 1, "nan": 1, "out_of_range": 1, "duplicate_time": 1, "no_fix": 1}
    assert r.kept.tolist() == [0, 4, 7, 8, 9]


def test_clean_respects_speed_limit_and_gaps() -> None:
    t, lat, lon, alt = _line(20, speed=55.0)  # fast but legal
    assert clean_fixes(t, lat, lon, alt, max_speed_mps=60.0).dropped == 0
    assert clean_fixes(t, lat, lon, alt, max_speed_mps=20.0, tolerance_m=1.0).dropped > 0
    t2 = t.copy()
    t2[10:] += 100.0  # a long gap makes a long move plausible
    lat2 = lat.copy()
    lat2[10:] += 0.01
    assert clean_fixes(t2, lat2, lon, alt).dropped == 0


# -- helpers ----------------------------------------------------------------------------
def test_gps_time_and_quaternion_conventions() -> None:
    # 2017-01-01 00:00:18 GPS == 2017-01-01 00:00:00 UTC (18 leap seconds).
    week, sow = divmod(1483228800 + 18 - 315964800, 604800)
    assert float(gps_to_utc(week, sow)) == pytest.approx(1483228800.0)
    half = math.sqrt(0.5)
    yaw, pitch, roll = euler_from_quat_ned(np.array([[half, 0.0, 0.0, half]]))  # 90 deg about down: east
    assert (yaw[0], pitch[0], roll[0]) == pytest.approx((90.0, 0.0, 0.0), abs=1e-9)
    yaw, pitch, roll = euler_from_quat_ned(np.array([[math.cos(0.1), math.sin(0.1), 0.0, 0.0]]))
    assert roll[0] == pytest.approx(math.degrees(0.2)) and pitch[0] == pytest.approx(0.0, abs=1e-9)


# -- CSV, GPX, geo.txt, MRK samples ------------------------------------------------------
def test_airdata_csv(tmp_path: Path, flight: logkit.Flight) -> None:
    shot_t = logkit.shots(flight, every_s=3.0)
    path = logkit.write_airdata_csv(tmp_path / "Mar-3rd-2024-flight-airdata.csv", flight, shot_t)
    assert detect_format(path).value == "airdata_csv"
    track = read_log(path)
    assert track.format == "airdata_csv" and len(track.positions) == len(flight.t)
    assert track.positions.height_ref.value == "orthometric"
    assert float(track.positions.alt[0]) == pytest.approx(100.0, abs=0.01)
    # Whole-second datetime(utc) + time(millisecond) -> millisecond UTC.
    assert float(track.positions.t[0]) == pytest.approx(flight.t[0], abs=1e-3)
    assert float(track.positions.t[-1]) == pytest.approx(flight.t[-1], abs=1e-3)
    assert track.trigger_count == len(shot_t)
    assert track.attitude is not None and track.gimbal is not None
    assert float(track.gimbal.pitch[0]) == -90.0


def test_litchi_csv(tmp_path: Path, flight: logkit.Flight) -> None:
    shot_t = logkit.shots(flight, every_s=2.0)
    path = logkit.write_litchi_csv(tmp_path / "litchi_log.csv", flight, shot_t)
    assert detect_format(path).value == "litchi_csv"
    track = read_log(path)
    assert track.format == "litchi_csv" and track.trigger_count == len(shot_t)
    assert float(track.positions.alt[0]) == pytest.approx(80.0)  # above take-off
    assert any("above the take-off point" in w for w in track.warnings)
    assert float(track.positions.t[0]) == pytest.approx(flight.t[0], abs=1e-3)  # datetime(utc), not local
    assert track.attitude is not None and float(track.attitude.yaw[0]) == pytest.approx(flight.yaw[0], abs=0.06)


def test_litchi_mission_csv_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mission.csv"
    path.write_text("latitude,longitude,altitude(m),heading(deg),curvesize(m),rotationdir,gimbalmode,gimbalpitchangle,actiontype1,actionparam1\n47.1,8.2,50,0,0,0,0,-90,1,0\n")
    with pytest.raises(LogFormatError, match="waypoint mission"):
        read_log(path)


def test_csv_truncated_last_row(tmp_path: Path, flight: logkit.Flight) -> None:
    path = logkit.write_airdata_csv(tmp_path / "airdata.csv", flight, logkit.shots(flight))
    text = path.read_text()
    path.write_text(text[: len(text) - 300])
    track = read_log(path)
    assert any("breaks at line" in w and "airdata.csv" in w for w in track.warnings)


def test_gpx_and_truncated_gpx(tmp_path: Path, flight: logkit.Flight) -> None:
    path = logkit.write_gpx(tmp_path / "track.gpx", flight)
    track = read_log(path)
    assert track.format == "gpx" and len(track.positions) == len(range(0, len(flight.t), 10))
    assert float(track.positions.t[1] - track.positions.t[0]) == pytest.approx(1.0, abs=1e-3)
    cut = tmp_path / "cut.gpx"
    text = path.read_text()
    cut.write_text(text[: len(text) // 2])
    broken = read_log(cut)
    assert 0 < len(broken.positions) < len(track.positions)
    assert any("GPX breaks" in w and "cut.gpx" in w for w in broken.warnings)


def test_gpx_without_times_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "plan.gpx"
    path.write_text('<?xml version="1.0"?><gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>'
                    '<trkpt lat="47.1" lon="8.1"/><trkpt lat="47.2" lon="8.2"/></trkseg></trk></gpx>')
    with pytest.raises(LogFormatError, match="has a time"):
        read_log(path)


def test_geo_txt_wgs84_and_utm(tmp_path: Path) -> None:
    geo = tmp_path / "geo.txt"
    geo.write_text("EPSG:4326\nDJI_0001.JPG 113.93 22.54 100.0 10 -90 0 0.05 0.1\nDJI_0002.JPG 113.9301 22.5401 101.0\n")
    track = read_log(geo)
    assert track.format == "odm_geo_txt" and track.by_image_name and len(track.positions) == 2
    assert track.triggers is not None and track.triggers.names == ("DJI_0001.JPG", "DJI_0002.JPG")
    assert float(track.positions.lon[0]) == 113.93 and float(track.positions.lat[0]) == 22.54
    utm = tmp_path / "geo_utm.txt"
    utm.write_text("EPSG:32649\n# comment\nIMG_1.JPG 805000.0 2495000.0 50\n")
    t2 = read_log(utm)
    assert 113.0 < float(t2.positions.lon[0]) < 115.0 and 22.0 < float(t2.positions.lat[0]) < 23.0


def test_mrk_truncated_last_line(tmp_path: Path) -> None:
    src = dataset_path("logs", "mrk", "helenenschacht_101FTASK_Timestamp.mrk").read_text()
    path = tmp_path / "x_Timestamp.MRK"
    path.write_text(src[:-60])
    track = read_log(path)
    assert len(track.positions) == 175
    assert any("breaks at line 176" in w for w in track.warnings)


# -- binary logs: truncated and corrupt copies -------------------------------------------
def test_dataflash_truncated_and_corrupt(tmp_path: Path) -> None:
    data = dataset_path("logs", "dataflash", "PyFlightCoach_center_0003.bin").read_bytes()
    cut = tmp_path / "cut.bin"
    cut.write_bytes(data[:300_000])
    track = read_log(cut)
    assert 0 < len(track.positions) < 209
    assert any("cut.bin: the log breaks at byte 299988" in w for w in track.warnings)
    bad = bytearray(data)
    bad[200_000:200_500] = b"\x55" * 500
    corrupt = tmp_path / "corrupt.bin"
    corrupt.write_bytes(bytes(bad))
    track = read_log(corrupt)
    assert len(track.positions) >= 200
    assert any("corrupt.bin: the log is corrupt at byte 200007" in w for w in track.warnings)


def test_ulog_truncated(tmp_path: Path) -> None:
    data = dataset_path("logs", "ulog", "pyulog_sample_px4_events.ulg").read_bytes()
    cut = tmp_path / "cut.ulg"
    cut.write_bytes(data[: int(len(data) * 0.9)])
    track = read_log(cut)
    assert 0 < len(track.positions) < 423
    assert any("cut.ulg: the log breaks at byte" in w and "truncated" in w for w in track.warnings)


def test_ulog_header_only_is_an_error(tmp_path: Path) -> None:
    cut = tmp_path / "stub.ulg"
    cut.write_bytes(dataset_path("logs", "ulog", "pyulog_sample_px4_events.ulg").read_bytes()[:2000])
    with pytest.raises(LogFormatError, match="stub.ulg"):
        read_log(cut)


def test_tlog_corrupt_and_truncated(tmp_path: Path) -> None:
    data = bytearray(dataset_path("logs", "tlog", "UAVLogViewer_vtol.tlog").read_bytes())
    data[400_000:400_300] = b"\x55" * 300
    path = tmp_path / "bad.tlog"
    path.write_bytes(bytes(data[:700_001]))
    track = read_log(path)
    assert 400 < len(track.positions) < 807
    assert any("bad.tlog: skipped" in w and "unreadable MAVLink" in w for w in track.warnings)
    assert any("bad.tlog: the log breaks at byte" in w for w in track.warnings)


def test_garbage_and_empty_files(tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("shopping list\neggs\n")
    with pytest.raises(LogFormatError, match="not a flight log"):
        read_log(junk)
    empty = tmp_path / "flight.tlog"
    empty.write_bytes(b"")
    with pytest.raises(LogFormatError, match="empty"):
        read_log(empty)
    with pytest.raises(LogFormatError, match="no such file"):
        read_log(tmp_path / "missing.ulg")
    noise = tmp_path / "noise.bin"
    noise.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)))
    with pytest.raises(LogFormatError, match="noise.bin"):
        read_log(noise)


def test_synthetic_tlog_round_trip(tmp_path: Path, flight: logkit.Flight) -> None:
    shot_t = logkit.shots(flight)
    track = read_log(logkit.write_tlog(tmp_path / "flight.tlog", flight, shot_t))
    assert track.format == "mavlink_tlog" and track.absolute_time
    assert len(track.positions) == len(flight.t) and track.dropped_fixes == 0
    assert np.allclose(track.positions.t, flight.t, atol=1.5e-3)
    assert track.triggers is not None and np.allclose(track.triggers.t, shot_t, atol=1e-6)
    assert track.attitude is not None and len(track.attitude) == len(flight.t)


def test_options_max_speed(tmp_path: Path, flight: logkit.Flight) -> None:
    path = logkit.write_tlog(tmp_path / "flight.tlog", flight)
    assert read_log(path, LogReadOptions(max_speed_mps=60.0)).dropped_fixes == 0
    slow = read_log(path, LogReadOptions(max_speed_mps=2.0, spike_tolerance_m=0.1))
    assert slow.dropped_fixes > 0
