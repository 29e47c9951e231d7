"""Ground-truth rasters of a synthetic scene: true DSM, DTM, orthophoto and building mask.

All four share one grid at the native GSD in the scene CRS, aligned with the
texture raster (``texture_oversample`` texels per cell). The orthophoto cell is
the mean colour of the top surface over ``ss`` x ``ss`` points of the cell, the
same supersampling the images get; heights and the mask are taken at the cell
centre.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from drone_io.geotiff_writer import open_geotiff_writer
from models.raster import GridSpec, Window
from pipeline.synth.scene import Scene
from pipeline.synth.texture import GroundTexture
from pipeline.workspace import atomic_path

_TILE = 512
F64 = NDArray[np.float64]
U8 = NDArray[np.uint8]


def _local_centres(grid: GridSpec, scene: Scene, w: Window) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = grid.cell_centers(w)
    return xs - scene.origin[0], ys - scene.origin[1]


def _tile(grid: GridSpec, scene: Scene, texture: GroundTexture, ss: int, w: Window) -> tuple[F64, F64, U8, U8]:
    """(dtm, dsm, building mask, orthophoto RGB) of one window."""
    xs, ys = _local_centres(grid, scene, w)
    X, Y = np.meshgrid(xs, ys)
    ground = scene.terrain.height(X, Y)
    top = ground.copy()
    inside = np.zeros(X.shape, dtype=bool)
    for b in scene.buildings:
        bx, by = b.corners().T
        if bx.max() < xs[0] or bx.min() > xs[-1] or by.max() < ys[-1] or by.min() > ys[0]:
            continue
        hit = b.contains(X, Y)
        top = np.where(hit, np.maximum(top, b.roof_z), top)
        inside |= hit
    offsets = (np.arange(ss) + 0.5) / ss - 0.5  # sub-cell sample offsets, in cells
    acc = np.zeros(X.shape + (3,), np.float64)
    for oy in offsets:
        for ox in offsets:
            col, row = texture.texel_coords(X + ox * grid.resolution, Y - oy * grid.resolution)
            acc += texture.sample_grid(col, row)
    rgb = np.clip(np.rint(acc / (ss * ss)), 0, 255).astype(np.uint8)
    return ground, top, inside.astype(np.uint8), rgb


def write_truth_rasters(
    out_dir: Path, grid: GridSpec, scene: Scene, texture: GroundTexture, ss: int, workers: int = 1
) -> dict[str, Path]:
    """Write dsm.tif, dtm.tif, orthophoto.tif and buildings.tif into ``out_dir``.

    Tiles are computed in threads and written in order by this thread.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / f"{name}.tif" for name in ("dsm", "dtm", "orthophoto", "buildings")}
    windows = list(grid.tiles(_TILE))
    with (
        atomic_path(paths["dsm"]) as p_dsm,
        atomic_path(paths["dtm"]) as p_dtm,
        atomic_path(paths["orthophoto"]) as p_ortho,
        atomic_path(paths["buildings"]) as p_mask,
    ):
        with (
            open_geotiff_writer(p_dsm, grid, 1, "float32") as dsm,
            open_geotiff_writer(p_dtm, grid, 1, "float32") as dtm,
            open_geotiff_writer(p_ortho, grid, 3, "uint8") as ortho,
            open_geotiff_writer(p_mask, grid, 1, "uint8") as mask,
            ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
        ):
            for w, (ground, top, inside, rgb) in zip(windows, pool.map(lambda w: _tile(grid, scene, texture, ss, w), windows)):
                dtm.write(w, ground.astype(np.float32))
                dsm.write(w, top.astype(np.float32))
                mask.write(w, inside)
                ortho.write(w, rgb)
    return paths
