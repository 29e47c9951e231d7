"""Presets of the synthetic flight generator: camera, flight plan and scene parameters.

A preset is a frozen value. :class:`SynthOptions` (the public entry point's options)
picks one by name and may override the flight-plan figures a user would change
to check a configuration: overlaps, height above ground, gimbal pitch, GPS noise.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, replace

from models.errors import ConfigError


class SceneKind(str, enum.Enum):
    """What the ground looks like."""

    RURAL = "rural"  # strip fields, a road, a dirt track, farm buildings
    TOWN = "town"  # a street grid with sidewalks, cars, courtyards and a dense block of buildings


@dataclass(frozen=True)
class CameraSpec:
    """A pinhole camera with OpenCV (k1, k2, p1, p2) distortion."""

    width: int
    height: int
    focal_px: float  # fx = fy
    cx_offset_frac: float  # principal point offset from the image centre, fraction of the width
    cy_offset_frac: float  # ... fraction of the height
    k1: float
    k2: float
    p1: float
    p2: float
    sensor_width_mm: float  # physical sensor width (sets FocalLength in mm and FocalPlaneXResolution)
    make: str = "Aerobase"
    model: str = "SynthCam"

    @property
    def pixel_pitch_mm(self) -> float:
        return self.sensor_width_mm / self.width

    @property
    def focal_mm(self) -> float:
        return self.focal_px * self.pixel_pitch_mm

    @property
    def focal_35mm(self) -> int:
        """35 mm equivalent focal length, width based (36 mm), as DJI writes it."""
        return int(round(self.focal_px / self.width * 36.0))

    @property
    def cx(self) -> float:
        return (self.width - 1) / 2.0 + self.cx_offset_frac * self.width

    @property
    def cy(self) -> float:
        return (self.height - 1) / 2.0 + self.cy_offset_frac * self.height


@dataclass(frozen=True)
class FlightPreset:
    """Everything one preset fixes; the seed only varies the scene's random content."""

    name: str
    camera: CameraSpec
    scene_kind: SceneKind
    gsd_m: float  # nominal ground sample distance at the flight height above the mean ground
    front_overlap: float  # along-track overlap of consecutive images (0..1)
    side_overlap: float  # overlap of neighbouring lines (0..1)
    aoi_across_m: float  # width of the area the image centres span, across the flight lines
    aoi_along_m: float  # length of the area the image centres span, along the lines
    line_azimuth_deg: float  # grid azimuth of the flight lines (clockwise from grid north)
    speed_m_s: float  # horizontal cruise speed
    climb_speed_m_s: float  # vertical speed of take-off and landing
    run_in_m: float  # straight flight before the first and after the last shot of a line
    n_buildings: int  # buildings in the scene (a town fills at most this many lots, nearest the centre first)
    building_height_m: tuple[float, float]  # min, max height above ground
    building_size_m: tuple[float, float]  # min, max footprint side
    town_rotation_deg: float  # street grid rotation from grid north (town scenes)
    terrain_amplitudes_m: tuple[float, ...]  # relief waves: amplitude per wave
    terrain_wavelengths_m: tuple[float, ...]  # relief waves: wavelength per wave
    ground_height_m: float  # mean ellipsoidal height of the ground
    n_control: int  # GCPs used as control
    n_checkpoints: int  # GCPs kept as checkpoints (names start with CHK)
    gps_sigma_h_m: float  # EXIF GPS noise, horizontal 1-sigma per axis
    gps_sigma_v_m: float  # EXIF GPS noise, vertical 1-sigma
    attitude_jitter_deg: float  # 1-sigma deviation of the true gimbal angles from nominal
    noise_sigma_dn: float  # Gaussian sensor noise, digital numbers (0..255)
    jpeg_quality: int
    supersample: int  # rays per pixel side (2 -> 4 rays per pixel)
    texture_oversample: float  # texels per GSD of the ground texture raster
    gimbal_pitch_deg: float = -90.0

    @property
    def altitude_agl_m(self) -> float:
        return self.gsd_m * self.camera.focal_px

    @property
    def footprint_across_m(self) -> float:
        """Nadir ground footprint across the track (image width: the image top points along the track)."""
        return self.camera.width * self.gsd_m

    @property
    def footprint_along_m(self) -> float:
        return self.camera.height * self.gsd_m


