"""Point-cloud outputs: LAZ 1.4 (point format 7) streamed with laspy, and COPC written with copclib.

Both take points chunk by chunk, so memory is bounded by a chunk (one tile),
never the whole cloud. Coordinates are stored in millimetres (scale 0.001)
around a rounded offset; the CRS goes in an OGC WKT VLR with the WKT bit of
the global encoding set, as LAS 1.4 requires for point formats 6-10.

COPC needs every octree node's points at once, and a node high in the tree
spans many tiles, so :class:`CopcBuilder` works in two passes: ``add``
assigns each point of a chunk to an octree level (one point per voxel of a
128^3 grid per node at every level above the leaves, the rest at the leaves)
and appends its packed record to that node's scratch file; ``write`` then
hands the nodes to copclib one at a time. Peak memory is one chunk plus one
node; the scratch files take about 36 bytes per point on disk.
"""

from __future__ import annotations

import math
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import laspy
import numpy as np
import pyproj
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
U8 = NDArray[np.uint8]

POINT_FORMAT = 7
SCALE = 0.001  # millimetres in a metric CRS
WKT_BIT = 1 << 4  # LAS 1.4 global encoding: CRS given as OGC WKT


@dataclass(frozen=True)
class CloudFrame:
    """Where a cloud's integer coordinates live: CRS, offset and scale."""

    crs_wkt: str
    offset: tuple[float, float, float]
    scale: float = SCALE

    @classmethod
    def around(cls, crs: str, lo: FloatArray, scale: float = SCALE) -> "CloudFrame":
        """A frame whose offset is ``lo`` rounded down to whole hundreds of metres."""
        wkt = pyproj.CRS.from_user_input(crs).to_wkt()
        off = tuple(float(math.floor(v / 100.0) * 100.0) for v in lo)
        return cls(wkt, (off[0], off[1], off[2]), scale)


def point_record(frame: CloudFrame, xyz: FloatArray, rgb: U8, classification: U8) -> laspy.ScaleAwarePointRecord:
    """Format-7 records: position, RGB (16-bit), class, single return."""
    rec = laspy.ScaleAwarePointRecord.zeros(
        len(xyz), point_format=laspy.PointFormat(POINT_FORMAT), scales=np.full(3, frame.scale), offsets=np.asarray(frame.offset)
    )
    rec.x = xyz[:, 0]
    rec.y = xyz[:, 1]
    rec.z = xyz[:, 2]
    rgb16 = rgb.astype(np.uint16) * 257
    rec.red = rgb16[:, 0]
    rec.green = rgb16[:, 1]
    rec.blue = rgb16[:, 2]
    rec.classification = classification
    rec.return_number = np.ones(len(xyz), np.uint8)
    rec.number_of_returns = np.ones(len(xyz), np.uint8)
    return rec


class LazWriter:
    """Stream chunks of points into a LAZ 1.4 file (point format 7, WKT CRS)."""

    def __init__(self, path: Path, frame: CloudFrame) -> None:
        self.path = Path(path)
        self.frame = frame
        header = laspy.LasHeader(point_format=POINT_FORMAT, version="1.4")
        header.offsets = np.asarray(frame.offset)
        header.scales = np.full(3, frame.scale)
        header.add_crs(pyproj.CRS.from_wkt(frame.crs_wkt))
        header.global_encoding.wkt = True
        header.generating_software = "Aerobase"
        self._header = header
        self._writer: laspy.LasWriter | None = None
        self.points = 0

    def __enter__(self) -> "LazWriter":
        self._writer = laspy.open(self.path, mode="w", header=self._header, do_compress=True)
        return self

    def write(self, xyz: FloatArray, rgb: U8, classification: U8) -> None:
        if len(xyz) == 0:
            return
        assert self._writer is not None, "use LazWriter as a context manager"
        self._writer.write_points(point_record(self.frame, xyz, rgb, classification))
        self.points += len(xyz)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


