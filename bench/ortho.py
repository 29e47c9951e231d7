"""Ortho benchmark: the ortho stage on a synthetic flight with its true cameras and true DSM.

Upstream stages (SfM, dense) are not part of the measurement: the flight's
``truth/cameras.json`` goes straight into the workspace, and ``truth/dsm.tif``
goes in at the resolution the dem stage would give it (``dem.resolution_gsd_factor``
x the flight's GSD, cell averages of the true DSM), so the stage reads as many
DSM cells as it does in ``aerobase run``.
The flight is ``aerobase synth --preset medium`` when the generator is
installed (set ``AEROBASE_BENCH_FLIGHT`` to reuse a rendered flight folder),
else a smaller scene from the tests' ray caster.

Each configuration runs in its own process, so peak RSS is that run's own:
once at the flight GSD and once at half of it (4x the pixels), to show that
memory does not grow with the mosaic. Figures:

- wall time of the stage and of its phases;
- CPU seconds of the process (client and in-process workers) in the three
  parts of the stage: preparation (plan, images, exposure, seams), tiles
  (with the client's overview building, which runs as the tiles come in),
  COG and preview;
- output megapixels per second per core, by wall clock (MP / wall / cores)
  and by CPU time (MP / CPU seconds of the process, which is what one core
  delivers when the machine is shared), for the whole stage and for the
  tile phase alone;
- peak RSS;
- the target's budget (stage wall for 10 output MP/s/core) against a floor: the
  work no ortho stage of this design skips (decoding every image once, one
  bilinear sample per output pixel, encoding the COG's blocks and overviews with
  the default compression, all spread over the cores) plus the seam
  solve and exposure balance as measured (serial: they need every image's samples
  and the tiles need their labels).

A third run at half the GSD puts the workers in their own processes
(``run.processes``): no shared Python lock, so the tile phase scales with the
cores; its CPU seconds are the client's and the workers' together (no split by
part), its peak RSS the sum of every process's peak.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent


def _render_flight(out: Path) -> tuple[Path, str]:
    env = os.environ.get("AEROBASE_BENCH_FLIGHT")
    if env and (Path(env) / "truth" / "cameras.json").exists():
        return Path(env), f"existing flight {env}"
    try:
        from pipeline.synth import SynthOptions, render_flight  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return _render_scene(out / "scene"), "tests' ray-cast scene (pipeline.synth not installed)"
    flight = out / "flight"
    render_flight(flight, SynthOptions(preset="medium", seed=7))
    return flight, "aerobase synth --preset medium --seed 7"


def _render_scene(root: Path) -> Path:
    """A town-like scene from the tests' renderer, laid out like a synth flight folder."""
    sys.path.insert(0, str(REPO))
    from drone_io.reconstruction_io import reconstruction_to_json
    from tests.ortho_scene import Box, X0, Y0, make_scene

    boxes = [Box(X0 + x, Y0 + y, X0 + x + 9, Y0 + y + 7, h) for x, y, h in ((12, 10, 9), (34, 12, 14), (56, 8, 6), (20, 34, 12), (48, 36, 18), (66, 30, 8))]
    scene = make_scene(
        root, width_m=84.0, height_m=56.0, image_size=(640, 480), focal_px=800.0, altitude=40.0, spacing=(9.0, 11.0), boxes=boxes
    )
    truth = root / "truth"
    truth.mkdir(exist_ok=True)
    (truth / "cameras.json").write_text(json.dumps(reconstruction_to_json(scene.rec)))
    shutil.copy(scene.dsm_path, truth / "dsm.tif")
    return root


