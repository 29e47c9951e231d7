"""Dense point cloud + DEM benchmark (issue 6): wall time, points per second, peak memory.

1. Real flights (Brighton Beach, the Seneca subset): ingest..sfm run first (not timed), then the
   dense stages (densify, fusion, dem, pointcloud) run in a child process whose resident memory,
   summed over its process tree, is sampled every 0.1 s.
2. Memory against flight size: the synthetic ``medium`` flight (one town, one camera, one GSD),
   rendered once and processed with its TRUE cameras twice: the images of the first half of its
   flight lines, then all of them. Twice the images cover twice the area at the same density, so
   per-tile work is the same; flat peak memory shows that tiles, not the flight, bound it. The
   tiles are made small against this flight (40 m fusion tiles, 256-cell DEM tiles) so that both
   runs have full interior tiles; with 100 m tiles the half flight's tiles are only partly filled.

``AEROBASE_BENCH_SOLVED_<NAME>`` (NAME = BRIGHTON_BEACH, SENECA_SUBSET) may point at a workspace
where sfm already ran, to benchmark the dense stages without the SfM stage on this branch.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
DATASETS = REPO.parent / "shared" / "datasets"
DENSE_STAGES = ("densify", "fusion", "dem", "pointcloud")
PRESET = "default"


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def run_child(workspace: Path, preset: str, overlay: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the dense stages on ``workspace`` in a child process; its figures and peak tree RSS."""
    cmd = [sys.executable, "-m", "bench.dense", "--child", str(workspace), preset, json.dumps(overlay or {})]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                peak = max(peak, _tree_rss(ps))
            except psutil.NoSuchProcess:
                return
            time.sleep(0.1)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, err = proc.communicate()
    done.set()
    th.join()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"dense stages failed on {workspace}:\n{err[-3000:]}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["wall_s"] = wall
    result["peak_rss_mb"] = peak / 2**20
    return result


def _child(workspace: Path, preset: str, overlay: dict[str, Any]) -> None:
    import logging

    from pipeline.cluster import dask_client
    from pipeline.config import load_config
    from pipeline.config import overlay as apply_overlay
    from pipeline.runner import run_stages
    from pipeline.stages import dem, densify, fusion, pointcloud
    from pipeline.workspace import Workspace

    logging.basicConfig(level=logging.WARNING)
    cfg = apply_overlay(load_config(preset), overlay)
    ws = Workspace(workspace)
    stages = [densify.STAGE, fusion.STAGE, dem.STAGE, pointcloud.STAGE]
    with dask_client(cfg.run) as client:
        summary = run_stages(ws, cfg, client, stages)
    s = summary.stats
    print(
        json.dumps(
            {
                "seconds": {o.name: round(o.seconds, 1) for o in summary.outcomes},
                "images": len(ws.load_reconstruction().images),
                "points": s["dense"]["points"],
                "images_with_depth": s["dense"]["images_with_depth"],
                "tiles": s["dense"]["tiles"],
                "gsd_m": s["dense"]["gsd_m"],
                "dem_resolution_m": s["dem"]["resolution_m"],
                "coverage": s["dem"]["coverage_fraction"],
                "ground_fraction": s["ground"]["fraction"],
            }
        )
    )


def _line(name: str, r: dict[str, Any]) -> str:
    dense_s = sum(r["seconds"].values())
    per = ", ".join(f"{k} {v:.0f}s" for k, v in r["seconds"].items())
    return (
        f"{name}: {r['images']} images, {r['points'] / 1e6:.2f} M points, wall {r['wall_s']:.0f} s ({per}), "
        f"{r['points'] / max(dense_s, 1e-9) / 1e3:.1f} k points/s, peak RSS {r['peak_rss_mb']:.0f} MB, "
        f"GSD {100 * r['gsd_m']:.2f} cm, DEM {100 * r['dem_resolution_m']:.1f} cm, coverage {r['coverage']:.3f}"
    )


