"""Geotagging from logs: clock-offset estimation, interpolation and skipping, on synthetic flights.

The flights are built in the test: a lawnmower pattern logged at 10 Hz (tlog written with
pymavlink, read back by the reader), shots every 2 s, and a camera clock running at the
log clock plus a known offset.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from drone_io.logs import read_log
from models.errors import InputError
from models.geo import Projector, parse_crs
from models.image import GpsPosition, ImageRecord, PositionSource
from models.track import AttitudeSeries, FlightTrack, PositionSeries, TriggerEvents
from pipeline.config import IngestConfig
from pipeline.ingest.geotag import (
    OffsetMethod,
    estimate_clock_offset,
    geotag_images,
    interpolate_attitude,
)
from tests import logkit

UTM49 = Projector.for_crs(parse_crs("EPSG:32649"))


@pytest.fixture(scope="module")
def flight() -> logkit.Flight:
    return logkit.lawnmower()


@pytest.fixture(scope="module")
def shot_t(flight: logkit.Flight) -> np.ndarray:
    return logkit.shots(flight)


@pytest.fixture(scope="module")
def tlog_track(flight: logkit.Flight, shot_t: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> FlightTrack:
    return read_log(logkit.write_tlog(tmp_path_factory.mktemp("tlog") / "flight.tlog", flight, shot_t))


@pytest.fixture(scope="module")
def plain_track(flight: logkit.Flight, tmp_path_factory: pytest.TempPathFactory) -> FlightTrack:
    """The same flight logged without camera events."""
    return read_log(logkit.write_tlog(tmp_path_factory.mktemp("tlog") / "plain.tlog", flight, None))


def _position_errors(records: list[ImageRecord] | tuple[ImageRecord, ...], flight: logkit.Flight, shot_t: np.ndarray) -> np.ndarray:
    by_name = {r.name: r for r in records}
    errs = []
    for i, ts in enumerate(shot_t):
        rec = by_name.get(f"IMG_{i:04d}.JPG")
        if rec is None or rec.gps is None or rec.position_source is not PositionSource.LOG:
            continue
        la, lo, al = flight.at(np.asarray([ts]))
        truth = UTM49.forward(lo, la, al)[0]
        got = UTM49.forward(np.asarray([rec.gps.lon]), np.asarray([rec.gps.lat]), np.asarray([rec.gps.alt]))[0]
        errs.append(float(np.linalg.norm(got - truth)))
    return np.asarray(errs)


def test_offset_from_triggers_recovers_offset_and_positions(tlog_track: FlightTrack, flight: logkit.Flight, shot_t: np.ndarray) -> None:
    offset = 8 * 3600 + 2.37  # camera on local time (UTC+8) and 2.37 s fast
    records = logkit.records_for(shot_t, offset)
    result = geotag_images(records, [tlog_track], IngestConfig())
    assert result.method == "triggers"
    assert result.clock_offset_s == pytest.approx(offset, abs=0.05)
    assert len(result.geotagged) == len(shot_t) and not result.skipped
    errs = _position_errors(result.records, flight, shot_t)
    assert len(errs) == len(shot_t) and errs.max() < 0.1
    rec = result.records[7]
    assert rec.position_source is PositionSource.LOG and rec.flight is not None
    k = int(np.argmin(np.abs(flight.t - shot_t[7])))
    assert logkit.attitude_close(rec.flight, float(flight.yaw[k]), float(flight.pitch[k]), float(flight.roll[k]), 0.5)
    figures = result.figures()
    assert {"clock_offset_s", "method", "images_geotagged", "images_outside_log"} <= set(figures)
    assert figures["images_geotagged"] == len(shot_t) and figures["images_outside_log"] == 0


def test_triggers_robust_to_missing_extra_and_time_zone(flight: logkit.Flight, shot_t: np.ndarray, tmp_path: Path) -> None:
    # The log misses 3 shutter events and has 2 spurious ones; 4 images were deleted from the card.
    log_shots = np.delete(shot_t, [5, 17, 30])
    log_shots = np.sort(np.concatenate([log_shots, [shot_t[10] + 0.9, shot_t[40] + 1.1]]))
    track = read_log(logkit.write_tlog(tmp_path / "f.tlog", flight, log_shots))
    offset = -5 * 3600 + 0.81
    records = [r for i, r in enumerate(logkit.records_for(shot_t, offset)) if i not in (2, 3, 22, 44)]
    est = estimate_clock_offset(records, track)
    assert est.method is OffsetMethod.TRIGGERS
    assert est.offset_s == pytest.approx(offset, abs=0.01)
    assert est.images_used == len(records) - 3  # images 5, 17 and 30 have no trigger
    result = geotag_images(records, [track], IngestConfig())
    assert len(result.geotagged) == len(records)  # unmatched images still placed by clock
    assert _position_errors(result.records, flight, shot_t).max() < 0.1


def test_triggers_with_whole_second_exif_times(tlog_track: FlightTrack, flight: logkit.Flight, shot_t: np.ndarray) -> None:
    offset = 3600 + 0.3
    records = logkit.records_for(shot_t, offset, subsec=False)
    result = geotag_images(records, [tlog_track], IngestConfig())
    assert result.method == "triggers"
    assert result.clock_offset_s == pytest.approx(offset, abs=0.5)
    # Matched images take the trigger's own time: exact positions despite 1 s EXIF resolution.
    assert _position_errors(result.records, flight, shot_t).max() < 0.1


def test_offset_from_partial_exif_gps(plain_track: FlightTrack, flight: logkit.Flight, shot_t: np.ndarray) -> None:
    offset = 3600 + 1.23
    with_gps = {0, 9, 18, 27, 36, 45}
    records = logkit.records_for(shot_t, offset, flight, with_gps=with_gps)
    est = estimate_clock_offset(records, plain_track)
    assert est.method is OffsetMethod.EXIF_GPS and est.images_used == len(with_gps)
    assert est.offset_s == pytest.approx(offset, abs=0.05)
    assert est.residual < 0.5 and est.residual_unit == "m"
    result = geotag_images(records, [plain_track], IngestConfig())
    assert len(result.geotagged) == len(shot_t) - len(with_gps)
    assert _position_errors(result.records, flight, shot_t).max() < 0.1
    untouched = [r for r in result.records if r.position_source is PositionSource.EXIF]
    assert len(untouched) == len(with_gps)


def test_manual_offset_wins(plain_track: FlightTrack, flight: logkit.Flight, shot_t: np.ndarray) -> None:
    records = logkit.records_for(shot_t, 42.0)
    result = geotag_images(records, [plain_track], IngestConfig(clock_offset_s=42.0))
    assert result.method == "manual" and result.clock_offset_s == 42.0
    assert _position_errors(result.records, flight, shot_t).max() < 0.1


def test_time_zone_fallback(plain_track: FlightTrack, shot_t: np.ndarray) -> None:
    records = logkit.records_for(shot_t, 2 * 3600.0)
    est = estimate_clock_offset(records, plain_track)
    assert est.method is OffsetMethod.TIME_ZONE and est.offset_s == 7200.0
    assert "time zone" in est.note


def test_no_way_to_find_offset_says_how_to_set_it(flight: logkit.Flight, shot_t: np.ndarray) -> None:
    # A boot-relative log without triggers, images without GPS: nothing constrains the clock.
    track = FlightTrack(
        source="boot.ulg",
        format="px4_ulog",
        positions=PositionSeries(t=flight.t - flight.t[0], lat=flight.lat, lon=flight.lon, alt=flight.alt),
        absolute_time=False,
    )
    records = logkit.records_for(shot_t, 0.0)
    with pytest.raises(InputError) as info:
        geotag_images(records, [track], IngestConfig())
    text = str(info.value)
    assert "boot.ulg" in text and "clock_offset_s" in text and "--config" in text


def test_images_outside_span_and_in_gaps_are_skipped(plain_track: FlightTrack, flight: logkit.Flight, shot_t: np.ndarray) -> None:
    times = np.concatenate([[flight.t[0] - 30.0], shot_t, [flight.t[-1] + 30.0]])
    records = logkit.records_for(times, 0.0)
    # Cut a 10 s hole into the log around shot 20.
    p = plain_track.positions
    hole = (p.t > times[21] - 5) & (p.t < times[21] + 5)
    holed = replace(
        plain_track,
        positions=PositionSeries(t=p.t[~hole], lat=p.lat[~hole], lon=p.lon[~hole], alt=p.alt[~hole]),
    )
    result = geotag_images(records, [holed], IngestConfig(clock_offset_s=0.0))
    reasons = {s.item: s.reason for s in result.skipped}
    assert reasons["IMG_0000.JPG"] == "outside_log" and reasons[f"IMG_{len(times) - 1:04d}.JPG"] == "outside_log"
    assert reasons["IMG_0021.JPG"] == "log_gap"
    assert result.images_outside_log == 2
    skipped_recs = [r for r in result.records if r.name in reasons]
    assert all(r.gps is None and r.position_source is PositionSource.NONE for r in skipped_recs)
    assert any("before the log starts" in s.message for s in result.skipped)


def test_log_replaces_exif_only_when_asked(plain_track: FlightTrack, flight: logkit.Flight, shot_t: np.ndarray) -> None:
    records = logkit.records_for(shot_t, 0.0, flight, with_gps=set(range(len(shot_t))))
    shifted = [replace(r, gps=replace(r.gps, lat=r.gps.lat + 2e-4)) if r.gps else r for r in records]
    kept = geotag_images(shifted, [plain_track], IngestConfig(clock_offset_s=0.0))
    assert not kept.geotagged and kept.records == tuple(shifted)
    replaced = geotag_images(shifted, [plain_track], IngestConfig(clock_offset_s=0.0), override_exif=True)
    assert len(replaced.geotagged) == len(shot_t)
    assert _position_errors(replaced.records, flight, shot_t).max() < 0.1


def test_geo_txt_positions_by_name(tmp_path: Path) -> None:
    geo = tmp_path / "geo.txt"
    geo.write_text("EPSG:4326\nIMG_0001.JPG 113.93 22.54 100.0 45 -90 0 0.02 0.05\nsub/IMG_0002.JPG 113.931 22.541 101\n")
    track = read_log(geo)
    records = [
        ImageRecord(name=n, path=tmp_path / n, width=10, height=10, camera_id="c")
        for n in ("IMG_0001.JPG", "sub/IMG_0002.JPG", "IMG_0003.JPG")
    ]
    result = geotag_images(records, [track], IngestConfig())
    by = {r.name: r for r in result.records}
    assert by["IMG_0001.JPG"].position_source is PositionSource.GEO_TXT
    assert by["IMG_0001.JPG"].gps == GpsPosition(lat=22.54, lon=113.93, alt=100.0, std_horizontal_m=0.02, std_vertical_m=0.05)
    assert by["IMG_0001.JPG"].gimbal is not None and by["IMG_0001.JPG"].gimbal.pitch == pytest.approx(-90.0)
    assert by["sub/IMG_0002.JPG"].gps is not None and by["IMG_0003.JPG"].gps is None
    assert result.method == "image_name"


def test_attitude_is_interpolated_on_the_rotation_group() -> None:
    series = AttitudeSeries(t=np.array([0.0, 1.0]), yaw=np.array([350.0, 10.0]), pitch=np.array([0.0, 0.0]), roll=np.array([0.0, 0.0]))
    mid = interpolate_attitude(series, 0.5, 5.0)
    assert mid is not None
    assert min(mid.yaw, 360.0 - mid.yaw) == pytest.approx(0.0, abs=1e-6)  # across north, not through 180
    tilted = AttitudeSeries(t=np.array([0.0, 2.0]), yaw=np.array([90.0, 90.0]), pitch=np.array([-10.0, 10.0]), roll=np.array([4.0, 4.0]))
    q = interpolate_attitude(tilted, 1.0, 5.0)
    assert q is not None and q.pitch == pytest.approx(0.0, abs=1e-6) and q.yaw == pytest.approx(90.0) and q.roll == pytest.approx(4.0)
    assert interpolate_attitude(tilted, 3.0, 5.0) is None  # never extrapolated
    assert interpolate_attitude(tilted, 1.0, 1.0) is None  # gap longer than allowed


def test_two_logs_split_the_flight(flight: logkit.Flight, tmp_path: Path) -> None:
    # Real shutter intervals jitter; with perfectly regular shots and a log holding only half
    # of them, shifts by whole shot intervals would match equally well.
    shot_t = logkit.shots(flight) + np.random.default_rng(1).uniform(-0.3, 0.3, len(logkit.shots(flight)))
    half = len(flight.t) // 2
    first = logkit.Flight(*(getattr(flight, f)[:half] for f in ("t", "lat", "lon", "alt", "yaw", "pitch", "roll")))
    second = logkit.Flight(*(getattr(flight, f)[half:] for f in ("t", "lat", "lon", "alt", "yaw", "pitch", "roll")))
    tracks = [
        read_log(logkit.write_tlog(tmp_path / "a.tlog", first, shot_t[shot_t <= first.t[-1]])),
        read_log(logkit.write_tlog(tmp_path / "b.tlog", second, shot_t[shot_t >= second.t[0]])),
    ]
    records = logkit.records_for(shot_t, 12.5)
    result = geotag_images(records, tracks, IngestConfig())
    assert len(result.geotagged) == len(shot_t)
    assert result.per_log["a.tlog"] + result.per_log["b.tlog"] == len(shot_t)
    assert all(o.offset_s == pytest.approx(12.5, abs=0.01) for o in result.offsets)
    assert _position_errors(result.records, flight, shot_t).max() < 0.1


def test_rtk_trigger_accuracy_is_carried(flight: logkit.Flight, shot_t: np.ndarray) -> None:
    la, lo, al = flight.at(shot_t)
    track = FlightTrack(
        source="x_Timestamp.MRK",
        format="dji_mrk",
        positions=PositionSeries(t=shot_t, lat=la, lon=lo, alt=al),
        triggers=TriggerEvents(t=shot_t, lat=la, lon=lo, alt=al, std_horizontal_m=np.full(len(shot_t), 0.02), std_vertical_m=np.full(len(shot_t), 0.03)),
    )
    records = logkit.records_for(shot_t, 8 * 3600 + 0.4)
    result = geotag_images(records, [track], IngestConfig())
    assert result.method == "triggers"
    gps = result.records[3].gps
    assert gps is not None and gps.std_horizontal_m == 0.02 and gps.std_vertical_m == 0.03
    assert _position_errors(result.records, flight, shot_t).max() < 0.01
