"""Ground control points and their image observations."""

from __future__ import annotations

from dataclasses import dataclass


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
