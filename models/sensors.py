"""Initial camera intrinsics from image metadata (pure; the numbers refine in SfM)."""

from __future__ import annotations

import enum

from models.camera import CameraModel
from models.image import ImageRecord

# Sensor widths (mm) of common survey cameras, keyed by lower-case "make model".
# Used when an image lacks FocalPlaneXResolution and FocalLengthIn35mmFilm.
SENSOR_WIDTH_MM: dict[str, float] = {
    "dji fc300s": 6.17,
    "dji fc300x": 6.17,
    "dji fc330": 6.17,
    "dji fc6310": 13.2,
    "dji fc6310r": 13.2,
    "dji fc6310s": 13.2,
    "dji fc220": 6.17,
    "dji fc2103": 6.17,
    "dji fc3170": 6.4,
    "dji fc3411": 13.2,
    "dji fc7303": 6.4,
    "dji l1d-20c": 13.2,
    "dji fc6510": 13.2,
    "dji fc6520": 17.3,
    "dji fc6540": 23.5,
    "dji zenmuse p1": 35.9,
    "dji m3e": 17.3,
    "dji fc8282": 9.6,
    "hasselblad l1d-20c": 13.2,
    "hasselblad l2d-20c": 17.3,
    "canon canon powershot elph 300 hs": 6.17,
    "canon canon powershot s100": 7.44,
    "canon canon powershot s110": 7.44,
    "sony dsc-rx100": 13.2,
    "sony ilce-6000": 23.5,
    "sony ilce-5100": 23.5,
    "gopro hero4 black": 6.17,
    "parrot sequoia": 6.17,
    "micasense rededge": 4.8,
    "aerobase synthcam": 13.2,
}

# Fallback focal ratio (focal / sensor width) when nothing is known: a typical drone camera.
DEFAULT_FOCAL_RATIO = 0.85


def sensor_width_for(make: str, model: str) -> float | None:
    key = f"{make} {model}".strip().lower()
    if key in SENSOR_WIDTH_MM:
        return SENSOR_WIDTH_MM[key]
    return SENSOR_WIDTH_MM.get(model.strip().lower())


class FocalSource(str, enum.Enum):
    """Where an initial focal length came from, best first."""

    FOCAL_PLANE = "exif_focal_plane_resolution"  # EXIF FocalLength and FocalPlaneXResolution
    FOCAL_35MM = "exif_focal_35mm"  # EXIF FocalLengthIn35mmFilm (35 mm frame 36 mm wide)
    SENSOR_TABLE = "sensor_width_table"  # EXIF FocalLength and SENSOR_WIDTH_MM
    DEFAULT = "default"  # nothing known: DEFAULT_FOCAL_RATIO


def focal_px_estimate(rec: ImageRecord) -> tuple[float, FocalSource]:
    """Initial focal length in pixels and how it was found.

    EXIF first: FocalLength over the sensor width that FocalPlaneXResolution
    implies, else FocalLengthIn35mmFilm over the 36 mm frame width (the
    OpenSfM/ODM convention), scaled to the long side of the pixels actually
    stored. The sensor-width table is the fallback for cameras that write
    neither; a typical drone focal ratio is the last resort.
    """
    long_side = max(rec.width, rec.height)
    if rec.focal_length_mm and rec.sensor_width_mm:
        return rec.focal_length_mm / rec.sensor_width_mm * long_side, FocalSource.FOCAL_PLANE
    if rec.focal_length_35mm:
        return rec.focal_length_35mm / 36.0 * long_side, FocalSource.FOCAL_35MM
    width_mm = sensor_width_for(rec.make, rec.model)
    if rec.focal_length_mm and width_mm:
        return rec.focal_length_mm / width_mm * long_side, FocalSource.SENSOR_TABLE
    return DEFAULT_FOCAL_RATIO * long_side, FocalSource.DEFAULT


def initial_camera(rec: ImageRecord) -> CameraModel:
    """A pinhole camera with the principal point at the image centre and no distortion."""
    f, _how = focal_px_estimate(rec)
    return CameraModel(
        camera_id=rec.camera_id,
        width=rec.width,
        height=rec.height,
        fx=f,
        fy=f,
        cx=(rec.width - 1) / 2.0,
        cy=(rec.height - 1) / 2.0,
        make=rec.make,
        model=rec.model,
    )


def build_cameras(records: list[ImageRecord] | tuple[ImageRecord, ...]) -> dict[str, CameraModel]:
    """One initial camera per distinct camera id (make, model, pixel size, focal length).

    The first image of each camera (in name order) defines it; all images of
    one id share make, model, size and focal length by construction.
    """
    cameras: dict[str, CameraModel] = {}
    for rec in sorted(records, key=lambda r: r.name):
        if rec.camera_id not in cameras:
            cameras[rec.camera_id] = initial_camera(rec)
    return cameras
