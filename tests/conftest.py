"""Shared fixtures: real datasets from ../shared/datasets (copied, never written) and helpers."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATASETS = (REPO.parent / "shared" / "datasets").resolve()


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def dataset_path(*parts: str) -> Path:
    """Path of a shared dataset file or folder; fails under CI=true when missing, else skips."""
    path = SHARED_DATASETS.joinpath(*parts)
    if not path.exists():
        message = f"shared dataset {path} is missing"
        if in_ci():
            pytest.fail(message + " (CI=true: datasets are required)")
        pytest.skip(message)
    return path


@pytest.fixture
def copy_dataset(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Copy a shared dataset folder (or file) into tmp_path and return the copy."""

    def _copy(*parts: str, limit: int | None = None) -> Path:
        src = dataset_path(*parts)
        dst = tmp_path / "datasets" / Path(*parts)
        if src.is_dir():
            dst.mkdir(parents=True, exist_ok=True)
            files = sorted(p for p in src.iterdir() if p.is_file())
            for p in files[:limit] if limit else files:
                shutil.copy2(p, dst / p.name)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        return dst

    return _copy


@pytest.fixture(scope="session")
def synthetic_small_render(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """The small synthetic flight (seed 7) and its SynthResult, rendered once per test session; read-only."""
    from pipeline.synth import SynthOptions, render_flight

    out = tmp_path_factory.mktemp("synthetic-small") / "flight"
    return out, render_flight(out, SynthOptions(preset="small", seed=7))


@pytest.fixture(scope="session")
def synthetic_small(synthetic_small_render: tuple[Path, Any]) -> Path:
    """The folder of the small synthetic flight (see ``synthetic_small_render``)."""
    return synthetic_small_render[0]
