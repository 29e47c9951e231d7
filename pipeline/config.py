"""Typed, frozen configuration with YAML preset overlays.

Defaults live here, one commented field at a time. ``configs/<preset>.yaml``
and ``--config FILE.yaml`` overlay them; an unknown key or a value of the
wrong type is a :class:`ConfigError` that names the dotted key. Code reads
fields as attributes, never by string.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from models.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

T = TypeVar("T")


class Preset(str, enum.Enum):
    FAST = "fast"
    DEFAULT = "default"
    HIGH = "high"


class Mapper(str, enum.Enum):
    INCREMENTAL = "incremental"  # pycolmap incremental mapping with pose priors
    GLOBAL = "global"  # pycolmap global mapping (GLOMAP)


class FeatureExtractor(str, enum.Enum):
    OPENCV_SIFT = "opencv_sift"  # OpenCV SIFT with RootSIFT descriptors (about 8x faster on CPU)
    COLMAP_SIFT = "colmap_sift"  # pycolmap's SIFT (VLFeat-style), slower on CPU


class GroundFilter(str, enum.Enum):
    SMRF = "smrf"  # simple morphological filter (Pingel et al. 2013)
    CSF = "csf"  # cloth simulation filter (Zhang et al. 2016)


class Compression(str, enum.Enum):
    JPEG = "jpeg"
    DEFLATE = "deflate"


class Interpolation(str, enum.Enum):
    BILINEAR = "bilinear"  # 2x2 neighbourhood: fast, slightly soft
    BICUBIC = "bicubic"  # 4x4 neighbourhood: sharper, about 3x the sampling time


@dataclass(frozen=True)
class InputsConfig:
    """What to process: filled from the command line, rarely from YAML."""

    # Flight folder: images directly or in images/, optionally logs/, gcp_list.txt, geo.txt.
    flight_dir: str = ""
    # Output CRS: 'auto' (UTM zone of the flight) or any EPSG code, e.g. 'EPSG:4547'.
    crs: str = "auto"
    # GCP file (ODM gcp_list.txt or CSV); empty means <flight>/gcp_list.txt when present.
    gcp_file: str = ""
    # GCP names to treat as checkpoints (in addition to names starting with CHK).
    checkpoints: tuple[str, ...] = ()
    # Flight logs to geotag from; empty means every file in <flight>/logs/.
    logs: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunConfig:
    """Execution: Dask cluster and resources."""

    # Dask workers for the in-process LocalCluster; 0 means one per CPU core.
    workers: int = 0
    # Threads per Dask worker.
    threads_per_worker: int = 1
    # Local workers as separate processes instead of threads of this one: no shared Python
    # lock, so the numpy-heavy tasks scale with the cores (the ortho bench's tile phase at half
    # the GSD: 4.6 -> 3.2 s on 2 cores); costs worker start-up and per-process caches.
    processes: bool = False
    # Memory limit per local worker, e.g. '4GiB'; 'auto' splits the machine's memory.
    memory_limit: str = "auto"
    # Seconds to wait for a remote scheduler (--scheduler) to answer and to have a worker.
    scheduler_timeout_s: float = 30.0


@dataclass(frozen=True)
class IngestConfig:
    """Reading images, logs and GCPs."""

    # Horizontal 1-sigma accuracy assumed for consumer GPS without stated accuracy (m).
    default_gps_std_horizontal_m: float = 3.0
    # Vertical 1-sigma accuracy assumed for consumer GPS without stated accuracy (m).
    default_gps_std_vertical_m: float = 5.0
    # A log fix implying a speed above this is a spike and is dropped (m/s).
    max_speed_mps: float = 60.0
    # Manual camera-minus-log clock offset (s); None estimates it automatically.
    clock_offset_s: float | None = None
    # Longest gap between log fixes that interpolation may bridge (s).
    max_interpolation_gap_s: float = 5.0
    # Ground height of the site (m, in the images' height reference); None finds it from
    # DJI RelativeAltitude, else from image motion. Used for footprints, GSD and overlap.
    ground_height_m: float | None = None
    # Estimate the ground height from image motion when no image carries RelativeAltitude
    # (decodes a few 1/4-size previews, about a second).
    ground_from_image_motion: bool = True


@dataclass(frozen=True)
class FeaturesConfig:
    """Feature extraction."""

    # Longest image side used for features (px); 0 means full resolution.
    max_image_size: int = 2000
    # Most SIFT features kept per image.
    max_num_features: int = 8192
    # SIFT implementation.
    extractor: FeatureExtractor = FeatureExtractor.OPENCV_SIFT
    # colmap_sift only: also detect on a 2x upsampled image (first octave -1); more small features, ~3x slower.
    upsample: bool = False


@dataclass(frozen=True)
class MatchingConfig:
    """Candidate pairs and matching."""

    # Nearest GPS neighbours each image is paired with.
    gps_neighbors: int = 8
    # Pair only images whose centres are closer than this (m); 0 disables the limit.
    max_gps_distance_m: float = 300.0
    # Minimum ground-footprint overlap (fraction of the smaller footprint) for a pair.
    min_footprint_overlap: float = 0.05
    # Pairs per Dask matching task.
    pairs_per_task: int = 16
    # Minimum geometrically verified inliers for a pair to count.
    min_inliers: int = 15
    # Lowe's ratio test: best / second-best descriptor distance must be below this.
    max_ratio: float = 0.8
    # Keep only mutual nearest-neighbour matches.
    cross_check: bool = True
    # RANSAC inlier threshold of geometric verification (full-resolution pixels).
    max_error_px: float = 4.0
    # Without GPS: each image is paired with this many following images (capture order).
    sequential_overlap: int = 10
    # Without GPS: match every pair when the flight has at most this many images.
    exhaustive_max_images: int = 120
    # Without GPS and above exhaustive_max_images: images retrieved per image by a visual vocabulary.
    retrieval_neighbors: int = 15


@dataclass(frozen=True)
class SfmConfig:
    """Structure from motion and georegistration."""

    # Mapping algorithm. Both register 18/18 and 31/31 on the shared flights in the same time;
    # incremental leaves a slightly lower reprojection error (0.88/1.00 px vs 0.88/1.04 before BA).
    mapper: Mapper = Mapper.INCREMENTAL
    # Refine the principal point in bundle adjustment (guards against doming).
    refine_principal_point: bool = True
    # Refine k1, k2, p1, p2 in bundle adjustment.
    refine_distortion: bool = True
    # Refine the focal length only when that lowers the mean reprojection error by this fraction;
    # otherwise keep the EXIF value (a nadir block over flat ground cannot tell focal from height).
    focal_min_gain: float = 0.02
    # A registered image further than this many GPS sigmas from its GPS is a misregistration.
    misregistration_sigmas: float = 5.0
    # 1-sigma accuracy of a GCP's ground coordinates (m).
    gcp_std_m: float = 0.02
    # 1-sigma accuracy of a GCP's image measurement (px).
    gcp_pixel_std: float = 1.0
    # Use the GPS positions as pose priors in the global bundle adjustments.
    use_gps_priors: bool = True
    # Also use them inside incremental mapping (pycolmap's prior BA at every global BA: same
    # result on the shared flights, about 4x slower); off, the priors enter the final adjustment.
    priors_in_mapping: bool = False
    # A model must hold at least this many images to be kept.
    min_model_size: int = 3
    # Unregistered image with fewer features than this: reason 'too_few_features'.
    min_features: int = 500
    # Unregistered image whose sharpness is below this fraction of the flight median: reason 'blur'.
    blur_ratio: float = 0.35
    # Most iterations of each global bundle adjustment after mapping (intrinsics, priors, GCPs).
    ba_max_iterations: int = 100


@dataclass(frozen=True)
class DenseConfig:
    """Depth maps and fusion."""

    # Depth-map resolution as a fraction of full image resolution.
    depth_scale: float = 0.25
    # Neighbour views per reference image.
    num_neighbors: int = 4
    # Views that must agree on a depth for it to survive (the reference counts as one).
    min_consistent_views: int = 2
    # Side of a fusion tile (m).
    fusion_tile_m: float = 100.0
    # Neighbour selection: shared sparse points with a triangulation angle below this count nothing (deg).
    min_angle_deg: float = 3.0
    # Neighbour selection: the angle weight reaches its maximum here (deg).
    optimal_angle_deg: float = 12.0
    # Neighbour selection: shared points with a larger triangulation angle count nothing (deg);
    # wider pairs need disparity searches beyond max_disparities at low flying heights.
    max_angle_deg: float = 30.0
    # Neighbour selection: fraction of the reference's sparse points a neighbour must also see.
    min_overlap: float = 0.2
    # StereoSGBM block size (odd, pixels at depth-map scale).
    block_size: int = 5
    # Cap on the SGBM disparity search range (pixels at depth-map scale).
    max_disparities: int = 256
    # SGBM uniqueness: the best match cost must beat the second best by this percentage.
    uniqueness_ratio: int = 10
    # SGBM speckle filter: disparity regions smaller than this (px) are dropped; 0 disables it
    # (multi-view consistency removes the noise instead, and keeps the fine relief of tree crowns).
    speckle_window: int = 0
    # A coarse wide stereo probe per image searches down to this fraction of the sparse points'
    # nearest depth, so surfaces without tie points (tree crowns) stay in range; 0 disables it.
    probe_near_fraction: float = 0.5
    # Relative depth difference within which two views agree (0.01 = 1% of the depth).
    depth_tolerance: float = 0.01
    # Fusion voxel side as a multiple of the GSD divided by depth_scale (1.0 = one depth-map pixel).
    fusion_voxel_factor: float = 0.5
    # Statistical outlier removal: neighbours per point.
    outlier_neighbors: int = 16
    # Statistical outlier removal: points beyond mean + ratio * std of the neighbour distance go.
    outlier_std_ratio: float = 2.0


@dataclass(frozen=True)
class DemConfig:
    """DSM and DTM gridding."""

    # DEM cell size as a multiple of the GSD.
    resolution_gsd_factor: float = 2.0
    # Ground classification method.
    ground_filter: GroundFilter = GroundFilter.SMRF
    # Holes up to this many cells across are filled by interpolation; larger stay nodata.
    max_hole_cells: int = 20
    # ... or up to this many metres across, whichever is more (patchy tree crowns at a fine GSD).
    max_hole_m: float = 3.0
    # Tile side in cells for gridding tasks.
    tile_size: int = 1024
    # Percentile of the point heights in a cell that becomes its DSM height.
    dsm_percentile: float = 75.0
    # Median filter applied to the DSM (0 for none, 3 or 5).
    dsm_median: int = 3
    # The DTM is interpolated from ground points on cells of about this size (m), then resampled.
    dtm_cell_m: float = 1.0
    # SMRF minimum-surface cell (m).
    smrf_cell_m: float = 1.0
    # SMRF slope: terrain steeper than this rise over run is not ground.
    smrf_slope: float = 0.15
    # SMRF largest window radius (m); objects up to about twice this wide are found.
    smrf_window_m: float = 18.0
    # SMRF elevation threshold (m) of the final point test.
    smrf_threshold: float = 0.5
    # SMRF elevation scalar: extra tolerance per unit of local slope.
    smrf_scalar: float = 1.25
    # SMRF's surface takes this percentile of the heights in a cell instead of the minimum:
    # photogrammetric clouds have stray low points that a minimum surface turns into pits.
    smrf_cell_percentile: float = 10.0
    # SMRF's opening also removes raised terrain narrower than twice its window (a lawn on a
    # bench above a shore); ground grows back into such cells from the ground next to them
    # across steps of at most this rise over run (0 turns growth off) ...
    ground_grow_slope: float = 0.5
    # ... but not into cells whose points spread over more than this height (m, 10-90 %):
    # vegetation. Walls and tree crowns are steps that growth does not climb ...
    ground_grow_max_spread_m: float = 0.5
    # ... nor into objects narrower than this (m): cars, tree crowns, sheds stay objects
    # (the opening radius that flags a cell is about half the width of its object).
    ground_grow_min_width_m: float = 12.0
    # Cloth resolution (m) when ground_filter is csf.
    csf_cloth_resolution: float = 1.0
    # Non-ground points at least this far above the ground can be building (m).
    building_min_height_m: float = 2.0
    # Smallest building footprint (m^2).
    building_min_area_m2: float = 12.0
    # Largest median RMS residual (m) of 2.5 m local planes inside a roof region; tree crowns
    # are rougher and stay unclassified.
    building_max_roughness_m: float = 0.10


@dataclass(frozen=True)
class OrthoConfig:
    """Orthomosaic."""

    # Ortho cell size as a multiple of the GSD.
    gsd_factor: float = 1.0
    # Tile side in pixels for orthorectification tasks.
    tile_size: int = 1024
    # Compression of orthophoto.tif.
    compression: Compression = Compression.JPEG
    # JPEG quality when compression is jpeg.
    jpeg_quality: int = 90
    # How image pixels are interpolated when sampled onto the ortho grid.
    interpolation: Interpolation = Interpolation.BILINEAR
    # Seam-solve cell size as a multiple of the flight GSD (coarser is faster; seams stay smooth
    # because blending hides the cell steps).
    seam_cell_gsd: float = 16.0
    # ... and at least this size (m): seams only need to resolve buildings, cars and trees.
    seam_cell_min_m: float = 0.5
    # Upper bound on seam-grid cells for the whole flight; the seam cell grows to respect it,
    # which keeps the flight-level seam solve's memory bounded.
    seam_max_cells: int = 4_000_000
    # Alpha-expansion sweeps of the seam solve (each tries every image once).
    seam_sweeps: int = 2
    # Weight of seam cost against view quality: higher gives shorter seams, lower more nadir views.
    seam_weight: float = 1.0
    # Seam cost over cells that stand above the local ground (buildings, trees), per metre of seam.
    seam_height_weight: float = 8.0
    # Seam cost of the colour difference between the two images (per 10 grey levels, per metre).
    seam_colour_weight: float = 1.0
    # View cost weight of tan(off-nadir angle).
    view_angle_weight: float = 1.0
    # View cost weight of ground resolution loss (distance beyond the nadir GSD).
    view_gsd_weight: float = 0.5
    # View cost weight of image blur (relative to the flight's median sharpness).
    view_sharpness_weight: float = 0.5
    # Samples this far (m) behind the DSM z-buffer surface still count as visible.
    occlusion_tolerance_m: float = 0.5
    # Height step (m) in the DSM above which a cell takes the nearest DSM height rather than a
    # bilinear ramp down the wall (keeps building edges crisp).
    dsm_edge_step_m: float = 1.0
    # Occlusion is tested against the DSM max-pooled to cells of about this many pixels of the
    # ortho or, when the ortho is finer than the flight's GSD, of the images (finer cells would add
    # no image detail, only occluders); the z-buffer cell follows. Coarser is faster and more
    # conservative: a little more ground is taken from other images.
    occlusion_cell_px: float = 2.0
    # Ground that no image sees unoccluded (behind a building at the edge of the flight) takes the
    # smooth colour of the ground around it instead of showing the wall that hides it.
    fill_occluded: bool = True
    # ... unless the best image hides it by less than this (m): then that image is kept (rough
    # canopies and DSM noise hide ground by little; a building's wall by metres).
    fill_hidden_m: float = 2.0
    # Ground that no image sees, in a pit of the DSM (the surface climbs above it within this many
    # metres in each of 8 directions), is looked for again at the height of the pit's rim: a pit in
    # a tree canopy is most often a hole in the DSM, not ground the crowns hide, and an image that
    # sees the rim's height there gives the canopy's own texture instead of a smooth fill. Ground
    # beside a wall, in a corner or in an alley is open in some direction and is still filled; an
    # enclosed courtyard this narrow that no image sees would take its rim's view. 0 turns it off.
    pit_lift_m: float = 3.0
    # Gaussian sigma (ortho pixels) over which brightness and colour cross a seam.
    blend_sigma_px: float = 48.0
    # Ortho pixels per cell of the coarse grid used for the low band of the blend (16: the
    # blend's sigma spans three cells, enough for a smooth Gaussian; finer costs 4x per halving).
    blend_low_factor: int = 16
    # Balance exposure with one gain per image and channel, solved from overlaps.
    exposure_balance: bool = True
    # Also fit and remove brightness that varies across the frame: the lens fall-off per camera
    # (exp(a1 r^2 + a2 r^4)) and a smooth quadratic field per image (hot spot, sun angle).
    shading_correction: bool = True
    # Keep the decoded-image cache in work/ortho/images after the stage (faster reruns, more disk).
    keep_image_cache: bool = False
    # Long side (px) of orthophoto_preview.png.
    preview_size_px: int = 2000


@dataclass(frozen=True)
class Config:
    """The whole configuration of one run."""

    # Inputs of the run (command-line driven).
    inputs: InputsConfig = field(default_factory=InputsConfig)
    # Execution resources.
    run: RunConfig = field(default_factory=RunConfig)
    # Ingest and georeferencing.
    ingest: IngestConfig = field(default_factory=IngestConfig)
    # Feature extraction.
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    # Pair selection and matching.
    matching: MatchingConfig = field(default_factory=MatchingConfig)
    # Structure from motion.
    sfm: SfmConfig = field(default_factory=SfmConfig)
    # Dense reconstruction.
    dense: DenseConfig = field(default_factory=DenseConfig)
    # DSM / DTM.
    dem: DemConfig = field(default_factory=DemConfig)
    # Orthomosaic.
    ortho: OrthoConfig = field(default_factory=OrthoConfig)

    def values(self, dotted: str) -> Any:
        """The plain-data value of a section or field, for manifests: 'sfm' or 'dem.tile_size'."""
        obj: Any = self
        for part in dotted.split("."):
            obj = getattr(obj, part)
        return _plain(obj)


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, tuple):
        return [_plain(v) for v in obj]
    return obj


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"config key '{key}': invalid value {value!r}")
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            choices = ", ".join(str(m.value) for m in tp)
            raise ConfigError(f"config key '{key}': {value!r} is not one of {choices}") from None
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        (arg, *_rest) = get_args(tp)
        return tuple(_coerce(arg, v, f"{key}[{i}]") for i, v in enumerate(value))
    raise ConfigError(f"config key '{key}': unsupported type {tp!r}")


def overlay(base: T, data: Any, prefix: str = "") -> T:
    """Return ``base`` with the values of ``data`` (a nested mapping) applied."""
    if data is None:
        return base
    if not isinstance(data, dict):
        where = f"section '{prefix}'" if prefix else "the top level"
        raise ConfigError(f"config {where} must be a mapping of keys to values, got {data!r}")
    assert dataclasses.is_dataclass(base) and not isinstance(base, type)
    hints = get_type_hints(type(base))
    names = {f.name for f in dataclasses.fields(base)}
    changes: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            known = ", ".join(sorted(names))
            raise ConfigError(f"unknown config key '{dotted}' (known keys here: {known})")
        current = getattr(base, key)
        if dataclasses.is_dataclass(current):
            changes[key] = overlay(current, value, dotted)
        else:
            changes[key] = _coerce(hints[key], value, dotted)
    return typing.cast(T, dataclasses.replace(typing.cast(Any, base), **changes))


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc


def load_config(preset: Preset | str = Preset.DEFAULT, config_file: Path | None = None, config_dir: Path | None = None) -> Config:
    """Typed defaults, then the preset YAML, then the user's YAML."""
    try:
        preset_enum = Preset(preset)
    except ValueError:
        raise ConfigError(f"unknown preset '{preset}': choose fast, default or high") from None
    cfg = Config()
    preset_path = (config_dir or CONFIG_DIR) / f"{preset_enum.value}.yaml"
    if preset_path.exists():
        try:
            cfg = overlay(cfg, read_yaml(preset_path))
        except ConfigError as exc:
            raise ConfigError(f"{preset_path}: {exc}") from None
    if config_file is not None:
        try:
            cfg = overlay(cfg, read_yaml(config_file))
        except ConfigError as exc:
            raise ConfigError(f"{config_file}: {exc}") from None
    return cfg


def with_inputs(cfg: Config, **changes: Any) -> Config:
    """Replace fields of the inputs section (from the command line)."""
    return dataclasses.replace(cfg, inputs=dataclasses.replace(cfg.inputs, **changes))


def describe(cfg: Config) -> dict[str, Any]:
    """The whole config as plain data (for logs and stats)."""
    return typing.cast(dict[str, Any], _plain(cfg))
