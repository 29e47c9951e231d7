"""What structure from motion tells later stages and the quality report (typed, no I/O)."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass


class UnregisteredReason(str, enum.Enum):
    """Why an image is not in the solved model."""

    TOO_FEW_FEATURES = "too_few_features"  # the image yields few keypoints (sky, water, featureless)
    NO_OVERLAP = "no_overlap"  # no candidate pair passed geometric verification
    BLUR = "blur"  # sharpness far below the rest of the flight
    MISREGISTERED = "misregistered"  # solved far from where its GPS allows; removed from the model
    OTHER_MODEL = "other_model"  # registered in a smaller partial model that was dropped
    NOT_REGISTERED = "not_registered"  # the mapper could not place it (weak or inconsistent matches)


class GeoreferenceSource(str, enum.Enum):
    GPS = "gps"  # camera GPS positions as priors
    GCP = "gcp"  # ground control points only
    GPS_GCP = "gps+gcp"  # GPS priors refined with ground control points


@dataclass(frozen=True)
class UnregisteredImage:
    name: str
    reason: UnregisteredReason
    message: str


@dataclass(frozen=True)
class PositionResidual:
    """Solved minus reference position of one image or ground point, in the working CRS (metres)."""

    name: str
    dx: float
    dy: float
    dz: float
    # Standard deviations the reference claims (horizontal, vertical), when known.
    std_horizontal_m: float = math.nan
    std_vertical_m: float = math.nan
    # For ground points: checkpoint (True) or control point (False); images: False.
    is_checkpoint: bool = False
    # Image observations used (ground points) / 0 for images.
    observations: int = 0

    @property
    def horizontal(self) -> float:
        return math.hypot(self.dx, self.dy)


@dataclass(frozen=True)
class SfmReport:
    """Diagnostics of one SfM run, saved beside the reconstruction."""

    crs: str
    georeferenced_by: GeoreferenceSource
    gsd_m: float
    images_total: int
    models: tuple[int, ...]  # registered images per partial model, largest first
    unregistered: tuple[UnregisteredImage, ...]
    gps_residuals: tuple[PositionResidual, ...]
    gcp_residuals: tuple[PositionResidual, ...]