def _solved_workspace(name: str, out: Path) -> Path | None:
    """A workspace where sfm ran on the named flight: given by the environment, or made here."""
    given = os.environ.get(f"AEROBASE_BENCH_SOLVED_{name.upper()}")
    ws_dir = out / f"{name}-out"
    if given:
        shutil.copytree(given, ws_dir)
        return ws_dir
    from pipeline.api import RunRequest, build_config
    from pipeline.runner import RunOptions, run_pipeline
    from pipeline.stages import STAGES
    from pipeline.workspace import Workspace

    names = [s.name for s in STAGES]
    if "sfm" not in names:
        return None
    flight = out / name
    shutil.copytree(DATASETS / name, flight)
    cfg = build_config(RunRequest(flight_dir=flight, out_dir=ws_dir, preset=PRESET))
    run_pipeline(Workspace(ws_dir), cfg, STAGES, RunOptions(stop_after="sfm"))
    return ws_dir


def _synthetic_pair(out: Path) -> tuple[Path, Path]:
    """Workspaces with the true cameras of the synthetic medium flight: half its lines, and all."""
    from pipeline.cluster import dask_client
    from pipeline.config import load_config
    from pipeline.synth import SynthOptions, render_flight
    from tests.densekit import prepare_true_workspace
    from pipeline.workspace import Workspace

    flight = out / "synth-medium"
    render_flight(flight, SynthOptions(preset="medium", seed=3))
    lines = {img["name"]: img["line"] for img in json.loads((flight / "truth" / "scene.json").read_text())["images"]}
    half_lines = sorted(set(lines.values()))[: (len(set(lines.values())) + 1) // 2]
    cfg = load_config(PRESET)
    full = out / "synth-all"
    with dask_client(cfg.run) as client:
        prepare_true_workspace(flight, full, cfg, client)
    half = out / "synth-half"
    shutil.copytree(full, half)
    ws = Workspace(half)
    rec = ws.load_reconstruction()
    from models.reconstruction import Reconstruction

    keep = {n: img for n, img in rec.images.items() if lines[n] in half_lines}
    ws.save_reconstruction(Reconstruction(rec.crs, rec.cameras, keep, rec.points))
    return half, full


def run(out: Path) -> list[str]:
    lines = [f"preset {PRESET}; dense stages in a child process, peak = resident memory of its process tree"]
    for name in ("brighton_beach", "seneca_subset"):
        if not (DATASETS / name).is_dir() and not os.environ.get(f"AEROBASE_BENCH_SOLVED_{name.upper()}"):
            lines.append(f"{name}: dataset missing")
            continue
        ws_dir = _solved_workspace(name, out)
        if ws_dir is None:
            lines.append(f"{name}: skipped (no sfm stage on this branch; set AEROBASE_BENCH_SOLVED_{name.upper()})")
            continue
        lines.append(_line(name, run_child(ws_dir, PRESET)))
    half, full = _synthetic_pair(out)
    # Tiles small against the flight (40 m fusion tiles, 256-cell DEM tiles), so that both runs
    # have full interior tiles: the largest tile, not the flight, then sets the memory.
    small_tiles = {"dense": {"fusion_tile_m": 40.0}, "dem": {"tile_size": 256}}
    r_half = run_child(half, PRESET, small_tiles)
    r_full = run_child(full, PRESET, small_tiles)
    lines.append(_line("synthetic medium, first half of the lines (true cameras)", r_half))
    lines.append(_line("synthetic medium, all lines (true cameras)", r_full))
    lines.append(
        f"memory vs images: {r_full['images']}/{r_half['images']} = {r_full['images'] / r_half['images']:.2f}x images, "
        f"{r_full['points'] / r_half['points']:.2f}x points, peak RSS {r_full['peak_rss_mb'] / r_half['peak_rss_mb']:.2f}x "
        f"({r_half['peak_rss_mb']:.0f} -> {r_full['peak_rss_mb']:.0f} MB)"
    )
    return lines


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        _child(Path(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4]))
    else:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="aerobase-bench-dense-") as tmp:
            for line in run(Path(tmp)):
                print(line, flush=True)
