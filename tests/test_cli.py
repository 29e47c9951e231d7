from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import cli


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_missing_flight_dir_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run_cli(["run", str(tmp_path / "nope"), "-o", str(tmp_path / "out")], capsys)
    assert code == 2
    assert "does not exist" in err and str(tmp_path / "nope") in err
    assert "Traceback" not in err


def test_folder_without_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "flight").mkdir()
    (tmp_path / "flight" / "notes.txt").write_text("x")
    code, _out, err = run_cli(["run", str(tmp_path / "flight"), "-o", str(tmp_path / "out")], capsys)
    assert code == 2 and "no images" in err and "Traceback" not in err


def test_unknown_config_key_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "flight").mkdir()
    cfg = tmp_path / "my.yaml"
    cfg.write_text("ortho:\n  gsd_facter: 2\n")
    code, _out, err = run_cli(["run", str(tmp_path / "flight"), "-o", str(tmp_path / "out"), "--config", str(cfg)], capsys)
    assert code == 2
    assert "ortho.gsd_facter" in err and str(cfg) in err


def test_output_inside_input_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], copy_dataset) -> None:  # type: ignore[no-untyped-def]
    flight = copy_dataset("brighton_beach", "images", limit=2)
    code, _out, err = run_cli(["run", str(flight), "-o", str(flight / "out")], capsys)
    assert code == 2 and "inside the input folder" in err


def test_internal_error_is_exit_1_with_log(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.api

    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(pipeline.api, "run_flight", boom)
    out_dir = tmp_path / "out"
    code, _out, err = run_cli(["run", str(tmp_path), "-o", str(out_dir)], capsys)
    assert code == 1
    assert "internal error: RuntimeError: kaboom" in err
    log = out_dir / "aerobase-error.log"
    assert log.exists() and "Traceback" in log.read_text() and "kaboom" in log.read_text()
    assert "Traceback" not in err


def test_bad_rerun_from_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], copy_dataset) -> None:  # type: ignore[no-untyped-def]
    flight = copy_dataset("brighton_beach", "images", limit=2)
    code, _out, err = run_cli(["run", str(flight), "-o", str(tmp_path / "o"), "--rerun-from", "bogus"], capsys)
    assert code == 2 and "not a stage" in err


def test_unknown_crs_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], copy_dataset) -> None:  # type: ignore[no-untyped-def]
    flight = copy_dataset("brighton_beach", "images", limit=2)
    code, _out, err = run_cli(["run", str(flight), "-o", str(tmp_path / "o"), "--crs", "EPSG:999999"], capsys)
    assert code == 2 and "EPSG:999999" in err and "Traceback" not in err


def test_argparse_errors_keep_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["run"])
    assert exc.value.code == 2
