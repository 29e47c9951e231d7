"""Ingest benchmark: ``aerobase inspect`` on the shared image sets (wall time, figures)."""

from __future__ import annotations

import time
from pathlib import Path

from pipeline.inspect import inspect_flight

DATASETS = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"


def run(out: Path) -> list[str]:
    lines = []
    for name in ("brighton_beach", "seneca_subset"):
        folder = DATASETS / name / "images"
        if not folder.is_dir():
            lines.append(f"{name}: missing ({folder})")
            continue
        t0 = time.perf_counter()
        rep = inspect_flight(folder, output=out / f"{name}.geojson")
        dt = time.perf_counter() - t0
        j = rep.to_json()
        ov = j["overlap"] or {}
        gsd = j["gsd_m"]
        lines.append(
            f"{name}: {j['images_read']}/{j['images_total']} images read, {j['images_used']} with GPS, "
            f"{len(j['cameras'])} camera(s), GSD {'n/a' if gsd is None else f'{100 * gsd:.2f} cm'}, "
            f"ground {j['ground_height_m']:.1f} m ({j['ground_height_source']}), "
            f"forward {100 * (ov.get('forward') or 0):.0f}%, side {100 * (ov.get('side') or 0):.0f}%, "
            f"area {(j['area_m2'] or 0) / 1e4:.2f} ha, inspect {dt:.2f} s"
        )
    return lines
