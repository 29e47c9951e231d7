"""Run the benchmarks: ``python -m bench [NAME ...]``.

Each benchmark module exposes ``run(out: Path) -> list[str]``, returning the
lines to print. Benchmarks print figures (wall time, throughput, peak memory,
ratios measured in one run); they never assert on timings.
"""

from __future__ import annotations

import importlib
import logging
import sys
import tempfile
import time
from pathlib import Path

BENCHMARKS: list[str] = ["ingest", "synth", "sfm", "dense", "ortho"]


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    names = argv or BENCHMARKS
    if not names:
        print("no benchmarks registered yet")
        return 0
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        with tempfile.TemporaryDirectory(prefix=f"aerobase-bench-{name}-") as tmp:
            t0 = time.perf_counter()
            print(f"== {name} ==", flush=True)
            for line in module.run(Path(tmp)):
                print(line, flush=True)
            print(f"== {name}: {time.perf_counter() - t0:.1f}s ==", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
