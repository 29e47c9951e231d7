"""Small typed records that the dense and DEM stages pass between tasks and keep in the workspace."""

from __future__ import annotations

from dataclasses import dataclass

from models.camera import CameraModel
from models.pose import Pose
from pipeline.dense.tiles import TileKey

Box = tuple[float, float, float, float]  # (x_min, y_min, x_max, y_max)


@dataclass(frozen=True, eq=False)
class ViewGeometry:
    """What a task needs to know about one image: its file, full-resolution camera and pose."""

    name: str
    path: str
    camera: CameraModel
    pose: Pose


@dataclass(frozen=True)
class DepthSummary:
    """One image's filtered depth map in brief: consistent pixels and where its points lie."""

    image: str
    points: int
    bounds: Box  # xy bounding box of its points (CRS units); zeros when empty
    z_min: float
    z_max: float


@dataclass(frozen=True)
class DenseIndex:
    """The densify stage's result: GSD, CRS and every image's depth summary."""

    crs: str
    gsd_m: float  # full-resolution ground sampling distance, from the reconstruction
    depth_scale: float
    images: tuple[DepthSummary, ...]


@dataclass(frozen=True)
class TileSummary:
    """One fused tile in brief."""

    key: TileKey
    points: int
    bounds: Box  # xy bounding box of the tile's points
    z_min: float
    z_max: float


@dataclass(frozen=True)
class FusionIndex:
    """The fusion stage's result: the tile grid and every non-empty tile."""

    crs: str
    tile_size: float
    voxel: float
    tiles: tuple[TileSummary, ...]

    @property
    def points(self) -> int:
        return sum(t.points for t in self.tiles)
