"""The pipeline stages, in run order. A new stage is a new module added here."""

from pipeline.stage import StageSpec
from pipeline.stages import densify, dem, features, fusion, ingest, matching, ortho, pointcloud, sfm

STAGES: tuple[StageSpec, ...] = (
    ingest.STAGE,
    features.STAGE,
    matching.STAGE,
    sfm.STAGE,
    densify.STAGE,
    fusion.STAGE,
    dem.STAGE,
    pointcloud.STAGE,
    ortho.STAGE,
)

__all__ = ["STAGES"]
