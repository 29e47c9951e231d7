"""``aerobase inspect FLIGHT_DIR``: one summary of a flight batch, and its ``cameras.geojson``.

The summary: images read and skipped (with reasons), cameras, the position
source of each image, flight area and ground height, estimated GSD and overlap,
time span and the clock offset when a log was used, GCPs when present.

``cameras.geojson`` (image centres and ground footprints, EPSG:4326) is
written to ``--output PATH`` (a file, or a folder to hold cameras.geojson),
by default ``./cameras.geojson`` in the current directory. The flight folder
is input and is never written to: an output inside it is refused.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drone_io.flight_dir import scan_flight
from drone_io.geojson import iso_utc
from models.errors import WorkspaceError
from models.image import ImageIndex, ImageRecord
from pipeline.config import load_config, with_inputs
from pipeline.stages.ingest import (
    IngestResult,
    camera_figures,
    ingest_figures,
    ingest_flight,
    read_serial,
    write_cameras_geojson,
)

GEOJSON_NAME = "cameras.geojson"


@dataclass(frozen=True)
class InspectReport:
    """What ``aerobase inspect`` found; :meth:`to_json` is the ``--json`` output."""

    flight_dir: str
    image_dir: str
    figures: dict[str, Any]  # the ingest stage's figures (same keys as stats.json)
    images: list[dict[str, Any]]  # one entry per readable image
    cameras: list[dict[str, Any]]
    extent_lonlat: tuple[float, float, float, float] | None
    center_lonlat: tuple[float, float] | None
    crs_note: str | None
    ground_height_source: str | None
    agl_m: float | None
    time_start: float | None
    time_end: float | None
    time_zone_known: int  # images whose capture time has a known UTC offset
    clock_offset_s: float | None
    logs: list[str]
    tracks: int
    gimbal_images: int
    attitude_sources: dict[str, int]
    footprints: int
    duplicate_names: dict[str, list[str]]
    ignored_files: list[str]
    gcps: dict[str, Any] | None
    geojson_path: str | None
    seconds: float
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        f = self.figures
        return {
            "flight_dir": self.flight_dir,
            "image_dir": self.image_dir,
            "images_total": f["images_total"],
            "images_read": f["images_read"],
            "images_used": f["images_used"],
            "images_skipped": f["images_skipped"],
            "images_without_position": f["images_without_position"],
            "ignored_files": self.ignored_files,
            "duplicate_names": self.duplicate_names,
            "cameras": self.cameras,
            "position_sources": f["ingest"]["position_sources"],
            "attitude_sources": self.attitude_sources,
            "gimbal_images": self.gimbal_images,
            "crs": f["crs"],
            "crs_note": self.crs_note,
            "vertical_reference": f["vertical_reference"],
            "center_lonlat": list(self.center_lonlat) if self.center_lonlat else None,
            "extent_lonlat": list(self.extent_lonlat) if self.extent_lonlat else None,
            "area_m2": f["area_m2"],
            "ground_height_m": f["ground_height_m"],
            "ground_height_source": self.ground_height_source,
            "agl_m": self.agl_m,
            "gsd_m": f["gsd_m"],
            "overlap": f["overlap"],
            "footprints": self.footprints,
            "time_start": iso_utc(self.time_start),
            "time_end": iso_utc(self.time_end),
            "duration_s": None if self.time_start is None or self.time_end is None else self.time_end - self.time_start,
            "time_zone_known": self.time_zone_known,
            "clock_offset_s": self.clock_offset_s,
            "logs": self.logs,
            "tracks": self.tracks,
            "gcps": self.gcps,
            "geojson": self.geojson_path,
            "seconds": round(self.seconds, 3),
            "warnings": self.warnings,
            "images": self.images,
        }


def _image_entry(rec: ImageRecord) -> dict[str, Any]:
    gps = rec.gps
    return {
        "name": rec.name,
        "camera": rec.camera_id,
        "format": rec.file_format,
        "width": rec.width,
        "height": rec.height,
        "time": iso_utc(rec.capture_time),
        "position_source": rec.position_source.value,
        "lat": gps.lat if gps else None,
        "lon": gps.lon if gps else None,
        "alt": None if gps is None or not math.isfinite(gps.alt) else gps.alt,
        "height_reference": gps.height_ref.value if gps else None,
        "relative_altitude": rec.relative_altitude_m,
        "gimbal": None if rec.gimbal is None else {"yaw": rec.gimbal.yaw, "pitch": rec.gimbal.pitch, "roll": rec.gimbal.roll},
        "flight": None if rec.flight is None else {"yaw": rec.flight.yaw, "pitch": rec.flight.pitch, "roll": rec.flight.roll},
        "rtk_fixed": gps.rtk_fixed if gps else None,
        "warnings": list(rec.warnings),
    }


def geojson_target(output: Path | None, flight_dir: Path) -> Path:
    """Where inspect writes cameras.geojson; refuses a path inside the flight folder."""
    if output is None:
        target = Path.cwd() / GEOJSON_NAME
    else:
        out = Path(output)
        target = out / GEOJSON_NAME if out.is_dir() or str(output).endswith(("/", "\\")) else out
    target = target.resolve()
    src = Path(flight_dir).resolve()
    if src == target.parent or src in target.parents:
        raise WorkspaceError(
            f"{target} is inside the flight folder {src}, which is input and never written to; "
            "run inspect from another directory or pass --output PATH outside the flight folder"
        )
    return target


def build_report(result: IngestResult, seconds: float, geojson_path: Path | None) -> InspectReport:
    s = result.summary
    figures = ingest_figures(result)
    warnings: list[str] = []
    dups = {k: list(v) for k, v in ImageIndex([r.name for r in result.records]).ambiguous().items()}
    if dups:
        warnings.append(
            f"{len(dups)} file name(s) appear in more than one sub-folder; both copies are kept under their "
            "relative paths, and GCP files and geo.txt must name them by relative path"
        )
    if s.crs_note and not s.crs_note.startswith("auto"):
        warnings.append(s.crs_note)
    if s.ground is None and result.images_used:
        warnings.append(
            "ground height unknown (no RelativeAltitude and image motion gave no estimate): "
            "no GSD, footprints or overlap; pass --ground-height M"
        )
    return InspectReport(
        flight_dir=str(result.files.root),
        image_dir=str(result.files.image_dir),
        figures=figures,
        images=[_image_entry(r) for r in result.records],
        cameras=camera_figures(result),
        extent_lonlat=s.extent_lonlat,
        center_lonlat=s.center_lonlat,
        crs_note=s.crs_note,
        ground_height_source=s.ground.source.value if s.ground else None,
        agl_m=s.agl_m,
        time_start=s.time_start,
        time_end=s.time_end,
        time_zone_known=sum(1 for r in result.records if r.capture_time is not None and r.time_zone_known),
        clock_offset_s=result.clock_offset_s,
        logs=[str(p) for p in result.files.logs],
        tracks=len(result.tracks),
        gimbal_images=sum(1 for r in result.records if r.gimbal is not None),
        attitude_sources=dict(s.attitude_sources),
        footprints=len(s.footprints_xy),
        duplicate_names=dups,
        ignored_files=[str(p.relative_to(result.files.image_dir)) for p in result.files.ignored],
        gcps=figures["ingest"]["gcps"],
        geojson_path=str(geojson_path) if geojson_path else None,
        seconds=seconds,
        warnings=warnings,
    )


def inspect_flight(
    flight_dir: Path,
    crs: str = "auto",
    output: Path | None = None,
    gcp_file: Path | None = None,
    ground_height_m: float | None = None,
    write_geojson: bool = True,
) -> InspectReport:
    """Read a flight folder's metadata, summarise it and write cameras.geojson (see the module doc)."""
    t0 = time.perf_counter()
    flight_dir = Path(flight_dir)
    target = geojson_target(output, flight_dir) if write_geojson else None
    cfg = with_inputs(
        load_config(),
        flight_dir=str(flight_dir.resolve()),
        crs=crs,
        gcp_file=str(Path(gcp_file).resolve()) if gcp_file else "",
    )
    if ground_height_m is not None:
        import dataclasses

        cfg = dataclasses.replace(cfg, ingest=dataclasses.replace(cfg.ingest, ground_height_m=ground_height_m))
    files = scan_flight(flight_dir)
    result = ingest_flight(files, cfg, read_serial)
    if target is not None:
        write_cameras_geojson(target, result)
    return build_report(result, time.perf_counter() - t0, target)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100.0 * v:.0f}%"


