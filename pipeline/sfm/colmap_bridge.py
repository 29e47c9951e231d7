"""The boundary with pycolmap: cameras, the mapping database, and solved models.

Aerobase puts the centre of the top-left pixel at (0, 0); COLMAP puts it at
(0.5, 0.5). Every pixel coordinate that crosses this module gains or loses 0.5
here and nowhere else. Poses have the same meaning on both sides
(world-to-camera, x right, y down, z forward); COLMAP's world is Aerobase's
working CRS minus a local origin, chosen for numerical conditioning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pycolmap
from numpy.typing import NDArray

from models.camera import CameraModel
from models.features import ImageFeatures, PairMatches
from models.pose import Pose
from models.reconstruction import Reconstruction, RegisteredImage, SparsePoints

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]

COLMAP_PIXEL_OFFSET = 0.5


# -- pixels and cameras ------------------------------------------------------------------
def to_colmap_pixels(uv: FloatArray) -> FloatArray:
    """Aerobase pixels -> COLMAP pixels."""
    return np.asarray(uv, dtype=np.float64) + COLMAP_PIXEL_OFFSET


def to_colmap_camera(cam: CameraModel, camera_id: int, prior_focal: bool = True) -> pycolmap.Camera:
    """An OPENCV pycolmap camera (fx, fy, cx, cy, k1, k2, p1, p2) from an Aerobase camera."""
    c = pycolmap.Camera(
        model="OPENCV",
        width=cam.width,
        height=cam.height,
        params=[
            cam.fx,
            cam.fy,
            cam.cx + COLMAP_PIXEL_OFFSET,
            cam.cy + COLMAP_PIXEL_OFFSET,
            cam.k1,
            cam.k2,
            cam.p1,
            cam.p2,
        ],
        camera_id=camera_id,
    )
    c.has_prior_focal_length = prior_focal
    return c


def from_colmap_camera(cam: pycolmap.Camera, template: CameraModel) -> CameraModel:
    """The Aerobase camera of a solved OPENCV (or simpler) pycolmap camera."""
    p = np.asarray(cam.params, dtype=np.float64)
    name = cam.model_name
    k1 = k2 = p1 = p2 = 0.0
    if name == "OPENCV":
        fx, fy, cx, cy, k1, k2, p1, p2 = p[:8]
    elif name == "PINHOLE":
        fx, fy, cx, cy = p[:4]
    elif name in ("SIMPLE_RADIAL", "SIMPLE_PINHOLE", "RADIAL"):
        fx = fy = p[0]
        cx, cy = p[1], p[2]
        k1 = p[3] if len(p) > 3 else 0.0
        k2 = p[4] if len(p) > 4 else 0.0
    else:
        raise ValueError(f"camera model {name} has no Aerobase equivalent")
    return replace(
        template,
        width=int(cam.width),
        height=int(cam.height),
        fx=float(fx),
        fy=float(fy),
        cx=float(cx) - COLMAP_PIXEL_OFFSET,
        cy=float(cy) - COLMAP_PIXEL_OFFSET,
        k1=float(k1),
        k2=float(k2),
        p1=float(p1),
        p2=float(p2),
        k3=0.0,
    )


def pose_from_rigid(cam_from_world: pycolmap.Rigid3d) -> Pose:
    m = np.asarray(cam_from_world.matrix(), dtype=np.float64)
    return Pose(m[:, :3], m[:, 3])


# -- the mapping database ----------------------------------------------------------------
@dataclass(frozen=True)
class DatabaseImage:
    """One image for the database: its camera and, optionally, a position prior."""

    name: str
    camera_id: str
    # Prior camera centre in the local frame and its 3x3 covariance (m^2), or None.
    prior_position: FloatArray | None = None
    prior_covariance: FloatArray | None = None


@dataclass(frozen=True)
class DatabaseIds:
    """How Aerobase names map to database ids."""

    image_ids: dict[str, int]
    camera_ids: dict[str, int]


def build_database(
    path: Path,
    cameras: dict[str, CameraModel],
    images: Sequence[DatabaseImage],
    load_features: Callable[[str], ImageFeatures],
    matches: Sequence[PairMatches],
) -> DatabaseIds:
    """Write a fresh pycolmap database: cameras, trivial rigs and frames, keypoints, priors, verified pairs.

    Descriptors are not written: the mapper needs only the verified matches.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        p.unlink(missing_ok=True)
    used_cams = sorted({im.camera_id for im in images})
    camera_ids = {cid: i + 1 for i, cid in enumerate(used_cams)}
    image_ids: dict[str, int] = {}
    db = pycolmap.Database.open(str(path))
    try:
        for cid, num in camera_ids.items():
            cam = to_colmap_camera(cameras[cid], num)
            db.write_camera(cam, use_camera_id=True)
            rig = pycolmap.Rig(rig_id=num)
            rig.add_ref_sensor(cam.sensor_id)
            db.write_rig(rig, use_rig_id=True)
        for i, im in enumerate(images, start=1):
            num_cam = camera_ids[im.camera_id]
            image = pycolmap.Image(name=im.name, camera_id=num_cam, image_id=i)
            db.write_image(image, use_image_id=True)
            frame = pycolmap.Frame(frame_id=i, rig_id=num_cam)
            frame.add_data_id(image.data_id)
            db.write_frame(frame, use_frame_id=True)
            feats = load_features(im.name)
            kp = feats.keypoints.astype(np.float32).copy()
            kp[:, :2] += COLMAP_PIXEL_OFFSET
            db.write_keypoints(i, kp)
            image_ids[im.name] = i
            if im.prior_position is not None and im.prior_covariance is not None:
                prior = pycolmap.PosePrior(
                    position=np.asarray(im.prior_position, dtype=np.float64).reshape(3, 1),
                    position_covariance=np.asarray(im.prior_covariance, dtype=np.float64),
                    coordinate_system=pycolmap.PosePriorCoordinateSystem.CARTESIAN,
                    corr_data_id=image.data_id,
                )
                db.write_pose_prior(prior)
        for pm in matches:
            if pm.image1 not in image_ids or pm.image2 not in image_ids:
                continue
            id1, id2 = image_ids[pm.image1], image_ids[pm.image2]
            tvg = pycolmap.TwoViewGeometry(
                config=pycolmap.TwoViewGeometryConfiguration(int(pm.geometry)),
                inlier_matches=np.ascontiguousarray(pm.matches, dtype=np.uint32),
                F=np.asarray(pm.F, dtype=np.float64),
                E=np.asarray(pm.E, dtype=np.float64),
                H=np.asarray(pm.H, dtype=np.float64),
            )
            db.write_matches(id1, id2, np.ascontiguousarray(pm.matches, dtype=np.uint32))
            db.write_two_view_geometry(id1, id2, tvg)
    finally:
        db.close()
    return DatabaseIds(image_ids=image_ids, camera_ids=camera_ids)


