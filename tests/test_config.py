from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from models.errors import ConfigError
from pipeline.config import Compression, Config, GroundFilter, load_config, overlay


def test_defaults_are_frozen() -> None:
    cfg = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.dem.tile_size = 5  # type: ignore[misc]


@pytest.mark.parametrize("preset", ["fast", "default", "high"])
def test_presets_load(preset: str) -> None:
    cfg = load_config(preset)
    assert isinstance(cfg, Config)


def test_presets_differ_where_they_should() -> None:
    fast, high = load_config("fast"), load_config("high")
    assert fast.features.max_image_size < Config().features.max_image_size
    assert high.features.max_image_size == 0  # full resolution
    assert high.ortho.compression is Compression.DEFLATE


def test_unknown_key_names_the_dotted_key(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("dem:\n  resolutoin_gsd_factor: 3\n")
    with pytest.raises(ConfigError, match=r"dem\.resolutoin_gsd_factor"):
        load_config("default", f)


def test_unknown_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'bogus'"):
        overlay(Config(), {"bogus": {}})


@pytest.mark.parametrize(
    "data, key",
    [
        ({"dem": {"tile_size": "big"}}, "dem.tile_size"),
        ({"dem": {"tile_size": 1.5}}, "dem.tile_size"),
        ({"sfm": {"refine_distortion": 1}}, "sfm.refine_distortion"),
        ({"dem": {"ground_filter": "magic"}}, "dem.ground_filter"),
        ({"features": 3}, "features"),
    ],
)
def test_wrong_type_names_the_key(data: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        overlay(Config(), data)


def test_overlay_coerces_enums_and_numbers() -> None:
    cfg = overlay(Config(), {"dem": {"ground_filter": "csf", "resolution_gsd_factor": 3}, "ingest": {"clock_offset_s": None}})
    assert cfg.dem.ground_filter is GroundFilter.CSF
    assert cfg.dem.resolution_gsd_factor == 3.0 and isinstance(cfg.dem.resolution_gsd_factor, float)
    assert cfg.ingest.clock_offset_s is None


def test_invalid_yaml_is_a_config_error(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("dem: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config("default", f)


def test_unknown_preset() -> None:
    with pytest.raises(ConfigError, match="unknown preset"):
        load_config("turbo")


def test_values_for_manifests() -> None:
    cfg = Config()
    assert cfg.values("dem.tile_size") == cfg.dem.tile_size
    assert cfg.values("dem")["ground_filter"] == "smrf"


def test_every_field_has_a_comment() -> None:
    """The config is the user's documentation: each field carries a comment line above it."""
    import inspect

    import pipeline.config as mod

    sections = [mod.Config] + [type(getattr(Config(), f.name)) for f in dataclasses.fields(Config)]
    for cls in sections:
        lines = inspect.getsource(cls).splitlines()
        for f in dataclasses.fields(cls):
            idx = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{f.name}:"))
            assert lines[idx - 1].strip().startswith("#"), f"{cls.__name__}.{f.name} has no comment"
