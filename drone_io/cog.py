"""Cloud Optimized GeoTIFFs of float rasters (DSM, DTM) written window by window.

A :class:`TiledRasterWriter` streams windows into a tiled scratch GeoTIFF and,
on a clean exit, converts it with GDAL's COG driver (internal overviews,
512-px blocks, DEFLATE with the floating-point predictor) to a temporary name
that is renamed into place. The whole raster is never held in memory, and a
killed run leaves no half-written file under the final name. (The RGB
orthophoto has its own writer, :mod:`drone_io.cog_blocks`, fed with blocks the
tile tasks compressed.)
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from numpy.typing import NDArray
from rasterio.windows import Window as RioWindow

from models.raster import GridSpec, Window

logger = logging.getLogger(__name__)

_CACHE_MB = 256  # GDAL block cache while the COG is made


def _rio_window(w: Window) -> RioWindow:
    return RioWindow(w.col_off, w.row_off, w.width, w.height)


class TiledRasterWriter:
    """Write a one-band float32 raster with a nodata value by windows, then publish it as a COG."""

    def __init__(
        self, final: Path, grid: GridSpec, nodata: float = -9999.0, overview_resampling: str = "average", description: str = ""
    ) -> None:
        self.final = Path(final)
        self.grid = grid
        self.nodata = nodata
        self.overview_resampling = overview_resampling
        self.description = description
        self.scratch = self.final.parent / f".tmp-{uuid.uuid4().hex[:12]}-scratch-{self.final.stem}.tif"
        self._ds: Any = None

    def __enter__(self) -> "TiledRasterWriter":
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self._ds = rasterio.open(
            self.scratch, "w", driver="GTiff", width=self.grid.width, height=self.grid.height, crs=self.grid.crs,
            transform=self.grid.transform, tiled=True, blockxsize=512, blockysize=512, bigtiff="IF_SAFER",
            compress="deflate", zlevel=1, count=1, dtype="float32", nodata=self.nodata, predictor=3,
        )
        if self.description:
            # Dataset tags on the scratch file carry over into the COG.
            self._ds.update_tags(TIFFTAG_IMAGEDESCRIPTION=self.description)
        return self

    def write(self, window: Window, data: NDArray[Any], valid: NDArray[np.bool_] | None = None) -> None:
        """Write one window of ``data`` ((h, w) or (1, h, w)); cells not ``valid`` become nodata."""
        out = np.asarray(data, np.float32).reshape(window.height, window.width)
        if valid is not None:
            out = np.where(valid, out, np.float32(self.nodata))
        self._ds.write(out, 1, window=_rio_window(window))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._ds is not None:
                self._ds.close()
                self._ds = None
            if exc_type is None:
                self._publish()
        finally:
            if self.scratch.exists():
                self.scratch.unlink()

    def _publish(self) -> None:
        options: dict[str, Any] = {
            "BLOCKSIZE": 512,
            "OVERVIEW_RESAMPLING": self.overview_resampling.upper(),
            "RESAMPLING": "NEAREST",
            "BIGTIFF": "IF_SAFER",
            "NUM_THREADS": "ALL_CPUS",
            "COMPRESS": "DEFLATE",
            "PREDICTOR": "YES",
        }
        tmp = self.final.parent / f".tmp-{uuid.uuid4().hex[:12]}-{self.final.name}"
        try:
            with rasterio.Env(GDAL_CACHEMAX=_CACHE_MB):
                rasterio.shutil.copy(self.scratch, tmp, driver="COG", **options)
            os.replace(tmp, self.final)
        finally:
            if tmp.exists():
                tmp.unlink()
        logger.info("wrote %s (%d x %d, DEFLATE)", self.final, self.grid.width, self.grid.height)


def validate_cog(path: Path) -> tuple[bool, list[str], list[str]]:
    """(is_valid, errors, warnings) from rio-cogeo's validator."""
    from rio_cogeo.cogeo import cog_validate

    valid, errors, warnings = cog_validate(str(path), quiet=True)
    return bool(valid), list(errors), list(warnings)


def read_window(path: Path, window: Window, band: int | None = None, boundless_fill: float | None = None) -> NDArray[Any]:
    """Read a window of a raster; outside the raster, ``boundless_fill`` (or nodata) fills."""
    with rasterio.open(path) as ds:
        fill = boundless_fill if boundless_fill is not None else (ds.nodata if ds.nodata is not None else 0)
        indexes: Any = band if band is not None else None
        return np.asarray(ds.read(indexes, window=_rio_window(window), boundless=True, fill_value=fill))
