"""Depth maps on disk: one NPZ per image (float32 depth, uint8 colour and view counts), deflated."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import BinaryIO

import numpy as np

from models.depthmap import DepthMap


def write_depthmap(fh: BinaryIO | Path, dm: DepthMap) -> None:
    arrays: dict[str, np.ndarray] = {
        "depth": np.asarray(dm.depth, dtype=np.float32),
        "image": np.array(dm.image),
        "scale": np.array(dm.scale, dtype=np.float64),
    }
    if dm.rgb is not None:
        arrays["rgb"] = np.asarray(dm.rgb, dtype=np.uint8)
    if dm.views is not None:
        arrays["views"] = np.asarray(dm.views, dtype=np.uint8)
    # An NPZ (a zip of .npy members) deflated at level 1: most of the size gain, little of the time.
    with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for key, value in arrays.items():
            with zf.open(f"{key}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, value, allow_pickle=False)


def read_depthmap(path: Path, with_colour: bool = True) -> DepthMap:
    with np.load(path) as z:
        return DepthMap(
            image=str(z["image"]),
            scale=float(z["scale"]),
            depth=z["depth"],
            rgb=z["rgb"] if with_colour and "rgb" in z.files else None,
            views=z["views"] if "views" in z.files else None,
        )
