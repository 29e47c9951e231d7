"""Decode an image at a fraction of its resolution, cheaply (JPEG DCT-domain reduction).

Pixels come back upright (EXIF orientation applied, like the width and height
that ingest records) and in RGB order.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from models.errors import InputError

_REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def read_rgb_resized(path: Path, full_size: tuple[int, int], width: int, height: int) -> NDArray[np.uint8]:
    """The image at ``path`` (``full_size`` = (width, height) upright) resampled to ``width`` x ``height``, RGB uint8."""
    data = np.fromfile(str(path), dtype=np.uint8)
    factor = 1
    for f in (8, 4, 2):
        if full_size[0] // f >= width and full_size[1] // f >= height:
            factor = f
            break
    img = cv2.imdecode(data, _REDUCED[factor])
    if img is None and factor != 1:
        img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise InputError(f"{path}: the image cannot be decoded; re-copy it or remove it from the flight")
    if img.shape[1] != width or img.shape[0] != height:
        img = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img[:, :, ::-1])
