"""The workspace: one object that owns every path of an output folder.

Loads and saves use symmetric names (``load_x`` / ``save_x`` / ``x_exists``).
Every file is written under a temporary name in the same folder and renamed
into place, so a killed run never leaves a half-written file under a final
name. Stages never build paths by hand; Dask tasks receive the workspace (a
small picklable value) and call the same methods on the worker.

Layout::

    OUT/
      orthophoto.tif  dsm.tif  dtm.tif  pointcloud.laz  pointcloud.copc.laz
      sparse.laz  cameras.geojson  stats.json  aerobase.log
      work/<stage>/...          intermediate files, one folder per stage
      work/<stage>/manifest.json
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

import numpy as np
from numpy.typing import NDArray

from drone_io.cog_blocks import BlockPlan, TileBlocks, write_tile_blocks
from drone_io.depthmap_io import read_depthmap, write_depthmap
from drone_io.reconstruction_io import (
    read_points_npz,
    reconstruction_from_json,
    reconstruction_to_json,
    write_points_npz,
)
from models.camera import CameraModel
from models.codec import from_jsonable, to_jsonable
from models.depthmap import DepthMap
from models.errors import InputError, WorkspaceError
from models.features import ImageFeatures, PairGeometry, PairMatches, PairStat
from models.gcp import GcpSet
from models.image import ImageRecord, SkippedItem
from models.raster import GridSpec, Window
from models.reconstruction import Reconstruction
from models.sfm_report import SfmReport
from models.track import FlightTrack
from pipeline.dem.ground import GroundSurface
from pipeline.dem.surfaces import SurfaceTile
from pipeline.dense.fusion import FusedPoints
from pipeline.dense.records import DenseIndex, FusionIndex
from pipeline.dense.tiles import TileKey
from pipeline.dense.views import ViewPlan

MANIFEST_NAME = "manifest.json"


# -- atomic writes -----------------------------------------------------------------
@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it into place on success.

    The temporary name keeps the final suffix so format-by-extension writers
    (GDAL, laspy) behave. On an exception the temporary file is removed.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{uuid.uuid4().hex[:12]}-{final.name}"
    try:
        yield tmp
        if not tmp.exists():
            raise WorkspaceError(f"writer produced no file for {final}")
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink()


def write_bytes_atomic(final: Path, data: bytes) -> None:
    with atomic_path(final) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def write_json_atomic(final: Path, data: Any) -> None:
    write_bytes_atomic(final, json.dumps(to_jsonable(data), indent=2, sort_keys=False).encode("utf-8"))


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, json.JSONDecodeError) as exc:
        raise WorkspaceError(f"workspace file {path} is unreadable ({exc}); rerun with --rerun-from for its stage") from exc


def fingerprint(path: Path) -> str:
    """A cheap content fingerprint: size, mtime and a hash of the first and last 64 KiB."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        return "missing"
    if p.is_dir():
        h = hashlib.blake2b(digest_size=12)
        for child in sorted(p.rglob("*")):
            if child.is_file() and not child.name.startswith(".tmp-"):
                h.update(str(child.relative_to(p)).encode())
                h.update(fingerprint(child).encode())
        return f"dir:{h.hexdigest()}"
    h = hashlib.blake2b(digest_size=12)
    with open(p, "rb") as fh:
        h.update(fh.read(65536))
        if st.st_size > 131072:
            fh.seek(-65536, os.SEEK_END)
            h.update(fh.read(65536))
    return f"{st.st_size}:{st.st_mtime_ns}:{h.hexdigest()}"


def _safe_name(name: str) -> str:
    """A file-name-safe stem for an image name (which may hold folders)."""
    return name.replace("/", "__").replace("\\", "__")


@dataclass(frozen=True)
class Manifest:
    """What a finished stage did: written last, so its presence means the stage completed."""

    stage: str
    version: int
    config: dict[str, Any]
    inputs: dict[str, str]
    outputs: dict[str, str]
    figures: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    finished_at: str = ""


