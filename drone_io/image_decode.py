"""Decode image pixels (RGB uint8), optionally reduced by 2, 4 or 8 while decoding.

EXIF orientation is applied, as for :class:`models.image.ImageRecord` sizes
and the camera models derived from them. JPEG reduction uses libjpeg's DCT
scaling, which is exact block averaging: a reduced pixel centre c maps to
full-resolution (c + 0.5) * r - 0.5 when the size divides evenly.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from models.errors import InputError

_REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def exact_reduction(width: int, height: int, wanted: int) -> int:
    """The largest of 1, 2, 4, 8 not above ``wanted`` that divides both sides exactly."""
    best = 1
    for r in (2, 4, 8):
        if r <= wanted and width % r == 0 and height % r == 0:
            best = r
    return best


def read_image_rgb(path: Path, reduce: int = 1) -> NDArray[np.uint8]:
    """(h, w, 3) RGB pixels of an image file, decoded at 1/``reduce`` size."""
    if reduce not in _REDUCED:
        raise ValueError(f"reduce must be 1, 2, 4 or 8, got {reduce}")
    bgr = cv2.imread(str(path), _REDUCED[reduce])
    if bgr is None:
        raise InputError(f"cannot decode image {path}; check the file is a readable JPEG/TIFF or remove it")
    if bgr.ndim == 2:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(bgr[:, :, ::-1])
