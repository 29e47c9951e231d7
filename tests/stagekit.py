"""Tiny stages for testing the runner: resume, --rerun-from, kill and resume.

Also a script: ``python tests/stagekit.py OUT N DELAY`` runs the two stages in a
real in-process Dask cluster, so a test can kill it and run it again.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

from distributed import Client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import Config, RunConfig  # noqa: E402
from pipeline.progress import map_tasks  # noqa: E402
from pipeline.runner import RunOptions, run_pipeline  # noqa: E402
from pipeline.stage import StageReport, StageSpec  # noqa: E402
from pipeline.workspace import Workspace, write_json_atomic  # noqa: E402

CALLS: list[str] = []


def _count(ws: Workspace, cfg: Config, client: Client) -> StageReport:
    CALLS.append("count")
    n = cfg.dem.tile_size  # any int field serves as "how many items"
    path = ws.stage_dir("count") / "items.json"
    write_json_atomic(path, list(range(n)))
    return StageReport(figures={"count": {"items": n}}, outputs=(path,))


def _square_one(i: int, ws: Workspace, delay: float) -> int:
    out = ws.stage_dir("square") / f"{i:04d}.json"
    if out.exists():  # per-task resume: finished items are kept
        return int(json.loads(out.read_text()))
    time.sleep(delay)
    write_json_atomic(out, i * i)
    with open(ws.stage_dir("square") / "computed.log", "a") as fh:
        fh.write(f"{i}\n")
    return i * i


def _square(ws: Workspace, cfg: Config, client: Client) -> StageReport:
    CALLS.append("square")
    items = json.loads((ws.work_dir / "count" / "items.json").read_text())
    delay = cfg.ingest.max_interpolation_gap_s / 100.0
    squares = map_tasks(client, _square_one, items, ws, delay, label="square", item_names=[str(i) for i in items])
    path = ws.stage_dir("square") / "sum.json"
    write_json_atomic(path, sum(squares))
    return StageReport(figures={"square": {"sum": sum(squares)}}, outputs=(path,))


STAGES = (
    StageSpec("count", _count, config_fields=("dem.tile_size",)),
    StageSpec("square", _square, config_fields=("ingest.max_interpolation_gap_s",)),
)


def config(n: int, delay_s: float) -> Config:
    cfg = Config()
    return dataclasses.replace(
        cfg,
        run=RunConfig(workers=2),
        dem=dataclasses.replace(cfg.dem, tile_size=n),
        ingest=dataclasses.replace(cfg.ingest, max_interpolation_gap_s=delay_s * 100.0),
    )


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out, n, delay = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    run_pipeline(Workspace(out), config(n, delay), STAGES, RunOptions())
    print("finished", flush=True)
