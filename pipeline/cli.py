"""The ``aerobase`` command line: argument parsing only; the work is in library functions.

Exit codes: 0 success, 2 an error the user can fix (bad input, config, CRS...),
1 an unexpected internal error (a traceback is written to a log file), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable, Sequence

from models.errors import AerobaseError

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USER = 2
EXIT_INTERRUPTED = 130

_LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(verbose: bool = False, quiet: bool = False) -> logging.Handler:
    """Send log records to stderr; returns the handler so the caller can remove it again."""
    root = logging.getLogger()
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO))
    console.setFormatter(logging.Formatter(_LOG_FORMAT, "%H:%M:%S"))
    root.addHandler(console)
    root.setLevel(logging.DEBUG)
    for noisy in ("distributed", "tornado", "asyncio", "rasterio", "fiona", "PIL", "matplotlib", "numba", "exifread"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return console


def add_file_log(path: Path) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    logging.getLogger().addHandler(handler)
    return handler


# -- commands --------------------------------------------------------------------------
def _parse_checkpoints(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    return tuple(n.strip() for n in text.split(",") if n.strip())


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.api import RunRequest, run_flight, summarize_run

    out = Path(args.output)
    request = RunRequest(
        flight_dir=Path(args.flight_dir),
        out_dir=out,
        preset=args.preset,
        config_file=Path(args.config) if args.config else None,
        crs=args.crs,
        gcp_file=Path(args.gcp) if args.gcp else None,
        checkpoints=_parse_checkpoints(args.checkpoints),
        logs=tuple(Path(p) for p in (args.log or [])),
        scheduler=args.scheduler,
        workers=args.workers,
        rerun_from=args.rerun_from,
        stop_after=args.stop_after,
    )
    args._error_log = out / "aerobase-error.log"
    t0 = time.perf_counter()
    summary = run_flight(request)
    print(summarize_run(summary, time.perf_counter() - t0))
    return EXIT_OK


def cmd_inspect(args: argparse.Namespace) -> int:
    from pipeline.inspect import format_inspect, inspect_flight

    report = inspect_flight(
        Path(args.flight_dir),
        crs=args.crs,
        output=Path(args.output) if args.output else None,
        gcp_file=Path(args.gcp) if args.gcp else None,
        ground_height_m=args.ground_height,
    )
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(format_inspect(report))
    return EXIT_OK


def cmd_log_info(args: argparse.Namespace) -> int:
    from pipeline.loginfo import format_log_info, log_info

    info = log_info(Path(args.file))
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(format_log_info(info))
    return EXIT_OK


def cmd_synth(args: argparse.Namespace) -> int:
    from pipeline.synth import SynthOptions, render_flight

    options = SynthOptions(
        preset=args.preset,
        crs=args.crs,
        seed=args.seed,
        no_gps=args.no_gps,
        oblique_deg=args.oblique,
        front_overlap=args.front_overlap,
        side_overlap=args.side_overlap,
        altitude_agl_m=args.altitude,
        gps_sigma_h_m=args.gps_sigma,
    )
    result = render_flight(Path(args.out_dir), options)
    print(result.describe())
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aerobase",
        description="Drone photogrammetry: georeference, reconstruct and export GIS base layers.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug output on the console")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="process a flight into orthophoto, DSM, DTM, point cloud and report")
    run.add_argument("flight_dir", metavar="FLIGHT_DIR", help="folder with the images (directly or in images/)")
    run.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder (created)")
    run.add_argument("--preset", default="default", choices=["fast", "default", "high"], help="processing preset")
    run.add_argument("--config", metavar="FILE", help="YAML overlay on the preset")
    run.add_argument("--crs", default="auto", help="output CRS: auto (UTM zone) or EPSG:N, e.g. EPSG:4547")
    run.add_argument("--gcp", metavar="FILE", help="GCP file (ODM gcp_list.txt or CSV)")
    run.add_argument("--checkpoints", metavar="NAME,...", help="GCP names used only as checkpoints")
    run.add_argument("--log", action="append", metavar="FILE", help="flight log to geotag from (repeatable)")
    run.add_argument("--scheduler", metavar="ADDR", help="tcp://HOST:PORT of a dask scheduler")
    run.add_argument("--workers", type=int, default=None, metavar="N", help="local Dask workers (default: CPU cores)")
    run.add_argument("--rerun-from", metavar="STAGE", help="run this stage and all later ones again")
    run.add_argument("--stop-after", metavar="STAGE", help=argparse.SUPPRESS)
    run.set_defaults(handler=cmd_run)

    insp = sub.add_parser("inspect", help="summarise a flight batch and write cameras.geojson")
    insp.add_argument("flight_dir", metavar="FLIGHT_DIR")
    insp.add_argument("--json", action="store_true", help="machine-readable output")
    insp.add_argument("--crs", default="auto", help="CRS used for areas and distances")
    insp.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="where to write cameras.geojson: a file, or a folder (default ./cameras.geojson; "
        "never inside the flight folder)",
    )
    insp.add_argument("--gcp", metavar="FILE", help="GCP file to check (default FLIGHT_DIR/gcp_list.txt)")
    insp.add_argument(
        "--ground-height",
        type=float,
        metavar="M",
        help="ground height in the images' height reference (default: RelativeAltitude or image motion)",
    )
    insp.set_defaults(handler=cmd_inspect)

    li = sub.add_parser("log-info", help="summarise a flight log (ULog, DataFlash, tlog, SRT, CSV, GPX, MRK)")
    li.add_argument("file", metavar="FILE")
    li.add_argument("--json", action="store_true", help="machine-readable output")
    li.set_defaults(handler=cmd_log_info)

    syn = sub.add_parser("synth", help="render a synthetic flight with exact ground truth")
    syn.add_argument("out_dir", metavar="OUT_DIR")
    syn.add_argument("--preset", default="small", choices=["small", "medium"])
    syn.add_argument("--crs", default="EPSG:32649", help="CRS the scene is defined in (default UTM 49N)")
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--no-gps", action="store_true", help="strip GPS from the images (geotag from the log)")
    syn.add_argument("--oblique", type=float, default=None, metavar="DEG", help="gimbal pitch in degrees (default -90)")
    syn.add_argument("--front-overlap", type=float, default=None, metavar="F", help="along-track overlap 0..0.95 (preset: 0.75)")
    syn.add_argument("--side-overlap", type=float, default=None, metavar="F", help="across-track overlap 0..0.95 (preset: 0.65)")
    syn.add_argument("--altitude", type=float, default=None, metavar="M", help="flight height above ground in m (sets the GSD)")
    syn.add_argument("--gps-sigma", type=float, default=None, metavar="M", help="EXIF GPS horizontal noise, 1-sigma m (preset: 0.5)")
    syn.set_defaults(handler=cmd_synth)
    return parser


def _write_crash_log(args: argparse.Namespace | None) -> Path:
    target = getattr(args, "_error_log", None) if args is not None else None
    text = traceback.format_exc()
    candidates = [Path(target)] if target else []
    candidates.append(Path(tempfile.gettempdir()) / f"aerobase-error-{int(time.time())}.log")
    for path in candidates:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    return candidates[-1]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args: argparse.Namespace | None = None
    console: logging.Handler | None = None
    try:
        args = parser.parse_args(argv)
        console = setup_logging(args.verbose, args.quiet)
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except AerobaseError as exc:
        print(f"aerobase: error: {exc}", file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        print("aerobase: interrupted; rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the one place that catches everything
        path = _write_crash_log(args)
        print(
            f"aerobase: internal error: {type(exc).__name__}: {exc}\n"
            f"  details were written to {path}; please report them",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    finally:
        if console is not None:
            logging.getLogger().removeHandler(console)


if __name__ == "__main__":
    sys.exit(main())
