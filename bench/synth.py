"""Render time of ``aerobase synth`` for the small and medium presets (figures only)."""

from __future__ import annotations

import resource
import time
from pathlib import Path

from pipeline.synth import SynthOptions, render_flight


def run(out: Path) -> list[str]:
    lines = []
    for preset in ("small", "medium"):
        t0 = time.perf_counter()
        result = render_flight(out / preset, SynthOptions(preset=preset, seed=7))
        wall = time.perf_counter() - t0
        lines.append(
            f"synth {preset}: {result.n_images} images {result.image_size[0]}x{result.image_size[1]} "
            f"in {wall:.1f} s (images {result.render_seconds:.1f} s, {result.render_seconds / result.n_images:.2f} s/image)"
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines.append(f"synth peak RSS: {peak_mb:.0f} MB")
    return lines