# -- solved models -------------------------------------------------------------------------
def reprojection_errors(rec: pycolmap.Reconstruction) -> FloatArray:
    """Reprojection error (px) of every observation of every 3D point."""
    errs: list[FloatArray] = []
    for img_id in rec.reg_image_ids():
        img = rec.images[img_id]
        pts2d = img.get_observation_points2D()
        if len(pts2d) == 0:
            continue
        xy = np.array([p.xy for p in pts2d])
        xyz = np.array([rec.points3D[p.point3D_id].xyz for p in pts2d])
        cam = rec.cameras[img.camera_id]
        proj = cam.img_from_cam(img.cam_from_world() * xyz, check_cheirality=False)
        e = np.linalg.norm(np.asarray(proj) - xy, axis=1)
        errs.append(e[np.isfinite(e)])
    return np.concatenate(errs) if errs else np.zeros(0)


def to_aerobase(
    rec: pycolmap.Reconstruction,
    crs: str,
    templates: dict[str, CameraModel],
    camera_names: dict[int, str],
    origin: FloatArray,
) -> Reconstruction:
    """An Aerobase reconstruction in full CRS coordinates from a pycolmap model in the local frame."""
    origin = np.asarray(origin, dtype=np.float64)
    cameras: dict[str, CameraModel] = {}
    for cid, cam in rec.cameras.items():
        name = camera_names[int(cid)]
        cameras[name] = from_colmap_camera(cam, templates[name])
    images: dict[str, RegisteredImage] = {}
    for img_id in rec.reg_image_ids():
        img = rec.images[img_id]
        local = pose_from_rigid(img.cam_from_world())
        # x_cam = R (X - o) + t  =>  t_full = t - R o
        pose = Pose(local.R, local.t - local.R @ origin)
        images[img.name] = RegisteredImage(img.name, camera_names[int(img.camera_id)], pose)
    ids = list(rec.point3D_ids())
    n = len(ids)
    xyz = np.zeros((n, 3))
    rgb = np.zeros((n, 3), np.uint8)
    err = np.zeros(n)
    track = np.zeros(n, np.int32)
    for k, pid in enumerate(ids):
        p = rec.points3D[pid]
        xyz[k] = np.asarray(p.xyz) + origin
        rgb[k] = np.asarray(p.color, dtype=np.uint8)
        err[k] = float(p.error)
        track[k] = int(p.track.length())
    return Reconstruction(crs=crs, cameras=cameras, images=images, points=SparsePoints(xyz, rgb, err, track))
