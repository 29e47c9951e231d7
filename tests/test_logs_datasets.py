"""Pins what every real log in ../shared/datasets/logs gives: a track, or a clear error.

Each row: format, fixes kept, fixes dropped (by reason), start, end, duration, attitude,
trigger events — or the error class and a fragment of its message. Times are UTC ('Z')
except DJI SRT date lines, which are the camera's local clock; None means boot- or
video-relative time only.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest

from drone_io.logs import detect_format, read_log
from models.errors import InputError, LogFormatError
from models.track import FlightTrack
from pipeline import cli
from pipeline.loginfo import log_info, track_info
from tests.conftest import SHARED_DATASETS, dataset_path

# file: (format, kept, dropped, reasons, start, end, duration_s, has_attitude, triggers)
TRACKS: dict[str, tuple[str, int, int, dict[str, int], str | None, str | None, float, bool, int]] = {
    "dataflash/PyFlightCoach_center_0003.bin": ("ardupilot_dataflash", 209, 0, {}, "2025-01-03T13:45:59.818Z", "2025-01-03T13:46:42.359Z", 42.54, True, 0),
    # The outlier/no-fix GPS records (Status 1, 0,0 or positions hundreds of km away) are dropped.
    "dataflash/PyFlightCoach_pilot_0004.BIN": ("ardupilot_dataflash", 85, 376, {"no_fix": 376}, "2025-01-03T13:45:24.279Z", "2025-01-03T13:45:41.019Z", 16.74, True, 0),
    "dataflash/pymavlink_test.BIN": ("ardupilot_dataflash", 5, 0, {}, "2017-10-29T01:47:10.005Z", "2017-10-29T01:47:10.800Z", 0.794, True, 0),
    "dji_srt/DJI_SRT_Parser_air2s.srt": ("dji_srt", 17, 0, {}, "2022-08-07T13:40:40.775", "2022-08-07T13:40:41.308", 0.533, False, 0),
    "dji_srt/DJI_SRT_Parser_broken_incomplete.SRT": ("dji_srt", 19, 0, {}, "2017-07-03T10:15:03.000", "2017-07-03T10:15:21.000", 18.0, False, 0),
    "dji_srt/DJI_SRT_Parser_broken_incomplete2.SRT": ("dji_srt", 4, 0, {}, "2020-08-12T08:55:21.745", "2020-08-12T08:55:21.905", 0.16, False, 0),
    "dji_srt/DJI_SRT_Parser_m2zoom.SRT": ("dji_srt", 7113, 0, {}, "2020-04-02T15:19:58.721", "2020-04-02T15:21:57.372", 118.651, False, 0),
    # No time codes: the date lines alone; 5 repeated date lines are duplicates.
    "dji_srt/DJI_SRT_Parser_mavic_2_style.SRT": ("dji_srt", 463, 5, {"duplicate_time": 5}, "2017-08-05T14:11:51.393", "2017-08-05T14:19:39.393", 468.0, False, 0),
    # Joined clips: the dates jump while the time codes run on; each clip is anchored on its own.
    "dji_srt/DJI_SRT_Parser_mavic_2pro_new.SRT": ("dji_srt", 8952, 0, {}, "2019-09-27T10:28:08.398", "2019-09-27T11:11:41.524", 2613.126, False, 0),
    "dji_srt/DJI_SRT_Parser_mavic_air2.srt": ("dji_srt", 25, 0, {}, "2022-05-01T15:01:58.532", "2022-05-01T15:01:58.932", 0.4, False, 0),
    "dji_srt/DJI_SRT_Parser_mavic_mini.SRT": ("dji_srt", 117, 0, {}, None, None, 116.0, False, 0),
    "dji_srt/DJI_SRT_Parser_mavic_pro.SRT": ("dji_srt", 468, 0, {}, "2017-08-05T14:11:51.000", "2017-08-05T14:19:38.000", 467.0, False, 0),
    # GPS(N/A,N/A,3) blocks are fixes without a position.
    "dji_srt/DJI_SRT_Parser_mavic_pro_buggy.SRT": ("dji_srt", 530, 16, {"no_fix": 16}, "2018-08-19T08:00:36.000", "2018-08-19T08:09:41.000", 545.0, False, 0),
    # Two recordings 110 m apart in one file: the second one's fixes are an impossible jump.
    "dji_srt/DJI_SRT_Parser_mix_p4rtk_mavic2pro.srt": ("dji_srt", 6, 6, {"spike": 6}, "2020-10-07T12:00:05.081", "2020-10-07T12:00:10.086", 5.005, True, 0),
    "dji_srt/DJI_SRT_Parser_old_format.SRT": ("dji_srt", 468, 0, {}, "2017-08-05T14:11:51.000", "2017-08-05T14:19:38.000", 467.0, False, 0),
    "dji_srt/DJI_SRT_Parser_p4p_sample.SRT": ("dji_srt", 5, 0, {}, None, None, 4.0, False, 0),
    "mrk/helenenschacht_101FTASK_Timestamp.mrk": ("dji_mrk", 176, 0, {}, "2022-05-25T10:17:50.242Z", "2022-05-25T10:26:06.038Z", 495.796, False, 176),
    "tlog/UAVLogViewer_vtol.tlog": ("mavlink_tlog", 807, 0, {}, "2018-08-08T14:05:45.465Z", "2018-08-08T14:09:13.877Z", 208.412, True, 0),
    # 149 positions at 0,0 before GPS lock; 49 fused positions whose altitude jumps by ~590 m (EKF origin reset).
    "tlog/dronekit-python_flight_replay_flight.tlog": ("mavlink_tlog", 2635, 198, {"zero": 149, "spike": 49}, "2015-07-05T00:27:51.240Z", "2015-07-05T00:44:16.635Z", 985.395, True, 0),
    "ulog/pyulog_sample_log_small.ulg": ("px4_ulog", 32, 0, {}, "2021-04-21T06:30:58.613Z", "2021-04-21T06:31:04.800Z", 6.187, True, 0),
    "ulog/pyulog_sample_logging_tagged_and_default_params.ulg": ("px4_ulog", 30, 160, {"no_fix": 160}, "2022-04-29T08:45:36.482Z", "2022-04-29T08:45:37.990Z", 1.508, True, 0),
    "ulog/pyulog_sample_px4_events.ulg": ("px4_ulog", 423, 160, {"no_fix": 160}, "2024-03-18T14:49:19.526Z", "2024-03-18T14:49:41.470Z", 21.944, True, 0),
}

ERRORS: dict[str, tuple[type[InputError], str]] = {
    "dji_srt/DJI_SRT_Parser_broken_empty.SRT": (LogFormatError, "the file is empty"),
    "dji_srt/DJI_SRT_Parser_broken_empty2.SRT": (LogFormatError, "no telemetry blocks"),
    "dji_srt/DJI_SRT_Parser_mavic_air.SRT": (LogFormatError, "none of its 2 subtitle blocks holds a GPS position"),
    "ulog/pyulog_sample.ulg": (LogFormatError, "no GPS position in this ULog (it holds 6461 attitude samples"),
    "ulog/pyulog_sample_appended_multiple.ulg": (LogFormatError, "no GPS position in this ULog (it holds 306 attitude samples"),
}

# Warnings that say where a file breaks.
BREAKS: dict[str, str] = {
    "dji_srt/DJI_SRT_Parser_broken_incomplete.SRT": "breaks in block 20 at line 115",
    "dji_srt/DJI_SRT_Parser_broken_incomplete2.SRT": "breaks in block 6 at line 31",
    "tlog/dronekit-python_flight_replay_flight.tlog": "breaks at byte 2723829 of 2723840",
    # A 64 KiB excerpt of a longer log: the last message is cut off.
    "dataflash/pymavlink_test.BIN": "breaks at byte 65512 of 65536",
}

NOT_LOGS = {"LICENSE", "LICENSE.md"}


@lru_cache(maxsize=None)
def _read(rel: str) -> FlightTrack:
    return read_log(dataset_path("logs", *rel.split("/")))


def test_every_dataset_log_is_pinned() -> None:
    root = SHARED_DATASETS / "logs"
    if not root.exists():
        dataset_path("logs")  # skips, or fails under CI
    files = {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and "LICENSE" not in p.name
    }
    assert files == set(TRACKS) | set(ERRORS)


@pytest.mark.parametrize("rel", sorted(TRACKS))
def test_dataset_log_track(rel: str) -> None:
    fmt, kept, dropped, reasons, start, end, duration, attitude, triggers = TRACKS[rel]
    track = _read(rel)
    info = track_info(track)
    assert info["format"] == fmt == track.format
    assert (info["fixes"], info["dropped"]) == (kept, dropped)
    assert track.dropped_reasons == reasons
    assert (info["start"], info["end"]) == (start, end)
    assert info["duration_s"] == pytest.approx(duration, abs=2e-3)
    assert info["has_attitude"] is attitude
    assert info["triggers"] == triggers
    assert track.absolute_time is (start is not None)
    w, s, e, n = info["bbox"]
    assert -180 <= w <= e <= 180 and -90 <= s <= n <= 90
    assert list(info) == ["format", "fixes", "dropped", "start", "end", "duration_s", "has_attitude", "triggers", "bbox"]
    if rel in BREAKS:
        assert any(BREAKS[rel] in w for w in track.warnings), track.warnings
        assert all(Path(rel).name in w for w in track.warnings)


@pytest.mark.parametrize("rel", sorted(ERRORS))
def test_dataset_log_error(rel: str) -> None:
    cls, fragment = ERRORS[rel]
    path = dataset_path("logs", *rel.split("/"))
    with pytest.raises(cls) as info:
        read_log(path)
    assert fragment in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("rel", sorted(ERRORS))
def test_log_info_cli_gives_clear_error(rel: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = dataset_path("logs", *rel.split("/"))
    assert cli.main(["log-info", str(path)]) == cli.EXIT_USER
    err = capsys.readouterr().err
    assert "aerobase: error:" in err and path.name in err
    assert "Traceback" not in err


def test_log_info_reads_the_file() -> None:
    info = log_info(dataset_path("logs", "ulog", "pyulog_sample_px4_events.ulg"))
    assert (info["format"], info["fixes"], info["dropped"]) == ("px4_ulog", 423, 160)


def test_log_info_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    path = dataset_path("logs", "mrk", "helenenschacht_101FTASK_Timestamp.mrk")
    assert cli.main(["log-info", "--json", str(path)]) == cli.EXIT_OK
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert data["format"] == "dji_mrk" and data["fixes"] == 176 and data["triggers"] == 176
    assert data["bbox"] == pytest.approx([16.4747, 47.6421, 16.4772, 47.6437], abs=1e-3)


def test_log_info_cli_text(capsys: pytest.CaptureFixture[str]) -> None:
    path = dataset_path("logs", "dataflash", "PyFlightCoach_pilot_0004.BIN")
    assert cli.main(["log-info", str(path)]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "ardupilot_dataflash" in out and "85 kept, 376 dropped" in out and "2025-01-03T13:45:24.279Z" in out


def test_mrk_reads_rtk_accuracy_and_ellipsoidal_height() -> None:
    track = _read("mrk/helenenschacht_101FTASK_Timestamp.mrk")
    trig = track.triggers
    assert trig is not None and trig.std_horizontal_m is not None and trig.std_vertical_m is not None
    assert 0.005 < float(trig.std_horizontal_m[0]) < 0.05 and 0.01 < float(trig.std_vertical_m[0]) < 0.05
    assert track.positions.height_ref.value == "ellipsoidal"
    assert float(track.positions.alt[0]) == pytest.approx(512.998)
    # GPS week 2211, 296288.242869 s, minus 18 leap seconds.
    assert float(track.positions.t[0]) == pytest.approx(1653473870.242869, abs=1e-5)


def test_srt_layouts_read_positions_and_attitude() -> None:
    mix = _read("dji_srt/DJI_SRT_Parser_mix_p4rtk_mavic2pro.srt")
    assert mix.attitude is not None and mix.gimbal is not None
    # F.PRY (-8.9°, 2.9°, -75.0°): pitch, roll, yaw.
    assert float(mix.attitude.pitch[0]) == pytest.approx(-8.9)
    assert float(mix.attitude.roll[0]) == pytest.approx(2.9)
    assert float(mix.attitude.yaw[0]) == pytest.approx(285.0)
    bracketed = _read("dji_srt/DJI_SRT_Parser_m2zoom.SRT")  # [latitude: ] [longtitude: ] misspelt
    assert float(bracketed.positions.lat[0]) == pytest.approx(31.452012)
    assert float(bracketed.positions.lon[0]) == pytest.approx(74.398751)
    assert float(bracketed.positions.alt[0]) == pytest.approx(213.983002)
    old = _read("dji_srt/DJI_SRT_Parser_mavic_pro.SRT")  # GPS(lon,lat,satellites) BAROMETER:h
    assert float(old.positions.lon[0]) == pytest.approx(149.0251)
    assert float(old.positions.lat[0]) == pytest.approx(-20.2533)
    assert float(old.positions.alt[0]) == pytest.approx(1.9)


def test_detection_uses_content_not_extension(tmp_path: Path) -> None:
    src = dataset_path("logs", "tlog", "UAVLogViewer_vtol.tlog")
    renamed = tmp_path / "telemetry.bin"
    renamed.write_bytes(src.read_bytes()[:200_000])
    assert detect_format(renamed).value == "mavlink_tlog"
    ulog = tmp_path / "flight.log"
    ulog.write_bytes(dataset_path("logs", "ulog", "pyulog_sample_log_small.ulg").read_bytes())
    assert detect_format(ulog).value == "px4_ulog"
