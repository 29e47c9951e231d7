from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.camera import CameraModel
from models.errors import WorkspaceError
from models.geo import HeightRef
from models.image import Attitude, GpsPosition, ImageRecord, PositionSource, SkippedItem
from models.pose import Pose, world_to_camera_from_gimbal
from models.reconstruction import Reconstruction, RegisteredImage, SparsePoints
from pipeline.workspace import Workspace, atomic_path, fingerprint, write_json_atomic


def test_atomic_path_renames_only_on_success(tmp_path: Path) -> None:
    final = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(final) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []  # temporary removed too
    with atomic_path(final) as tmp:
        assert tmp.suffix == ".bin" and tmp.parent == tmp_path
        tmp.write_bytes(b"whole")
        assert not final.exists()
    assert final.read_bytes() == b"whole"


def test_atomic_overwrite_keeps_old_file_until_done(tmp_path: Path) -> None:
    final = tmp_path / "stats.json"
    write_json_atomic(final, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(final) as tmp:
            tmp.write_text("{broken")
            raise RuntimeError
    assert final.read_text().strip().startswith("{") and '"a": 1' in final.read_text()


def test_refuses_output_inside_input(tmp_path: Path) -> None:
    flight = tmp_path / "flight"
    flight.mkdir()
    with pytest.raises(WorkspaceError, match="inside the input folder"):
        Workspace(flight / "out").ensure(flight)
    with pytest.raises(WorkspaceError):
        Workspace(flight).ensure(flight)


def test_fingerprint_tracks_content(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("one")
    a = fingerprint(f)
    assert fingerprint(f) == a
    f.write_text("two")
    assert fingerprint(f) != a
    assert fingerprint(tmp_path / "missing") == "missing"


def _record(name: str) -> ImageRecord:
    return ImageRecord(
        name=name,
        path=Path("/data") / name,
        width=4000,
        height=3000,
        camera_id="cam",
        capture_time=1.5e9,
        gps=GpsPosition(34.75, 113.65, 180.0, HeightRef.ORTHOMETRIC, 0.02, 0.03, True),
        position_source=PositionSource.EXIF,
        relative_altitude_m=80.0,
        gimbal=Attitude(45.0, -90.0, 0.0),
    )


def test_images_roundtrip(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    assert not ws.images_exist()
    recs = [_record("a.jpg"), _record("sub/b.jpg")]
    skipped = [SkippedItem("c.jpg", "corrupt", "c.jpg: truncated")]
    ws.save_images(recs, skipped)
    assert ws.images_exist()
    assert ws.load_images() == recs
    assert ws.load_skipped_images() == skipped


def test_reconstruction_roundtrip(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    cam = CameraModel("cam", 4000, 3000, 3000.0, 3001.0, 2010.0, 1490.0, k1=-0.1, p2=1e-4)
    pose = Pose.from_center(world_to_camera_from_gimbal(30.0, -90.0), np.array([500000.0, 3840000.0, 200.0]))
    pts = SparsePoints(np.random.default_rng(0).normal(size=(5, 3)), np.zeros((5, 3), np.uint8), np.ones(5), np.full(5, 3, np.int32))
    rec = Reconstruction("EPSG:32649", {"cam": cam}, {"a.jpg": RegisteredImage("a.jpg", "cam", pose)}, pts)
    ws.save_reconstruction(rec)
    back = ws.load_reconstruction()
    assert back.cameras == rec.cameras
    np.testing.assert_allclose(back.images["a.jpg"].pose.center, pose.center, atol=1e-6)
    np.testing.assert_allclose(back.points.xyz, pts.xyz)
    assert back.crs == "EPSG:32649"
