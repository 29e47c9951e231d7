from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
from distributed import Client, LocalCluster

from models.errors import ConfigError
from pipeline.runner import RunOptions, run_stages
from pipeline.workspace import Workspace
from tests import stagekit


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with Client(cluster, set_as_default=False) as c:
            yield c


def test_runs_in_order_and_writes_stats(tmp_path: Path, client: Client) -> None:
    ws = Workspace(tmp_path)
    stagekit.CALLS.clear()
    summary = run_stages(ws, stagekit.config(5, 0.0), client, stagekit.STAGES)
    assert stagekit.CALLS == ["count", "square"]
    stats = json.loads(ws.stats_path.read_text())
    assert stats["square"]["sum"] == sum(i * i for i in range(5))
    assert set(stats["stages"]) == {"count", "square"}
    assert stats["peak_rss_mb"] > 0
    assert summary.stats == stats
    assert ws.manifest_exists("count") and ws.manifest_exists("square")


def test_unchanged_rerun_skips_everything(tmp_path: Path, client: Client) -> None:
    ws = Workspace(tmp_path)
    cfg = stagekit.config(4, 0.0)
    run_stages(ws, cfg, client, stagekit.STAGES)
    stagekit.CALLS.clear()
    summary = run_stages(ws, cfg, client, stagekit.STAGES)
    assert stagekit.CALLS == []
    assert all(o.skipped for o in summary.outcomes)
    assert summary.stats["square"]["sum"] == 14  # figures come back from manifests


def test_config_change_reruns_that_stage_and_later(tmp_path: Path, client: Client) -> None:
    ws = Workspace(tmp_path)
    run_stages(ws, stagekit.config(4, 0.0), client, stagekit.STAGES)
    stagekit.CALLS.clear()
    run_stages(ws, stagekit.config(6, 0.0), client, stagekit.STAGES)
    assert stagekit.CALLS == ["count", "square"]  # square's input (count's output) changed
    stagekit.CALLS.clear()
    run_stages(ws, stagekit.config(6, 0.001), client, stagekit.STAGES)
    assert stagekit.CALLS == ["square"]


def test_rerun_from_forces_the_rest(tmp_path: Path, client: Client) -> None:
    ws = Workspace(tmp_path)
    cfg = stagekit.config(3, 0.0)
    run_stages(ws, cfg, client, stagekit.STAGES)
    stagekit.CALLS.clear()
    run_stages(ws, cfg, client, stagekit.STAGES, RunOptions(rerun_from="square"))
    assert stagekit.CALLS == ["square"]
    stagekit.CALLS.clear()
    run_stages(ws, cfg, client, stagekit.STAGES, RunOptions(rerun_from="count"))
    assert stagekit.CALLS == ["count", "square"]
    with pytest.raises(ConfigError, match="not a stage"):
        run_stages(ws, cfg, client, stagekit.STAGES, RunOptions(rerun_from="nope"))


def test_deleted_output_reruns_stage(tmp_path: Path, client: Client) -> None:
    ws = Workspace(tmp_path)
    cfg = stagekit.config(3, 0.0)
    run_stages(ws, cfg, client, stagekit.STAGES)
    (ws.work_dir / "square" / "sum.json").unlink()
    stagekit.CALLS.clear()
    run_stages(ws, cfg, client, stagekit.STAGES)
    assert stagekit.CALLS == ["square"]


def test_killed_run_resumes_where_it_stopped(tmp_path: Path) -> None:
    """SIGKILL a real run in the middle of a Dask stage, then run it again."""
    out = tmp_path / "out"
    script = Path(stagekit.__file__)
    n, delay = 24, 0.25
    proc = subprocess.Popen([sys.executable, str(script), str(out), str(n), str(delay)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    square_dir = out / "work" / "square"
    deadline = time.time() + 60
    while time.time() < deadline:
        done = list(square_dir.glob("0*.json")) if square_dir.exists() else []
        if len(done) >= 4:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done_before = sorted(p.name for p in square_dir.glob("0*.json"))
    assert 4 <= len(done_before) < n, "the kill must land mid-stage"
    assert not (out / "work" / "square" / "manifest.json").exists()
    assert (out / "work" / "count" / "manifest.json").exists()
    # No half-written file under a final name: every finished item parses.
    for p in square_dir.glob("0*.json"):
        json.loads(p.read_text())

    result = subprocess.run([sys.executable, str(script), str(out), str(n), str(delay)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "count: up to date, skipped" in result.stderr
    computed = [int(x) for x in (square_dir / "computed.log").read_text().split()]
    assert len(computed) == n, "every item computed exactly once across the two runs"
    assert len(set(computed)) == n
    stats = json.loads((out / "stats.json").read_text())
    assert stats["square"]["sum"] == sum(i * i for i in range(n))


def _half(x: int) -> int:
    if x == 3:
        raise ValueError("item 3 is odd")
    return x // 2


def test_iter_tasks_hands_over_every_result_once_and_raises_the_first_error(client: Client) -> None:
    from pipeline.progress import iter_tasks, map_tasks

    items = [0, 2, 4, 6, 8, 10]
    got = list(iter_tasks(client, _half, items, label="half"))
    assert sorted(i for i, _ in got) == list(range(len(items)))
    assert all(r == items[i] // 2 for i, r in got)
    assert map_tasks(client, _half, items, label="half") == [x // 2 for x in items]
    with pytest.raises(ValueError, match="item 3 is odd"):
        list(iter_tasks(client, _half, [1, 3, 5], label="half-bad"))
