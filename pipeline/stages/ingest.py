"""Ingest: read every image's metadata (one Dask task per image), geotag, GCPs, working CRS.

Stores, through the workspace, what the later stages read: the image records
(and the skipped images with their reasons), one initial camera per camera,
the flight tracks of the logs, the checked GCPs, the flight-level facts
(``georef``: working CRS, vertical reference, ground height, GSD) and
``OUT/cameras.geojson``. ``aerobase inspect`` runs the same
:func:`ingest_flight` without Dask and without a workspace.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from distributed import Client

from drone_io.flight_dir import FlightFiles, scan_flight
from drone_io.gcp import read_gcp_file
from drone_io.geojson import cameras_feature_collection, write_geojson
from drone_io.images import ImageReadError, read_image_record
from models.camera import CameraModel
from models.errors import GeoreferenceError, InputError
from models.gcp import GcpSet, check_observations
from models.geo import check_crs_spec
from models.image import ImageIndex, ImageRecord, SkippedItem
from models.sensors import build_cameras, focal_px_estimate
from models.track import FlightTrack
from pipeline.ingest.batch import FlightSummary, check_gcp_area, summarize_flight
from pipeline.config import Config
from pipeline.ingest.log_geotag import geotag_from_logs
from pipeline.progress import map_tasks
from pipeline.stage import StageReport, StageSpec
from pipeline.workspace import Workspace, atomic_path

logger = logging.getLogger(__name__)

ReadItem = tuple[str, str]  # (image name, absolute path)
Reader = Callable[[Sequence[ReadItem]], list[ImageRecord | SkippedItem]]


def read_one(item: ReadItem) -> ImageRecord | SkippedItem:
    """Dask task: one image's record, or why it was skipped."""
    name, path = item
    try:
        return read_image_record(Path(path), name)
    except ImageReadError as exc:
        return SkippedItem(name, exc.reason, str(exc))
    except InputError as exc:
        return SkippedItem(name, "unreadable", str(exc))


def read_serial(items: Sequence[ReadItem]) -> list[ImageRecord | SkippedItem]:
    """Read images one after the other (``aerobase inspect``: no cluster to start)."""
    return [read_one(it) for it in items]


@dataclass(frozen=True)
class IngestResult:
    """Everything ingest learned about a flight folder."""

    files: FlightFiles
    records: tuple[ImageRecord, ...]
    skipped: tuple[SkippedItem, ...]
    cameras: dict[str, CameraModel]
    tracks: tuple[FlightTrack, ...]
    clock_offset_s: float | None  # camera minus log clock, when a log was used
    gcps: GcpSet | None
    summary: FlightSummary
    # Geotagging from logs (pipeline.ingest.log_geotag): offsets, images geotagged/outside the log, per log.
    geotag: dict[str, Any] = field(default_factory=dict)

    @property
    def images_used(self) -> tuple[ImageRecord, ...]:
        """Images read with a usable position."""
        return tuple(r for r in self.records if r.has_position)

    @property
    def without_position(self) -> tuple[ImageRecord, ...]:
        return tuple(r for r in self.records if not r.has_position)


def _gcp_path(files: FlightFiles, cfg: Config) -> Path | None:
    if cfg.inputs.gcp_file:
        return Path(cfg.inputs.gcp_file)
    return files.gcp_file


def _read_gcps(
    files: FlightFiles, cfg: Config, records: Sequence[ImageRecord], skipped: Sequence[SkippedItem], summary: FlightSummary
) -> GcpSet | None:
    path = _gcp_path(files, cfg)
    if path is None:
        if cfg.inputs.checkpoints:
            raise InputError(
                f"--checkpoints {','.join(cfg.inputs.checkpoints)} given but there is no GCP file; "
                f"pass --gcp FILE or put gcp_list.txt in {files.root}"
            )
        return None
    gcps = read_gcp_file(path, cfg.inputs.checkpoints)
    gcps = check_observations(gcps, records, {s.item: s.reason for s in skipped})
    check_gcp_area(gcps, summary)
    logger.info(
        "GCPs: %d control, %d checkpoints, %d observations from %s",
        len(gcps.control), len(gcps.checkpoints), len(gcps.observations), path,
    )
    return gcps


