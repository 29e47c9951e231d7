"""An RGB Cloud Optimized GeoTIFF assembled from blocks that the tile tasks compressed.

GDAL's COG driver compresses every block in the client, one after another (and
its libjpeg here has no SIMD). Here each ortho tile task cuts its tile into the
COG's 512-px blocks and compresses them itself (JPEG through OpenCV's
libjpeg-turbo, or DEFLATE), for full resolution and for every overview level
whose blocks lie inside the tile; it also keeps the sums of its pixels at one
reduced level. The client then only adds those sums up into the coarse
overview levels (a small fraction of the mosaic), compresses their few blocks,
and writes one TIFF: header, every IFD, then the block bytes, smallest overview
first and full resolution last, copied from the tile files. The layout is the
one GDAL's COG driver writes (and that ``rio cogeo validate`` checks),
including GDAL's block leaders and trailers, so GDAL reads the file as a COG.

Tile size must be a multiple of the block side for the tiles to compress the
full-resolution blocks; otherwise the client keeps the mosaic's sums at full
resolution and compresses every block itself (small mosaics and tests).
"""

from __future__ import annotations

import logging
import os
import struct
import uuid
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from rasterio.io import MemoryFile

from models.raster import GridSpec, Window

logger = logging.getLogger(__name__)

BLOCK = 512  # COG block side
# zlib level of DEFLATE blocks: 4 takes half the CPU of GDAL's default (libdeflate at 6) on
# orthophoto texture for files about 6% larger; zlib's 6 would take twice GDAL's CPU.
_ZLEVEL = 4
_CLASSIC_LIMIT = 2**32 - 1  # last byte a classic TIFF can address
_OPEN_FILES = 32  # tile files kept open while their blocks are copied

# TIFF field types.
_SHORT, _LONG, _RATIONAL, _LONG8, _ASCII = 3, 4, 5, 16, 2
_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 16: 8, 17: 8, 18: 8}
# GeoTIFF tags copied from the file GDAL writes for the grid: ModelPixelScale, ModelTiepoint,
# ModelTransformation, GeoKeyDirectory, GeoDoubleParams, GeoAsciiParams.
_GEO_TAGS = (33550, 33922, 34264, 34735, 34736, 34737)

U8 = NDArray[np.uint8]
Sums = NDArray[Any]  # (h, w, 4): sums of R, G, B over valid pixels, then the count of valid pixels


