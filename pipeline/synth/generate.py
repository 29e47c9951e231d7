"""Render a synthetic flight with exact ground truth: ``aerobase synth``.

The output folder is a flight batch (images, a flight log, a GCP file) plus a
``truth/`` folder that holds everything needed to measure every error of a
reconstruction: the scene definition, the true cameras, and true DSM, DTM,
orthophoto and building mask.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from drone_io.exif_writer import ExifFields, ExifGps, build_exif, embed_metadata, xpacket
from drone_io.gcp_writer import format_odm_gcp_list
from drone_io.images import camera_id_for
from drone_io.logs.tlog_writer import write_tlog
from drone_io.reconstruction_io import reconstruction_to_json
from drone_io.xmp import build_dji_xmp
from models.camera import CameraModel
from models.codec import to_jsonable
from models.errors import ConfigError, CRSError
from models.gcp import GcpObservation, GcpSet, GroundControlPoint
from models.geo import HeightRef, Projector, crs_label, parse_crs
from models.pose import Pose, world_to_camera_from_gimbal
from models.raster import GridSpec
from models.reconstruction import Reconstruction, RegisteredImage
from models.track import AttitudeSeries, FlightTrack, PositionSeries, TriggerEvents
from pipeline.synth.flight import FlightPlan, Trajectory, log_sample_times, plan_flight
from pipeline.synth.layout import make_layout
from pipeline.synth.presets import FlightPreset, SynthOptions, resolve_preset
from pipeline.synth.render import RayGrid, point_visible, render_radiance
from pipeline.synth.scene import Scene, Terrain
from pipeline.synth.texture import GroundTexture, build_texture
from pipeline.synth.truth import write_truth_rasters
from pipeline.workspace import atomic_path, write_bytes_atomic

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]

LOG_START_UTC = datetime(2024, 5, 18, 2, 31, 7, tzinfo=timezone.utc)  # 10:31:07 in Zhengzhou (UTC+8)
CAMERA_UTC_OFFSET_H = 8  # the camera clock runs on local time, without an offset tag
BOOT_BEFORE_LOG_S = 42.5  # the autopilot booted this long before the log starts
FLIGHT_PITCH_DEG = -4.0  # nose-down attitude in cruise
MAX_TEXELS = 90_000_000
GCP_MARGIN_PX = 20.0
SOFTWARE = "aerobase synth"

# Independent random streams, so that e.g. --no-gps leaves every other value unchanged.
_STREAM_TERRAIN, _STREAM_LAYOUT, _STREAM_TEXTURE, _STREAM_ATTITUDE, _STREAM_GPS, _STREAM_CLOCK = 1, 2, 3, 4, 5, 6
_STREAM_IMAGE_NOISE = 1000


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


@dataclass(frozen=True, eq=False)
class ShotTruth:
    """Everything true about one image."""

    name: str
    index: int
    line: int
    log_time_unix: float  # trigger time on the log clock (UTC)
    camera_time_unix: float  # the same instant on the camera clock (local time read as UTC)
    camera_time_text: str  # DateTimeOriginal.SubSecTimeOriginal as written
    pose_local: Pose
    pose: Pose  # in the scene CRS
    gimbal_yaw_pitch_roll: tuple[float, float, float]  # DJI convention, yaw from true north
    flight_yaw_pitch_roll: tuple[float, float, float]
    grid_convergence_deg: float
    true_lon_lat_alt: tuple[float, float, float]
    gps_lon_lat_alt: tuple[float, float, float]  # what EXIF says (noisy) even when stripped
    gps_noise_enu_m: tuple[float, float, float]
    relative_altitude_m: float


@dataclass(frozen=True)
class SynthResult:
    """What ``render_flight`` wrote, with the figures a user checks first."""

    out_dir: Path
    preset: str
    crs: str
    seed: int
    n_images: int
    image_size: tuple[int, int]
    gsd_m: float
    altitude_agl_m: float
    n_lines: int
    shots_per_line: int
    front_overlap: float
    side_overlap: float
    gimbal_pitch_deg: float
    no_gps: bool
    clock_offset_s: float
    n_control: int
    n_checkpoints: int
    n_gcp_observations: int
    n_buildings: int
    seconds: float
    render_seconds: float
    paths: dict[str, Path] = field(default_factory=dict)

    def describe(self) -> str:
        w, h = self.image_size
        lines = [
            f"Rendered {self.n_images} images ({w}x{h}) of the '{self.preset}' scene (seed {self.seed}) "
            f"into {self.out_dir} in {self.seconds:.1f} s (images {self.render_seconds:.1f} s)",
            f"  CRS {self.crs}, GSD {100 * self.gsd_m:.2f} cm at {self.altitude_agl_m:.1f} m above ground, "
            f"gimbal pitch {self.gimbal_pitch_deg:g} deg",
            f"  Flight: {self.n_lines} lines x {self.shots_per_line} shots, overlap {100 * self.front_overlap:.0f}% front / "
            f"{100 * self.side_overlap:.0f}% side; {self.n_buildings} buildings",
            f"  GPS in images: {'stripped (--no-gps)' if self.no_gps else 'yes (noisy, see truth/scene.json)'}",
            f"  GCPs: {self.n_control} control + {self.n_checkpoints} checkpoints, "
            f"{self.n_gcp_observations} observations -> gcp_list.txt",
            f"  Flight log: logs/flight.tlog (camera clock = log clock + {self.clock_offset_s:.3f} s)",
            "  Truth: truth/scene.json, truth/cameras.json, truth/dsm.tif, truth/dtm.tif, "
            "truth/orthophoto.tif, truth/buildings.tif",
        ]
        return "\n".join(lines)


# -- set-up -------------------------------------------------------------------------------
def _camera(preset: FlightPreset) -> CameraModel:
    spec = preset.camera
    cam_id = camera_id_for(spec.make, spec.model, spec.width, spec.height, round(spec.focal_mm, 3))
    return CameraModel(
        camera_id=cam_id,
        width=spec.width,
        height=spec.height,
        fx=spec.focal_px,
        fy=spec.focal_px,
        cx=spec.cx,
        cy=spec.cy,
        k1=spec.k1,
        k2=spec.k2,
        p1=spec.p1,
        p2=spec.p2,
        make=spec.make,
        model=spec.model,
    )


def _wrap180(a: float) -> float:
    w = (a + 180.0) % 360.0 - 180.0
    return 180.0 if w == -180.0 else w


def _shots(
    plan: FlightPlan,
    preset: FlightPreset,
    projector: Projector,
    origin: tuple[float, float],
    seed: int,
    clock_offset_ms: int,
) -> list[ShotTruth]:
    att_rng = _rng(seed, _STREAM_ATTITUDE)
    gps_rng = _rng(seed, _STREAM_GPS)
    log0_ms = int(LOG_START_UTC.timestamp()) * 1000
    ox, oy = origin
    out: list[ShotTruth] = []
    jitter = preset.attitude_jitter_deg
    for s in plan.shots:
        c_local = np.array(s.center)
        c_world = c_local + np.array([ox, oy, 0.0])
        lon, lat, alt = (float(v) for v in projector.inverse(c_world[None, :])[0])
        gamma = projector.grid_convergence_deg(lon, lat)
        heading_true = round(_wrap180(s.heading_grid_deg + gamma), 2)
        dy, dr, dp = att_rng.normal(0.0, 1.0, 3) * jitter
        if preset.gimbal_pitch_deg <= -89.999:
            pitch = round(-90.0 + abs(float(dp)), 2)
        else:
            pitch = round(preset.gimbal_pitch_deg + float(dp), 2)
        yaw_true = round(_wrap180(heading_true + float(dy)), 2)
        roll = round(float(dr), 2)
        R = world_to_camera_from_gimbal(yaw_true - gamma, pitch, roll)
        pose_local = Pose.from_center(R, c_local)
        pose_world = Pose.from_center(R, c_world)
        noise = gps_rng.normal(0.0, 1.0, 3) * np.array([preset.gps_sigma_h_m, preset.gps_sigma_h_m, preset.gps_sigma_v_m])
        g_lon, g_lat, g_alt = (float(v) for v in projector.inverse((c_world + noise)[None, :])[0])
        t_log_ms = log0_ms + s.t_ms
        t_cam_ms = t_log_ms + clock_offset_ms
        cam_dt = datetime(1970, 1, 1) + timedelta(milliseconds=t_cam_ms)
        out.append(
            ShotTruth(
                name=f"IMG_{s.index + 1:04d}.JPG",
                index=s.index,
                line=s.line,
                log_time_unix=t_log_ms / 1000.0,
                camera_time_unix=t_cam_ms / 1000.0,
                camera_time_text=cam_dt.strftime("%Y:%m:%d %H:%M:%S") + f".{t_cam_ms % 1000:03d}",
                pose_local=pose_local,
                pose=pose_world,
                gimbal_yaw_pitch_roll=(yaw_true, pitch, roll),
                flight_yaw_pitch_roll=(heading_true, FLIGHT_PITCH_DEG, 0.0),
                grid_convergence_deg=gamma,
                true_lon_lat_alt=(lon, lat, alt),
                gps_lon_lat_alt=(g_lon, g_lat, g_alt),
                gps_noise_enu_m=(float(noise[0]), float(noise[1]), float(noise[2])),
                relative_altitude_m=float(c_local[2] - plan.home[2]),
            )
        )
    return out


def _extent(
    shots: list[ShotTruth], camera: CameraModel, plan: FlightPlan, ground_z: float, margin: float = 6.0
) -> tuple[float, float, float, float]:
    """Local bounding box of everything the images see of the ground (capped for oblique views)."""
    n = 12
    w, h = camera.width - 1.0, camera.height - 1.0
    border = np.vstack(
        [
            np.column_stack([np.linspace(0, w, n), np.zeros(n)]),
            np.column_stack([np.linspace(0, w, n), np.full(n, h)]),
            np.column_stack([np.zeros(n), np.linspace(0, h, n)]),
            np.column_stack([np.full(n, w), np.linspace(0, h, n)]),
        ]
    )
    rays_cam = camera.pixel_to_ray(border)
    cap = 2.5 * plan.altitude_agl_m
    pts: list[FloatArray] = [plan.aoi_corners]
    for s in shots:
        d = rays_cam @ s.pose_local.R  # world directions
        c = s.pose_local.center
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(d[:, 2] < -1e-6, (ground_z - c[2]) / d[:, 2], np.inf)
        horiz = np.hypot(d[:, 0], d[:, 1])
        t = np.minimum(t, np.where(horiz > 0, cap / np.maximum(horiz, 1e-12), np.inf))
        t = np.where(np.isfinite(t), t, 0.0)
        pts.append(c[None, :2] + t[:, None] * d[:, :2])
    allp = np.vstack(pts)
    return (
        float(allp[:, 0].min() - margin),
        float(allp[:, 1].min() - margin),
        float(allp[:, 0].max() + margin),
        float(allp[:, 1].max() + margin),
    )


# -- writers ------------------------------------------------------------------------------
def _image_bytes(
    radiance: NDArray[np.float32], shot: ShotTruth, preset: FlightPreset, camera: CameraModel, seed: int, no_gps: bool
) -> bytes:
    rng = _rng(seed, _STREAM_IMAGE_NOISE + shot.index)
    noisy = radiance + rng.standard_normal(radiance.shape, dtype=np.float32) * np.float32(preset.noise_sigma_dn)
    img = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    ok, enc = cv2.imencode(".jpg", np.ascontiguousarray(img[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, preset.jpeg_quality])
    if not ok:
        raise RuntimeError(f"JPEG encoding of {shot.name} failed")
    spec = preset.camera
    text = shot.camera_time_text
    dt = datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S")
    lon, lat, alt = shot.gps_lon_lat_alt
    exif = build_exif(
        ExifFields(
            make=spec.make,
            model=spec.model,
            width=camera.width,
            height=camera.height,
            datetime_original=dt,
            subsec_original=text[20:],
            focal_length_mm=round(spec.focal_mm, 3),
            focal_length_35mm=spec.focal_35mm,
            sensor_width_mm=spec.sensor_width_mm,
            sensor_height_mm=spec.sensor_width_mm * camera.height / camera.width,
            gps=None if no_gps else ExifGps(lat=lat, lon=lon, alt=alt),
            software=SOFTWARE,
        )
    )
    gy, gp, gr = shot.gimbal_yaw_pitch_roll
    fy, fp, fr = shot.flight_yaw_pitch_roll
    fields: dict[str, float] = {}
    if not no_gps:
        fields["AbsoluteAltitude"] = alt
    fields.update(
        RelativeAltitude=shot.relative_altitude_m,
        GimbalRollDegree=gr,
        GimbalYawDegree=gy,
        GimbalPitchDegree=gp,
        FlightRollDegree=fr,
        FlightYawDegree=fy,
        FlightPitchDegree=fp,
    )
    xmp = xpacket(build_dji_xmp(fields))
    return embed_metadata(enc.tobytes(), exif, xmp)


def _gcp_set(scene: Scene, shots: list[ShotTruth], camera: CameraModel, crs: str) -> GcpSet:
    ox, oy = scene.origin
    points = tuple(GroundControlPoint(g.name, g.x + ox, g.y + oy, g.z, g.is_checkpoint) for g in scene.gcps)
    obs: list[GcpObservation] = []
    for s in shots:
        for g in scene.gcps:
            X = np.array([g.x, g.y, g.z])
            pc = s.pose_local.to_camera(X[None, :])
            if pc[0, 2] <= 0:
                continue
            uv = camera.project(pc)[0]
            if not bool(camera.contains(uv, margin=GCP_MARGIN_PX)):
                continue
            if not point_visible(scene.terrain, scene.buildings, s.pose_local.center, X):
                continue
            obs.append(GcpObservation(point=g.name, image=s.name, px=float(uv[0]), py=float(uv[1])))
    return GcpSet(source="aerobase synth", crs=crs, points=points, observations=tuple(obs))


def _flight_track(
    plan: FlightPlan, shots: list[ShotTruth], projector: Projector, origin: tuple[float, float]
) -> FlightTrack:
    traj: Trajectory = plan.trajectory
    t_ms = log_sample_times(traj)
    t_rel = t_ms / 1000.0
    local = traj.position(t_rel)
    world = local + np.array([origin[0], origin[1], 0.0])
    lla = projector.inverse(world)
    vel = traj.velocity(t_rel)
    speed = np.hypot(vel[:, 0], vel[:, 1])
    heading_grid = np.degrees(np.arctan2(vel[:, 0], vel[:, 1])) % 360.0
    moving = speed > 0.1
    first = float(plan.shots[0].heading_grid_deg)
    idx = np.where(moving, np.arange(len(t_ms)), -1)
    idx = np.maximum.accumulate(idx)
    filled = np.where(idx >= 0, heading_grid[np.maximum(idx, 0)], first)
    centre_lon = float(np.mean(lla[:, 0]))
    centre_lat = float(np.mean(lla[:, 1]))
    gamma = projector.grid_convergence_deg(centre_lon, centre_lat)
    yaw_true = (filled + gamma) % 360.0
    pitch = np.where(moving, FLIGHT_PITCH_DEG, 0.0)
    t0 = LOG_START_UTC.timestamp()
    positions = PositionSeries(
        t=t0 + t_rel, lat=lla[:, 1], lon=lla[:, 0], alt=lla[:, 2], height_ref=HeightRef.ELLIPSOIDAL
    )
    attitude = AttitudeSeries(t=t0 + t_rel, yaw=yaw_true, pitch=pitch, roll=np.zeros(len(t_ms)))
    triggers = TriggerEvents(
        t=np.array([s.log_time_unix for s in shots]),
        lat=np.array([s.true_lon_lat_alt[1] for s in shots]),
        lon=np.array([s.true_lon_lat_alt[0] for s in shots]),
        alt=np.array([s.true_lon_lat_alt[2] for s in shots]),
    )
    return FlightTrack(source="flight.tlog", format="mavlink_tlog", positions=positions, attitude=attitude, triggers=triggers)


def _scene_json(
    *,
    options: SynthOptions,
    preset: FlightPreset,
    crs: str,
    scene: Scene,
    plan: FlightPlan,
    camera: CameraModel,
    shots: list[ShotTruth],
    grid: GridSpec,
    texture: GroundTexture,
    clock_offset_s: float,
    projector: Projector,
    gcps: GcpSet,
    tlog_packets: int,
) -> dict[str, Any]:
    ox, oy = scene.origin
    t = scene.terrain
    return {
        "format": "aerobase-synth-scene/1",
        "software": SOFTWARE,
        "preset": preset.name,
        "seed": options.seed,
        "crs": crs,
        "heights": "ellipsoidal (WGS84/CGCS2000); the synthetic world has no geoid undulation, so orthometric = ellipsoidal",
        "pixel_convention": "centre of the top-left pixel is (0, 0)",
        "center_lon_lat": [options.center_lon, options.center_lat],
        "local_origin": [ox, oy],
        "local_origin_note": "scene geometry below marked 'local' is relative to local_origin (x, y); z is absolute",
        "gsd_m": preset.gsd_m,
        "altitude_agl_m": plan.altitude_agl_m,
        "flight_height_m": plan.flight_z,
        "ground_height_m": t.base_z,
        "gimbal_pitch_deg": preset.gimbal_pitch_deg,
        "overlap": {
            "front_requested": preset.front_overlap,
            "side_requested": preset.side_overlap,
            "front": plan.front_overlap,
            "side": plan.side_overlap,
        },
        "flight": {
            "lines": plan.n_lines,
            "shots_per_line": plan.shots_per_line,
            "line_spacing_m": plan.line_spacing_m,
            "shot_spacing_m": plan.shot_spacing_m,
            "line_azimuth_grid_deg": preset.line_azimuth_deg,
            "speed_m_s": preset.speed_m_s,
            "home": [plan.home[0] + ox, plan.home[1] + oy, plan.home[2]],
            "aoi_corners": (plan.aoi_corners + np.array([ox, oy])).tolist(),
        },
        "clock": {
            "clock_offset_s": clock_offset_s,
            "definition": "camera clock (EXIF DateTimeOriginal read as UTC) = log clock (UTC) + clock_offset_s",
            "log_start_utc": LOG_START_UTC.isoformat(),
            "boot_unix_s": LOG_START_UTC.timestamp() - BOOT_BEFORE_LOG_S,
        },
        "clock_offset_s": clock_offset_s,
        "gps_noise": {
            "sigma_horizontal_m": preset.gps_sigma_h_m,
            "sigma_vertical_m": preset.gps_sigma_v_m,
            "stripped_from_images": options.no_gps,
            "note": "independent per image and axis; per-image draws are in images[].gps_noise_enu_m",
        },
        "image_noise_sigma_dn": preset.noise_sigma_dn,
        "jpeg_quality": preset.jpeg_quality,
        "supersample": preset.supersample,
        "attitude_jitter_deg": preset.attitude_jitter_deg,
        "camera": to_jsonable(camera),
        "camera_sensor": {
            "sensor_width_mm": preset.camera.sensor_width_mm,
            "focal_length_mm": preset.camera.focal_mm,
            "focal_length_35mm": preset.camera.focal_35mm,
        },
        "terrain": {
            "formula": "z = base_z + slope_x*xl + slope_y*yl + sum_i a_i*sin(kx_i*xl + ky_i*yl + phase_i); xl, yl local",
            "base_z": t.base_z,
            "slope_x": t.slope_x,
            "slope_y": t.slope_y,
            "amplitudes": list(t.amplitudes),
            "kx": list(t.kx),
            "ky": list(t.ky),
            "phases": list(t.phases),
        },
        "buildings": [
            {
                "index": b.index,
                "center": [b.cx + ox, b.cy + oy],
                "size_m": [2 * b.half_u, 2 * b.half_v],
                "rotation_deg": b.rotation_deg,
                "rotation_note": "footprint u axis, counter-clockwise from grid east",
                "footprint": (b.corners() + np.array([ox, oy])).tolist(),
                "base_z": b.base_z,
                "roof_z": b.roof_z,
                "bottom_z": b.bottom_z,
                "height_m": b.height_m,
                "roof": b.roof_kind.value,
                "roof_rgb": list(b.roof_rgb),
                "wall_rgb": list(b.wall_rgb),
            }
            for b in scene.buildings
        ],
        "gcps": [
            {
                "name": g.name,
                "x": g.x + ox,
                "y": g.y + oy,
                "z": g.z,
                "checkpoint": g.is_checkpoint,
                "lon_lat": [float(v) for v in projector.inverse(np.array([[g.x + ox, g.y + oy]]))[0][:2]],
                "target": f"{g.size_m:g} m square, 2x2 black/white checker, centre is the point",
                "rotation_deg": g.rotation_deg,
                "size_m": g.size_m,
                "observations": sum(1 for o in gcps.observations if o.point == g.name),
            }
            for g in scene.gcps
        ],
        "extent": [scene.extent[0] + ox, scene.extent[1] + oy, scene.extent[2] + ox, scene.extent[3] + oy],
        "truth_grid": {
            "crs": grid.crs,
            "x_min": grid.x_min,
            "y_max": grid.y_max,
            "resolution": grid.resolution,
            "width": grid.width,
            "height": grid.height,
        },
        "texture": {"resolution_m": texture.res, "width": texture.shape[1], "height": texture.shape[0]},
        "log": {"file": "logs/flight.tlog", "format": "MAVLink 2 tlog (ArduPilot dialect)", "rate_hz": 10, "packets": tlog_packets},
        "images": [
            {
                "name": s.name,
                "line": s.line,
                "log_time_unix": s.log_time_unix,
                "camera_time": s.camera_time_text,
                "camera_time_unix": s.camera_time_unix,
                "center": s.pose.center.tolist(),
                "lon_lat_alt": list(s.true_lon_lat_alt),
                "gps_lon_lat_alt": None if options.no_gps else list(s.gps_lon_lat_alt),
                "gps_noise_enu_m": list(s.gps_noise_enu_m),
                "gimbal_yaw_pitch_roll_deg": list(s.gimbal_yaw_pitch_roll),
                "flight_yaw_pitch_roll_deg": list(s.flight_yaw_pitch_roll),
                "grid_convergence_deg": s.grid_convergence_deg,
                "relative_altitude_m": s.relative_altitude_m,
            }
            for s in shots
        ],
    }


def _dump_json(data: Any) -> bytes:
    return (json.dumps(to_jsonable(data), indent=2) + "\n").encode("utf-8")


_IMAGE_NAME = re.compile(r"^IMG_\d{4}\.JPG$")


def _prepare_out_dir(out_dir: Path) -> None:
    """Create ``out_dir``; a previous synth output there is replaced, anything else is refused."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir} is a file; give a folder for the synthetic flight")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not (out_dir / "truth" / "scene.json").is_file():
            raise ConfigError(
                f"{out_dir} is not empty and holds no earlier synthetic flight (truth/scene.json); "
                "choose a new or empty folder"
            )
        images = out_dir / "images"
        stale = [p for p in images.iterdir() if _IMAGE_NAME.match(p.name)] if images.is_dir() else []
        for p in stale:
            p.unlink()
        logger.info("replacing the synthetic flight in %s (%d old images removed)", out_dir, len(stale))
    out_dir.mkdir(parents=True, exist_ok=True)