def _process_cpu() -> float:
    return time.process_time()


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _one(flight: Path, out: Path, gsd_factor: float, workers: int, processes: bool = False) -> dict[str, Any]:
    """One ortho run in this process (called in a child process); with ``processes``, on worker processes."""
    import dataclasses
    import logging

    import cv2

    from drone_io.reconstruction_io import read_reconstruction_json
    from models.image import ImageRecord
    from pipeline.cluster import dask_client
    from pipeline.config import Config, RunConfig
    from pipeline.stages import ortho
    from pipeline.workspace import Workspace

    logging.basicConfig(level=logging.WARNING)
    rec = read_reconstruction_json(flight / "truth" / "cameras.json")
    ws = Workspace(out)
    ws.ensure()
    records = []
    for name, img in sorted(rec.images.items()):
        cam = rec.cameras[img.camera_id]
        records.append(ImageRecord(name, flight / "images" / name, cam.width, cam.height, img.camera_id))
    ws.save_images(records, [])
    ws.save_reconstruction(rec)
    cfg = Config(run=RunConfig(workers=workers, processes=processes))
    _dsm_as_dem_stage_grids_it(rec, flight / "truth" / "dsm.tif", ws.dsm_path, cfg.dem.resolution_gsd_factor)
    cfg = dataclasses.replace(cfg, ortho=dataclasses.replace(cfg.ortho, gsd_factor=gsd_factor))
    cv2.setNumThreads(1)  # one core per Dask worker: the per-core figure stays honest
    cpu_by_part: dict[str, float] = {}

    def cpu_timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            c = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                cpu_by_part[name] = time.process_time() - c

        return timed

    # The stage calls its parts through the module, so wrapping them there times each part.
    ortho.prepare_flight = cpu_timed("prepare", ortho.prepare_flight)
    ortho.render_tiles = cpu_timed("tiles", ortho.render_tiles)
    ortho.write_orthophoto = cpu_timed("cog_and_preview", ortho.write_orthophoto)
    with dask_client(cfg.run) as client:
        if processes:  # warm the workers (imports, one thread for OpenCV) and count their CPU too
            client.run(_warm_worker)
        w0 = client.run(_process_cpu) if processes else {}
        c0, t0 = time.process_time(), time.perf_counter()
        report = ortho.run(ws, cfg, client)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        worker_rss = 0.0
        if processes:
            cpu += sum(t - w0[k] for k, t in client.run(_process_cpu).items())
            worker_rss = sum(client.run(_peak_rss_mb).values())
            cpu_by_part.clear()  # the parts' CPU seconds are this process's alone: not the workers
    f = report.figures["ortho"]
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "megapixels": f["megapixels"],
        "size_px": f["size_px"],
        "gsd_m": f["gsd_m"],
        "seconds": f["seconds"],
        "cpu_seconds": cpu_by_part,
        "coverage": f["coverage_fraction"],
        "images_used": f["images_used"],
        "peak_rss_mb": _peak_rss_mb() + worker_rss,  # with worker processes: the sum of every process's peak
        "workers": workers,
    }


def _dsm_as_dem_stage_grids_it(rec: Any, truth: Path, out: Path, gsd_factor: float) -> None:
    """The true DSM averaged over whole blocks of cells to about ``gsd_factor`` x the flight's GSD, as the densify stage estimates it."""
    import numpy as np
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.transform import Affine

    from pipeline.dense.views import estimate_gsd

    with rasterio.open(truth) as src:
        ground = float(np.nanmedian(src.read(1, out_shape=(64, 64), resampling=Resampling.average)))
        gsd = estimate_gsd(rec, ground)
        k = max(1, round(gsd_factor * gsd / src.res[0]))
        h, w = src.height // k, src.width // k
        z = src.read(1, window=((0, h * k), (0, w * k)), out_shape=(h, w), resampling=Resampling.average)
        profile = dict(src.profile, width=w, height=h, transform=src.transform @ Affine.scale(k))
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(z, 1)


def _floor(flight: Path) -> tuple[int, float, float, float]:
    """(images, CPU seconds to decode them all once, CPU seconds per output MP of one bilinear sample and of
    encoding the COG's blocks with the default compression, overviews included), one thread."""
    import statistics

    import cv2
    import numpy as np

    from drone_io.cog_blocks import encode_block
    from pipeline.config import OrthoConfig

    cv2.setNumThreads(1)
    paths = sorted(p for p in (flight / "images").iterdir() if p.is_file())

    def cpu(fn: Callable[[], Any], repeat: int) -> float:
        times = []
        for _ in range(repeat):
            c = time.process_time()
            fn()
            times.append(time.process_time() - c)
        return statistics.median(times)

    decode = cpu(lambda: [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths], 3)
    first = cv2.imread(str(paths[0]), cv2.IMREAD_COLOR) if paths else None
    img = np.asarray(first, np.uint8) if first is not None else np.zeros((1200, 1600, 3), np.uint8)
    yy, xx = np.mgrid[0:1024, 0:1024].astype(np.float32)  # a tile's smooth projection maps
    mu, mv = xx * np.float32(1.4) + np.float32(10), yy * np.float32(1.1) + np.float32(10)
    tile = np.ascontiguousarray(cv2.remap(img, mu, mv, cv2.INTER_LINEAR))
    sample = cpu(lambda: cv2.remap(img, mu, mv, cv2.INTER_LINEAR), 7) / (1024 * 1024 / 1e6)
    # The COG's blocks: 512 x 512, the full resolution and the overviews (a third as many pixels again).
    oc = OrthoConfig()
    mask = np.ones((512, 512), bool)
    blocks = [np.ascontiguousarray(tile[r : r + 512, c : c + 512]) for r in (0, 512) for c in (0, 512)]
    encode = cpu(lambda: [encode_block(b, mask, oc.compression.value, oc.jpeg_quality) for b in blocks], 7) / (1024 * 1024 / 1e6) * 4.0 / 3.0
    return len(paths), decode, sample, encode


