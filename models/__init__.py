"""Typed domain values and pure math. No file or network I/O lives here."""

from models.camera import CameraModel
from models.errors import (
    AerobaseError,
    ClusterError,
    ConfigError,
    CRSError,
    GeoreferenceError,
    InputError,
    LogFormatError,
    ReconstructionError,
    StageError,
    WorkspaceError,
)
from models.gcp import GcpObservation, GcpSet, GroundControlPoint
from models.geo import HeightRef, Projector
from models.image import Attitude, GpsPosition, ImageRecord, PositionSource, SkippedItem
from models.pose import Pose
from models.raster import GridSpec, Window
from models.reconstruction import Reconstruction, RegisteredImage, SparsePoints
from models.track import AttitudeSeries, FlightTrack, PositionSeries, TriggerEvents

__all__ = [
    "AerobaseError",
    "Attitude",
    "AttitudeSeries",
    "CameraModel",
    "ClusterError",
    "ConfigError",
    "CRSError",
    "FlightTrack",
    "GcpObservation",
    "GcpSet",
    "GeoreferenceError",
    "GpsPosition",
    "GridSpec",
    "GroundControlPoint",
    "HeightRef",
    "ImageRecord",
    "InputError",
    "LogFormatError",
    "Pose",
    "PositionSeries",
    "PositionSource",
    "Projector",
    "Reconstruction",
    "ReconstructionError",
    "RegisteredImage",
    "SkippedItem",
    "SparsePoints",
    "StageError",
    "TriggerEvents",
    "Window",
    "WorkspaceError",
]
