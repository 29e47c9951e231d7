"""Ground control points and their image observations."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping, Sequence

from models.errors import InputError
from models.image import ImageIndex, ImageRecord


@dataclass(frozen=True)
class GcpObservation:
    """One measured image position of a ground point (pixel-centre convention)."""

    point: str  # GCP name
    image: str  # image name as in ImageRecord.name
    px: float
    py: float
    line: int = 0  # line number in the source file, for messages


@dataclass(frozen=True)
class GroundControlPoint:
    """A surveyed point: coordinates in ``crs`` (any EPSG/PROJ/WKT), checkpoint or control."""

    name: str
    x: float
    y: float
    z: float
    is_checkpoint: bool = False
    line: int = 0  # line number of its first appearance in the source file, for messages


@dataclass(frozen=True)
class GcpSet:
    """Everything read from one GCP file."""

    source: str
    crs: str  # the file's CRS as 'EPSG:N' or WKT
    points: tuple[GroundControlPoint, ...]
    observations: tuple[GcpObservation, ...]

    @property
    def control(self) -> tuple[GroundControlPoint, ...]:
        return tuple(p for p in self.points if not p.is_checkpoint)

    @property
    def checkpoints(self) -> tuple[GroundControlPoint, ...]:
        return tuple(p for p in self.points if p.is_checkpoint)


def check_observations(
    gcps: GcpSet,
    images: Sequence[ImageRecord],
    skipped: Mapping[str, str] | None = None,
) -> GcpSet:
    """Check every observation against the batch; return the set with image names resolved.

    Each observation must name an image of the batch (by its path relative to
    the image folder, or by a bare file name that is unique) and its pixel must
    lie inside that image (pixel-centre convention: -0.5 <= px <= width - 0.5).
    ``skipped`` maps names of images that were left out to why. Errors name
    the GCP file and line.
    """
    index = ImageIndex([r.name for r in images])
    by_name = {r.name: r for r in images}
    skipped_index = ImageIndex(list(skipped or {}))
    resolved: list[GcpObservation] = []
    for ob in gcps.observations:
        where = f"{gcps.source}:{ob.line}" if ob.line else gcps.source
        try:
            name = index.lookup(ob.image)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
        if name is None:
            left_out = skipped_index.lookup(ob.image) if skipped else None
            if left_out is not None and skipped is not None:
                raise InputError(
                    f"{where}: GCP '{ob.point}' is measured in image '{ob.image}', which was skipped "
                    f"({skipped[left_out]}); fix the image or remove the line"
                )
            raise InputError(
                f"{where}: GCP '{ob.point}' is measured in image '{ob.image}', which is not in the batch "
                f"({len(images)} images); check the file name or remove the line"
            )
        rec = by_name[name]
        if not (-0.5 <= ob.px <= rec.width - 0.5 and -0.5 <= ob.py <= rec.height - 0.5):
            raise InputError(
                f"{where}: GCP '{ob.point}' pixel ({ob.px:g}, {ob.py:g}) lies outside image '{name}' "
                f"({rec.width}x{rec.height} pixels; x must be in -0.5..{rec.width - 0.5:g}, "
                f"y in -0.5..{rec.height - 0.5:g}); check the pixel or the image name"
            )
        resolved.append(replace(ob, image=name))
    return replace(gcps, observations=tuple(resolved))
