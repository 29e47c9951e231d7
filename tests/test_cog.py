from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from drone_io.cog import TiledRasterWriter, read_window, validate_cog
from models.raster import GridSpec


def test_float_cog_nodata(tmp_path: Path) -> None:
    grid = GridSpec.covering("EPSG:4547", 400000.0, 3840000.0, 400050.0, 3840050.0, 0.1)
    final = tmp_path / "dsm.tif"
    with TiledRasterWriter(final, grid, nodata=-9999.0, description="DSM test") as w:
        for win in grid.tiles(256):
            z = np.full((win.height, win.width), 101.5, np.float32)
            valid = np.ones_like(z, bool)
            valid[0, 0] = False
            w.write(win, z, valid)
    ok, errors, _ = validate_cog(final)
    assert ok, errors
    with rasterio.open(final) as ds:
        assert ds.nodata == -9999.0 and ds.dtypes[0] == "float32" and ds.crs.to_epsg() == 4547
        assert ds.tags().get("TIFFTAG_IMAGEDESCRIPTION") == "DSM test"
        a = ds.read(1)
        assert a[0, 0] == -9999.0 and a[1, 1] == pytest.approx(101.5)
    win = next(grid.tiles(10))
    assert read_window(final, win, band=1).shape == (10, 10)


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    grid = GridSpec.covering("EPSG:32649", 0.0, 0.0, 10.0, 10.0, 1.0)
    final = tmp_path / "dsm.tif"
    with pytest.raises(RuntimeError):
        with TiledRasterWriter(final, grid) as w:
            w.write(next(grid.tiles(5)), np.zeros((5, 5)))
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
