"""The pipeline stages, in run order. A new stage is a new module added here."""

from pipeline.stage import StageSpec
from pipeline.stages import ingest, ortho

STAGES: tuple[StageSpec, ...] = (ingest.STAGE, ortho.STAGE)

__all__ = ["STAGES"]
