"""Depth maps on disk: one compressed NPZ per image (float32 depth, uint8 colour and view counts)."""

from __future__ import annotations

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
    np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]


def read_depthmap(path: Path, with_colour: bool = True) -> DepthMap:
    with np.load(path) as z:
        return DepthMap(
            image=str(z["image"]),
            scale=float(z["scale"]),
            depth=z["depth"],
            rgb=z["rgb"] if with_colour and "rgb" in z.files else None,
            views=z["views"] if "views" in z.files else None,
        )
