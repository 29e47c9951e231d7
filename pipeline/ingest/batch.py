"""Flight-level facts of a batch of image records: CRS, ground height, GSD, footprints, overlap.

Shared by the ingest stage of ``aerobase run`` and by ``aerobase inspect``, so
both report the same figures. Pure apart from the optional image-motion ground
estimate, which decodes a few small previews.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from numpy.typing import NDArray

from models.camera import CameraModel
from models.errors import InputError
from models.footprint import (
    AttitudeSource,
    OverlapStats,
    attitude_for,
    footprint,
    overlap_stats,
    principal_range,
    split_strips,
    track_yaws,
)
from models.gcp import GcpSet
from models.geo import (
    HeightRef,
    Projector,
    crs_label,
    parse_crs,
    resolve_working_crs,
    transform_points,
    vertical_reference,
    working_crs_note,
)
from models.image import ImageRecord, PositionSource
from pipeline.ingest.ground import GroundEstimate, GroundSource, ground_from_image_motion, ground_from_relative_altitude

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]

# A GCP further than this from every camera (m), and than GCP_MAX_EXTENT_FACTOR x the flight's
# extent, is in the wrong CRS or has swapped coordinates.
GCP_MAX_DISTANCE_M = 2000.0
GCP_MAX_EXTENT_FACTOR = 5.0


@dataclass(frozen=True)
class FlightSummary:
    """What the image records say about the flight as a whole."""

    crs: str | None  # working CRS label ('EPSG:N'), None when no image has a position
    crs_wkt: str | None
    crs_note: str | None  # why the working CRS differs from the one asked for
    vertical_reference: str  # 'orthometric' (nominal, EXIF), 'ellipsoidal', or a vertical datum
    center_lonlat: tuple[float, float] | None
    center_xy: tuple[float, float] | None
    extent_lonlat: tuple[float, float, float, float] | None  # camera centres: min lon, min lat, max lon, max lat
    ground: GroundEstimate | None
    agl_m: float | None = None  # median flying height above the ground
    gsd_m: float | None = None  # median ground sample distance at the image centres
    footprints_xy: dict[str, FloatArray] = field(default_factory=dict)  # working CRS, (4, 2)
    footprints_lonlat: dict[str, FloatArray] = field(default_factory=dict)  # (4, 2) lon, lat
    footprint_props: dict[str, dict[str, Any]] = field(default_factory=dict)
    attitude_sources: dict[str, int] = field(default_factory=dict)
    overlap: OverlapStats | None = None
    time_start: float | None = None
    time_end: float | None = None
    position_sources: dict[str, int] = field(default_factory=dict)

    @property
    def area_m2(self) -> float | None:
        """Ground covered by the union of the footprints."""
        return self.overlap.area_m2 if self.overlap is not None else None


def time_ordered(records: Sequence[ImageRecord]) -> list[ImageRecord]:
    """Records by capture time (images without a time last), then by name."""
    return sorted(records, key=lambda r: (r.capture_time is None, r.capture_time or 0.0, r.name))


def summarize_flight(
    records: Sequence[ImageRecord],
    cameras: dict[str, CameraModel],
    crs_spec: str,
    ground_height_m: float | None = None,
    image_motion: bool = True,
) -> FlightSummary:
    """Working CRS, ground height, GSD, footprints and overlap of a batch."""
    sources: dict[str, int] = {}
    for r in records:
        sources[r.position_source.value] = sources.get(r.position_source.value, 0) + 1
    times = [r.capture_time for r in records if r.capture_time is not None]
    t0 = min(times) if times else None
    t1 = max(times) if times else None
    positioned = time_ordered([r for r in records if r.has_position and r.gps is not None])
    height_refs = {r.gps.height_ref for r in positioned if r.gps is not None}
    image_ref = height_refs.pop() if len(height_refs) == 1 else HeightRef.UNKNOWN
    if not positioned:
        crs = None
        if crs_spec.strip().lower() != "auto":
            asked = parse_crs(crs_spec)
            crs = asked if asked.is_projected else None
        return FlightSummary(
            crs=crs_label(crs) if crs is not None else None,
            crs_wkt=crs.to_wkt() if crs is not None else None,
            crs_note=None,
            vertical_reference=vertical_reference(crs, image_ref) if crs is not None else image_ref.value,
            center_lonlat=None,
            center_xy=None,
            extent_lonlat=None,
            ground=None,
            agl_m=None,
            gsd_m=None,
            time_start=t0,
            time_end=t1,
            position_sources=sources,
        )

    lons = np.array([r.gps.lon for r in positioned if r.gps is not None])
    lats = np.array([r.gps.lat for r in positioned if r.gps is not None])
    alts = np.array([r.gps.alt for r in positioned if r.gps is not None])
    lon_c, lat_c = float(np.median(lons)), float(np.median(lats))
    crs = resolve_working_crs(crs_spec, lon_c, lat_c)
    note = working_crs_note(crs_spec, crs)
    proj = Projector.for_crs(crs)
    xyz = proj.forward(lons, lats, alts)
    center_xy = proj.forward(np.array([lon_c]), np.array([lat_c]))[0, :2]

    ground: GroundEstimate | None
    if ground_height_m is not None:
        ground = GroundEstimate(float(ground_height_m), GroundSource.CONFIG, 0, 0.0)
    else:
        ground = ground_from_relative_altitude(positioned)
        if ground is None and image_motion:
            ground = ground_from_image_motion(positioned, xyz, cameras)

    summary_kw: dict[str, Any] = {}
    if ground is not None:
        summary_kw = _footprints(positioned, xyz, cameras, proj, ground.height_m, lon_c, lat_c)
    return FlightSummary(
        crs=crs_label(crs),
        crs_wkt=crs.to_wkt(),
        crs_note=note,
        vertical_reference=vertical_reference(crs, image_ref),
        center_lonlat=(lon_c, lat_c),
        center_xy=(float(center_xy[0]), float(center_xy[1])),
        extent_lonlat=(float(lons.min()), float(lats.min()), float(lons.max()), float(lats.max())),
        ground=ground,
        time_start=t0,
        time_end=t1,
        position_sources=sources,
        **summary_kw,
    )


def _footprints(
    positioned: list[ImageRecord],
    xyz: FloatArray,
    cameras: dict[str, CameraModel],
    proj: Projector,
    ground_z: float,
    lon_c: float,
    lat_c: float,
) -> dict[str, Any]:
    convergence = proj.grid_convergence_deg(lon_c, lat_c)
    yaws_grid = track_yaws(xyz[:, :2])
    strips = split_strips(xyz[:, :2])
    polys: list[FloatArray] = []
    poly_strips: list[int] = []
    fp_xy: dict[str, FloatArray] = {}
    props: dict[str, dict[str, Any]] = {}
    att_sources: dict[str, int] = {}
    agls: list[float] = []
    gsds: list[float] = []
    for i, rec in enumerate(positioned):
        cam = cameras[rec.camera_id]
        track = None if yaws_grid[i] is None else (float(yaws_grid[i] or 0.0) + convergence) % 360.0
        att = attitude_for(rec, track)
        att_sources[att.source.value] = att_sources.get(att.source.value, 0) + 1
        if not np.isfinite(xyz[i, 2]):
            continue
        agl = float(xyz[i, 2] - ground_z)
        if agl > 0:
            agls.append(agl)
        rng = principal_range(cam, xyz[i], att.attitude, ground_z)
        gsd = rng / cam.focal_px if rng is not None else None
        if gsd is not None:
            gsds.append(gsd)
        poly = footprint(cam, xyz[i], att.attitude, ground_z, convergence)
        if poly is None:
            continue
        fp_xy[rec.name] = poly
        polys.append(poly)
        poly_strips.append(strips[i])
        props[rec.name] = {
            "attitude_source": att.source.value,
            "gsd_cm": round(100.0 * gsd, 2) if gsd is not None else None,
            "strip": strips[i],
        }
    fp_ll = {name: proj.inverse(p)[:, :2] for name, p in fp_xy.items()}
    return {
        "agl_m": float(np.median(agls)) if agls else None,
        "gsd_m": float(np.median(gsds)) if gsds else None,
        "footprints_xy": fp_xy,
        "footprints_lonlat": fp_ll,
        "footprint_props": props,
        "attitude_sources": att_sources,
        "overlap": overlap_stats(polys, poly_strips) if polys else None,
    }


def check_gcp_area(gcps: GcpSet, summary: FlightSummary, positioned_xy: FloatArray | None = None) -> None:
    """Raise when a GCP lies far from every camera: a wrong CRS or swapped coordinates."""
    if summary.crs_wkt is None or summary.center_xy is None or not gcps.points or summary.extent_lonlat is None:
        return
    pts = np.array([[p.x, p.y] for p in gcps.points], dtype=np.float64)
    try:
        xy = transform_points(pts, parse_crs(gcps.crs), parse_crs(summary.crs_wkt))
    except Exception as exc:  # noqa: BLE001 - pyproj raises several types for impossible transforms
        raise InputError(f"{gcps.source}: cannot transform the GCPs from {gcps.crs} to {summary.crs}: {exc}") from exc
    proj = Projector(summary.crs_wkt)
    lo0, la0, lo1, la1 = summary.extent_lonlat
    corners = proj.forward(np.array([lo0, lo1]), np.array([la0, la1]))
    extent = float(np.hypot(*(corners[1, :2] - corners[0, :2])))
    limit = max(GCP_MAX_DISTANCE_M, GCP_MAX_EXTENT_FACTOR * extent)
    cx, cy = summary.center_xy
    for p, q in zip(gcps.points, xy):
        d = math.hypot(float(q[0]) - cx, float(q[1]) - cy)
        if not math.isfinite(d) or d > limit:
            where = f"{gcps.source}:{p.line}" if p.line else gcps.source
            raise InputError(
                f"{where}: GCP '{p.name}' lies {d / 1000.0:.1f} km from the flight centre in {gcps.crs}; "
                "check the file's CRS line and the order of the coordinates (x = easting or longitude)"
            )


def position_source_counts(records: Sequence[ImageRecord]) -> dict[str, int]:
    out: dict[str, int] = {s.value: 0 for s in PositionSource}
    for r in records:
        out[r.position_source.value] += 1
    return {k: v for k, v in out.items() if v}


__all__ = [
    "AttitudeSource",
    "FlightSummary",
    "check_gcp_area",
    "position_source_counts",
    "summarize_flight",
    "time_ordered",
]