def ingest_flight(files: FlightFiles, cfg: Config, reader: Reader = read_serial) -> IngestResult:
    """Read a flight folder's images (with ``reader``), logs and GCPs, and summarise the flight."""
    check_crs_spec(cfg.inputs.crs)
    items = [(name, str(path)) for name, path in files.images]
    logger.info("found %d images in %s", len(items), files.image_dir)
    results = reader(items)
    records = [r for r in results if isinstance(r, ImageRecord)]
    skipped = [r for r in results if isinstance(r, SkippedItem)]
    for s in skipped:
        logger.warning("skipped %s: %s", s.item, s.message)
    if not records:
        reasons = "; ".join(s.message for s in skipped[:5])
        more = f" (and {len(skipped) - 5} more)" if len(skipped) > 5 else ""
        raise InputError(f"none of the {len(items)} images in {files.image_dir} could be read: {reasons}{more}")

    tracks: list[FlightTrack] = []
    clock_offset_s: float | None = None
    # >>> geotag (branch `logs`): fill positions/attitude of `records` from the flight logs
    # (files.logs, cfg.inputs.logs) and geo.txt; set `tracks` and `clock_offset_s`.
    geo = geotag_from_logs(files, cfg, records)
    records, tracks, clock_offset_s = list(geo.records), list(geo.tracks), geo.clock_offset_s
    # <<< geotag

    for rec in records:
        if not rec.has_position:
            why = "; ".join(rec.warnings) or "no position"
            logger.warning("%s has no position (%s); kept for reconstruction, not for georeferencing", rec.name, why)
    for bare, paths in ImageIndex([r.name for r in records]).ambiguous().items():
        logger.warning(
            "file name %s appears in %d sub-folders (%s); GCP files and geo.txt must name these images by relative path",
            bare, len(paths), ", ".join(paths),
        )
    cameras = build_cameras(records)
    summary = summarize_flight(
        records,
        cameras,
        cfg.inputs.crs,
        ground_height_m=cfg.ingest.ground_height_m,
        image_motion=cfg.ingest.ground_from_image_motion,
    )
    gcps = _read_gcps(files, cfg, records, skipped, summary)
    return IngestResult(
        files=files,
        records=tuple(records),
        skipped=tuple(skipped),
        cameras=cameras,
        tracks=tuple(tracks),
        clock_offset_s=clock_offset_s,
        geotag=geo.figures,
        gcps=gcps,
        summary=summary,
    )


def write_cameras_geojson(path: Path, result: IngestResult) -> None:
    """Write the image centres and footprints of an ingest result, atomically."""
    fc = cameras_feature_collection(result.records, result.summary.footprints_lonlat, result.summary.footprint_props)
    with atomic_path(path) as tmp:
        write_geojson(tmp, fc)


def camera_figures(result: IngestResult) -> list[dict[str, Any]]:
    """One entry per camera: id, make, model, size, focal and where it came from, image count."""
    out = []
    for cid, cam in result.cameras.items():
        members = [r for r in result.records if r.camera_id == cid]
        _f, source = focal_px_estimate(members[0])
        out.append(
            {
                "id": cid,
                "make": cam.make,
                "model": cam.model,
                "width": cam.width,
                "height": cam.height,
                "focal_px": round(cam.focal_px, 1),
                "focal_source": source.value,
                "focal_mm": members[0].focal_length_mm,
                "images": len(members),
            }
        )
    return out


def georef_info(result: IngestResult, crs_spec: str) -> dict[str, Any]:
    """The flight-level facts the later stages read (``ws.load_georef()``)."""
    s = result.summary
    return {
        "crs": s.crs,
        "crs_wkt": s.crs_wkt,
        "requested_crs": crs_spec,
        "crs_note": s.crs_note,
        "vertical_reference": s.vertical_reference,
        "ground_height_m": s.ground.height_m if s.ground else None,
        "ground_height_source": s.ground.source.value if s.ground else None,
        "agl_m": s.agl_m,
        "gsd_m": s.gsd_m,
        "center_lonlat": list(s.center_lonlat) if s.center_lonlat else None,
        "center_xy": list(s.center_xy) if s.center_xy else None,
        "clock_offset_s": result.clock_offset_s,
        "time_start": s.time_start,
        "time_end": s.time_end,
    }


