"""Ingest: read every image's metadata (one Dask task per image), pick the working CRS."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from distributed import Client

from drone_io.flight_dir import scan_flight
from drone_io.images import read_image_record
from models.camera import CameraModel
from models.errors import InputError
from models.geo import Projector, crs_label, resolve_working_crs
from models.image import ImageRecord, SkippedItem
from models.sensors import initial_camera
from pipeline.config import Config
from pipeline.log_geotag import geotag_from_logs
from pipeline.progress import map_tasks
from pipeline.stage import StageReport, StageSpec
from pipeline.workspace import Workspace

logger = logging.getLogger(__name__)


def _read_one(item: tuple[str, str]) -> ImageRecord | SkippedItem:
    """Dask task: one image's record, or why it was skipped."""
    name, path = item
    try:
        return read_image_record(Path(path), name)
    except InputError as exc:
        return SkippedItem(name, "unreadable", str(exc))


def _inputs(ws: Workspace, cfg: Config) -> list[Path]:
    files = scan_flight(Path(cfg.inputs.flight_dir))
    return (
        [p for _, p in files.images]
        + list(files.logs)
        + [p for p in (files.gcp_file, files.geo_txt) if p]
        + [Path(p) for p in cfg.inputs.logs]
    )


def run(ws: Workspace, cfg: Config, client: Client) -> StageReport:
    files = scan_flight(Path(cfg.inputs.flight_dir))
    logger.info("found %d images in %s", len(files.images), files.image_dir)
    items = [(name, str(path)) for name, path in files.images]
    results = map_tasks(client, _read_one, items, label="ingest-read", item_names=[n for n, _ in items])
    records = [r for r in results if isinstance(r, ImageRecord)]
    skipped = [r for r in results if isinstance(r, SkippedItem)]
    for s in skipped:
        logger.warning("skipped %s: %s", s.item, s.message)
    if not records:
        raise InputError(f"none of the {len(items)} images in {files.image_dir} could be read; see the messages above")

    # >>> geotag (branch `logs`): positions/attitude from the flight logs and geo.txt
    geo = geotag_from_logs(files, cfg, records)
    records = list(geo.records)
    ws.save_tracks(list(geo.tracks))
    # <<< geotag

    cameras: dict[str, CameraModel] = {}
    for rec in records:
        if rec.camera_id not in cameras:
            cameras[rec.camera_id] = initial_camera(rec)

    with_gps = [r for r in records if r.gps is not None]
    georef: dict[str, object] = {"crs": None, "ground_height_m": None, "gsd_m": None}
    if with_gps:
        lon = float(np.median([r.gps.lon for r in with_gps if r.gps]))
        lat = float(np.median([r.gps.lat for r in with_gps if r.gps]))
        crs = resolve_working_crs(cfg.inputs.crs, lon, lat)
        georef["crs"] = crs_label(crs)
        georef["crs_wkt"] = crs.to_wkt()
        proj = Projector.for_crs(crs)
        rel = [r.gps.alt - r.relative_altitude_m for r in with_gps if r.gps and r.relative_altitude_m is not None]
        if rel:
            ground = float(np.median(rel))
            georef["ground_height_m"] = ground
            agl = float(np.median([r.relative_altitude_m for r in with_gps if r.relative_altitude_m is not None]))
            cam = cameras[with_gps[0].camera_id]
            georef["gsd_m"] = agl / cam.focal_px
        georef["center_lonlat"] = [lon, lat]
        georef["center_xy"] = proj.forward(lon, lat)[0, :2].tolist()

    ws.save_images(records, skipped)
    ws.save_cameras(cameras)
    ws.save_georef(georef)
    figures = {
        "images_total": len(items),
        "images_read": len(records),
        "images_skipped": [{"image": s.item, "reason": s.reason, "message": s.message} for s in skipped],
        "cameras": len(cameras),
        "crs": georef["crs"],
        "geotag": geo.figures,
    }
    if georef.get("gsd_m"):
        figures["gsd_m"] = georef["gsd_m"]
    return StageReport(
        figures=figures,
        outputs=(ws.images_path, ws.cameras_path, ws.georef_path, ws.tracks_path),
        skipped=tuple(skipped),
    )


STAGE = StageSpec(
    name="ingest",
    run=run,
    config_fields=("inputs", "ingest"),
    inputs=_inputs,
    version=1,
    title="read image metadata, logs and GCPs; choose the working CRS",
)
