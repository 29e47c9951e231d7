"""Issue 6 Done-when on the synthetic small flight: with the TRUE cameras, and through the whole
pipeline (SfM with GPS and the flight's GCPs feeding the dense stages).

Areas are defined explicitly in :mod:`tests.densekit`: "seen by two or more images" uses the true
cameras and the true DSM (occlusion by marching the true DSM); walls are DEM cells within 3 cells of
a step of more than 0.5 m in the true DSM; open ground is farther than 2 m from any building
footprint where the true DSM equals the true DTM.

Set AEROBASE_SYNTH_SMALL to a rendered small flight (``aerobase synth OUT --preset small --seed 7``)
to reuse it; otherwise the flight is rendered into tmp_path (needs ``pipeline.synth``).
"""

from __future__ import annotations

import os
from pathlib import Path

import laspy
import pytest
import rasterio

from pipeline.api import RunRequest, build_config
from pipeline.cluster import dask_client
from pipeline.config import RunConfig, load_config, with_inputs
from pipeline.runner import RunOptions, run_pipeline, run_stages
from pipeline.stages import STAGES, dem, densify, fusion, pointcloud
from pipeline.workspace import Workspace
from tests.densekit import dense_truth_figures, prepare_true_workspace

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small_flight(request: pytest.FixtureRequest) -> Path:
    given = os.environ.get("AEROBASE_SYNTH_SMALL")
    if given:
        return Path(given)
    flight: Path = request.getfixturevalue("synthetic_small")
    return flight


@pytest.mark.parametrize("cameras", ["true", "sfm"])
def test_dense_dem_against_truth(small_flight: Path, tmp_path: Path, cameras: str) -> None:
    if cameras == "true":
        cfg = with_inputs(load_config("default"), flight_dir=str(small_flight))
        with dask_client(RunConfig(workers=2)) as client:
            ws = prepare_true_workspace(small_flight, tmp_path / "out", cfg, client)
            summary = run_stages(ws, cfg, client, [densify.STAGE, fusion.STAGE, dem.STAGE, pointcloud.STAGE])
    else:  # the whole pipeline: SfM (GPS + GCPs) feeds the dense stages
        cfg = build_config(RunRequest(flight_dir=small_flight, out_dir=tmp_path / "out", preset="default", workers=2))
        summary = run_pipeline(Workspace(tmp_path / "out"), cfg, STAGES, RunOptions(stop_after="pointcloud"))
        ws = summary.workspace
    stats = summary.stats
    for key in ("points", "images_with_depth"):
        assert stats["dense"][key] > 0
    assert stats["dem"]["resolution_m"] == pytest.approx(2.0 * stats["dense"]["gsd_m"], rel=1e-3)
    assert 0.0 < stats["ground"]["fraction"] < 1.0
    # The flown area is the ground that two or more registered images see; the DSM covers it.
    assert stats["dem"]["coverage_fraction"] >= 0.95
    assert stats["dem"]["flown_area_m2"] == pytest.approx(stats["dem"]["dsm_area_m2"] / stats["dem"]["coverage_fraction"], rel=0.05)

    fig = dense_truth_figures(small_flight, ws)
    print("\n".join(fig.lines()))
    assert fig.coverage >= 0.95
    # ... and agrees with the coverage measured against the truth (true cameras, occlusion by the true DSM).
    assert stats["dem"]["coverage_fraction"] == pytest.approx(fig.coverage, abs=0.02)
    assert fig.dsm_median_gsd <= 1.5
    assert fig.dsm_p90_gsd <= 4.0
    assert fig.dtm_median_gsd <= 2.0
    assert fig.building_nonground >= 0.90

    for path in (ws.dsm_path, ws.dtm_path):
        with rasterio.open(path) as ds:
            assert ds.dtypes[0] == "float32" and ds.nodata is not None
            assert ds.crs.to_epsg() == 32649 and ds.overviews(1)
    with laspy.open(ws.pointcloud_path) as f:
        assert f.header.version == "1.4" and f.header.point_format.id == 7
        assert f.header.parse_crs().to_epsg() == 32649
        assert f.header.point_count == stats["dense"]["points"]
