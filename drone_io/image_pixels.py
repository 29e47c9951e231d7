"""Decode image pixels, reduced while decoding where that is enough.

One place decodes images for every stage. JPEG reduction by 2, 4 or 8 uses
libjpeg's DCT scaling, which is exact block averaging: a reduced pixel centre
c maps to full-resolution (c + 0.5) * r - 0.5 when the size divides evenly.
EXIF orientation is applied, as for the width and height that ingest records.
Colour images come back RGB (not OpenCV's BGR) unless asked otherwise.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from models.errors import InputError

_COLOR = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
_GRAY = {
    1: cv2.IMREAD_GRAYSCALE,
    2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
    4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
    8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
}


def exact_reduction(width: int, height: int, wanted: int) -> int:
    """The largest of 1, 2, 4, 8 not above ``wanted`` that divides both sides exactly."""
    best = 1
    for r in (2, 4, 8):
        if r <= wanted and width % r == 0 and height % r == 0:
            best = r
    return best


def reduction_for(full_size: tuple[int, int], width: int, height: int) -> int:
    """The largest of 8, 4, 2 (else 1) whose reduced image is still at least ``width`` x ``height``."""
    for f in (8, 4, 2):
        if full_size[0] // f >= width and full_size[1] // f >= height:
            return f
    return 1


def _to_uint8(a: NDArray[np.generic]) -> NDArray[np.uint8]:
    if a.dtype == np.uint8:
        return np.asarray(a, dtype=np.uint8)
    lo, hi = float(a.min()), float(a.max())  # 16-bit TIFF: stretch to 8 bits
    return ((a.astype(np.float64) - lo) * (255.0 / max(hi - lo, 1e-9))).astype(np.uint8)


def decode_image(path: Path, reduce: int = 1, gray: bool = False, bgr: bool = False) -> NDArray[np.uint8]:
    """Pixels of an image file decoded at 1/``reduce`` size: (h, w) grey or (h, w, 3) RGB (BGR if asked)."""
    if reduce not in _COLOR:
        raise ValueError(f"reduce must be 1, 2, 4 or 8, got {reduce}")
    flag = _GRAY[reduce] if gray else _COLOR[reduce]
    img = cv2.imread(str(path), flag)
    if img is None and reduce != 1:  # some TIFF layouts refuse reduced decoding
        img = cv2.imread(str(path), _GRAY[1] if gray else _COLOR[1])
        if img is not None:
            img = cv2.resize(img, (max(1, img.shape[1] // reduce), max(1, img.shape[0] // reduce)), interpolation=cv2.INTER_AREA)
    if img is None or img.size == 0:
        raise InputError(f"{path}: the image cannot be decoded; re-copy it from the card or remove it from the flight")
    img = _to_uint8(img)
    if gray:
        return np.ascontiguousarray(img)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    # cvtColor swaps the channels in one pass (a reversed view made contiguous is several times slower).
    return np.ascontiguousarray(img if bgr else cv2.cvtColor(img, cv2.COLOR_BGR2RGB))


def read_image_rgb(path: Path, reduce: int = 1) -> NDArray[np.uint8]:
    """(h, w, 3) RGB pixels decoded at 1/``reduce`` size."""
    return decode_image(path, reduce)


def read_resized(
    path: Path, full_size: tuple[int, int], width: int, height: int, gray: bool = False, bgr: bool = False
) -> NDArray[np.uint8]:
    """The image (``full_size`` = upright (width, height)) resampled to ``width`` x ``height`` (area averaging)."""
    img = decode_image(path, reduction_for(full_size, width, height), gray=gray, bgr=bgr)
    if img.shape[1] != width or img.shape[0] != height:
        return np.ascontiguousarray(cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA), dtype=np.uint8)
    return img


def read_rgb_resized(path: Path, full_size: tuple[int, int], width: int, height: int) -> NDArray[np.uint8]:
    """RGB uint8 image resampled to ``width`` x ``height``."""
    return read_resized(path, full_size, width, height)


def read_gray_preview(path: Path, reduction: int = 8) -> NDArray[np.uint8] | None:
    """8-bit grey pixels decoded at 1/``reduction`` size (2, 4 or 8); None if undecodable."""
    try:
        return decode_image(path, reduction if reduction in _GRAY else 1, gray=True)
    except InputError:
        return None
