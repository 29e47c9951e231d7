"""The pipeline stages, in run order. A new stage is a new module added here."""

from pipeline.stage import StageSpec
from pipeline.stages import features, ingest, matching, sfm

STAGES: tuple[StageSpec, ...] = (ingest.STAGE, features.STAGE, matching.STAGE, sfm.STAGE)

__all__ = ["STAGES"]