_CAMERA = CameraSpec(
    width=1600,
    height=1200,
    focal_px=1440.0,
    cx_offset_frac=0.0152,
    cy_offset_frac=-0.0181,
    k1=-0.078,
    k2=0.0125,
    p1=0.00062,
    p2=-0.00041,
    sensor_width_mm=13.2,
)

_TINY_CAMERA = CameraSpec(
    width=400,
    height=300,
    focal_px=360.0,
    cx_offset_frac=0.0152,
    cy_offset_frac=-0.0181,
    k1=-0.078,
    k2=0.0125,
    p1=0.00062,
    p2=-0.00041,
    sensor_width_mm=13.2,
)

PRESETS: dict[str, FlightPreset] = {
    # ~16 images of 1600x1200 at 4 cm GSD (57.6 m above ground): renders in seconds.
    "small": FlightPreset(
        name="small",
        camera=_CAMERA,
        scene_kind=SceneKind.RURAL,
        gsd_m=0.04,
        front_overlap=0.75,
        side_overlap=0.65,
        aoi_across_m=3 * 22.4,
        aoi_along_m=3 * 12.0,
        line_azimuth_deg=0.0,
        speed_m_s=5.0,
        climb_speed_m_s=3.0,
        run_in_m=12.0,
        n_buildings=7,
        building_height_m=(4.0, 12.0),
        building_size_m=(7.0, 18.0),
        town_rotation_deg=0.0,
        terrain_amplitudes_m=(2.0, 0.6, 0.25),
        terrain_wavelengths_m=(260.0, 120.0, 60.0),
        ground_height_m=100.0,
        n_control=5,
        n_checkpoints=3,
        gps_sigma_h_m=0.5,
        gps_sigma_v_m=1.0,
        attitude_jitter_deg=0.3,
        noise_sigma_dn=2.0,
        jpeg_quality=92,
        supersample=2,
        texture_oversample=2.0,
    ),
    # ~60 images of 1600x1200 at 5 cm GSD (72 m above ground) over a town block, for benchmarks.
    "medium": FlightPreset(
        name="medium",
        camera=_CAMERA,
        scene_kind=SceneKind.TOWN,
        gsd_m=0.05,
        front_overlap=0.75,
        side_overlap=0.65,
        aoi_across_m=5 * 28.0,
        aoi_along_m=9 * 15.0,
        line_azimuth_deg=0.0,
        speed_m_s=6.0,
        climb_speed_m_s=3.0,
        run_in_m=15.0,
        n_buildings=60,
        building_height_m=(3.5, 27.0),
        building_size_m=(8.0, 24.0),
        town_rotation_deg=14.0,
        terrain_amplitudes_m=(1.5, 0.4, 0.15),
        terrain_wavelengths_m=(320.0, 150.0, 75.0),
        ground_height_m=100.0,
        n_control=5,
        n_checkpoints=3,
        gps_sigma_h_m=0.5,
        gps_sigma_v_m=1.0,
        attitude_jitter_deg=0.3,
        noise_sigma_dn=2.0,
        jpeg_quality=92,
        supersample=2,
        texture_oversample=2.0,
    ),
    # 4 images of 400x300 for smoke tests of the whole generator (not a CLI choice).
    "tiny": FlightPreset(
        name="tiny",
        camera=_TINY_CAMERA,
        scene_kind=SceneKind.RURAL,
        gsd_m=0.16,
        front_overlap=0.75,
        side_overlap=0.65,
        aoi_across_m=22.4,
        aoi_along_m=12.0,
        line_azimuth_deg=0.0,
        speed_m_s=5.0,
        climb_speed_m_s=3.0,
        run_in_m=12.0,
        n_buildings=4,
        building_height_m=(4.0, 12.0),
        building_size_m=(7.0, 14.0),
        town_rotation_deg=0.0,
        terrain_amplitudes_m=(2.0, 0.6, 0.25),
        terrain_wavelengths_m=(260.0, 120.0, 60.0),
        ground_height_m=100.0,
        n_control=2,
        n_checkpoints=1,
        gps_sigma_h_m=0.5,
        gps_sigma_v_m=1.0,
        attitude_jitter_deg=0.3,
        noise_sigma_dn=2.0,
        jpeg_quality=92,
        supersample=2,
        texture_oversample=2.0,
    ),
}


