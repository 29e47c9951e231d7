"""Library entry points behind ``aerobase run``: build the config and workspace, run, summarise."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

from models.geo import check_crs_spec
from pipeline.config import Config, Preset, load_config, with_inputs
from pipeline.runner import RunOptions, RunSummary, run_pipeline
from pipeline.stages import STAGES
from pipeline.workspace import Workspace

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunRequest:
    """Everything ``aerobase run`` was asked to do."""

    flight_dir: Path
    out_dir: Path
    preset: str = Preset.DEFAULT.value
    config_file: Path | None = None
    crs: str = "auto"
    gcp_file: Path | None = None
    checkpoints: tuple[str, ...] = ()
    logs: tuple[Path, ...] = ()
    scheduler: str | None = None
    workers: int | None = None
    rerun_from: str | None = None
    stop_after: str | None = None


def build_config(request: RunRequest) -> Config:
    cfg = load_config(request.preset, request.config_file)
    cfg = with_inputs(
        cfg,
        flight_dir=str(Path(request.flight_dir).resolve()),
        crs=request.crs,
        gcp_file=str(Path(request.gcp_file).resolve()) if request.gcp_file else "",
        checkpoints=tuple(request.checkpoints),
        logs=tuple(str(Path(p).resolve()) for p in request.logs),
    )
    if request.workers is not None:
        cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, workers=request.workers))
    return cfg


def run_flight(request: RunRequest) -> RunSummary:
    """Process one flight folder into ``request.out_dir``; resumes a previous run there."""
    from pipeline.cli import add_file_log

    cfg = build_config(request)
    check_crs_spec(cfg.inputs.crs)  # fail before the cluster starts
    ws = Workspace(Path(request.out_dir))
    ws.ensure(Path(request.flight_dir))
    handler = add_file_log(ws.log_path)
    try:
        logger.info("aerobase run: %s -> %s (preset %s)", request.flight_dir, ws.root, request.preset)
        return run_pipeline(
            ws,
            cfg,
            STAGES,
            RunOptions(scheduler=request.scheduler, rerun_from=request.rerun_from, stop_after=request.stop_after),
        )
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def summarize_run(summary: RunSummary, wall_s: float) -> str:
    """The short text the CLI prints at the end of a run."""
    ws = summary.workspace
    stats = summary.stats
    lines = [f"Aerobase finished in {wall_s:.1f}s. Outputs in {ws.root}:"]
    for path in (
        ws.orthophoto_path,
        ws.orthophoto_preview_path,
        ws.dsm_path,
        ws.dtm_path,
        ws.pointcloud_path,
        ws.copc_path,
        ws.sparse_cloud_path,
        ws.cameras_geojson_path,
        ws.stats_path,
    ):
        if path.exists():
            lines.append(f"  {path.name:<22} {path.stat().st_size / 1e6:8.1f} MB")
    if stats.get("crs"):
        lines.append(f"CRS: {stats['crs']}")
    if stats.get("gsd_m"):
        lines.append(f"GSD: {100 * float(stats['gsd_m']):.2f} cm")
    ortho = stats.get("ortho") or {}
    if ortho.get("size_px"):
        w, h = ortho["size_px"]
        lines.append(
            f"Orthophoto: {w} x {h} px at {100 * float(ortho['gsd_m']):.2f} cm/px, {ortho.get('crs', '')}, "
            f"{100 * float(ortho.get('coverage_fraction', 0)):.1f}% covered, {ortho.get('images_used', '?')} images"
        )
    skipped = stats.get("images_skipped") or []
    lines.append(f"Images: {stats.get('images_used', stats.get('images_read', '?'))} used of {stats.get('images_total', '?')}, {len(skipped)} skipped")
    lines.append("Stages:")
    for o in summary.outcomes:
        lines.append(f"  {o.name:<10} {o.seconds:8.1f}s{'  (up to date)' if o.skipped else ''}")
    return "\n".join(lines)
