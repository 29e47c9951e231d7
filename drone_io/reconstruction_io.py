"""Read and write a :class:`Reconstruction` as JSON (cameras, poses) plus NPZ (sparse points).

The same format serves the workspace (``work/sfm``) and the synthetic flight's
ground truth (``truth/``), so truth and solution load through one function.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from models.camera import CameraModel
from models.codec import from_jsonable, to_jsonable
from models.pose import Pose
from models.reconstruction import Reconstruction, RegisteredImage, SparsePoints


def reconstruction_to_json(rec: Reconstruction) -> dict[str, object]:
    return {
        "crs": rec.crs,
        "cameras": to_jsonable(rec.cameras),
        "images": {
            name: {
                "camera_id": img.camera_id,
                "R": img.pose.R.tolist(),
                "t": img.pose.t.tolist(),
                "center": img.pose.center.tolist(),
            }
            for name, img in rec.images.items()
        },
    }


def reconstruction_from_json(doc: dict[str, object], points: SparsePoints | None = None) -> Reconstruction:
    cams = doc["cameras"]
    imgs = doc["images"]
    assert isinstance(cams, dict) and isinstance(imgs, dict)
    return Reconstruction(
        crs=str(doc["crs"]),
        cameras={k: from_jsonable(CameraModel, v) for k, v in cams.items()},
        images={
            name: RegisteredImage(name, d["camera_id"], Pose(np.asarray(d["R"]), np.asarray(d["t"])))
            for name, d in imgs.items()
        },
        points=points if points is not None else SparsePoints.empty(),
    )


def write_points_npz(fh_or_path: object, points: SparsePoints) -> None:
    np.savez(
        fh_or_path,  # type: ignore[arg-type]
        xyz=points.xyz,
        rgb=points.rgb,
        error_px=points.error_px,
        track_length=points.track_length,
    )


def read_points_npz(path: Path) -> SparsePoints:
    with np.load(path) as z:
        return SparsePoints(xyz=z["xyz"], rgb=z["rgb"], error_px=z["error_px"], track_length=z["track_length"])


def read_reconstruction_json(path: Path, points_npz: Path | None = None) -> Reconstruction:
    """Load a reconstruction JSON (and its points NPZ when given and present)."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    points = read_points_npz(points_npz) if points_npz is not None and Path(points_npz).exists() else None
    return reconstruction_from_json(doc, points)
