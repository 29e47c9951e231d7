"""A tiny synthetic flight for the ortho tests: a textured 2.5D scene rendered by ray casting.

The ground and roofs carry a texture (the true orthophoto); walls are
magenta, so any wall smeared onto the ground shows. Images are rendered with
the true camera model, Brown distortion included, from slightly tilted
near-nadir poses, with per-image brightness changes. Coordinates sit at UTM
magnitudes so float32 shortcuts would show.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from drone_io.cog import TiledRasterWriter
from models.camera import CameraModel
from models.image import ImageRecord
from models.pose import Pose, world_to_camera_from_gimbal
from models.raster import GridSpec, Window
from models.reconstruction import Reconstruction, RegisteredImage

CRS = "EPSG:32633"
X0, Y0 = 500_000.0, 4_000_000.0
GROUND = 100.0
WALL_RGB = np.array([255.0, 0.0, 255.0])


@dataclass(frozen=True)
class Box:
    x0: float
    y0: float
    x1: float
    y1: float
    height: float


@dataclass
class Scene:
    grid: GridSpec  # truth grid (texture and DSM)
    texture: NDArray[np.float32]  # (h, w, 3) true orthophoto
    dsm: NDArray[np.float32]  # (h, w)
    boxes: list[Box]
    rec: Reconstruction
    records: list[ImageRecord]
    dsm_path: Path
    gains: dict[str, float]


def _texture(h: int, w: int, rng: np.random.Generator) -> NDArray[np.float32]:
    out = np.zeros((h, w, 3), np.float32)
    for scale, amp in ((64, 60.0), (16, 40.0), (4, 25.0)):
        small = rng.uniform(-1, 1, (max(2, h // scale), max(2, w // scale), 3)).astype(np.float32)
        out += amp * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    out += np.array([110.0, 120.0, 90.0], np.float32)
    return np.clip(cv2.GaussianBlur(out, (0, 0), 1.0), 5, 250)


def make_scene(
    root: Path,
    *,
    width_m: float = 48.0,
    height_m: float = 36.0,
    res: float = 0.05,
    image_size: tuple[int, int] = (320, 240),
    focal_px: float = 400.0,
    altitude: float = 40.0,
    spacing: tuple[float, float] = (8.0, 9.0),
    distortion: tuple[float, float, float, float, float] = (-0.08, 0.02, 0.001, -0.0008, 0.0),
    boxes: list[Box] | None = None,
    gains: bool = True,
    seed: int = 3,
) -> Scene:
    rng = np.random.default_rng(seed)
    w, h = int(round(width_m / res)), int(round(height_m / res))
    grid = GridSpec(CRS, X0, Y0 + height_m, res, w, h)
    tex = _texture(h, w, rng)
    xs, ys = grid.cell_centers(Window(0, 0, w, h))
    dsm = np.full((h, w), GROUND, np.float32) + (0.02 * (xs - X0))[None, :].astype(np.float32)
    if boxes is None:
        boxes = [Box(X0 + 14, Y0 + 10, X0 + 22, Y0 + 18, 9.0), Box(X0 + 30, Y0 + 20, X0 + 36, Y0 + 28, 6.0)]
    for b in boxes:
        cols = (xs >= b.x0) & (xs < b.x1)
        rows = (ys >= b.y0) & (ys < b.y1)
        sel = np.ix_(rows, cols)
        base = float(dsm[sel].min())
        dsm[sel] = base + b.height
        roof = tex[sel]
        tex[sel] = np.clip(0.6 * roof + np.array([90.0, 40.0, 30.0]), 0, 255)
    root.mkdir(parents=True, exist_ok=True)
    dsm_path = root / "dsm.tif"
    with TiledRasterWriter(dsm_path, grid) as wr:
        wr.write(Window(0, 0, w, h), dsm)

    iw, ih = image_size
    k1, k2, p1, p2, k3 = distortion
    cam = CameraModel("synthcam", iw, ih, focal_px, focal_px, iw / 2 - 0.5 + 1.3, ih / 2 - 0.5 - 0.7, k1, k2, p1, p2, k3)
    images: dict[str, RegisteredImage] = {}
    records: list[ImageRecord] = []
    gain_by: dict[str, float] = {}
    img_dir = root / "images"
    img_dir.mkdir(exist_ok=True)
    sx, sy = spacing
    i = 0
    for yc in np.arange(Y0 + 4.0, Y0 + height_m - 3.0, sy):
        for xc in np.arange(X0 + 4.0, X0 + width_m - 3.0, sx):
            yaw = float(rng.uniform(-5, 5))
            R = world_to_camera_from_gimbal(yaw, -90.0 + float(rng.uniform(-3, 3)), float(rng.uniform(-2, 2)))
            centre = np.array([xc + rng.uniform(-0.5, 0.5), yc + rng.uniform(-0.5, 0.5), GROUND + altitude + rng.uniform(-1, 1)])
            pose = Pose.from_center(R, centre)
            name = f"IMG_{i:04d}.JPG"
            g = float(rng.uniform(0.8, 1.2)) if gains else 1.0
            img = render(cam, pose, grid, tex, dsm) * g
            cv2.imwrite(str(img_dir / name), np.clip(img, 0, 255).astype(np.uint8)[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 97])
            images[name] = RegisteredImage(name, cam.camera_id, pose)
            records.append(ImageRecord(name, img_dir / name, iw, ih, cam.camera_id))
            gain_by[name] = g
            i += 1
    rec = Reconstruction(CRS, {cam.camera_id: cam}, images)
    return Scene(grid, tex, dsm, boxes, rec, records, dsm_path, gain_by)


def render(cam: CameraModel, pose: Pose, grid: GridSpec, tex: NDArray[np.float32], dsm: NDArray[np.float32]) -> NDArray[np.float32]:
    """Ray-cast the 2.5D scene (nearest-cell DSM, vertical walls) into an image."""
    uu, vv = np.meshgrid(np.arange(cam.width, dtype=np.float64), np.arange(cam.height, dtype=np.float64))
    uv = np.stack([uu.ravel(), vv.ravel()], 1)
    rays = cam.pixel_to_ray(uv) @ pose.R  # world directions
    c = pose.center
    top = float(dsm.max()) + 0.5
    bottom = float(dsm.min()) - 0.5

    def height_at(px: NDArray[np.float64], py: NDArray[np.float64]) -> NDArray[np.float64]:
        col = np.clip(np.floor((px - grid.x_min) / grid.resolution).astype(np.int64), 0, grid.width - 1)
        row = np.clip(np.floor((grid.y_max - py) / grid.resolution).astype(np.int64), 0, grid.height - 1)
        return dsm[row, col].astype(np.float64)

    s0 = (c[2] - top) / -rays[:, 2]
    s1 = (c[2] - bottom) / -rays[:, 2]
    n_steps = 70
    ds = (s1 - s0) / n_steps
    lo = s0.copy()
    hi = s1.copy()
    found = np.zeros(len(rays), bool)
    for k in range(1, n_steps + 1):
        s = s0 + k * ds
        p = c[None, :] + rays * s[:, None]
        below = (p[:, 2] <= height_at(p[:, 0], p[:, 1])) & ~found
        hi[below] = s[below]
        lo[below] = s[below] - ds[below]
        found |= below
    for _ in range(14):
        mid = 0.5 * (lo + hi)
        p = c[None, :] + rays * mid[:, None]
        below = p[:, 2] <= height_at(p[:, 0], p[:, 1])
        hi = np.where(below, mid, hi)
        lo = np.where(below, lo, mid)
    p = c[None, :] + rays * hi[:, None]
    surf = height_at(p[:, 0], p[:, 1])
    wall = surf - p[:, 2] > 0.05
    col = ((p[:, 0] - grid.x_min) / grid.resolution - 0.5).astype(np.float32)
    row = ((grid.y_max - p[:, 1]) / grid.resolution - 0.5).astype(np.float32)
    n = len(col)
    cols = 4096
    rws = -(-n // cols)
    mc = np.zeros(rws * cols, np.float32)
    mr = np.zeros(rws * cols, np.float32)
    mc[:n], mr[:n] = col, row
    out = cv2.remap(tex, mc.reshape(rws, cols), mr.reshape(rws, cols), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    out = out.reshape(-1, 3)[:n]
    out[wall] = WALL_RGB
    return out.reshape(cam.height, cam.width, 3)
