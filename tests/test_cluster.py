"""The same command on a workstation cluster: a real `dask scheduler` and two `dask worker` processes."""

from __future__ import annotations

import json
import socket
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Iterator

import pytest

from pipeline import cli

DASK = Path(sys.executable).parent / "dask"


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[str]:
    sched_file = tmp_path / "scheduler.json"
    env = dict(os.environ, DASK_DISTRIBUTED__WORKER__DAEMON="False")
    procs = [
        subprocess.Popen(
            [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(sched_file)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        )
    ]
    try:
        deadline = time.time() + 60
        while not sched_file.exists() and time.time() < deadline:
            time.sleep(0.2)
        assert sched_file.exists(), "dask scheduler did not start"
        time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        for i in range(2):
            procs.append(
                subprocess.Popen(
                    [str(DASK), "worker", address, "--nthreads", "1", "--no-dashboard", "--name", f"w{i}",
                     "--local-directory", str(tmp_path / f"w{i}")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                )
            )
        from distributed import Client

        with Client(address, timeout="30s") as probe:
            probe.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.mark.slow
def test_run_through_scheduler(tmp_path: Path, dask_cluster: str, synthetic_small: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The whole pipeline, every stage's tasks on two separate `dask worker` processes."""
    out = tmp_path / "out"
    code = cli.main(["run", str(synthetic_small), "-o", str(out), "--scheduler", dask_cluster, "--preset", "fast"])
    _o, err = capsys.readouterr()
    assert code == 0, err
    assert "connected to Dask scheduler" in err and "2 workers" in err
    stats = json.loads((out / "stats.json").read_text())
    assert stats["images_total"] == 16
    assert stats["sfm"]["images_registered"] == 16
    for name in ("orthophoto.tif", "dsm.tif", "dtm.tif", "pointcloud.laz", "pointcloud.copc.laz", "cameras.geojson"):
        assert (out / name).exists(), name
    # Two worker processes report their own peak memory.
    assert len(stats["peak_rss_mb_workers"]) == 2
    assert all(v > 50 for v in stats["peak_rss_mb_workers"].values())


def test_unreachable_scheduler_is_a_clear_error(tmp_path: Path, copy_dataset, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    flight = copy_dataset("brighton_beach", "images", limit=1)
    cfg = tmp_path / "quick.yaml"
    cfg.write_text("run:\n  scheduler_timeout_s: 2\n")
    code = cli.main(["run", str(flight), "-o", str(tmp_path / "o"), "--scheduler", "tcp://127.0.0.1:9", "--config", str(cfg)])
    _o, err = capsys.readouterr()
    assert code == 2
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in err


def test_two_runs_on_one_workstation_do_not_share_a_port() -> None:
    """The in-process cluster works, without a port warning, while something else holds 8787."""
    from pipeline.cluster import dask_client
    from pipeline.config import RunConfig

    holder = socket.socket()
    try:
        holder.bind(("", 8787))
        holder.listen()
    except OSError:
        pass  # already held by another process: the same situation
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with dask_client(RunConfig(workers=1)) as client:
                assert client.submit(sum, [1, 2]).result() == 3
        assert not [w for w in caught if "already in use" in str(w.message)]
    finally:
        holder.close()


def _malloc_state(dask_worker) -> tuple[bool, int]:  # type: ignore[no-untyped-def]
    return "aerobase-malloc-tuning" in dask_worker.plugins, os.getpid()


def test_worker_processes_run_tasks_with_the_malloc_tuning() -> None:
    """run.processes puts each local worker in its own process; every worker gets the malloc tuning."""
    from pipeline.cluster import dask_client, tune_malloc
    from pipeline.config import RunConfig

    if sys.platform.startswith("linux"):
        assert tune_malloc()  # glibc: the three mallopt calls apply
    with dask_client(RunConfig(workers=2, processes=True)) as client:
        assert client.submit(sum, [1, 2]).result() == 3
        states = client.run(_malloc_state)
    assert len(states) == 2 and all(tuned for tuned, _ in states.values())
    assert os.getpid() not in {pid for _, pid in states.values()}
    with dask_client(RunConfig(workers=1)) as client:  # threads of this process: the plugin too
        assert all(tuned for tuned, _ in client.run(_malloc_state).values())
