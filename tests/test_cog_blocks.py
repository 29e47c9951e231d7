"""The COG assembled from tile-compressed blocks (drone_io.cog_blocks): valid COG layout, georeferencing,
pixels, mask and overviews as GDAL reads them back."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp
from rio_cogeo.cogeo import cog_validate

import drone_io.cog_blocks as cb
from drone_io.cog_blocks import BLOCK, BlockPlan, CogBlockWriter, read_ifd, write_tile_blocks
from models.raster import GridSpec, Window


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A textured (h, w, 3) image: fine luminance detail over smooth colour, like ground seen from a drone."""
    rng = np.random.default_rng(seed)
    detail = cv2.GaussianBlur(rng.normal(0.0, 40.0, (h, w)).astype(np.float32), (0, 0), 1.2)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([120 + 50 * np.sin(xx / 97.0), 130 + 40 * np.cos(yy / 71.0), 110 + 30 * np.sin((xx + yy) / 131.0)], -1)
    return np.clip(base + detail[..., None], 0, 255).astype(np.uint8)


def _mask(h: int, w: int) -> np.ndarray:
    """Covered cells: all but a ragged band along the top and the left (like a flight's outline)."""
    yy, xx = np.mgrid[0:h, 0:w]
    return (yy > 20 + 10 * np.sin(xx / 37.0)) & (xx > 15)


def _write(final: Path, grid: GridSpec, plan: BlockPlan, rgb: np.ndarray, mask: np.ndarray) -> None:
    writer = CogBlockWriter(final, grid, plan)
    for win in grid.tiles(plan.tile_size):
        path = final.parent / f"tile-{win.row_off}-{win.col_off}.bin"
        writer.add_tile(path, write_tile_blocks(path, win, rgb[win.slices], mask[win.slices], plan))
    writer.write()


