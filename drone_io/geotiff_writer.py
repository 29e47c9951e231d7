"""Write GeoTIFFs on a :class:`GridSpec`, window by window, through rasterio.

Tiled, deflate-compressed, with the grid's CRS and affine transform, so the
file is a plain GeoTIFF any GIS reads. The caller writes windows in any order.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import rasterio
from numpy.typing import NDArray
from rasterio.windows import Window as RioWindow

from models.raster import GridSpec, Window


def geotiff_profile(grid: GridSpec, count: int, dtype: str, nodata: float | None = None) -> dict[str, Any]:
    """A rasterio profile for a tiled, compressed GeoTIFF on ``grid``."""
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": count,
        "dtype": dtype,
        "crs": grid.crs,
        "transform": grid.transform,
        "compress": "deflate",
        "predictor": 3 if np.dtype(dtype).kind == "f" else 2,
        "interleave": "pixel",
    }
    if grid.width >= 256 and grid.height >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    if count == 3 and dtype == "uint8":
        profile["photometric"] = "RGB"
    if nodata is not None:
        profile["nodata"] = nodata
    return profile


class GeoTiffWriter:
    """An open GeoTIFF being written window by window."""

    def __init__(self, dataset: Any) -> None:
        self._ds = dataset

    def write(self, window: Window, data: NDArray[Any]) -> None:
        """Write (rows, cols) for one band or (rows, cols, bands) for several."""
        arr = np.asarray(data)
        if arr.ndim == 2:
            arr = arr[None, :, :]
        else:
            arr = np.moveaxis(arr, -1, 0)
        if arr.shape[1:] != (window.height, window.width):
            raise ValueError(f"data of shape {arr.shape[1:]} does not fit window {window}")
        self._ds.write(arr, window=RioWindow(window.col_off, window.row_off, window.width, window.height))

    def set_description(self, text: str) -> None:
        self._ds.update_tags(DESCRIPTION=text)


@contextlib.contextmanager
def open_geotiff_writer(path: Path, grid: GridSpec, count: int, dtype: str, nodata: float | None = None) -> Iterator[GeoTiffWriter]:
    """Open ``path`` for writing a GeoTIFF on ``grid``; closes it on exit."""
    with rasterio.open(Path(path), "w", **geotiff_profile(grid, count, dtype, nodata)) as ds:
        yield GeoTiffWriter(ds)
