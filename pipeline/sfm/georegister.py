"""Georegistration helpers: GPS frames and priors, GCPs, triangulation and residual statistics.

Pure numpy/pyproj over ``models`` values; the sfm stage wires them to pycolmap.
All SfM geometry runs in a *local frame*: working-CRS coordinates minus an
origin (rounded flight centre), so that float64 keeps sub-millimetre precision
and the solver is well conditioned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pyproj
from numpy.typing import NDArray

from models.errors import GeoreferenceError
from models.gcp import GcpObservation, GcpSet, GroundControlPoint
from models.geo import Projector, parse_crs, resolve_working_crs, transform_points
from models.image import ImageRecord
from models.reconstruction import Reconstruction
from models.sfm_report import PositionResidual
from pipeline.config import Config, IngestConfig

FloatArray = NDArray[np.float64]


# -- the GPS frame -------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class GpsFrame:
    """Image GPS positions in the local frame of the working CRS."""

    crs: str  # 'EPSG:N' or WKT
    crs_wkt: str
    origin: FloatArray  # (3,) working-CRS coordinates of the local origin
    positions: dict[str, FloatArray]  # image name -> (3,) local position
    convergence_deg: float  # grid convergence at the flight centre (true north -> grid north)


def local_origin(xyz: FloatArray, step: float = 100.0) -> FloatArray:
    """A round origin near the centroid (x, y to ``step`` metres, z to 1 m)."""
    c = np.asarray(xyz, dtype=np.float64).reshape(-1, 3).mean(axis=0)
    return np.array([round(c[0] / step) * step, round(c[1] / step) * step, round(c[2])])


def gps_frame(records: Sequence[ImageRecord], georef: dict[str, Any]) -> GpsFrame | None:
    """The GPS positions of the images in the working CRS, or None without GPS or CRS."""
    with_gps = [r for r in records if r.gps is not None and math.isfinite(r.gps.alt)]
    wkt = georef.get("crs_wkt")
    if not with_gps or not wkt:
        return None
    proj = Projector(str(wkt))
    lon = np.array([r.gps.lon for r in with_gps if r.gps])
    lat = np.array([r.gps.lat for r in with_gps if r.gps])
    alt = np.array([r.gps.alt for r in with_gps if r.gps])
    xyz = proj.forward(lon, lat, alt)
    origin = local_origin(xyz)
    conv = proj.grid_convergence_deg(float(np.median(lon)), float(np.median(lat)))
    return GpsFrame(
        crs=str(georef.get("crs") or wkt),
        crs_wkt=str(wkt),
        origin=origin,
        positions={r.name: xyz[i] - origin for i, r in enumerate(with_gps)},
        convergence_deg=conv,
    )


def gps_std(record: ImageRecord, ingest: IngestConfig) -> tuple[float, float]:
    """(horizontal, vertical) 1-sigma of an image's GPS: RTK's stated values, else the configured default."""
    h = ingest.default_gps_std_horizontal_m
    v = ingest.default_gps_std_vertical_m
    if record.gps is not None:
        if record.gps.std_horizontal_m is not None and record.gps.std_horizontal_m > 0:
            h = float(record.gps.std_horizontal_m)
        if record.gps.std_vertical_m is not None and record.gps.std_vertical_m > 0:
            v = float(record.gps.std_vertical_m)
    return h, v


def prior_covariance(std_horizontal_m: float, std_vertical_m: float) -> FloatArray:
    """3x3 position covariance (m^2) of a GPS prior, east/north/up."""
    return np.diag([std_horizontal_m**2, std_horizontal_m**2, std_vertical_m**2])


# -- GCPs ----------------------------------------------------------------------------------
def require_georeference(records: Sequence[ImageRecord], gcps: GcpSet | None, cfg: Config) -> None:
    """Stop early, with what to do, when neither GPS nor three control GCPs can georeference the flight."""
    if any(r.gps is not None for r in records):
        return
    control = gcps.control if gcps is not None else ()
    if len(control) >= 3 and well_spread(np.array([[p.x, p.y] for p in control])):
        return
    have = "no GCP file" if gcps is None else f"{len(control)} control point(s) in {gcps.source}"
    if gcps is not None and len(control) >= 3:
        have += " that lie almost on one line"
    raise GeoreferenceError(
        f"cannot georeference this flight: none of the {len(records)} images has GPS and there is {have}. "
        "Add a GCP file with at least three well-spread control points (gcp_list.txt in the flight folder or "
        "--gcp FILE), or geotag the images from a flight log (--log FILE). Nothing georeferenced was written."
    )


def well_spread(xy: FloatArray, min_ratio: float = 0.05) -> bool:
    """At least three points that do not lie on a line (minor/major spread ratio above ``min_ratio``)."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if len(xy) < 3:
        return False
    s = np.linalg.svd(xy - xy.mean(axis=0), compute_uv=False)
    return bool(s[0] > 0 and s[1] / s[0] > min_ratio)


