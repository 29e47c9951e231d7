"""What a stage is: a small module exposing one :class:`StageSpec`.

A stage's entry point is ``run(ws, cfg, client) -> StageReport``. It reads and
writes only through the workspace. The runner fingerprints the files named by
``inputs(ws, cfg)`` and the config fields in ``config_fields``; when those and
the outputs still match the manifest, the stage is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from distributed import Client

from models.image import SkippedItem
from pipeline.config import Config
from pipeline.workspace import Workspace


@dataclass(frozen=True)
class StageReport:
    """What a stage tells the runner when it finishes."""

    # Nested figures merged into stats.json, e.g. {"sfm": {"images_registered": 31}}.
    figures: dict[str, Any] = field(default_factory=dict)
    # Files (or folders) the stage produced; fingerprinted into the manifest.
    outputs: tuple[Path, ...] = ()
    # Inputs the stage left out, each with its reason.
    skipped: tuple[SkippedItem, ...] = ()


RunFn = Callable[[Workspace, Config, Client], StageReport]
InputsFn = Callable[[Workspace, Config], list[Path]]


def no_inputs(ws: Workspace, cfg: Config) -> list[Path]:
    return []


@dataclass(frozen=True)
class StageSpec:
    """One pipeline stage."""

    name: str
    run: RunFn
    # Dotted config fields or sections the stage's result depends on.
    config_fields: tuple[str, ...] = ()
    # Files outside the workspace that the stage reads (images, logs, GCP files).
    inputs: InputsFn = no_inputs
    # Bump when the stage's code changes its outputs, to invalidate old manifests.
    version: int = 1
    # One-line description for progress output and --help.
    title: str = ""