@dataclass(frozen=True)
class BlockPlan:
    """How the orthophoto is cut into blocks and levels, shared by the tile tasks and the client."""

    width: int
    height: int
    tile_size: int  # side of the tile tasks' windows (tiles start at multiples of it)
    compression: str  # "jpeg" (RGB as YCbCr 4:2:0 plus an internal mask) or "deflate" (RGBA)
    jpeg_quality: int = 90
    preview_px: int = 2000  # long side of the preview the client makes from its levels

    def __post_init__(self) -> None:
        if self.compression not in ("jpeg", "deflate"):
            raise ValueError(f"unknown orthophoto compression {self.compression!r}")

    @property
    def overviews(self) -> int:
        """Overview levels, as GDAL's COG driver picks them: halve until a level fits one block."""
        n, longest = 0, max(self.width, self.height)
        while -(-longest // 2**n) > BLOCK:
            n += 1
        return n

    @property
    def tile_levels(self) -> int:
        """Highest level whose blocks the tiles compress (-1: none; the tiles are not block-aligned)."""
        if self.tile_size % BLOCK:
            return -1
        k = 0
        while self.tile_size % (BLOCK * 2 ** (k + 1)) == 0:
            k += 1
        return min(k, self.overviews)

    @property
    def preview_level(self) -> int:
        """Coarsest level at least as large as the preview (level 0 when the mosaic is smaller; at most the top overview)."""
        longest = max(self.width, self.height)
        target = min(longest, self.preview_px)
        p = 0
        while p < self.overviews and -(-longest // 2 ** (p + 1)) >= target:
            p += 1
        return p

    @property
    def kept_level(self) -> int:
        """The level at which tiles hand over their pixel sums: the client builds every coarser level from it."""
        return min(self.preview_level, self.tile_levels + 1)

    def tiles_in_block(self, k: int, row: int, col: int) -> int:
        """How many tiles (windows of ``tile_size`` from the origin) reach level-``k`` block (row, col)."""
        span = BLOCK * 2**k
        r0, c0 = row * span, col * span
        r1, c1 = min(r0 + span, self.height), min(c0 + span, self.width)
        t = self.tile_size
        return ((r1 - 1) // t - r0 // t + 1) * ((c1 - 1) // t - c0 // t + 1)

    def children_of_block(self, k: int, row: int, col: int) -> int:
        """How many level-``k - 1`` blocks make up level-``k`` block (row, col)."""
        rows, cols = self.level_blocks(k - 1)
        return (min(2 * row + 2, rows) - 2 * row) * (min(2 * col + 2, cols) - 2 * col)

    def level_shape(self, k: int) -> tuple[int, int]:
        """(height, width) of level ``k`` (GDAL's overview sizes: rounded up)."""
        return -(-self.height // 2**k), -(-self.width // 2**k)

    def level_blocks(self, k: int) -> tuple[int, int]:
        h, w = self.level_shape(k)
        return -(-h // BLOCK), -(-w // BLOCK)

    def window_at(self, window: Window, k: int) -> Window:
        """A window's cells at level ``k`` (a reduced cell counts when any of its cells is inside)."""
        f = 2**k
        r0, c0 = window.row_off // f, window.col_off // f
        r1, c1 = -(-(window.row_off + window.height) // f), -(-(window.col_off + window.width) // f)
        return Window(c0, r0, c1 - c0, r1 - r0)

    def blocks_in(self, window: Window, k: int) -> list[tuple[int, int, Window]]:
        """(block row, block col, block window at level k clipped to the level) of the level-``k`` blocks of a tile."""
        lw = self.window_at(window, k)
        lh, lwid = self.level_shape(k)
        out = []
        for br in range(lw.row_off // BLOCK, -(-(lw.row_off + lw.height) // BLOCK)):
            for bc in range(lw.col_off // BLOCK, -(-(lw.col_off + lw.width) // BLOCK)):
                r0, c0 = br * BLOCK, bc * BLOCK
                out.append((br, bc, Window(c0, r0, min(BLOCK, lwid - c0), min(BLOCK, lh - r0))))
        return out


@dataclass(frozen=True)
class BlockSpan:
    """Where one compressed block (and its mask block) lies in a tile file."""

    level: int
    row: int  # block row in the level
    col: int
    offset: int
    size: int
    mask_offset: int = 0  # 0 and 0 when the format has no mask blocks (DEFLATE: alpha band)
    mask_size: int = 0


@dataclass(frozen=True)
class TileBlocks:
    """What the client needs from a tile file: its blocks, and its pixel sums at the plan's kept level
    (``sums_shape`` + 4 channels of ``sums_dtype`` from byte ``sums_offset``)."""

    window: Window
    blocks: tuple[BlockSpan, ...]
    sums_offset: int
    sums_shape: tuple[int, int]
    sums_dtype: str


def sum_dtype(level: int) -> np.dtype[Any]:
    """An unsigned type that holds the sum of 8-bit values over the 4**level cells of a level's pixel."""
    top = 255 * 4**level
    return np.dtype(np.uint16 if top < 2**16 else np.uint32 if top < 2**32 else np.uint64)


def halve(sums: Sums, level: int) -> Sums:
    """The sums of the next level (2x2 cells added, odd edges padded with empty cells)."""
    h, w, c = sums.shape
    out = np.zeros(((h + 1) // 2, (w + 1) // 2, c), sum_dtype(level + 1))
    for dy in (0, 1):
        for dx in (0, 1):
            part = sums[dy::2, dx::2]
            out[: part.shape[0], : part.shape[1]] += part
    return out


def mean_of(sums: Sums) -> tuple[U8, NDArray[np.bool_]]:
    """(h, w, 3) mean colour of the valid cells (0 where none, rounded to nearest) and the mask (any valid cell)."""
    planes = cv2.split(np.asarray(sums, np.float32))
    # OpenCV's division rounds to nearest, saturates, and gives 0 where the count is 0.
    rgb = cv2.merge([cv2.divide(planes[i], planes[3], dtype=cv2.CV_8U) for i in range(3)])
    return np.asarray(rgb, np.uint8), planes[3] > 0


# -- block codecs -----------------------------------------------------------------------------


def encode_block(rgb: U8, mask: NDArray[np.bool_], compression: str, quality: int) -> tuple[bytes, bytes]:
    """(image bytes, mask bytes) of one COG block from (h, w, 3) RGB and its (h, w) mask, h, w <= 512.

    JPEG: YCbCr 4:2:0 (a complete JPEG stream per block; libtiff needs no JPEGTables then),
    edges padded by repeating the last row and column, plus a 1-bit DEFLATE mask block.
    DEFLATE: RGBA (alpha = mask) with the horizontal predictor, no mask block.
    """
    h, w = mask.shape
    pad = ((0, BLOCK - h), (0, BLOCK - w))
    if compression == "jpeg":
        bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
        if (h, w) != (BLOCK, BLOCK):
            bgr = cv2.copyMakeBorder(bgr, 0, BLOCK - h, 0, BLOCK - w, cv2.BORDER_REPLICATE)
        ok, jpg = cv2.imencode(
            ".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420]
        )
        if not ok:
            raise RuntimeError("OpenCV could not JPEG-encode a COG block")
        bits = np.packbits(np.pad(mask, pad), axis=1)  # 1 bit per pixel, first pixel in the high bit
        return jpg.tobytes(), zlib.compress(bits.tobytes(), _ZLEVEL)
    rgba = np.zeros((BLOCK, BLOCK, 4), np.uint8)
    rgba[:h, :w, :3] = rgb
    rgba[:h, :w, 3] = mask * np.uint8(255)
    diff = rgba.copy()
    diff[:, 1:] -= rgba[:, :-1]  # TIFF predictor 2: each sample minus its left neighbour (mod 256)
    return zlib.compress(diff.tobytes(), _ZLEVEL), b""


@lru_cache(maxsize=4)
def empty_block(compression: str, quality: int) -> tuple[bytes, bytes]:
    """The block of a tile no image reaches (all zero, all masked), encoded once."""
    return encode_block(np.zeros((BLOCK, BLOCK, 3), np.uint8), np.zeros((BLOCK, BLOCK), bool), compression, quality)


def _tile_sums(rgb: U8, mask: NDArray[np.bool_]) -> NDArray[np.float32]:
    """(h, w, 4) float32: the covered pixels' RGB (0 elsewhere) and the coverage (1/0)."""
    m8 = np.ascontiguousarray(mask).view(np.uint8)
    rgba = cv2.merge([*cv2.split(np.ascontiguousarray(rgb)), m8])
    if not mask.all():
        rgba = cv2.multiply(rgba, cv2.merge([m8, m8, m8, m8]))
    return np.asarray(rgba, np.float32)


def _quad_sums(rgb: U8, mask: NDArray[np.bool_]) -> NDArray[np.float32]:
    """(ceil(h/2), ceil(w/2), 4) float32: :func:`_tile_sums` added over 2x2 pixels, in integers.

    The first halving reads the whole tile, so it stays in 8 and 16 bits: rows are added
    in pairs into uint16, then columns in pairs with the four uint16 channels of a pixel
    packed in one uint64 (each lane at most 4 * 255, so no carry crosses lanes); only the
    quarter-size result becomes float. Coverage is added as 255 and divided back (exact).
    """
    rgba = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2RGBA)
    if not mask.all():
        rgba = cv2.copyTo(rgba, np.ascontiguousarray(mask).view(np.uint8))
    h, w = mask.shape
    if h % 2 or w % 2:
        rgba = cv2.copyMakeBorder(rgba, 0, h % 2, 0, w % 2, cv2.BORDER_CONSTANT, value=0)
    h2, w2 = (h + 1) // 2, (w + 1) // 2
    pairs = rgba.reshape(h2, 2, 2 * w2, 4)
    rows = np.add(pairs[:, 0], pairs[:, 1], dtype=np.uint16).view(np.uint64).reshape(h2, 2 * w2)
    quads = np.add(rows[:, 0::2], rows[:, 1::2]).view(np.uint16).reshape(h2, w2, 4)
    out = quads.astype(np.float32)
    np.divide(out[..., 3], np.float32(255.0), out=out[..., 3])
    return out


def _halve_f32(s: NDArray[np.float32]) -> NDArray[np.float32]:
    """Sums over 2x2 cells (OpenCV's area resampling at an exact factor of 2 is their mean)."""
    h, w = s.shape[:2]
    if h % 2 or w % 2:
        s = np.asarray(cv2.copyMakeBorder(s, 0, h % 2, 0, w % 2, cv2.BORDER_CONSTANT, value=0), np.float32)
    half = cv2.resize(s, ((w + 1) // 2, (h + 1) // 2), interpolation=cv2.INTER_AREA)
    return np.asarray(half * np.float32(4.0), np.float32)


def write_tile_blocks(path: Path, window: Window, rgb: U8, mask: NDArray[np.bool_], plan: BlockPlan) -> TileBlocks:
    """Tile task side: write a tile's pixel sums at the kept level and its compressed blocks to ``path``.

    ``rgb`` is (h, w, 3) uint8 for ``window`` and ``mask`` its (h, w) coverage. The tile's
    levels are exact area averages of the covered pixels (float sums of 8-bit values).
    """
    if window.row_off % plan.tile_size or window.col_off % plan.tile_size:
        raise ValueError(f"tile window {window} does not start on the {plan.tile_size}-px tile grid")
    spans: list[BlockSpan] = []
    sums: NDArray[np.float32] | None = None
    kept: Sums | None = None
    kept_at = 0
    try:
        with open(path, "wb") as fh:
            for k in range(max(plan.tile_levels, plan.kept_level) + 1):
                if k:
                    sums = _quad_sums(rgb, mask) if sums is None else _halve_f32(sums)
                if k == plan.kept_level:
                    kept = (_tile_sums(rgb, mask) if sums is None else sums).astype(sum_dtype(k))
                    kept_at = fh.tell()
                    fh.write(kept.tobytes())
                if k > plan.tile_levels:
                    continue
                lw = plan.window_at(window, k)
                level_rgb, level_mask = (rgb, mask) if sums is None else mean_of(sums)
                for br, bc, bw in plan.blocks_in(window, k):
                    sl = bw.relative_to(lw).slices
                    img, msk = encode_block(level_rgb[sl], level_mask[sl], plan.compression, plan.jpeg_quality)
                    off = fh.tell()
                    fh.write(img)
                    fh.write(msk)
                    spans.append(BlockSpan(k, br, bc, off, len(img), off + len(img) if msk else 0, len(msk)))
    except OSError as exc:
        raise OSError(f"could not write the tile file {path}: {exc}") from exc
    assert kept is not None
    return TileBlocks(window, tuple(spans), kept_at, (kept.shape[0], kept.shape[1]), str(kept.dtype))


def read_tile_sums(path: Path, tile: TileBlocks) -> Sums:
    """The (h, w, 4) pixel sums a tile task wrote at the kept level."""
    h, w = tile.sums_shape
    dt = np.dtype(tile.sums_dtype)
    try:
        return np.fromfile(path, dtype=dt, count=h * w * 4, offset=tile.sums_offset).reshape(h, w, 4)
    except (OSError, ValueError) as exc:
        raise OSError(f"could not read the tile file {path}: {exc}") from exc


# -- TIFF structure ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TiffField:
    """One IFD entry: tag, field type, value count and the values' bytes (little-endian)."""

    tag: int
    type: int
    count: int
    data: bytes


def _field(tag: int, type_: int, values: list[int]) -> TiffField:
    fmt = {_SHORT: "H", _LONG: "I", _LONG8: "Q", _RATIONAL: "I"}[type_]
    count = len(values) // 2 if type_ == _RATIONAL else len(values)
    return TiffField(tag, type_, count, struct.pack(f"<{len(values)}{fmt}", *values))


def _size_field(tag: int, value: int) -> TiffField:
    return _field(tag, _SHORT if value < 2**16 else _LONG, [value])


def read_ifd(data: bytes, offset: int | None = None) -> tuple[dict[int, TiffField], int]:
    """The fields of one IFD of a little-endian TIFF or BigTIFF held in ``data`` (the first IFD by default),
    and the offset of the next IFD (0 at the last)."""
    if data[:2] != b"II":
        raise ValueError("only little-endian TIFF is read")
    big = struct.unpack_from("<H", data, 2)[0] == 43
    if offset is None:
        offset = struct.unpack_from("<Q", data, 8)[0] if big else struct.unpack_from("<I", data, 4)[0]
    n = struct.unpack_from("<Q" if big else "<H", data, offset)[0]
    pos, size, inline = offset + (8 if big else 2), (20 if big else 12), (8 if big else 4)
    fields: dict[int, TiffField] = {}
    for i in range(n):
        e = pos + i * size
        tag, typ = struct.unpack_from("<HH", data, e)
        count = struct.unpack_from("<Q" if big else "<I", data, e + 4)[0]
        nbytes = _TYPE_SIZE[typ] * count
        vpos = e + (12 if big else 8)
        if nbytes > inline:
            vpos = struct.unpack_from("<Q" if big else "<I", data, vpos)[0]
        fields[tag] = TiffField(tag, typ, count, bytes(data[vpos : vpos + nbytes]))
    nxt = struct.unpack_from("<Q" if big else "<I", data, pos + n * size)[0]
    return fields, int(nxt)


def geotiff_fields(grid: GridSpec) -> list[TiffField]:
    """The GeoTIFF fields of ``grid`` (CRS GeoKeys, pixel scale, tie point) as GDAL writes them.

    GDAL writes a 1x1 GeoTIFF with the grid's CRS and transform in memory and its
    GeoTIFF tags are copied, so any CRS GDAL knows is encoded the way GDAL encodes it.
    """
    with MemoryFile() as mem:
        with mem.open(driver="GTiff", width=1, height=1, count=1, dtype="uint8", crs=grid.crs, transform=grid.transform) as ds:
            ds.write(np.zeros((1, 1, 1), np.uint8))
        data = mem.read()
    fields, _ = read_ifd(data)
    return [fields[t] for t in _GEO_TAGS if t in fields]


def _ifd_bytes(fields: list[TiffField], pos: int, big: bool, next_ifd: int) -> bytes:
    """One IFD at file offset ``pos``, its long values right after it (word-aligned)."""
    fields = sorted(fields, key=lambda f: f.tag)
    inline = 8 if big else 4
    head = (8 if big else 2) + len(fields) * (20 if big else 12) + (8 if big else 4)
    extra = bytearray()
    entries = bytearray(struct.pack("<Q" if big else "<H", len(fields)))
    for f in fields:
        entries += struct.pack("<HH", f.tag, f.type) + struct.pack("<Q" if big else "<I", f.count)
        if len(f.data) <= inline:
            entries += f.data.ljust(inline, b"\0")
        else:
            entries += struct.pack("<Q" if big else "<I", pos + head + len(extra))
            extra += f.data
            if len(extra) % 2:
                extra += b"\0"
    entries += struct.pack("<Q" if big else "<I", next_ifd)
    return bytes(entries + extra)


def _ghost(masks: bool) -> bytes:
    """GDAL's structural metadata: the layout below is what the COG driver writes, leaders and trailers included."""
    body = (
        "LAYOUT=IFDS_BEFORE_DATA\nBLOCK_ORDER=ROW_MAJOR\nBLOCK_LEADER=SIZE_AS_UINT4\n"
        "BLOCK_TRAILER=LAST_4_BYTES_REPEATED\nKNOWN_INCOMPATIBLE_EDITION=NO\n "
    )
    if masks:
        body += "MASK_INTERLEAVED_WITH_IMAGERY=YES\n"
    text = f"GDAL_STRUCTURAL_METADATA_SIZE={len(body):06d} bytes\n{body}".encode("ascii")
    return text + (b"\0" if len(text) % 2 else b"")


Source = bytes | tuple[str, int, int]  # block bytes in memory, or (file, offset, size)


def _src_size(s: Source) -> int:
    return len(s) if isinstance(s, bytes) else s[2]


class CogBlockWriter:
    """The client side: collect the tiles' blocks, build the coarse levels as the tiles come in, write the COG.

    Tiles hand over their pixel sums at the plan's kept level. The client adds
    them into that level's blocks; a block that has all its tiles is compressed
    (if no tile compressed it), written into the preview if it is at the preview
    level, halved into its parent block and dropped, and so on up the levels. Fed
    in row order (``write_orthophoto`` sorts the tiles), the open blocks are at
    most about one row of blocks per level, so memory grows with the mosaic's
    width at most, not with its area; the blocks the client compresses go to a
    side file, and the full-resolution blocks go from the tile files to the
    output without being decoded. The preview (the preview level's mean colours,
    2000-4000 px on the long side) is the one array whose size is fixed by the
    configuration, not by the mosaic.
    """

    def __init__(self, final: Path, grid: GridSpec, plan: BlockPlan, description: str = "") -> None:
        if (grid.width, grid.height) != (plan.width, plan.height):
            raise ValueError(f"block plan {plan.width}x{plan.height} does not match the grid {grid.width}x{grid.height}")
        self.final = Path(final)
        self.grid = grid
        self.plan = plan
        self.description = description
        self.masks = plan.compression == "jpeg"
        self._geo = geotiff_fields(grid)
        self._open: dict[tuple[int, int, int], list[Any]] = {}  # (level, row, col) -> [sums, contributions still due]
        self._open_bytes = 0
        self.peak_open_bytes = 0  # most bytes of open blocks at once (a bound the tests check)
        ph, pw = plan.level_shape(plan.preview_level)
        self._preview_rgb = np.zeros((ph, pw, 3), np.uint8)
        self._preview_valid = np.zeros((ph, pw), bool)
        self._side = self.final.parent / f".tmp-{uuid.uuid4().hex[:12]}-overviews-{self.final.stem}.bin"
        self._side_fh: Any = None
        n = plan.overviews
        self._image: list[list[Source | None]] = []
        self._mask: list[list[Source | None]] = []
        for lvl in range(n + 1):
            rows, cols = plan.level_blocks(lvl)
            self._image.append([None] * (rows * cols))
            self._mask.append([None] * (rows * cols))

    def _put(self, level: int, row: int, col: int, image: Source, mask: Source | None) -> None:
        i = row * self.plan.level_blocks(level)[1] + col
        self._image[level][i] = image
        self._mask[level][i] = mask

    def add_tile(self, path: Path, tile: TileBlocks) -> None:
        """Take one tile file: its blocks as file spans, its sums into the kept level's blocks."""
        k = self.plan.kept_level
        lw = self.plan.window_at(tile.window, k)
        if (lw.height, lw.width) != tile.sums_shape:
            raise ValueError(f"tile file {path} holds sums of {tile.sums_shape}, the plan expects {(lw.height, lw.width)}")
        p = str(path)
        for b in tile.blocks:
            self._put(b.level, b.row, b.col, (p, b.offset, b.size), (p, b.mask_offset, b.mask_size) if b.mask_size else None)
        self._add_sums(tile.window, read_tile_sums(path, tile))

    def add_empty(self, window: Window) -> None:
        """A tile no image reaches: its blocks are the shared empty block (its sums are zero)."""
        img, msk = empty_block(self.plan.compression, self.plan.jpeg_quality)
        for k in range(self.plan.tile_levels + 1):
            for br, bc, _ in self.plan.blocks_in(window, k):
                self._put(k, br, bc, img, msk or None)
        self._add_sums(window, None)

    def _add_sums(self, window: Window, sums: Sums | None) -> None:
        """A tile's sums (None: all zero) into the kept level's blocks it reaches."""
        k = self.plan.kept_level
        lw = self.plan.window_at(window, k)
        for br, bc, bw in self.plan.blocks_in(window, k):
            block = self._block(k, br, bc, self.plan.tiles_in_block(k, br, bc))
            if sums is not None:
                part = bw.intersection(lw)
                block[0][part.relative_to(bw).slices] += sums[part.relative_to(lw).slices]
            self._contributed(k, br, bc)

    def _block(self, k: int, row: int, col: int, due: int) -> list[Any]:
        """The open block (level, row, col), opened with ``due`` contributions to come."""
        key = (k, row, col)
        block = self._open.get(key)
        if block is None:
            h, w = self.plan.level_shape(k)
            shape = (min(BLOCK, h - row * BLOCK), min(BLOCK, w - col * BLOCK), 4)
            block = self._open[key] = [np.zeros(shape, sum_dtype(k)), due]
            self._open_bytes += block[0].nbytes
            self.peak_open_bytes = max(self.peak_open_bytes, self._open_bytes)
        return block

    def _contributed(self, k: int, row: int, col: int) -> None:
        """One contribution to a block is in; a complete block is finished and passed up."""
        block = self._open[(k, row, col)]
        block[1] -= 1
        if block[1] > 0:
            return
        del self._open[(k, row, col)]
        sums: Sums = block[0]
        self._open_bytes -= sums.nbytes
        plan = self.plan
        if k == plan.preview_level or k > plan.tile_levels:
            rgb, valid = mean_of(sums)
            if k == plan.preview_level:
                sl = (slice(row * BLOCK, row * BLOCK + sums.shape[0]), slice(col * BLOCK, col * BLOCK + sums.shape[1]))
                self._preview_rgb[sl], self._preview_valid[sl] = rgb, valid
            if k > plan.tile_levels:
                img, msk = encode_block(rgb, valid, plan.compression, plan.jpeg_quality)
                self._put(k, row, col, self._spill(img), self._spill(msk) if msk else None)
        if k < plan.overviews:
            half = halve(sums, k)
            pr, pc = row // 2, col // 2
            parent = self._block(k + 1, pr, pc, plan.children_of_block(k + 1, pr, pc))
            r0, c0 = (row % 2) * (BLOCK // 2), (col % 2) * (BLOCK // 2)
            parent[0][r0 : r0 + half.shape[0], c0 : c0 + half.shape[1]] += half
            self._contributed(k + 1, pr, pc)

    def _spill(self, data: bytes) -> Source:
        """A block the client compressed, appended to the side file (the overview bytes are not kept in memory)."""
        if self._side_fh is None:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            self._side_fh = open(self._side, "wb")
        off = self._side_fh.tell()
        self._side_fh.write(data)
        return (str(self._side), off, len(data))

    def preview(self) -> tuple[U8, U8]:
        """(3, h, w) RGB and (h, w) mask (0/255) at about the plan's preview size, from the level nearest above it."""
        if self._open:
            raise RuntimeError(f"{self.final}: the preview needs every tile ({len(self._open)} blocks still open)")
        rgb, valid = self._preview_rgb, self._preview_valid
        h, w = valid.shape
        longest = max(self.plan.width, self.plan.height)
        scale = min(1.0, self.plan.preview_px / longest)
        size = (max(1, int(round(self.plan.width * scale))), max(1, int(round(self.plan.height * scale))))
        mask = valid.astype(np.uint8) * np.uint8(255)
        if size != (w, h):
            rgb = np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), np.uint8)
            mask = np.asarray(cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST), np.uint8)
        return np.moveaxis(rgb, -1, 0), mask

    def write(self) -> None:
        """Write the COG to a temporary name, then rename it into place (the side file is removed either way)."""
        try:
            if self._side_fh is not None:
                self._side_fh.close()
            for k, blocks in enumerate(self._image):
                missing = [i for i, s in enumerate(blocks) if s is None]
                if missing:
                    cols = self.plan.level_blocks(k)[1]
                    raise RuntimeError(
                        f"{self.final}: level {k} has no data for block {divmod(missing[0], cols)} ({len(missing)} missing)"
                    )
            self.final.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.final.parent / f".tmp-{uuid.uuid4().hex[:12]}-{self.final.name}"
            try:
                big = self._write_to(tmp, big=False)
                if big:
                    self._write_to(tmp, big=True)
                os.replace(tmp, self.final)
            finally:
                tmp.unlink(missing_ok=True)
        finally:
            self.discard()
        logger.info(
            "wrote %s (%d x %d, %s, %d overviews, %s)", self.final, self.grid.width, self.grid.height,
            self.plan.compression, self.plan.overviews, "BigTIFF" if big else "TIFF",
        )

    def discard(self) -> None:
        """Drop the side file of client-compressed blocks (after :meth:`write`, or when the stage fails before it)."""
        if self._side_fh is not None:
            self._side_fh.close()
        self._side.unlink(missing_ok=True)

    def _ifd_fields(self, level: int, mask: bool, offsets: list[int], sizes: list[int], big: bool) -> list[TiffField]:
        h, w = self.plan.level_shape(level)
        jpeg = self.plan.compression == "jpeg"
        off_type = _LONG8 if big else _LONG
        fields = [
            _size_field(256, w),
            _size_field(257, h),
            _field(284, _SHORT, [1]),
            _field(322, _SHORT, [BLOCK]),
            _field(323, _SHORT, [BLOCK]),
            _field(324, off_type, offsets),
            _field(325, off_type, sizes),
        ]
        if mask:
            fields += [
                _field(254, _LONG, [4 if level == 0 else 5]),  # transparency mask (of a reduced image)
                _field(258, _SHORT, [1]),
                _field(259, _SHORT, [8]),
                _field(262, _SHORT, [4]),
                _field(277, _SHORT, [1]),
                _field(317, _SHORT, [1]),
                _field(339, _SHORT, [1]),
            ]
            return fields
        spp = 3 if jpeg else 4
        if level:
            fields.append(_field(254, _LONG, [1]))  # reduced-resolution image
        fields += [
            _field(258, _SHORT, [8] * spp),
            _field(259, _SHORT, [7 if jpeg else 8]),
            _field(262, _SHORT, [6 if jpeg else 2]),
            _field(277, _SHORT, [spp]),
            _field(339, _SHORT, [1] * spp),
        ]
        if jpeg:
            fields += [_field(530, _SHORT, [2, 2]), _field(532, _RATIONAL, [0, 1, 255, 1, 128, 1, 255, 1, 128, 1, 255, 1])]
        else:
            fields += [_field(317, _SHORT, [2]), _field(338, _SHORT, [2])]  # horizontal predictor; unassociated alpha
        if level == 0:
            fields += self._geo
            if self.description:
                text = self.description.encode("utf-8") + b"\0"
                fields.append(TiffField(270, _ASCII, len(text), text))
        return fields

    def _write_to(self, path: Path, big: bool) -> bool:
        """Lay the file out and write it; returns True (writing nothing) when it needs BigTIFF and ``big`` is False."""
        n = self.plan.overviews
        order = [(0, False)] + ([(0, True)] if self.masks else []) + [(k, False) for k in range(1, n + 1)]
        if self.masks:
            order += [(k, True) for k in range(1, n + 1)]
        blocks = {(k, m): (self._mask if m else self._image)[k] for k, m in order}
        header = 16 if big else 8
        ghost = _ghost(self.masks)
        # IFD sizes do not depend on the offsets' values: lay the IFDs out with zeros first.
        pos = header + len(ghost)
        ifd_pos: list[int] = []
        for k, m in order:
            ifd_pos.append(pos)
            zeros = [0] * len(blocks[(k, m)])
            pos += len(_ifd_bytes(self._ifd_fields(k, m, zeros, zeros, big), pos, big, 0))
        # Data: smallest overview first; per block a 4-byte size, the bytes, their last 4 bytes again.
        offsets = {key: [0] * len(v) for key, v in blocks.items()}
        sequence: list[Source] = []
        for k in range(n, -1, -1):
            for i, img in enumerate(self._image[k]):
                for m, src in ((False, img), (True, self._mask[k][i] if self.masks else None)):
                    if src is None:
                        continue
                    offsets[(k, m)][i] = pos + 4
                    pos += 8 + _src_size(src)
                    sequence.append(src)
        if pos > _CLASSIC_LIMIT and not big:
            return True
        out = bytearray(b"II" + (struct.pack("<HHHQ", 43, 8, 0, ifd_pos[0]) if big else struct.pack("<HI", 42, ifd_pos[0])))
        out += ghost
        for j, (k, m) in enumerate(order):
            sizes = [_src_size(s) for s in blocks[(k, m)] if s is not None]
            nxt = ifd_pos[j + 1] if j + 1 < len(order) else 0
            out += _ifd_bytes(self._ifd_fields(k, m, offsets[(k, m)], sizes, big), ifd_pos[j], big, nxt)
        try:
            with open(path, "wb", buffering=4 << 20) as fh:
                fh.write(out)
                self._copy_blocks(fh, sequence)
        except OSError as exc:
            raise OSError(f"could not write the orthophoto {path}: {exc}") from exc
        return False

    @staticmethod
    def _copy_blocks(fh: Any, sequence: list[Source]) -> None:
        files: OrderedDict[str, int] = OrderedDict()
        try:
            for src in sequence:
                if isinstance(src, bytes):
                    data = src
                else:
                    name, off, size = src
                    fd = files.get(name)
                    if fd is None:
                        if len(files) >= _OPEN_FILES:
                            os.close(files.popitem(last=False)[1])
                        try:
                            fd = os.open(name, os.O_RDONLY)
                        except OSError as exc:
                            raise OSError(f"could not open the tile file {name}: {exc}") from exc
                        files[name] = fd
                    files.move_to_end(name)
                    data = os.pread(fd, size, off)
                    if len(data) != size:
                        raise OSError(f"tile file {name} is truncated (block at {off}, {size} bytes)")
                fh.write(struct.pack("<I", len(data)))
                fh.write(data)
                fh.write(data[-4:])
        finally:
            for fd in files.values():
                os.close(fd)

