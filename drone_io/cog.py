"""Cloud Optimized GeoTIFFs written window by window.

A :class:`TiledRasterWriter` streams windows into a tiled scratch GeoTIFF and,
on a clean exit, converts it with GDAL's COG driver (internal overviews,
512-px blocks, the chosen compression) to a temporary name that is renamed
into place. The whole raster is never held in memory, and a killed run leaves
no half-written file under the final name.
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
from rasterio.enums import ColorInterp, Resampling
from rasterio.windows import Window as RioWindow

from drone_io.raster_grid import read_reduced
from models.raster import GridSpec, Window

logger = logging.getLogger(__name__)

_BLOCK = 512  # COG block side
_CACHE_MB = 256  # GDAL block cache while overviews and the COG are made


def _rio_window(w: Window) -> RioWindow:
    return RioWindow(w.col_off, w.row_off, w.width, w.height)


class TiledRasterWriter:
    """Write a raster by windows, then publish it as a COG.

    ``kind`` is ``"rgb"`` (uint8 RGB; with JPEG an internal mask carries
    transparency, with DEFLATE an alpha band does) or ``"float"`` (one float32
    band with a nodata value, DEFLATE with the floating-point predictor).
    """

    def __init__(
        self,
        final: Path,
        grid: GridSpec,
        kind: str,
        compression: str = "deflate",
        jpeg_quality: int = 90,
        nodata: float = -9999.0,
        overview_resampling: str = "average",
        description: str = "",
        scratch_compression: str = "deflate",
    ) -> None:
        if kind not in ("rgb", "float"):
            raise ValueError(f"unknown raster kind {kind!r}")
        self.final = Path(final)
        self.grid = grid
        self.kind = kind
        self.compression = compression.lower()
        self.jpeg_quality = jpeg_quality
        self.nodata = nodata
        self.overview_resampling = overview_resampling
        self.description = description
        # "deflate" keeps the scratch small; "none" is faster to write, to reduce into
        # overviews and to read back (the mosaic's texture hardly deflates anyway).
        self.scratch_compression = scratch_compression.lower()
        self._overviews: list[int] | None = None
        self.scratch = self.final.parent / f".tmp-{uuid.uuid4().hex[:12]}-scratch-{self.final.stem}.tif"
        self._ds: Any = None

    @property
    def uses_alpha(self) -> bool:
        return self.kind == "rgb" and self.compression != "jpeg"

    def __enter__(self) -> "TiledRasterWriter":
        self.final.parent.mkdir(parents=True, exist_ok=True)
        profile: dict[str, Any] = {
            "driver": "GTiff",
            "width": self.grid.width,
            "height": self.grid.height,
            "crs": self.grid.crs,
            "transform": self.grid.transform,
            "tiled": True,
            "blockxsize": 512,
            "blockysize": 512,
            "bigtiff": "IF_SAFER",
        }
        if self.scratch_compression != "none":
            profile.update(compress=self.scratch_compression, zlevel=1)
        if self.kind == "rgb":
            profile.update(count=4 if self.uses_alpha else 3, dtype="uint8", photometric="RGB")
        else:
            profile.update(count=1, dtype="float32", nodata=self.nodata, predictor=3)
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
            self._ds = rasterio.open(self.scratch, "w", **profile)
            if self.description:
                # Dataset tags on the scratch file carry over into the COG.
                self._ds.update_tags(TIFFTAG_IMAGEDESCRIPTION=self.description)
            if self.kind == "rgb":
                interp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
                if self.uses_alpha:
                    interp.append(ColorInterp.alpha)
                self._ds.colorinterp = interp
        return self

    def write(self, window: Window, data: NDArray[Any], valid: NDArray[np.bool_] | None = None) -> None:
        """Write one window. ``data`` is (bands, h, w) or (h, w); ``valid`` marks covered cells."""
        arr = np.asarray(data)
        if arr.ndim == 2:
            arr = arr[None]
        rw = _rio_window(window)
        if self.kind == "float":
            out = arr[0].astype(np.float32)
            if valid is not None:
                out = np.where(valid, out, np.float32(self.nodata))
            self._ds.write(out, 1, window=rw)
            return
        rgb = arr[:3].astype(np.uint8)
        mask = np.ones(rgb.shape[1:], bool) if valid is None else np.asarray(valid, bool)
        if self.uses_alpha:
            self._ds.write(np.concatenate([rgb, (mask * 255).astype(np.uint8)[None]]), window=rw)
        else:
            self._ds.write(rgb, window=rw)
            with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
                self._ds.write_mask((mask * 255).astype(np.uint8), window=rw)

    def overview_factors(self) -> list[int]:
        """Overview decimations as GDAL's COG driver picks them: halve until a level fits one block."""
        factors: list[int] = []
        f = 1
        longest = max(self.grid.width, self.grid.height)
        while -(-longest // f) > _BLOCK:
            f *= 2
            factors.append(f)
        return factors

    def build_overviews(self) -> None:
        """Finish the scratch raster and reduce it into internal overviews (the COG keeps them).

        Done once; without it the COG driver builds the overviews itself when publishing.
        """
        if self._overviews is not None:
            return
        if self._ds is not None:
            self._ds.close()
            self._ds = None
        self._overviews = self.overview_factors()
        if self._overviews:
            comp = "NONE" if self.scratch_compression == "none" else self.scratch_compression.upper()
            with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True, GDAL_CACHEMAX=_CACHE_MB, COMPRESS_OVERVIEW=comp):
                with rasterio.open(self.scratch, "r+") as ds:
                    ds.build_overviews(self._overviews, Resampling[self.overview_resampling.lower()])

    def reduced(self, max_side: int) -> tuple[NDArray[Any], NDArray[np.uint8]]:
        """The written raster at most ``max_side`` pixels a side and its mask (0/255), from the scratch's overviews."""
        self.build_overviews()
        return read_reduced(self.scratch, max_side)

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
        }
        if self._overviews:
            options["OVERVIEWS"] = "FORCE_USE_EXISTING"
        if self.kind == "rgb" and self.compression == "jpeg":
            options.update(COMPRESS="JPEG", QUALITY=self.jpeg_quality)
        elif self.kind == "rgb":
            options.update(COMPRESS="DEFLATE", PREDICTOR="YES")
        else:
            options.update(COMPRESS="DEFLATE", PREDICTOR="YES")
        tmp = self.final.parent / f".tmp-{uuid.uuid4().hex[:12]}-{self.final.name}"
        try:
            with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True, GDAL_CACHEMAX=_CACHE_MB):
                rasterio.shutil.copy(self.scratch, tmp, driver="COG", **options)
            os.replace(tmp, self.final)
        finally:
            if tmp.exists():
                tmp.unlink()
        logger.info("wrote %s (%d x %d, %s)", self.final, self.grid.width, self.grid.height, options["COMPRESS"])


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