@dataclass(frozen=True)
class Workspace:
    """All paths, loads and saves of one output folder."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).resolve())

    # -- layout --------------------------------------------------------------------
    @property
    def work_dir(self) -> Path:
        return self.root / "work"

    def stage_dir(self, stage: str) -> Path:
        d = self.work_dir / stage
        d.mkdir(parents=True, exist_ok=True)
        return d

    def ensure(self, input_dir: Path | None = None) -> None:
        """Create the folder; refuse to write inside the input folder."""
        if input_dir is not None:
            src = Path(input_dir).resolve()
            if self.root == src or src in self.root.parents:
                raise WorkspaceError(
                    f"output folder {self.root} is inside the input folder {src}; "
                    "input folders are never written to, choose an output outside it"
                )
        try:
            self.work_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorkspaceError(f"cannot create output folder {self.root}: {exc.strerror}") from exc
        if not os.access(self.root, os.W_OK):
            raise WorkspaceError(f"output folder {self.root} is not writable")

    # -- deliverables ----------------------------------------------------------------
    @property
    def orthophoto_path(self) -> Path:
        return self.root / "orthophoto.tif"

    @property
    def orthophoto_preview_path(self) -> Path:
        return self.root / "orthophoto_preview.png"

    @property
    def dsm_path(self) -> Path:
        return self.root / "dsm.tif"

    @property
    def dtm_path(self) -> Path:
        return self.root / "dtm.tif"

    @property
    def pointcloud_path(self) -> Path:
        return self.root / "pointcloud.laz"

    @property
    def copc_path(self) -> Path:
        return self.root / "pointcloud.copc.laz"

    @property
    def sparse_cloud_path(self) -> Path:
        return self.root / "sparse.laz"

    @property
    def cameras_geojson_path(self) -> Path:
        return self.root / "cameras.geojson"

    @property
    def stats_path(self) -> Path:
        return self.root / "stats.json"

    @property
    def log_path(self) -> Path:
        return self.root / "aerobase.log"

    @property
    def error_log_path(self) -> Path:
        return self.root / "aerobase-error.log"

    def save_stats(self, stats: dict[str, Any]) -> None:
        write_json_atomic(self.stats_path, stats)

    def load_stats(self) -> dict[str, Any]:
        return dict(read_json(self.stats_path))

    def stats_exist(self) -> bool:
        return self.stats_path.exists()

    # -- manifests -------------------------------------------------------------------
    def manifest_path(self, stage: str) -> Path:
        return self.work_dir / stage / MANIFEST_NAME

    def save_manifest(self, manifest: Manifest) -> None:
        write_json_atomic(self.manifest_path(manifest.stage), manifest)

    def load_manifest(self, stage: str) -> Manifest | None:
        path = self.manifest_path(stage)
        if not path.exists():
            return None
        try:
            return from_jsonable(Manifest, read_json(path))
        except (WorkspaceError, TypeError, KeyError):
            return None

    def manifest_exists(self, stage: str) -> bool:
        return self.manifest_path(stage).exists()

    def invalidate(self, stage: str) -> None:
        """Forget that a stage finished (its files stay until it reruns)."""
        self.manifest_path(stage).unlink(missing_ok=True)

    # -- ingest ----------------------------------------------------------------------
    @property
    def images_path(self) -> Path:
        return self.work_dir / "ingest" / "images.json"

    def save_images(self, records: list[ImageRecord], skipped: list[SkippedItem]) -> None:
        write_json_atomic(self.images_path, {"images": records, "skipped": skipped})

    def load_images(self) -> list[ImageRecord]:
        data = read_json(self.images_path)
        return [from_jsonable(ImageRecord, r) for r in data["images"]]

    def load_skipped_images(self) -> list[SkippedItem]:
        data = read_json(self.images_path)
        return [from_jsonable(SkippedItem, r) for r in data["skipped"]]

    def images_exist(self) -> bool:
        return self.images_path.exists()

    @property
    def cameras_path(self) -> Path:
        return self.work_dir / "ingest" / "cameras.json"

    def save_cameras(self, cameras: dict[str, CameraModel]) -> None:
        write_json_atomic(self.cameras_path, cameras)

    def load_cameras(self) -> dict[str, CameraModel]:
        return {k: from_jsonable(CameraModel, v) for k, v in read_json(self.cameras_path).items()}

    def cameras_exist(self) -> bool:
        return self.cameras_path.exists()

    @property
    def tracks_path(self) -> Path:
        return self.work_dir / "ingest" / "tracks.json"

    def save_tracks(self, tracks: list[FlightTrack]) -> None:
        write_json_atomic(self.tracks_path, tracks)

    def load_tracks(self) -> list[FlightTrack]:
        return [from_jsonable(FlightTrack, t) for t in read_json(self.tracks_path)]

    def tracks_exist(self) -> bool:
        return self.tracks_path.exists()

    @property
    def gcps_path(self) -> Path:
        return self.work_dir / "ingest" / "gcps.json"

    def save_gcps(self, gcps: GcpSet | None) -> None:
        write_json_atomic(self.gcps_path, gcps)

    def load_gcps(self) -> GcpSet | None:
        data = read_json(self.gcps_path)
        return None if data is None else from_jsonable(GcpSet, data)

    def gcps_exist(self) -> bool:
        return self.gcps_path.exists()

    @property
    def georef_path(self) -> Path:
        return self.work_dir / "ingest" / "georef.json"

    def save_georef(self, info: dict[str, Any]) -> None:
        """The working CRS and flight-level facts (ground height, GSD estimate, clock offset)."""
        write_json_atomic(self.georef_path, info)

    def load_georef(self) -> dict[str, Any]:
        return dict(read_json(self.georef_path))

    def georef_exists(self) -> bool:
        return self.georef_path.exists()

    # -- sfm -------------------------------------------------------------------------
    @property
    def reconstruction_path(self) -> Path:
        return self.work_dir / "sfm" / "reconstruction.json"

    @property
    def sparse_points_path(self) -> Path:
        return self.work_dir / "sfm" / "sparse_points.npz"

    def save_reconstruction(self, rec: Reconstruction) -> None:
        with atomic_path(self.sparse_points_path) as tmp:
            with open(tmp, "wb") as fh:
                write_points_npz(fh, rec.points)
        write_json_atomic(self.reconstruction_path, reconstruction_to_json(rec))

    def load_reconstruction(self) -> Reconstruction:
        return reconstruction_from_json(read_json(self.reconstruction_path), read_points_npz(self.sparse_points_path))

    def reconstruction_exists(self) -> bool:
        return self.reconstruction_path.exists() and self.sparse_points_path.exists()

    # == structure from motion: features, matches, SfM report (issue 5) ==============
    @staticmethod
    def _file_key(image_name: str) -> str:
        """A flat, reversible file name for an image name that may hold '/'."""
        return quote(image_name, safe="")

    def features_path(self, image_name: str) -> Path:
        return self.work_dir / "features" / f"{self._file_key(image_name)}.npz"

    def save_features(self, image_name: str, features: ImageFeatures) -> None:
        with atomic_path(self.features_path(image_name)) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(
                    fh,
                    keypoints=features.keypoints,
                    descriptors=features.descriptors,
                    colors=features.colors,
                    working_scale=np.float64(features.working_scale),
                    sharpness=np.float64(features.sharpness),
                    cache_key=np.str_(features.cache_key),
                )

    def load_features(self, image_name: str) -> ImageFeatures:
        path = self.features_path(image_name)
        try:
            with np.load(path) as z:
                return ImageFeatures(
                    keypoints=z["keypoints"],
                    descriptors=z["descriptors"],
                    colors=z["colors"],
                    working_scale=float(z["working_scale"]),
                    sharpness=float(z["sharpness"]),
                    cache_key=str(z["cache_key"]),
                )
        except FileNotFoundError:
            raise
        except (OSError, ValueError, KeyError) as exc:
            raise WorkspaceError(f"feature file {path} is unreadable ({exc}); rerun with --rerun-from features") from exc

    def features_exist(self, image_name: str) -> bool:
        return self.features_path(image_name).exists()

    def features_cache_key(self, image_name: str) -> str | None:
        """The cache key of the stored features of an image, or None when absent or unreadable."""
        path = self.features_path(image_name)
        if not path.exists():
            return None
        try:
            with np.load(path) as z:
                return str(z["cache_key"])
        except (OSError, ValueError, KeyError):
            return None

    @property
    def matches_dir(self) -> Path:
        return self.work_dir / "matching" / "batches"

    def clear_matches(self) -> None:
        """Remove every stored match batch (before a matching run writes new ones)."""
        shutil.rmtree(self.matches_dir, ignore_errors=True)

    def save_matches(self, batch: str, pairs: list[PairMatches]) -> Path:
        """Store one batch of verified pairs; returns the file written."""
        path = self.matches_dir / f"{self._file_key(batch)}.npz"
        n = len(pairs)
        offsets = np.zeros(n + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([p.num_inliers for p in pairs]) if n else []
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(
                    fh,
                    names=np.array([[p.image1, p.image2] for p in pairs], dtype=np.str_).reshape(n, 2),
                    offsets=offsets,
                    matches=(np.concatenate([p.matches for p in pairs]) if n else np.zeros((0, 2))).astype(np.uint32),
                    putative=np.array([p.num_putative for p in pairs], dtype=np.int64),
                    geometry=np.array([int(p.geometry) for p in pairs], dtype=np.int64),
                    F=np.array([p.F for p in pairs]).reshape(n, 3, 3),
                    E=np.array([p.E for p in pairs]).reshape(n, 3, 3),
                    H=np.array([p.H for p in pairs]).reshape(n, 3, 3),
                )
        return path

    def load_matches(self) -> list[PairMatches]:
        """Every stored verified pair, in batch-file order."""
        out: list[PairMatches] = []
        for path in sorted(Path(p) for p in glob.glob(str(self.matches_dir / "*.npz"))):
            if path.name.startswith(".tmp-"):
                continue
            with np.load(path) as z:
                names, offsets, matches = z["names"], z["offsets"], z["matches"]
                for i in range(len(names)):
                    out.append(
                        PairMatches(
                            image1=str(names[i, 0]),
                            image2=str(names[i, 1]),
                            matches=matches[offsets[i] : offsets[i + 1]],
                            num_putative=int(z["putative"][i]),
                            geometry=PairGeometry(int(z["geometry"][i])),
                            F=z["F"][i],
                            E=z["E"][i],
                            H=z["H"][i],
                        )
                    )
        return out

    def matches_exist(self) -> bool:
        return self.pair_stats_path.exists()

    @property
    def pair_stats_path(self) -> Path:
        return self.work_dir / "matching" / "pairs.json"

    def save_pair_stats(self, stats: list[PairStat]) -> None:
        write_json_atomic(self.pair_stats_path, stats)

    def load_pair_stats(self) -> list[PairStat]:
        return [from_jsonable(PairStat, d) for d in read_json(self.pair_stats_path)]

    @property
    def sfm_database_path(self) -> Path:
        """The pycolmap database the mapper reads (rebuilt by every sfm run)."""
        return self.work_dir / "sfm" / "database.db"

    @property
    def colmap_model_dir(self) -> Path:
        """COLMAP text model export (cameras.txt, images.txt, points3D.txt, ...)."""
        return self.work_dir / "sfm" / "colmap"

    @property
    def sfm_report_path(self) -> Path:
        return self.work_dir / "sfm" / "report.json"

    def save_sfm_report(self, report: SfmReport) -> None:
        write_json_atomic(self.sfm_report_path, report)

    def load_sfm_report(self) -> SfmReport:
        return from_jsonable(SfmReport, read_json(self.sfm_report_path))

    def sfm_report_exists(self) -> bool:
        return self.sfm_report_path.exists()

    # == end of structure from motion ===================================================

    # ==============================================================================
    # Dense point cloud and DEM (issue 6): depth maps, fused tiles, point classes,
    # DEM tiles, COPC scratch. Files live under work/densify, work/fusion, work/dem
    # and work/pointcloud.
    # ==============================================================================
    def depthmap_path(self, image: str, kind: str) -> Path:
        """``kind`` is ``raw`` (two-view depths of a reference) or ``filtered`` (multi-view consistent)."""
        return self.work_dir / "densify" / kind / f"{_safe_name(image)}.npz"

    def save_depthmap(self, dm: DepthMap, kind: str) -> None:
        with atomic_path(self.depthmap_path(dm.image, kind)) as tmp:
            with open(tmp, "wb") as fh:
                write_depthmap(fh, dm)

    def load_depthmap(self, image: str, kind: str, with_colour: bool = True) -> DepthMap:
        return read_depthmap(self.depthmap_path(image, kind), with_colour=with_colour)

    def depthmap_exists(self, image: str, kind: str) -> bool:
        return self.depthmap_path(image, kind).exists()

    @property
    def view_plans_path(self) -> Path:
        return self.work_dir / "densify" / "views.json"

    def save_view_plans(self, plans: dict[str, ViewPlan]) -> None:
        write_json_atomic(self.view_plans_path, plans)

    def load_view_plans(self) -> dict[str, ViewPlan]:
        return {k: from_jsonable(ViewPlan, v) for k, v in read_json(self.view_plans_path).items()}

    def view_plans_exist(self) -> bool:
        return self.view_plans_path.exists()

    @property
    def dense_index_path(self) -> Path:
        return self.work_dir / "densify" / "index.json"

    def save_dense_index(self, index: DenseIndex) -> None:
        write_json_atomic(self.dense_index_path, index)

    def load_dense_index(self) -> DenseIndex:
        return from_jsonable(DenseIndex, read_json(self.dense_index_path))

    def dense_index_exists(self) -> bool:
        return self.dense_index_path.exists()

    def tile_points_path(self, key: TileKey) -> Path:
        return self.work_dir / "fusion" / "tiles" / f"{key.name}.npz"

    def save_tile_points(self, key: TileKey, pts: FusedPoints) -> None:
        with atomic_path(self.tile_points_path(key)) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, xyz=pts.xyz, rgb=pts.rgb, count=pts.count)

    def load_tile_points(self, key: TileKey) -> FusedPoints:
        with np.load(self.tile_points_path(key)) as z:
            return FusedPoints(xyz=z["xyz"], rgb=z["rgb"], count=z["count"])

    def tile_points_exist(self, key: TileKey) -> bool:
        return self.tile_points_path(key).exists()

    @property
    def fusion_index_path(self) -> Path:
        return self.work_dir / "fusion" / "index.json"

    def save_fusion_index(self, index: FusionIndex) -> None:
        write_json_atomic(self.fusion_index_path, index)

    def load_fusion_index(self) -> FusionIndex:
        return from_jsonable(FusionIndex, read_json(self.fusion_index_path))

    def fusion_index_exists(self) -> bool:
        return self.fusion_index_path.exists()

    def tile_classes_path(self, key: TileKey) -> Path:
        """ASPRS class per point of a fused tile, in the tile file's point order."""
        return self.work_dir / "dem" / "classes" / f"{key.name}.npy"

    def save_tile_classes(self, key: TileKey, classes: NDArray[np.uint8]) -> None:
        with atomic_path(self.tile_classes_path(key)) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, np.asarray(classes, dtype=np.uint8))

    def load_tile_classes(self, key: TileKey) -> NDArray[np.uint8]:
        return np.asarray(np.load(self.tile_classes_path(key)), dtype=np.uint8)

    def tile_classes_exist(self, key: TileKey) -> bool:
        return self.tile_classes_path(key).exists()

    def dem_surface_path(self, name: str) -> Path:
        """A surface of the whole flight on a coarse grid: ``ground`` (what the classes were tested
        against, ``dem.smrf_cell_m`` cells) or ``dtm`` (the coarse DTM, ``dem.dtm_cell_m`` cells)."""
        return self.work_dir / "dem" / f"surface_{_safe_name(name)}.npz"

    def save_dem_surface(self, name: str, surface: GroundSurface) -> None:
        g = surface.grid
        with atomic_path(self.dem_surface_path(name)) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, z=surface.z, crs=np.array(g.crs), origin=np.array([g.x_min, g.y_max, g.resolution]), shape=np.array([g.width, g.height]))

    def load_dem_surface(self, name: str) -> GroundSurface:
        with np.load(self.dem_surface_path(name)) as z:
            x_min, y_max, res = (float(v) for v in z["origin"])
            width, height = (int(v) for v in z["shape"])
            return GroundSurface(GridSpec(str(z["crs"]), x_min, y_max, res, width, height), np.asarray(z["z"], dtype=np.float32))

    def dem_surface_exists(self, name: str) -> bool:
        return self.dem_surface_path(name).exists()

    def dem_tile_path(self, window: Window) -> Path:
        return self.work_dir / "dem" / "tiles" / f"r{window.row_off:07d}_c{window.col_off:07d}.npz"

    def save_dem_tile(self, tile: SurfaceTile) -> Path:
        path = self.dem_tile_path(tile.window)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, dsm=tile.dsm, dtm=tile.dtm, points=tile.points)
        return path

    def load_dem_tile(self, window: Window) -> SurfaceTile:
        with np.load(self.dem_tile_path(window)) as z:
            return SurfaceTile(window=window, dsm=z["dsm"], dtm=z["dtm"], points=z["points"])

    def dem_tile_exists(self, window: Window) -> bool:
        return self.dem_tile_path(window).exists()

    @property
    def copc_spill_dir(self) -> Path:
        """Scratch folder of the COPC writer's per-node point files."""
        return self.work_dir / "pointcloud" / "nodes"

    def reset_task_dir(self, stage: str, token: str) -> None:
        """Keep a stage's per-task files only if they were made with the same ``token``.

        A killed run resumes its finished tasks; a run with other inputs or config starts clean.
        """
        d = self.stage_dir(stage)
        marker = d / "task-token.txt"
        if marker.exists() and marker.read_text(encoding="utf-8") == token:
            return
        for child in d.iterdir():
            if child.name == MANIFEST_NAME:
                continue
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
        write_bytes_atomic(marker, token.encode("utf-8"))
    # ================================ end of issue 6 ================================
    # -- ortho (scratch of the orthomosaic stage) -------------------------------------
    # work/ortho/images/<image>.<level>.npy  decoded images (level 'work' or 'low'), read by crops
    # work/ortho/seam/<image>.npz            one image's samples on the seam grid
    # work/ortho/heights.npz                 coarse DSM min/max; occluders.npy: max-pooled DSM
    # work/ortho/dsm.npy                     raw copy of the DSM, sliced by the tiles (removed with the scratch)
    # work/ortho/labels.npy                  flight-level seam labels
    # work/ortho/tiles/r<row>_c<col>.bin     finished tiles (pixel sums + compressed COG blocks) until the COG is written
    @property
    def ortho_dir(self) -> Path:
        return self.work_dir / "ortho"

    @staticmethod
    def _ortho_key(name: str) -> str:
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
        return f"{safe}-{hashlib.blake2b(name.encode(), digest_size=4).hexdigest()}"

    def ortho_image_cache_path(self, name: str, level: str) -> Path:
        return self.ortho_dir / "images" / f"{self._ortho_key(name)}.{level}.npy"

    @property
    def ortho_heights_path(self) -> Path:
        return self.ortho_dir / "heights.npz"

    @property
    def ortho_occluders_path(self) -> Path:
        return self.ortho_dir / "occluders.npy"

    @property
    def ortho_dsm_path(self) -> Path:
        """Raw float32 copy of the DSM that the ortho tiles slice their windows from."""
        return self.ortho_dir / "dsm.npy"

    @property
    def ortho_seam_heights_path(self) -> Path:
        return self.ortho_dir / "seam_heights.npy"

    @property
    def ortho_labels_path(self) -> Path:
        return self.ortho_dir / "labels.npy"

    def ortho_tile_path(self, row_off: int, col_off: int) -> Path:
        return self.ortho_dir / "tiles" / f"r{row_off:06d}_c{col_off:06d}.bin"

    def save_ortho_tile(self, window: Window, rgb: NDArray[np.uint8], mask: NDArray[np.bool_], plan: BlockPlan) -> TileBlocks:
        """Write a finished tile's COG blocks and pixel sums (drone_io.cog_blocks) to its tile file, atomically."""
        with atomic_path(self.ortho_tile_path(window.row_off, window.col_off)) as tmp:
            return write_tile_blocks(tmp, window, rgb, mask, plan)

    def save_ortho_array(self, path: Path, array: Any) -> None:
        """Write one array as .npy (readable by memory-mapped crops), atomically."""
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, array)

    def load_ortho_array(self, path: Path, mmap: bool = False) -> Any:
        return np.load(path, mmap_mode="r" if mmap else None)

    def save_ortho_arrays(self, path: Path, **arrays: Any) -> None:
        """Write named arrays as one .npz, atomically."""
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)

    def load_ortho_arrays(self, path: Path) -> dict[str, Any]:
        with np.load(path) as z:
            return {k: z[k] for k in z.files}

    def ortho_tile_exists(self, row_off: int, col_off: int) -> bool:
        return self.ortho_tile_path(row_off, col_off).exists()

    def clear_ortho_scratch(self, keep_images: bool = False) -> None:
        """Remove the stage's scratch files (tiles, seam samples; image caches unless kept)."""
        for sub in ("tiles", "seam") + (() if keep_images else ("images",)):
            shutil.rmtree(self.ortho_dir / sub, ignore_errors=True)
        self.ortho_dsm_path.unlink(missing_ok=True)


def require(condition: bool, message: str) -> None:
    """Raise an InputError with ``message`` unless ``condition`` holds."""
    if not condition:
        raise InputError(message)