def _area_mean(rgb: np.ndarray, mask: np.ndarray, f: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the covered cells over f x f cells (edges padded with uncovered cells), and their count."""
    h, w = mask.shape
    H, W = -(-h // f) * f, -(-w // f) * f
    m = np.zeros((H, W), np.float64)
    m[:h, :w] = mask
    v = np.zeros((H, W, 3), np.float64)
    v[:h, :w] = rgb * mask[..., None]
    n = m.reshape(H // f, f, W // f, f).sum((1, 3))
    s = v.reshape(H // f, f, W // f, f, 3).sum((1, 3))
    return s / np.maximum(n, 1)[..., None], n


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


CASES = [
    # (width, height, tile size, overview levels)
    pytest.param(1300, 900, 1024, 2, id="sides-not-multiples-of-512"),
    pytest.param(300, 200, 1024, 0, id="tiny"),
    pytest.param(8300, 700, 1024, 5, id="five-overviews"),
    pytest.param(700, 530, 128, 1, id="tiles-off-the-block-grid"),
]


@pytest.mark.parametrize("compression", ["jpeg", "deflate"])
@pytest.mark.parametrize("width,height,tile,levels", CASES)
def test_cog_from_tile_blocks(tmp_path: Path, compression: str, width: int, height: int, tile: int, levels: int) -> None:
    grid = GridSpec("EPSG:32649", 500000.0, 3840000.0, 0.05, width, height)
    plan = BlockPlan(width, height, tile, compression, 90, 2000)
    assert plan.overviews == levels
    rgb = _texture(height, width)
    mask = _mask(height, width)
    rgb[~mask] = 0
    final = tmp_path / "orthophoto.tif"
    _write(final, grid, plan, rgb, mask)
    assert not list(tmp_path.glob(".tmp-*"))

    ok, errors, warnings = cog_validate(str(final), quiet=True)
    assert ok and not errors and not warnings, (errors, warnings)
    with rasterio.open(final) as ds:
        assert ds.crs.to_epsg() == 32649
        assert ds.transform.almost_equals(grid.transform) and ds.bounds == pytest.approx(grid.bounds)
        assert (ds.width, ds.height) == (width, height) and ds.block_shapes[0] == (BLOCK, BLOCK)
        assert ds.overviews(1) == [2**k for k in range(1, levels + 1)]
        assert ds.colorinterp[:3] == (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
        assert ds.count == (3 if compression == "jpeg" else 4)
        back = np.moveaxis(ds.read([1, 2, 3]), 0, -1)
        assert np.array_equal(ds.dataset_mask() > 0, mask)
        if compression == "jpeg":
            assert ds.compression.value == "JPEG" and ds.photometric.value == "YCbCr"
            assert _psnr(back[mask], rgb[mask]) >= 38.0
        else:
            assert np.array_equal(back, rgb)
        for f in ds.overviews(1):
            oh, ow = -(-height // f), -(-width // f)
            ovr = np.moveaxis(ds.read([1, 2, 3], out_shape=(3, oh, ow)), 0, -1).astype(np.float64)
            ovr_mask = ds.dataset_mask(out_shape=(oh, ow)) > 0
            want, n = _area_mean(rgb, mask, f)
            assert np.array_equal(ovr_mask, n > 0), f  # an overview cell is covered when any of its cells is
            full = n == f * f
            diff = np.abs(ovr - want)[full]
            if compression == "jpeg":
                # JPEG of a reduced texture: GDAL's own COG of this image gives 2.2 / 2.8 DN and 39 / 37 dB.
                assert diff.mean() < 3.5 and _psnr(ovr[full], want[full]) >= 35.0, (f, diff.mean())
            else:
                assert diff.max() <= 0.5 + 1e-9, f


def test_layout_is_gdals_cog_layout(tmp_path: Path) -> None:
    """IFDs before data (full resolution, its mask, overviews, their masks); data from the smallest
    overview to full resolution, row-major, each block with its mask right after it; every block
    framed by its size before it and its last 4 bytes after it, as the ghost header says."""
    width, height = 2600, 1100
    grid = GridSpec("EPSG:32649", 500000.0, 3840000.0, 0.05, width, height)
    plan = BlockPlan(width, height, 1024, "jpeg", 90, 2000)
    rgb, mask = _texture(height, width), _mask(height, width)
    final = tmp_path / "o.tif"
    _write(final, grid, plan, rgb, mask)
    data = final.read_bytes()
    assert b"MASK_INTERLEAVED_WITH_IMAGERY=YES" in data[:400] and b"KNOWN_INCOMPATIBLE_EDITION=NO" in data[:400]
    ifds = []
    fields, nxt = read_ifd(data)
    ifds.append(fields)
    while nxt:
        fields, nxt = read_ifd(data, nxt)
        ifds.append(fields)
    kinds = [(struct.unpack("<I", f[254].data)[0] if 254 in f else 0, struct.unpack("<H", f[256].data[:2])[0]) for f in ifds]
    assert kinds == [(0, 2600), (4, 2600), (1, 1300), (1, 650), (1, 325), (5, 1300), (5, 650), (5, 325)]

    def offsets(f: dict[int, cb.TiffField], tag: int) -> list[int]:
        return list(struct.unpack(f"<{f[tag].count}I", f[tag].data))

    level_starts = []
    for f in ifds:
        offs, sizes = offsets(f, 324), offsets(f, 325)
        assert offs == sorted(offs) and offs[0] > 2000  # after every IFD
        for o, n in zip(offs, sizes):
            assert struct.unpack("<I", data[o - 4 : o])[0] == n
            assert data[o + n : o + n + 4] == data[o + n - 4 : o + n]
        level_starts.append(offs[0])
    # Smallest overview first, full resolution last; each mask block just after its image block.
    assert level_starts[4] < level_starts[3] < level_starts[2] < level_starts[0]
    for img, msk in ((ifds[0], ifds[1]), (ifds[2], ifds[5]), (ifds[3], ifds[6]), (ifds[4], ifds[7])):
        for o, n, mo in zip(offsets(img, 324), offsets(img, 325), offsets(msk, 324)):
            assert mo == o + n + 8
    assert ifds[0][259].data[:2] == struct.pack("<H", 7) and ifds[0][530].data == struct.pack("<2H", 2, 2)


def test_empty_tiles_crs_description_and_preview(tmp_path: Path) -> None:
    """Tiles no image reaches are masked blocks; a CGCS2000 Gauss-Krüger CRS and the description survive;
    the preview is the area average of the mosaic at its size."""
    width, height = 4500, 2100
    grid = GridSpec("EPSG:4547", 400000.0, 3840000.0, 0.1, width, height)
    plan = BlockPlan(width, height, 1024, "jpeg", 90, 2000)
    rgb, mask = _texture(height, width, seed=3), _mask(height, width)
    empty = {Window(2048, 1024, 1024, 1024), Window(4096, 2048, 404, 52)}
    for w in empty:
        mask[w.slices] = False
    rgb[~mask] = 0
    final = tmp_path / "o.tif"
    writer = CogBlockWriter(final, grid, plan, "Aerobase orthophoto")
    for win in grid.tiles(1024):
        if win in empty:
            writer.add_empty(win)
        else:
            path = tmp_path / f"t{win.row_off}_{win.col_off}.bin"
            writer.add_tile(path, write_tile_blocks(path, win, rgb[win.slices], mask[win.slices], plan))
    writer.write()
    ok, errors, _ = cog_validate(str(final), quiet=True)
    assert ok, errors
    with rasterio.open(final) as ds:
        assert ds.crs.to_epsg() == 4547
        assert ds.tags().get("TIFFTAG_IMAGEDESCRIPTION") == "Aerobase orthophoto"
        assert np.array_equal(ds.dataset_mask() > 0, mask)
    small, small_mask = writer.preview()
    assert small.shape == (3, 933, 2000) and small_mask.shape == (933, 2000)
    want = cv2.resize(_area_mean(rgb, mask, 2)[0].astype(np.float32), (2000, 933), interpolation=cv2.INTER_AREA)
    assert np.abs(np.moveaxis(small, 0, -1) - want).mean() < 1.0
    assert small_mask[200, 200] == 255 and small_mask[0, 0] == 0 and small_mask[500, 1000] == 0  # the last in an empty tile


def test_bigtiff_when_classic_offsets_overflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the classic TIFF's 4 GB the file is a BigTIFF (the limit is lowered here to keep the test small)."""
    monkeypatch.setattr(cb, "_CLASSIC_LIMIT", 100_000)
    width, height = 1100, 700
    grid = GridSpec("EPSG:32633", 300000.0, 5000000.0, 0.02, width, height)
    plan = BlockPlan(width, height, 512, "deflate")
    rgb, mask = _texture(height, width), _mask(height, width)
    rgb[~mask] = 0
    final = tmp_path / "o.tif"
    _write(final, grid, plan, rgb, mask)
    assert final.read_bytes()[2:4] == struct.pack("<H", 43)
    ok, errors, _ = cog_validate(str(final), quiet=True)
    assert ok, errors
    with rasterio.open(final) as ds:
        assert np.array_equal(np.moveaxis(ds.read([1, 2, 3]), 0, -1), rgb)
        assert ds.crs.to_epsg() == 32633


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    width, height = 1100, 700
    grid = GridSpec("EPSG:32649", 0.0, 1000.0, 1.0, width, height)
    plan = BlockPlan(width, height, 1024, "jpeg")
    rgb, mask = _texture(height, width), np.ones((height, width), bool)
    out = tmp_path / "out"
    out.mkdir()
    writer = CogBlockWriter(out / "o.tif", grid, plan)
    tiles = list(grid.tiles(1024))
    for win in tiles:
        path = tmp_path / f"t{win.row_off}_{win.col_off}.bin"
        writer.add_tile(path, write_tile_blocks(path, win, rgb[win.slices], mask[win.slices], plan))
    (tmp_path / f"t{tiles[1].row_off}_{tiles[1].col_off}.bin").unlink()  # a tile file lost before the write
    with pytest.raises(OSError, match="tile file"):
        writer.write()
    assert list(out.iterdir()) == []
    # A block no tile gave is an error that names the output, not a file with a hole.
    writer = CogBlockWriter(out / "o.tif", grid, plan)
    with pytest.raises(RuntimeError, match="o.tif"):
        writer.write()
    assert list(out.iterdir()) == []


def test_open_overview_blocks_stay_a_row_per_level(tmp_path: Path) -> None:
    """Fed in row order, the writer holds about one row of open overview blocks per level, not the
    whole level; fed in any other order it writes the very same file."""
    width, height = 6200, 16400  # 9 rows of 4 blocks at the kept level
    grid = GridSpec("EPSG:32649", 500000.0, 3840000.0, 0.02, width, height)
    plan = BlockPlan(width, height, 1024, "jpeg", 90, 2000)
    assert plan.kept_level == 2
    rng = np.random.default_rng(5)
    tiles = list(grid.tiles(1024))
    colours = rng.integers(0, 255, (len(tiles), 3), dtype=np.uint8)
    files = []
    for i, win in enumerate(tiles):
        path = tmp_path / f"t{i}.bin"
        rgb = np.broadcast_to(colours[i], (win.height, win.width, 3)).copy()
        mask = np.ones((win.height, win.width), bool)
        mask[: 10 + i % 7] = False
        files.append((path, write_tile_blocks(path, win, rgb, mask, plan)))
    outputs = []
    for order in (range(len(tiles)), reversed(range(len(tiles)))):
        out = tmp_path / f"o{len(outputs)}"
        writer = CogBlockWriter(out / "o.tif", grid, plan)
        for i in order:
            writer.add_tile(*files[i])
        writer.write()
        outputs.append((writer.peak_open_bytes, (out / "o.tif").read_bytes(), writer.preview()))
        assert sorted(p.name for p in out.iterdir()) == ["o.tif"]  # the side file of the client's blocks is gone
    kept_h, kept_w = plan.level_shape(2)
    whole_level = kept_h * kept_w * 4 * 2  # uint16 sums of the kept level
    row_of_blocks = -(-kept_w // BLOCK) * BLOCK * BLOCK * 4 * 2
    assert outputs[0][0] <= 2 * row_of_blocks < whole_level / 2, (outputs[0][0], row_of_blocks, whole_level)
    assert outputs[1][1] == outputs[0][1]
    assert np.array_equal(outputs[1][2][0], outputs[0][2][0]) and np.array_equal(outputs[1][2][1], outputs[0][2][1])
    ok, errors, _ = cog_validate(str(tmp_path / "o0" / "o.tif"), quiet=True)
    assert ok, errors
    with rasterio.open(tmp_path / "o0" / "o.tif") as ds:
        top = ds.overviews(1)[-1]
        ovr = ds.read([1, 2, 3], out_shape=(3, -(-height // top), -(-width // top)))
        assert ovr.std(axis=(1, 2)).min() > 10  # the tiles' colours reach the top overview


@pytest.mark.parametrize("height, width", [(8, 8), (7, 9), (1, 1), (300, 301)])
@pytest.mark.parametrize("covered", ["all", "some", "none"])
def test_integer_quad_sums_equal_the_float_sums(height: int, width: int, covered: str) -> None:
    """The first 2x2 sums, made in 8/16-bit integers, are the float sums of the covered pixels (odd edges padded empty)."""
    rng = np.random.default_rng(height * 1000 + width)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    mask = {"all": np.ones((height, width), bool), "some": rng.random((height, width)) > 0.4, "none": np.zeros((height, width), bool)}[covered]
    got = cb._quad_sums(rgb, mask)
    want = np.zeros(((height + 1) // 2, (width + 1) // 2, 4), np.float64)
    vals = np.concatenate([rgb * mask[..., None], mask[..., None]], axis=2).astype(np.float64)
    for dy in (0, 1):
        for dx in (0, 1):
            part = vals[dy::2, dx::2]
            want[: part.shape[0], : part.shape[1]] += part
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
