"""COLMAP text models (cameras.txt, images.txt, points3D.txt, rigs.txt, frames.txt).

Written by pycolmap into a temporary folder that replaces the target folder
only once complete. Pixel coordinates in the files follow COLMAP's convention
(centre of the top-left pixel at 0.5, 0.5).
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pycolmap


def write_colmap_text(model: pycolmap.Reconstruction, folder: Path) -> Path:
    """Write ``model`` as a COLMAP text model into ``folder`` (replaced atomically); returns it."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".tmp-{uuid.uuid4().hex[:12]}-{folder.name}"
    old = folder.parent / f".old-{uuid.uuid4().hex[:12]}-{folder.name}"
    tmp.mkdir()
    try:
        model.write_text(str(tmp))
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return folder

