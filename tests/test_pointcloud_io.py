from __future__ import annotations

from pathlib import Path

import copclib
import laspy
import numpy as np

from drone_io.pointcloud import CloudFrame, CopcBuilder, LazWriter


def _chunks(seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(3):  # three 'tiles' side by side
        n = 40000
        xyz = np.column_stack([rng.uniform(0, 50, n) + 50 * i + 431000.0, rng.uniform(0, 50, n) + 4583000.0, rng.normal(120, 3, n)])
        rgb = rng.integers(0, 256, (n, 3), dtype=np.uint8)
        cls = rng.choice(np.array([1, 2, 6], np.uint8), n)
        out.append((xyz, rgb, cls))
    return out


def test_laz_and_copc_roundtrip(tmp_path: Path) -> None:
    chunks = _chunks()
    allxyz = np.concatenate([c[0] for c in chunks])
    frame = CloudFrame.around("EPSG:32618", allxyz.min(axis=0))
    laz = tmp_path / "cloud.laz"
    with LazWriter(laz, frame) as w:
        for xyz, rgb, cls in chunks:
            w.write(xyz, rgb, cls)
    las = laspy.read(laz)
    assert las.header.version == "1.4" and las.header.point_format.id == 7
    assert las.header.parse_crs().to_epsg() == 32618
    assert las.header.global_encoding.wkt
    assert np.allclose(las.header.scales, 0.001)
    assert len(las.points) == len(allxyz)
    assert np.allclose(np.asarray(las.x), allxyz[:, 0], atol=0.0006)
    assert np.array_equal(np.asarray(las.classification), np.concatenate([c[2] for c in chunks]))
    assert np.array_equal(np.asarray(las.red) // 257, np.concatenate([c[1][:, 0] for c in chunks]))

    builder = CopcBuilder(frame, allxyz.min(axis=0), allxyz.max(axis=0), spacing=0.3, scratch=tmp_path / "spill", grid=32)
    assert builder.octree.max_depth >= 2
    for xyz, rgb, cls in chunks:
        builder.add(xyz, rgb, cls)
    copc = tmp_path / "cloud.copc.laz"
    nodes = builder.write(copc)
    assert nodes > 8 and not (tmp_path / "spill").exists()
    reader = copclib.FileReader(str(copc))
    assert reader.copc_config.las_header.point_count == len(allxyz)
    assert reader.ValidateSpatialBounds()
    assert "UTM zone 18N" in reader.copc_config.wkt
    # Every node's parent holds points too (the hierarchy is connected from the root).
    keys = {(n.key.d, n.key.x, n.key.y, n.key.z) for n in reader.GetAllNodes() if n.point_count > 0}
    for d, x, y, z in keys:
        if d > 0:
            assert (d - 1, x // 2, y // 2, z // 2) in keys
    # copclib stores the WKT as an extended VLR: laspy's file reader finds it there.
    with laspy.open(copc) as f:
        assert f.header.parse_crs().to_epsg() == 32618
        assert f.header.global_encoding.wkt
    with laspy.CopcReader.open(copc) as cr:
        pts = cr.query()
        assert len(pts) == len(allxyz)
        assert sorted(np.asarray(pts.classification).tolist()) == sorted(np.concatenate([c[2] for c in chunks]).tolist())
