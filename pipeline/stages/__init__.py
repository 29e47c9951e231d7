"""The pipeline stages, in run order. A new stage is a new module added here."""

from pipeline.stage import StageSpec
from pipeline.stages import densify, dem, fusion, ingest, pointcloud

STAGES: tuple[StageSpec, ...] = (
    ingest.STAGE,
    # issue 6 (dense / DEM): after sfm once it lands.
    densify.STAGE,
    fusion.STAGE,
    dem.STAGE,
    pointcloud.STAGE,
)

__all__ = ["STAGES"]
