"""Small picklable values the ortho stage hands to its Dask tasks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from drone_io.cog_blocks import BlockPlan
from models.camera import CameraModel
from models.pose import Pose
from models.raster import GridSpec, Window
from pipeline.ortho.dsm import DsmSource
from pipeline.ortho.geometry import scaled_camera
from pipeline.ortho.seams import SeamWeights
from pipeline.ortho.select import ViewWeights


@dataclass(frozen=True)
class OrthoParams:
    """The numeric knobs the kernels need (from :class:`pipeline.config.OrthoConfig`)."""

    # Ortho pixels per cell of the coarse blending grid.
    low_factor: int = 16
    # Width (ortho pixels, Gaussian sigma) over which brightness and colour cross a seam.
    blend_sigma_px: float = 48.0
    # How far behind the z-buffer surface (m) a sample may be and still count as visible.
    occlusion_tolerance_m: float = 0.5
    # Height step (m) in the DSM above which cells take the nearest DSM height, not a bilinear ramp.
    edge_step_m: float = 1.0
    # Occluder sampling: the DSM is max-pooled to about this many pixels (ortho's or images', the coarser) per occluder cell.
    occlusion_cell_px: float = 2.0
    # Fill ground that no image sees (hidden behind buildings) with the smooth colour around it.
    fill_occluded: bool = True
    # Ground no image sees: kept from the least-hiding image when hidden by less than this (m).
    fill_hidden_m: float = 2.0
    # Ground no image sees, in a DSM pit walled in every direction within this (m), is looked for again at the pit's rim; 0: off.
    pit_lift_m: float = 3.0
    # OpenCV interpolation flag used to sample the images.
    interpolation: int = 1
    # Weights of the per-cell view cost.
    view: ViewWeights = field(default_factory=ViewWeights)
    # Weights of the seam cost.
    seam: SeamWeights = field(default_factory=SeamWeights)
    # Alpha-expansion sweeps over all images.
    seam_sweeps: int = 2


@dataclass(frozen=True, eq=False)
class ImageView:
    """One registered image as the ortho tasks see it."""

    index: int  # label value of this image in the seam map
    name: str
    path: str  # the image file
    camera: CameraModel  # full resolution
    pose: Pose
    footprint: tuple[float, float, float, float]  # ground bounds (x0, y0, x1, y1) it can see
    min_depth: float = 1.0  # nearest depth (m) of any DSM point in view: sets the z-buffer cell
    # Filled by the preparation task:
    work_cache: str = ""  # decoded image at the working scale (.npy, RGB)
    work_size: tuple[int, int] = (0, 0)  # (width, height) of the working image
    low_cache: str = ""  # the working image reduced by the blending grid factor (.npy, RGB)
    low_size: tuple[int, int] = (0, 0)
    zbuf_cache: str = ""  # the image's z-buffer of the DSM at the working scale (.npy, pipeline.ortho.visibility.ZBuffer)
    zbuf_cell: float = 0.0  # its cell (working-image pixels)
    seam_window: Window | None = None  # where its seam samples sit in the seam grid
    sharpness: float = 0.0
    blur_penalty: float = 0.0
    gain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    shading: tuple[float, ...] = ()  # brightness field across the frame (pipeline.ortho.exposure.shading_factor)

    @property
    def center(self) -> np.ndarray:
        return self.pose.center

    def camera_at(self, size: tuple[int, int]) -> CameraModel:
        """The camera of this image resampled to ``size`` = (width, height)."""
        return scaled_camera(self.camera, size[0] / self.camera.width, size[1] / self.camera.height)

    @property
    def work_camera(self) -> CameraModel:
        return self.camera_at(self.work_size)


@dataclass(frozen=True, eq=False)
class OrthoPlan:
    """Flight-level facts every ortho task needs."""

    grid: GridSpec  # the orthophoto grid
    seam_grid: GridSpec  # the coarse grid of the flight-level seam solve
    gsd_m: float  # native GSD of the flight (median height above ground / focal px)
    dsm: DsmSource
    height_range: str  # .npz of the coarse DSM min/max (pipeline.ortho.dsm.HeightRange)
    labels: str  # .npy seam labels on seam_grid (image index, -1 for none)
    params: OrthoParams
    occluders: str  # .npy of the max-pooled DSM (highest height per occluder cell, NaN for none)
    occluder_grid: GridSpec  # its grid: the DSM grid with cells of a whole number of DSM cells
    seam_heights: str  # .npy of DSM heights at the seam grid's cell centres
    blocks: BlockPlan  # how the tiles cut and compress the orthophoto's COG blocks


def bounds_intersect(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def window_bounds(grid: GridSpec, window: Window) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of a grid window."""
    x0 = grid.x_min + window.col_off * grid.resolution
    y1 = grid.y_max - window.row_off * grid.resolution
    return (x0, y1 - window.height * grid.resolution, x0 + window.width * grid.resolution, y1)


def window_covering(grid: GridSpec, bounds: tuple[float, float, float, float], clip: bool = True) -> Window:
    """The grid window covering ``bounds`` (whole cells), clipped to the grid unless ``clip`` is False."""
    x0, y0, x1, y1 = bounds
    c0 = int(np.floor((x0 - grid.x_min) / grid.resolution))
    c1 = int(np.ceil((x1 - grid.x_min) / grid.resolution))
    r0 = int(np.floor((grid.y_max - y1) / grid.resolution))
    r1 = int(np.ceil((grid.y_max - y0) / grid.resolution))
    if clip:
        c0, r0 = max(0, c0), max(0, r0)
        c1, r1 = min(grid.width, c1), min(grid.height, r1)
    return Window(c0, r0, max(0, c1 - c0), max(0, r1 - r0))