def _m(v: float | None, unit: str = "m", digits: int = 1) -> str:
    return "n/a" if v is None else f"{v:.{digits}f} {unit}"


def format_inspect(report: InspectReport) -> str:
    """The human-readable summary."""
    j = report.to_json()
    lines = [f"Flight {j['flight_dir']}  (images in {j['image_dir']})"]
    lines.append(
        f"Images: {j['images_total']} found, {j['images_read']} read, {j['images_used']} with a position, "
        f"{len(j['images_skipped'])} skipped"
    )
    for s in j["images_skipped"]:
        lines.append(f"  skipped {s['image']} [{s['reason']}]: {s['message']}")
    for s in j["images_without_position"]:
        lines.append(f"  no position {s['image']}: {s['message']}")
    if j["ignored_files"]:
        lines.append(f"  not images (ignored): {', '.join(j['ignored_files'][:10])}" + (" ..." if len(j["ignored_files"]) > 10 else ""))
    for bare, paths in j["duplicate_names"].items():
        lines.append(f"  same file name in several folders: {bare}: {', '.join(paths)}")
    lines.append(f"Cameras: {len(j['cameras'])}")
    for c in j["cameras"]:
        focal_mm = f"{c['focal_mm']:.2f} mm, " if c["focal_mm"] else ""
        lines.append(
            f"  {c['id']}: {_n(c['images'], 'image')}, {c['width']}x{c['height']}, {focal_mm}"
            f"focal {c['focal_px']:.0f} px ({c['focal_source']})"
        )
    ps = ", ".join(f"{k} {v}" for k, v in j["position_sources"].items())
    lines.append(f"Positions: {ps}")
    att = ", ".join(f"{k} {v}" for k, v in j["attitude_sources"].items()) or "n/a"
    lines.append(f"Attitude: {j['gimbal_images']} images with gimbal angles; footprints from {att}")
    if j["crs"]:
        note = f" ({j['crs_note']})" if j["crs_note"] else ""
        lines.append(f"CRS: {j['crs']}{note}; heights {j['vertical_reference']}")
    if j["center_lonlat"]:
        lon, lat = j["center_lonlat"]
        lines.append(f"Centre: lat {lat:.6f}, lon {lon:.6f}")
    area = j["area_m2"]
    lines.append(
        f"Area covered: {'n/a' if area is None else f'{area / 1e4:.2f} ha'}; "
        f"ground height {_m(j['ground_height_m'])} ({j['ground_height_source'] or 'unknown'}); "
        f"flying height {_m(j['agl_m'])} above ground"
    )
    gsd = j["gsd_m"]
    lines.append(f"GSD: {'n/a' if gsd is None else f'{100.0 * gsd:.2f} cm'} (estimated)")
    ov = j["overlap"]
    if ov:
        lines.append(
            f"Overlap: forward {_pct(ov['forward'])}, side {_pct(ov['side'])} ({ov['strips']} strips), "
            f"{_pct(ov['covered_by_others'])} of each footprint seen by another image, "
            f"{ov['views_mean']:.1f} views per ground point, {_pct(ov['share_3plus_views'])} seen by 3+ images"
        )
    else:
        lines.append("Overlap: n/a")
    if j["time_start"]:
        zone = "UTC" if j["time_zone_known"] == j["images_read"] else "camera clock read as UTC"
        lines.append(f"Time: {j['time_start']} to {j['time_end']} ({j['duration_s']:.0f} s, {zone})")
    if j["clock_offset_s"] is not None:
        lines.append(f"Clock offset (camera - log): {j['clock_offset_s']:+.2f} s")
    elif j["logs"]:
        lines.append(f"Logs: {len(j['logs'])} file(s) present, not used for positions")
    if j["gcps"]:
        g = j["gcps"]
        lines.append(
            f"GCPs: {g['control']} control, {g['checkpoints']} checkpoints, {g['observations']} observations "
            f"in {g['crs']} ({g['file']})"
        )
    for w in j["warnings"]:
        lines.append(f"Warning: {w}")
    if j["geojson"]:
        lines.append(f"Wrote {j['geojson']}")
    lines.append(f"Inspected in {j['seconds']:.1f} s")
    return "\n".join(lines)
