"""Structure from motion on the Seneca subset: Aerobase against plain pycolmap, in one run.

Aerobase runs ingest, features, matching and sfm at the default preset (2000 px
working size). The baseline is plain pycolmap at the same size:
``extract_features`` (max_image_size 2000), ``match_exhaustive`` and
``incremental_mapping`` with default options. Both report reprojection error
in full-resolution pixels (pycolmap scales keypoints back to the full image).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pycolmap

from pipeline.api import RunRequest, run_flight

DATASET = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "seneca_subset"
WORKING_SIZE = 2000


def _warm_cache(image_dir: Path) -> None:
    """Read every image once so neither run pays for the first disk read."""
    for p in sorted(image_dir.iterdir()):
        p.read_bytes()


def _baseline(image_dir: Path, work: Path) -> tuple[dict[str, float], int, float, int]:
    """Plain pycolmap: returns (seconds per step, registered images, reprojection px, models)."""
    work.mkdir(parents=True, exist_ok=True)
    database = work / "database.db"
    seconds: dict[str, float] = {}
    old = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 1
    try:
        t = time.perf_counter()
        extraction = pycolmap.FeatureExtractionOptions()
        extraction.max_image_size = WORKING_SIZE
        pycolmap.extract_features(database, image_dir, extraction_options=extraction)
        seconds["extract_features"] = time.perf_counter() - t
        t = time.perf_counter()
        pycolmap.match_exhaustive(database)
        seconds["match_exhaustive"] = time.perf_counter() - t
        t = time.perf_counter()
        models = pycolmap.incremental_mapping(database, image_dir, work / "sparse")
        seconds["incremental_mapping"] = time.perf_counter() - t
    finally:
        pycolmap.logging.minloglevel = old
    if not models:
        return seconds, 0, float("nan"), 0
    best = max(models.values(), key=lambda r: r.num_reg_images())
    return seconds, int(best.num_reg_images()), float(best.compute_mean_reprojection_error()), len(models)


def run(out: Path) -> list[str]:
    image_dir = DATASET / "images"
    if not image_dir.is_dir():
        return [f"dataset {DATASET} is missing; nothing measured"]
    logging.getLogger("pipeline").setLevel(logging.WARNING)
    _warm_cache(image_dir)
    n_images = len([p for p in image_dir.iterdir() if p.is_file()])

    t0 = time.perf_counter()
    summary = run_flight(RunRequest(flight_dir=DATASET, out_dir=out / "aerobase", preset="default", stop_after="sfm"))
    ours_s = time.perf_counter() - t0
    stats = summary.stats
    sfm = stats["sfm"]

    base_steps, base_reg, base_err, base_models = _baseline(image_dir, out / "pycolmap")
    base_s = sum(base_steps.values())

    stages = {o.name: o.seconds for o in summary.outcomes}
    sub = sfm["seconds"]
    lines = [
        f"Seneca subset, {n_images} images, working size {WORKING_SIZE} px",
        f"aerobase (ingest+features+matching+sfm): {ours_s:7.1f} s wall, "
        f"{sfm['images_registered']}/{sfm['images_total']} registered, "
        f"reprojection {sfm['reprojection_error_px']['mean']:.3f} px mean / {sfm['reprojection_error_px']['median']:.3f} median, "
        f"{sfm['points']} points, {sfm['pairs_verified']}/{sfm['pairs_tried']} pairs verified",
        f"pycolmap baseline (extract, exhaustive, incremental): {base_s:7.1f} s wall, "
        f"{base_reg}/{n_images} registered in {base_models} model(s), reprojection {base_err:.3f} px mean, "
        f"{n_images * (n_images - 1) // 2} pairs",
        f"ratio aerobase / pycolmap: {ours_s / base_s:.2f}",
        "aerobase stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()),
        "aerobase substages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in sub.items()),
        "pycolmap steps (s): " + ", ".join(f"{k} {v:.1f}" for k, v in base_steps.items()),
        "aerobase figures: " + json.dumps({"calibration": sfm.get("calibration"), "gps_residual_m": sfm.get("gps_residual_m")}),
    ]
    return lines