def ingest_figures(result: IngestResult) -> dict[str, Any]:
    """The stage's figures for stats.json."""
    s = result.summary
    ov = s.overlap
    return {
        "images_total": len(result.records) + len(result.skipped),
        "images_read": len(result.records),
        "images_used": len(result.images_used),
        "images_skipped": [{"image": x.item, "reason": x.reason, "message": x.message} for x in result.skipped],
        "images_without_position": [
            {"image": r.name, "message": "; ".join(r.warnings) or "no position"} for r in result.without_position
        ],
        "cameras": len(result.cameras),
        "crs": s.crs,
        "gsd_m": s.gsd_m,
        "ground_height_m": s.ground.height_m if s.ground else None,
        "vertical_reference": s.vertical_reference,
        "area_m2": s.area_m2,
        "overlap": None
        if ov is None
        else {
            "forward": ov.forward,
            "side": ov.side,
            "covered_by_others": ov.covered_by_others,
            "views_mean": ov.views_mean,
            "share_3plus_views": ov.share_3plus_views,
            "strips": ov.strips,
        },
        "geotag": result.geotag,
        "ingest": {
            "camera_models": camera_figures(result),
            "position_sources": s.position_sources,
            "ground_height_source": s.ground.source.value if s.ground else None,
            "agl_m": s.agl_m,
            "clock_offset_s": result.clock_offset_s,
            "gcps": None
            if result.gcps is None
            else {
                "file": result.gcps.source,
                "crs": result.gcps.crs,
                "control": len(result.gcps.control),
                "checkpoints": len(result.gcps.checkpoints),
                "observations": len(result.gcps.observations),
            },
        },
    }


def _inputs(ws: Workspace, cfg: Config) -> list[Path]:
    files = scan_flight(Path(cfg.inputs.flight_dir))
    extra = [Path(p) for p in cfg.inputs.logs]
    if cfg.inputs.gcp_file:
        extra.append(Path(cfg.inputs.gcp_file))
    return (
        [p for _, p in files.images]
        + list(files.logs)
        + [p for p in (files.gcp_file, files.geo_txt) if p]
        + extra
    )


def run(ws: Workspace, cfg: Config, client: Client) -> StageReport:
    files = scan_flight(Path(cfg.inputs.flight_dir))

    def dask_reader(items: Sequence[ReadItem]) -> list[ImageRecord | SkippedItem]:
        return map_tasks(client, read_one, list(items), label="ingest-read", item_names=[n for n, _ in items])

    result = ingest_flight(files, cfg, dask_reader)
    if not result.images_used and (result.gcps is None or not result.gcps.control):
        raise GeoreferenceError(
            f"none of the {len(result.records)} readable images in {files.image_dir} has a position "
            "(no EXIF GPS, flight log or geo.txt) and there are no GCPs, so the result cannot be placed "
            "on the Earth; add a flight log (--log), a geo.txt or a GCP file (--gcp)"
        )
    ws.save_images(list(result.records), list(result.skipped))
    ws.save_cameras(result.cameras)
    ws.save_tracks(list(result.tracks))
    ws.save_gcps(result.gcps)
    ws.save_georef(georef_info(result, cfg.inputs.crs))
    write_cameras_geojson(ws.cameras_geojson_path, result)
    return StageReport(
        figures=ingest_figures(result),
        # cameras.geojson is left out: the sfm stage updates it with solved positions.
        outputs=(ws.images_path, ws.cameras_path, ws.tracks_path, ws.gcps_path, ws.georef_path),
        skipped=result.skipped,
    )


STAGE = StageSpec(
    name="ingest",
    run=run,
    config_fields=("inputs", "ingest"),
    inputs=_inputs,
    version=2,
    title="read image metadata, logs and GCPs; choose the working CRS",
)