def gcp_crs(gcps: GcpSet, requested: str) -> pyproj.CRS:
    """Working CRS for a flight without GPS: the GCPs' own projected CRS, or one resolved at their centre."""
    src = parse_crs(gcps.crs)
    if requested.strip().lower() == "auto" and src.is_projected:
        return src
    xyz = np.array([[p.x, p.y, p.z] for p in gcps.points])
    lonlat = transform_points(xyz.mean(axis=0, keepdims=True), src, "EPSG:4326")[0]
    return resolve_working_crs(requested, float(lonlat[0]), float(lonlat[1]))


def gcps_in_crs(points: Sequence[GroundControlPoint], src_crs: str, dst_crs_wkt: str) -> dict[str, FloatArray]:
    """GCP coordinates transformed to the working CRS (heights pass through)."""
    if not points:
        return {}
    xyz = np.array([[p.x, p.y, p.z] for p in points], dtype=np.float64)
    if parse_crs(src_crs) != parse_crs(dst_crs_wkt):
        xyz = transform_points(xyz, src_crs, dst_crs_wkt)
    return {p.name: xyz[i] for i, p in enumerate(points)}


def observations_by_point(gcps: GcpSet, registered: set[str]) -> dict[str, list[GcpObservation]]:
    """Observations per GCP name, only in registered images."""
    out: dict[str, list[GcpObservation]] = {}
    for o in gcps.observations:
        if o.image in registered:
            out.setdefault(o.point, []).append(o)
    return out


def triangulate(rec: Reconstruction, observations: Sequence[GcpObservation], iterations: int = 10) -> FloatArray | None:
    """3D point from pixel observations in solved images: ray midpoint, then Gauss-Newton on reprojection.

    Coordinates are those of ``rec`` (full CRS or local). None with fewer than two views.
    """
    obs = [o for o in observations if o.image in rec.images]
    if len(obs) < 2:
        return None
    centers, dirs = [], []
    for o in obs:
        img = rec.images[o.image]
        ray_cam = rec.cameras[img.camera_id].pixel_to_ray(np.array([[o.px, o.py]]))[0]
        centers.append(img.pose.center)
        dirs.append(img.pose.R.T @ ray_cam)
    C = np.array(centers)
    D = np.array(dirs)
    # Least-squares closest point to all rays, in a frame centred on the cameras for conditioning.
    c0 = C.mean(axis=0)
    A = np.zeros((3, 3))
    b = np.zeros(3)
    for c, d in zip(C - c0, D):
        P = np.eye(3) - np.outer(d, d)
        A += P
        b += P @ c
    X = np.linalg.lstsq(A, b, rcond=None)[0]
    uv = np.array([[o.px, o.py] for o in obs])
    for _ in range(iterations):
        r, J = _reprojection(rec, obs, X + c0, uv)
        step = np.linalg.lstsq(J, -r, rcond=None)[0]
        X = X + step
        if np.linalg.norm(step) < 1e-6:
            break
    return X + c0


def _reprojection(
    rec: Reconstruction, obs: Sequence[GcpObservation], X: FloatArray, uv: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Stacked residuals (2N,) and numerical Jacobian (2N, 3) of reprojection at X."""

    def resid(P: FloatArray) -> FloatArray:
        out = []
        for o in obs:
            out.append(rec.project(o.image, P[None, :])[0])
        return (np.array(out) - uv).ravel()

    r0 = resid(X)
    J = np.zeros((len(r0), 3))
    for k in range(3):
        d = np.zeros(3)
        d[k] = 1e-4
        J[:, k] = (resid(X + d) - r0) / 1e-4
    return r0, J


# -- residual statistics ---------------------------------------------------------------------
def rmse(residuals: Sequence[PositionResidual], gsd_m: float) -> dict[str, Any]:
    """RMSE per axis and horizontal, in metres and in GSD (ASPRS 2023 style)."""
    if not residuals:
        return {"count": 0}
    d = np.array([[r.dx, r.dy, r.dz] for r in residuals])
    x, y, z = (float(np.sqrt(np.mean(d[:, k] ** 2))) for k in range(3))
    h = float(np.sqrt(x * x + y * y))
    out: dict[str, Any] = {"count": len(residuals), "x": x, "y": y, "z": z, "horizontal": h}
    if gsd_m > 0 and math.isfinite(gsd_m):
        out["gsd"] = {"x": x / gsd_m, "y": y / gsd_m, "z": z / gsd_m, "horizontal": h / gsd_m}
    return out


def residual_table(residuals: Sequence[PositionResidual], gsd_m: float) -> list[dict[str, Any]]:
    """Per-item residuals in metres and GSD, for stats.json and the report."""
    rows = []
    for r in residuals:
        row: dict[str, Any] = {
            "name": r.name,
            "dx_m": r.dx,
            "dy_m": r.dy,
            "dz_m": r.dz,
            "horizontal_m": r.horizontal,
        }
        if gsd_m > 0:
            row["horizontal_gsd"] = r.horizontal / gsd_m
            row["dz_gsd"] = r.dz / gsd_m
        if r.observations:
            row["observations"] = r.observations
        rows.append(row)
    return rows