@dataclass(frozen=True)
class SynthOptions:
    """What ``aerobase synth`` was asked to render. ``None`` keeps the preset's value."""

    preset: str = "small"  # "small" (~16 images), "medium" (~60 images, a town), "tiny" (tests)
    crs: str = "EPSG:32649"  # projected CRS the scene is defined in (UTM 49N; EPSG:4547 is CGCS2000 GK CM 114E)
    seed: int = 0  # seeds every random choice; the same seed gives byte-identical output
    no_gps: bool = False  # strip GPS (EXIF GPS IFD and XMP AbsoluteAltitude) from the images
    oblique_deg: float | None = None  # gimbal pitch in degrees (-90 nadir, e.g. -60 oblique)
    front_overlap: float | None = None  # along-track overlap, 0..1
    side_overlap: float | None = None  # across-track overlap, 0..1
    altitude_agl_m: float | None = None  # flight height above the mean ground (sets the GSD)
    gps_sigma_h_m: float | None = None  # EXIF GPS horizontal noise (1-sigma per axis), metres
    gps_sigma_v_m: float | None = None  # EXIF GPS vertical noise (1-sigma), metres
    center_lon: float = 113.65  # scene centre, WGS84 degrees (default near Zhengzhou)
    center_lat: float = 34.75
    workers: int | None = None  # images rendered in parallel (default: CPU cores, at most 4)


def resolve_preset(options: SynthOptions) -> FlightPreset:
    """The preset named by ``options`` with its overrides applied and checked."""
    base = PRESETS.get(options.preset)
    if base is None:
        raise ConfigError(f"unknown synth preset '{options.preset}': choose one of {', '.join(sorted(PRESETS))}")
    preset = base
    if options.front_overlap is not None:
        preset = replace(preset, front_overlap=float(options.front_overlap))
    if options.side_overlap is not None:
        preset = replace(preset, side_overlap=float(options.side_overlap))
    if options.altitude_agl_m is not None:
        if not 5.0 <= options.altitude_agl_m <= 1000.0:
            raise ConfigError(f"altitude_agl_m={options.altitude_agl_m}: choose a height between 5 and 1000 m")
        preset = replace(preset, gsd_m=float(options.altitude_agl_m) / preset.camera.focal_px)
    if options.gps_sigma_h_m is not None:
        preset = replace(preset, gps_sigma_h_m=float(options.gps_sigma_h_m))
    if options.gps_sigma_v_m is not None:
        preset = replace(preset, gps_sigma_v_m=float(options.gps_sigma_v_m))
    if options.oblique_deg is not None:
        pitch = float(options.oblique_deg)
        if not -90.0 <= pitch <= -30.0:
            raise ConfigError(
                f"--oblique {pitch:g}: gimbal pitch must lie between -90 (nadir) and -30 degrees; "
                "a shallower camera sees mostly sky and far-off ground outside the scene"
            )
        preset = replace(preset, gimbal_pitch_deg=pitch)
    for name, value in (("front_overlap", preset.front_overlap), ("side_overlap", preset.side_overlap)):
        if not 0.0 <= value <= 0.95:
            raise ConfigError(f"{name}={value}: an overlap is a fraction between 0 and 0.95")
    if preset.gps_sigma_h_m < 0 or preset.gps_sigma_v_m < 0:
        raise ConfigError("GPS noise sigmas must be >= 0")
    if not (-180.0 <= options.center_lon <= 180.0 and -80.0 <= options.center_lat <= 84.0):
        raise ConfigError(f"scene centre lon={options.center_lon}, lat={options.center_lat} is not a valid position")
    if math.isnan(preset.gsd_m) or preset.gsd_m <= 0:
        raise ConfigError("the GSD must be positive")
    return preset
