"""Ground height from image motion, checked against DJI RelativeAltitude on Brighton Beach."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import dataset_path
from drone_io.images import read_image_record
from models.geo import Projector, resolve_working_crs
from models.sensors import build_cameras
from pipeline.ingest.batch import time_ordered
from pipeline.ingest.ground import GroundSource, ground_from_image_motion, ground_from_relative_altitude


@pytest.mark.slow
def test_image_motion_agrees_with_relative_altitude() -> None:
    paths = sorted(dataset_path("brighton_beach", "images").iterdir())[:8]
    recs = time_ordered([read_image_record(p, p.name) for p in paths])
    lon = np.array([r.gps.lon for r in recs if r.gps])
    lat = np.array([r.gps.lat for r in recs if r.gps])
    alt = np.array([r.gps.alt for r in recs if r.gps])
    proj = Projector.for_crs(resolve_working_crs("auto", float(lon[0]), float(lat[0])))
    xyz = proj.forward(lon, lat, alt)
    truth = ground_from_relative_altitude(recs)
    est = ground_from_image_motion(recs, xyz, build_cameras(recs))
    assert truth is not None and truth.source is GroundSource.RELATIVE_ALTITUDE
    assert truth.height_m == pytest.approx(158.5, abs=0.3)
    assert est is not None and est.source is GroundSource.IMAGE_MOTION and est.samples >= 3
    # Flying height is ~40 m; the estimate (with a focal length from the 35 mm tag) is within 15 %.
    assert est.height_m == pytest.approx(truth.height_m, abs=0.15 * 40.0)
