from __future__ import annotations

from pathlib import Path

import numpy as np

from models.depthmap import DepthMap
from pipeline.dense.fusion import FusedPoints
from pipeline.dense.records import DenseIndex, DepthSummary
from pipeline.dense.tiles import TileKey
from pipeline.workspace import Workspace


def test_depthmap_and_tile_roundtrip(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "out")
    depth = np.full((30, 40), np.nan, np.float32)
    depth[5:20, 10:30] = 55.125
    dm = DepthMap("flight/IMG_1.JPG", 0.25, depth, np.zeros((30, 40, 3), np.uint8), np.ones((30, 40), np.uint8))
    ws.save_depthmap(dm, "raw")
    assert ws.depthmap_exists("flight/IMG_1.JPG", "raw") and not ws.depthmap_exists("flight/IMG_1.JPG", "filtered")
    back = ws.load_depthmap("flight/IMG_1.JPG", "raw")
    assert back.image == dm.image and back.scale == 0.25 and back.valid_count == dm.valid_count
    assert np.array_equal(back.depth, dm.depth, equal_nan=True)
    assert ws.load_depthmap("flight/IMG_1.JPG", "raw", with_colour=False).rgb is None

    key = TileKey(-3, 12)
    pts = FusedPoints(np.array([[1.0, 2.0, 3.0]]), np.array([[1, 2, 3]], np.uint8), np.array([4], np.uint16))
    ws.save_tile_points(key, pts)
    assert np.array_equal(ws.load_tile_points(key).xyz, pts.xyz)
    ws.save_tile_classes(key, np.array([2], np.uint8))
    assert ws.load_tile_classes(key).tolist() == [2]

    index = DenseIndex("EPSG:32633", 0.03, 0.25, (DepthSummary("a", 5, (0.0, 1.0, 2.0, 3.0), 1.0, 2.0),))
    ws.save_dense_index(index)
    assert ws.load_dense_index() == index


def test_reset_task_dir_keeps_work_of_the_same_token(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "out")
    ws.reset_task_dir("densify", "token-a")
    done = ws.stage_dir("densify") / "raw" / "x.npz"
    done.parent.mkdir(parents=True)
    done.write_bytes(b"x")
    ws.reset_task_dir("densify", "token-a")  # a killed run resumes: finished tasks stay
    assert done.exists()
    ws.reset_task_dir("densify", "token-b")  # other inputs or config: start clean
    assert not done.exists()
