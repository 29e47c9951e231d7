from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from drone_io.cog import TiledRasterWriter, read_window, validate_cog
from models.raster import GridSpec


@pytest.mark.parametrize("compression", ["jpeg", "deflate"])
def test_rgb_cog_by_windows(tmp_path: Path, compression: str) -> None:
    grid = GridSpec.covering("EPSG:32649", 500000.0, 3840000.0, 500100.0, 3840060.0, 0.05)
    final = tmp_path / "ortho.tif"
    rng = np.random.default_rng(0)
    with TiledRasterWriter(final, grid, "rgb", compression=compression) as w:
        for win in grid.tiles(700):
            data = rng.integers(0, 255, size=(3, win.height, win.width), dtype=np.uint8)
            valid = np.ones((win.height, win.width), bool)
            valid[:5] = False
            w.write(win, data, valid)
    assert final.exists() and not list(tmp_path.glob(".tmp-*"))
    ok, errors, _warnings = validate_cog(final)
    assert ok, errors
    with rasterio.open(final) as ds:
        assert ds.crs.to_epsg() == 32649
        assert ds.overviews(1), "internal overviews"
        assert ds.width == grid.width and ds.height == grid.height
        assert ds.transform.almost_equals(grid.transform)
        mask = ds.dataset_mask()
        assert mask[0, 0] == 0 and mask[10, 10] == 255


def test_float_cog_nodata(tmp_path: Path) -> None:
    grid = GridSpec.covering("EPSG:4547", 400000.0, 3840000.0, 400050.0, 3840050.0, 0.1)
    final = tmp_path / "dsm.tif"
    with TiledRasterWriter(final, grid, "float", nodata=-9999.0, description="DSM test") as w:
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
        with TiledRasterWriter(final, grid, "float") as w:
            w.write(next(grid.tiles(5)), np.zeros((5, 5)))
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