@dataclass(frozen=True)
class Octree:
    """The COPC cube and its sampling grid."""

    center: tuple[float, float, float]
    halfsize: float
    max_depth: int
    grid: int = 128  # voxels per node side used to thin the upper levels

    @classmethod
    def for_bounds(cls, lo: FloatArray, hi: FloatArray, spacing: float, grid: int = 128) -> "Octree":
        """The cube [lo, lo + span] (span = the largest extent), deep enough for leaf voxels ~``spacing``.

        Anchoring the cube at the header minimum makes the COPC info cube
        (centre, halfsize) and copclib's header-based node boxes the same boxes.
        """
        lo = np.asarray(lo, dtype=np.float64)
        hi = np.asarray(hi, dtype=np.float64)
        half = max(float(max(hi - lo)), 1e-3) / 2.0
        center = lo + half
        depth = max(0, int(math.ceil(math.log2(max(2.0 * half / (grid * spacing), 1.0)))))
        return cls((float(center[0]), float(center[1]), float(center[2])), half, min(depth, 14), grid)

    @property
    def spacing(self) -> float:
        """Voxel size at the root (COPC info ``spacing``)."""
        return 2.0 * self.halfsize / self.grid

    def cells(self, xyz: FloatArray, level: int) -> NDArray[np.int64]:
        """Integer voxel coordinates (N, 3) of points at a level's sampling grid."""
        lo = np.asarray(self.center) - self.halfsize
        n = self.grid << level
        c = np.floor((xyz - lo) / (2.0 * self.halfsize) * n).astype(np.int64)
        return np.clip(c, 0, n - 1)

    def assign(self, xyz: FloatArray, seed: int = 0) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Octree level and node key (N, 4: d, x, y, z) of every point.

        At each level above the leaves one point per occupied voxel (chosen in a
        seeded random order) stays there; the others go deeper; leaves keep the
        rest. Tiles that share a voxel may each keep one point in it: COPC only
        asks that a node's points lie inside it, which always holds.
        """
        n = len(xyz)
        level = np.full(n, self.max_depth, dtype=np.int64)
        order = np.random.default_rng(seed).permutation(n)
        remaining = order
        for d in range(self.max_depth):
            if len(remaining) == 0:
                break
            c = self.cells(xyz[remaining], d)
            m = np.int64(self.grid << d)
            flat = (c[:, 0] * m + c[:, 1]) * m + c[:, 2]
            _, first = np.unique(flat, return_index=True)
            taken = np.zeros(len(remaining), dtype=bool)
            taken[first] = True
            level[remaining[taken]] = d
            remaining = remaining[~taken]
        keys = np.empty((n, 4), dtype=np.int64)
        keys[:, 0] = level
        for d in np.unique(level):
            sel = level == d
            keys[sel, 1:] = self.cells(xyz[sel], int(d)) // self.grid
        return level, keys


class CopcBuilder:
    """Two-pass COPC writer: ``add`` chunks (spilled per node to ``scratch``), then ``write``."""

    def __init__(self, frame: CloudFrame, lo: FloatArray, hi: FloatArray, spacing: float, scratch: Path, grid: int = 128) -> None:
        """``lo``/``hi`` bound every point that will be added; ``spacing`` is the leaf point spacing."""
        self.frame = frame
        self.lo = self._stored(np.asarray(lo, dtype=np.float64))
        # One scale step of headroom: a point exactly on the far faces must not fall outside a
        # node box through floating-point rounding (copclib derives boxes from min + span).
        self.hi = self._stored(np.asarray(hi, dtype=np.float64)) + frame.scale
        self.octree = Octree.for_bounds(self.lo, self.hi, spacing, grid)
        self.scratch = Path(scratch)
        if self.scratch.exists():
            shutil.rmtree(self.scratch)
        self.scratch.mkdir(parents=True)
        self.points = 0
        self._chunks = 0

    def _stored(self, v: FloatArray) -> FloatArray:
        """Coordinates as the file stores them (rounded to the scale around the offset)."""
        off = np.asarray(self.frame.offset)
        return np.round((v - off) / self.frame.scale) * self.frame.scale + off

    def _node_file(self, key: NDArray[np.int64]) -> Path:
        return self.scratch / f"{key[0]}-{key[1]}-{key[2]}-{key[3]}.bin"

    def add(self, xyz: FloatArray, rgb: U8, classification: U8) -> None:
        if len(xyz) == 0:
            return
        rec = point_record(self.frame, xyz, rgb, classification)
        scaled = np.column_stack([np.asarray(rec.x), np.asarray(rec.y), np.asarray(rec.z)])
        if np.any(scaled < self.lo - 1e-9) or np.any(scaled > self.hi):
            raise ValueError("CopcBuilder.add: points outside the bounds given at construction")
        _, keys = self.octree.assign(scaled, seed=self._chunks)
        self._chunks += 1
        order = np.lexsort((keys[:, 3], keys[:, 2], keys[:, 1], keys[:, 0]))
        keys = keys[order]
        raw = rec.array[order]
        breaks = np.nonzero(np.any(np.diff(keys, axis=0) != 0, axis=1))[0] + 1
        starts = np.concatenate([[0], breaks])
        ends = np.concatenate([breaks, [len(keys)]])
        for s, e in zip(starts, ends):
            with open(self._node_file(keys[s]), "ab") as fh:
                fh.write(raw[s:e].tobytes())
        self.points += len(xyz)

    def write(self, path: Path) -> int:
        """Write the COPC file from the spilled nodes; returns the number of nodes."""
        import copclib

        cfg = copclib.CopcConfigWriter(
            POINT_FORMAT,
            copclib.Vector3(self.frame.scale, self.frame.scale, self.frame.scale),
            copclib.Vector3(*self.frame.offset),
            self.frame.crs_wkt,
        )
        header = cfg.las_header
        header.min = copclib.Vector3(*(float(v) for v in self.lo))
        header.max = copclib.Vector3(*(float(v) for v in self.hi))
        header.global_encoding = header.global_encoding | WKT_BIT
        info = cfg.copc_info
        info.center_x, info.center_y, info.center_z = self.octree.center
        info.halfsize = self.octree.halfsize
        info.spacing = self.octree.spacing
        writer = copclib.FileWriter(str(path), cfg)
        nodes = 0
        try:
            for f in sorted(self.scratch.glob("*.bin"), key=lambda p: tuple(int(v) for v in p.stem.split("-"))):
                d, x, y, z = (int(v) for v in f.stem.split("-"))
                data = np.fromfile(f, dtype=np.int8)
                writer.AddNode(copclib.VoxelKey(d, x, y, z), copclib.VectorChar(data))
                nodes += 1
                os.unlink(f)
        finally:
            writer.Close()
        shutil.rmtree(self.scratch, ignore_errors=True)
        return nodes



def write_las(
    path: Path,
    xyz: FloatArray,
    rgb: U8 | None,
    crs_wkt: str,
    classification: U8 | None = None,
    scale: float = SCALE,
) -> int:
    """Write one in-memory cloud (small clouds such as SfM tie points) as LAZ; returns N.

    Same format as :class:`LazWriter` (LAS 1.4, point format 7, WKT CRS, mm
    scale). Written under a temporary name and renamed into place.
    """
    path = Path(path)
    pts = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    n = len(pts)
    colours = np.zeros((n, 3), np.uint8) if rgb is None else np.asarray(rgb, np.uint8).reshape(n, 3)
    classes = np.zeros(n, np.uint8) if classification is None else np.asarray(classification, np.uint8).reshape(n)
    frame = CloudFrame.around(crs_wkt, pts.min(axis=0) if n else np.zeros(3), scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{uuid.uuid4().hex[:12]}-{path.name}"
    try:
        with LazWriter(tmp, frame) as laz:
            laz.write(pts, colours, classes)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return n


def read_las_xyz(path: Path) -> tuple[FloatArray, str | None]:
    """(N, 3) coordinates and the CRS WKT (None when absent) of a LAS/LAZ file."""
    las = laspy.read(str(path))
    crs = las.header.parse_crs()
    xyz = np.stack([np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)], axis=1)
    return xyz, (crs.to_wkt() if crs is not None else None)