def _warm_worker() -> None:
    import cv2

    import pipeline.stages.ortho  # noqa: F401

    cv2.setNumThreads(1)


def run(out: Path) -> list[str]:
    t0 = time.perf_counter()
    flight, kind = _render_flight(out)
    lines = [f"flight: {kind} ({time.perf_counter() - t0:.0f} s to prepare); true cameras + true DSM at the dem stage's resolution"]
    workers = max(1, min(2, len(os.sched_getaffinity(0))))
    n_images, decode_cpu, sample_cpu_per_mp, encode_cpu_per_mp = _floor(flight)
    for factor, processes in ((1.0, False), (0.5, False), (0.5, True)):
        run_dir = out / f"ortho-{factor}-{processes}"
        proc = subprocess.run(
            [sys.executable, "-m", "bench.ortho", str(flight), str(run_dir), str(factor), str(workers), "processes" if processes else "threads"],
            cwd=REPO, capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0:
            lines.append(f"gsd x{factor}: failed\n{proc.stderr[-2000:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        mp, wall, cpu = r["megapixels"], r["wall_s"], r["cpu_s"]
        tiles_s = r["seconds"]["tiles"]
        parts = r["cpu_seconds"]
        phases = ", ".join(f"{k} {v:.1f}s" for k, v in r["seconds"].items())
        lines.append(
            f"GSD {100 * r['gsd_m']:.2f} cm ({factor:g} x flight GSD): {r['size_px'][0]} x {r['size_px'][1]} px = {mp:.1f} MP, "
            f"{r['images_used']} images, coverage {100 * r['coverage']:.1f}%"
        )
        kind = "worker processes" if processes else "worker threads"
        lines.append(f"  stage wall {wall:.1f} s on {workers} {kind} ({phases})")
        lines.append("  CPU seconds: " + "".join(f"{k} {v:.1f}, " for k, v in parts.items()) + f"stage {cpu:.1f}")
        lines.append(f"  output MP/s/core, stage: {mp / wall / workers:.2f} (wall), {mp / cpu:.2f} (CPU)")
        tile_cpu = f", {mp / parts['tiles']:.2f} (CPU)" if parts.get("tiles") else ""
        lines.append(f"  output MP/s/core, tile phase: {mp / tiles_s / workers:.2f} (wall){tile_cpu}")
        lines.append(f"  peak RSS {r['peak_rss_mb']:.0f} MB")
        seams = r["seconds"]["seams_and_exposure"]
        floor = (decode_cpu + (sample_cpu_per_mp + encode_cpu_per_mp) * mp) / workers + seams
        lines.append(
            f"  target 10 MP/s/core needs stage wall <= {mp / (10.0 * workers):.2f} s; floor {floor:.2f} s = decode {n_images} images "
            f"{decode_cpu / workers:.2f} s + one bilinear sample per pixel {sample_cpu_per_mp * mp / workers:.2f} s "
            f"+ encode the COG blocks {encode_cpu_per_mp * mp / workers:.2f} s (over {workers} cores) "
            f"+ seams and exposure {seams:.2f} s (serial, as measured)"
        )
        shutil.rmtree(run_dir, ignore_errors=True)
    return lines


if __name__ == "__main__":
    print(json.dumps(_one(Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5:6] == ["processes"])))