# -- the entry point ----------------------------------------------------------------------
def render_flight(out_dir: Path, options: SynthOptions | None = None) -> SynthResult:
    """Render a synthetic flight into ``out_dir`` (created); see the module docstring for the layout."""
    t_start = time.perf_counter()
    options = options or SynthOptions()
    if options.seed < 0:
        raise ConfigError(f"seed {options.seed}: use a non-negative integer")
    preset = resolve_preset(options)
    crs_obj = parse_crs(options.crs)
    if not crs_obj.is_projected:
        raise CRSError(
            f"CRS '{options.crs}' is not projected: the synthetic scene is defined in metres; "
            "use e.g. EPSG:32649 (UTM 49N) or EPSG:4547 (CGCS2000 3-degree GK CM 114E)"
        )
    crs = crs_label(crs_obj)
    projector = Projector.for_crs(crs_obj)
    c = projector.forward(np.array([options.center_lon]), np.array([options.center_lat]))[0]
    origin = (float(round(c[0])), float(round(c[1])))
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir)
    logger.info("synth: preset %s, seed %d, CRS %s -> %s", preset.name, options.seed, crs, out_dir)

    terrain = Terrain.random(
        _rng(options.seed, _STREAM_TERRAIN), preset.ground_height_m, preset.terrain_amplitudes_m, preset.terrain_wavelengths_m
    )
    plan = plan_flight(preset, terrain.base_z, lambda x, y: float(terrain.height(np.array(x), np.array(y))))
    camera = _camera(preset)
    frac_ms = int(_rng(options.seed, _STREAM_CLOCK).integers(100, 900))
    clock_offset_ms = CAMERA_UTC_OFFSET_H * 3_600_000 + frac_ms
    clock_offset_s = clock_offset_ms / 1000.0
    shots = _shots(plan, preset, projector, origin, options.seed, clock_offset_ms)

    # One grid for the truth rasters and the texture, snapped to whole cells of the GSD.
    ex = _extent(shots, camera, plan, terrain.base_z)
    ox, oy = origin
    grid = GridSpec.covering(crs, ex[0] + ox, ex[1] + oy, ex[2] + ox, ex[3] + oy, preset.gsd_m)
    left, bottom, right, top = grid.bounds
    extent_local = (left - ox, bottom - oy, right - ox, top - oy)
    oversample = max(1, int(round(preset.texture_oversample)))
    while oversample > 1 and grid.width * grid.height * oversample**2 > MAX_TEXELS:
        oversample -= 1
    tex_res = preset.gsd_m / oversample

    layout = make_layout(_rng(options.seed, _STREAM_LAYOUT), preset, terrain, plan.aoi_corners, extent_local)
    scene = Scene(
        crs=crs,
        origin=origin,
        terrain=terrain,
        buildings=layout.buildings,
        gcps=layout.gcps,
        extent=extent_local,
        aoi_corners=plan.aoi_corners,
    )
    t0 = time.perf_counter()
    workers = options.workers or min(4, os.cpu_count() or 1)
    texture = build_texture(layout, extent_local, tex_res, preset.gsd_m, _rng(options.seed, _STREAM_TEXTURE), workers)
    logger.info("texture painted in %.1f s", time.perf_counter() - t0)
    rays = RayGrid.build(camera, preset.supersample, workers=workers)

    images_dir = out_dir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    t_render = time.perf_counter()
    n = len(shots)

    def render_one(shot: ShotTruth) -> str:
        t1 = time.perf_counter()
        radiance = render_radiance(terrain, scene.buildings, texture, rays, shot.pose_local)
        data = _image_bytes(radiance, shot, preset, camera, options.seed, options.no_gps)
        write_bytes_atomic(images_dir / shot.name, data)
        logger.info("rendered %s (%d/%d) in %.2f s", shot.name, shot.index + 1, n, time.perf_counter() - t1)
        return shot.name

    if workers <= 1:
        for s in shots:
            render_one(s)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(render_one, shots))
    render_seconds = time.perf_counter() - t_render

    t0 = time.perf_counter()
    gcps = _gcp_set(scene, shots, camera, crs)
    write_bytes_atomic(out_dir / "gcp_list.txt", format_odm_gcp_list(gcps).encode("utf-8"))

    track = _flight_track(plan, shots, projector, origin)
    with atomic_path(out_dir / "logs" / "flight.tlog") as tmp:
        packets = write_tlog(
            tmp,
            track,
            boot_unix_s=LOG_START_UTC.timestamp() - BOOT_BEFORE_LOG_S,
            home_alt_m=plan.home[2],
            focal_length_mm=preset.camera.focal_mm,
        )

    logger.info("GCP observations and flight log written in %.1f s", time.perf_counter() - t0)
    t0 = time.perf_counter()
    truth_dir = out_dir / "truth"
    rec = Reconstruction(
        crs=crs,
        cameras={camera.camera_id: camera},
        images={s.name: RegisteredImage(s.name, camera.camera_id, s.pose) for s in shots},
    )
    write_bytes_atomic(truth_dir / "cameras.json", _dump_json(reconstruction_to_json(rec)))
    scene_doc = _scene_json(
        options=options,
        preset=preset,
        crs=crs,
        scene=scene,
        plan=plan,
        camera=camera,
        shots=shots,
        grid=grid,
        texture=texture,
        clock_offset_s=clock_offset_s,
        projector=projector,
        gcps=gcps,
        tlog_packets=packets,
    )
    write_bytes_atomic(truth_dir / "scene.json", _dump_json(scene_doc))
    raster_paths = write_truth_rasters(truth_dir, grid, scene, texture, preset.supersample, workers)
    logger.info("truth written in %.1f s (rasters %d x %d at %.2f cm)", time.perf_counter() - t0, grid.width, grid.height, 100 * grid.resolution)

    seconds = time.perf_counter() - t_start
    paths = {
        "images": images_dir,
        "gcp_list": out_dir / "gcp_list.txt",
        "tlog": out_dir / "logs" / "flight.tlog",
        "scene": truth_dir / "scene.json",
        "cameras": truth_dir / "cameras.json",
        **raster_paths,
    }
    result = SynthResult(
        out_dir=out_dir,
        preset=preset.name,
        crs=crs,
        seed=options.seed,
        n_images=n,
        image_size=(camera.width, camera.height),
        gsd_m=preset.gsd_m,
        altitude_agl_m=plan.altitude_agl_m,
        n_lines=plan.n_lines,
        shots_per_line=plan.shots_per_line,
        front_overlap=plan.front_overlap,
        side_overlap=plan.side_overlap,
        gimbal_pitch_deg=preset.gimbal_pitch_deg,
        no_gps=options.no_gps,
        clock_offset_s=clock_offset_s,
        n_control=sum(1 for g in scene.gcps if not g.is_checkpoint),
        n_checkpoints=sum(1 for g in scene.gcps if g.is_checkpoint),
        n_gcp_observations=len(gcps.observations),
        n_buildings=len(scene.buildings),
        seconds=seconds,
        render_seconds=render_seconds,
        paths=paths,
    )
    logger.info("synth finished in %.1f s", seconds)
    return result
