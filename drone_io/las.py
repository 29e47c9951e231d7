"""LAS/LAZ point clouds (laspy + lazrs): LAS 1.4, point format 7, CRS as a WKT VLR.

The file is written under a temporary name beside the target and renamed into
place, so a killed run never leaves a half-written cloud under the final name.
``.laz`` compresses (lazrs); ``.las`` does not.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import laspy
import numpy as np
import pyproj
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

# ASPRS classification codes used by Aerobase.
CLASS_CREATED = 0
CLASS_UNCLASSIFIED = 1
CLASS_GROUND = 2


def write_las(
    path: Path,
    xyz: FloatArray,
    rgb: NDArray[np.uint8] | None,
    crs_wkt: str,
    classification: NDArray[np.uint8] | None = None,
    scale: float = 0.001,
) -> int:
    """Write points (N, 3) in the CRS ``crs_wkt`` with optional 8-bit RGB and classes; returns N.

    Coordinates are stored at ``scale`` (1 mm by default) around a rounded
    offset; colours are widened to LAS's 16 bits.
    """
    path = Path(path)
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    n = len(xyz)
    header = laspy.LasHeader(point_format=7, version="1.4")
    header.scales = np.array([scale, scale, scale])
    header.offsets = np.floor(xyz.min(axis=0)) if n else np.zeros(3)
    header.add_crs(pyproj.CRS.from_user_input(crs_wkt))
    las = laspy.LasData(header)
    las.x = xyz[:, 0]
    las.y = xyz[:, 1]
    las.z = xyz[:, 2]
    if rgb is not None:
        c = np.asarray(rgb, dtype=np.uint16).reshape(-1, 3) * 257  # 0..255 -> 0..65535
        las.red, las.green, las.blue = c[:, 0], c[:, 1], c[:, 2]
    if classification is not None:
        las.classification = np.asarray(classification, dtype=np.uint8).reshape(n)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{uuid.uuid4().hex[:12]}-{path.name}"
    try:
        las.write(str(tmp), do_compress=path.suffix.lower() == ".laz")
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
