"""Kill a real `aerobase run` in the middle of the pipeline and run the same command again."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

FINAL = ("orthophoto.tif", "dsm.tif", "dtm.tif", "pointcloud.laz", "pointcloud.copc.laz")


@pytest.mark.slow
def test_kill_after_sfm_then_resume(tmp_path: Path, synthetic_small: Path) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pipeline", "run", str(synthetic_small), "-o", str(out), "--preset", "fast"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sfm_manifest = out / "work" / "sfm" / "manifest.json"
    deadline = time.time() + 300
    while time.time() < deadline and not sfm_manifest.exists() and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    assert sfm_manifest.exists(), "sfm did not finish in time"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    # Killed inside the dense stages: no deliverable exists under its final name yet.
    for name in FINAL:
        assert not (out / name).exists(), f"{name} exists after a kill before its stage"
    assert not (out / "work" / "densify" / "manifest.json").exists()

    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for stage in ("ingest", "features", "matching", "sfm"):
        assert f"{stage}: up to date, skipped" in resumed.stderr, stage
    for stage in ("densify", "dem", "ortho"):
        assert f"] {stage}: done in" in resumed.stderr, stage
    for name in FINAL:
        assert (out / name).exists(), name
    stats = json.loads((out / "stats.json").read_text())
    assert stats["stages"]["sfm"]["skipped"] is True
    assert stats["stages"]["ortho"]["skipped"] is False
    assert stats["sfm"]["images_registered"] == 16  # figures of skipped stages survive

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0
    assert "ortho: up to date, skipped" in again.stderr
