"""Run the stages in order with resume, --rerun-from, progress and stats.json."""

from __future__ import annotations

import logging
import resource
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from distributed import Client

from models.errors import ConfigError
from pipeline.cluster import dask_client
from pipeline.config import Config
from pipeline.stage import StageReport, StageSpec
from pipeline.workspace import Manifest, Workspace, fingerprint

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    """How to run (not what to compute)."""

    # tcp://HOST:PORT of a dask scheduler; None runs an in-process LocalCluster.
    scheduler: str | None = None
    # Force this stage and every later one to run again.
    rerun_from: str | None = None
    # Stop after this stage (for tests and partial runs).
    stop_after: str | None = None


@dataclass
class StageOutcome:
    name: str
    seconds: float
    skipped: bool  # True when the manifest matched and the stage did not run


@dataclass
class RunSummary:
    workspace: Workspace
    outcomes: list[StageOutcome] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


def deep_merge(into: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            deep_merge(into[k], v)
        else:
            into[k] = v
    return into


def _peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024.0, 1)  # Linux reports KiB


def _worker_peak_rss_mb(client: Client) -> dict[str, float]:
    """Peak RSS of each worker process of a remote cluster (empty for the in-process one)."""
    from distributed import LocalCluster

    if isinstance(getattr(client, "cluster", None), LocalCluster):
        return {}
    try:
        return {str(k): float(v) for k, v in client.run(_peak_rss_mb).items()}
    except (OSError, TimeoutError):  # a worker that went away does not fail the run
        return {}


def stage_names(stages: Sequence[StageSpec]) -> list[str]:
    return [s.name for s in stages]


def _expected(ws: Workspace, cfg: Config, stage: StageSpec, upstream: list[Manifest]) -> tuple[dict[str, Any], dict[str, str]]:
    config_values = {f: cfg.values(f) for f in stage.config_fields}
    inputs = {str(p): fingerprint(p) for p in stage.inputs(ws, cfg)}
    for m in upstream:
        for path, fp in m.outputs.items():
            inputs[f"{m.stage}:{path}"] = fp
    return config_values, inputs


def _manifest_matches(ws: Workspace, stage: StageSpec, config_values: dict[str, Any], inputs: dict[str, str]) -> Manifest | None:
    m = ws.load_manifest(stage.name)
    if m is None or m.version != stage.version:
        return None
    if m.config != config_values or m.inputs != inputs:
        return None
    for path, fp in m.outputs.items():
        if fingerprint(Path(path)) != fp:
            return None
    return m


def run_stages(
    ws: Workspace,
    cfg: Config,
    client: Client,
    stages: Sequence[StageSpec],
    options: RunOptions | None = None,
) -> RunSummary:
    """Run ``stages`` in order on an existing client."""
    opts = options or RunOptions()
    names = stage_names(stages)
    for flag, value in (("--rerun-from", opts.rerun_from), ("--stop-after", opts.stop_after)):
        if value is not None and value not in names:
            raise ConfigError(f"{flag} {value!r} is not a stage; stages are: {', '.join(names)}")
    force_from = names.index(opts.rerun_from) if opts.rerun_from else len(names)

    summary = RunSummary(ws)
    stats: dict[str, Any] = {"aerobase_version": "0.1.0", "stages": {}}
    done: list[Manifest] = []
    for i, stage in enumerate(stages):
        config_values, inputs = _expected(ws, cfg, stage, done)
        matched = None if i >= force_from else _manifest_matches(ws, stage, config_values, inputs)
        if matched is not None:
            logger.info("[%d/%d] %s: up to date, skipped (finished %s)", i + 1, len(stages), stage.name, matched.finished_at)
            summary.outcomes.append(StageOutcome(stage.name, matched.seconds, True))
            manifest = matched
        else:
            ws.invalidate(stage.name)
            logger.info("[%d/%d] %s: %s", i + 1, len(stages), stage.name, stage.title or "running")
            t0 = time.perf_counter()
            report: StageReport = stage.run(ws, cfg, client)
            seconds = time.perf_counter() - t0
            manifest = Manifest(
                stage=stage.name,
                version=stage.version,
                config=config_values,
                inputs=inputs,
                outputs={str(p): fingerprint(p) for p in report.outputs},
                figures=report.figures,
                seconds=round(seconds, 3),
                finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            )
            ws.save_manifest(manifest)
            logger.info("[%d/%d] %s: done in %.1fs", i + 1, len(stages), stage.name, seconds)
            summary.outcomes.append(StageOutcome(stage.name, seconds, False))
        done.append(manifest)
        deep_merge(stats, manifest.figures)
        stats["stages"][stage.name] = {"seconds": manifest.seconds, "skipped": matched is not None}
        stats["peak_rss_mb"] = _peak_rss_mb()
        workers_rss = _worker_peak_rss_mb(client)
        if workers_rss:
            stats["peak_rss_mb_workers"] = workers_rss
        ws.save_stats(stats)
        if opts.stop_after == stage.name:
            break
    summary.stats = stats
    return summary


def run_pipeline(
    ws: Workspace,
    cfg: Config,
    stages: Sequence[StageSpec],
    options: RunOptions | None = None,
) -> RunSummary:
    """Create the run's Dask client and run the stages on it."""
    opts = options or RunOptions()
    ws.ensure(Path(cfg.inputs.flight_dir) if cfg.inputs.flight_dir else None)
    with dask_client(cfg.run, opts.scheduler) as client:
        return run_stages(ws, cfg, client, stages, opts)
