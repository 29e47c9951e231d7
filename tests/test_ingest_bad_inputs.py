"""A corpus of bad inputs, each built from copies of real images: a clear message, no traceback.

Each case runs the CLI entry point (``pipeline.cli.main``). Fatal problems exit
with code 2 and a message naming the file; problems the run can go on without
exit 0 with the item counted and explained.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import cv2
import pytest

from tests.ingest_helpers import with_exif_of, write
from pipeline.cli import main

GOOD = ["DJI_0018.JPG", "DJI_0019.JPG", "DJI_0020.JPG"]


@pytest.fixture
def flight(copy_dataset: Callable[..., Path], tmp_path: Path) -> Path:
    """A flight folder with three good Brighton Beach images in images/."""
    src = copy_dataset("brighton_beach", "images", limit=3)
    root = tmp_path / "flight"
    shutil.copytree(src, root / "images")
    assert sorted(p.name for p in (root / "images").iterdir()) == GOOD
    return root


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out and "Traceback" not in err
    assert "internal error" not in err
    return code, out, err


def _inspect_json(capsys: pytest.CaptureFixture[str], flight: Path, tmp_path: Path, *extra: str) -> dict[str, Any]:
    code, out, err = _cli(capsys, "inspect", str(flight), "--json", "-o", str(tmp_path / "cameras.geojson"), *extra)
    assert code == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


def _skipped(j: dict[str, Any], name: str) -> dict[str, Any]:
    hits = [s for s in j["images_skipped"] if s["image"] == name]
    assert len(hits) == 1, j["images_skipped"]
    return hits[0]


# -- builders -----------------------------------------------------------------------------
def add_zero_byte(flight: Path) -> str:
    write(flight / "images" / "EMPTY.JPG", b"")
    return "EMPTY.JPG"


def add_truncated(flight: Path) -> str:
    data = (flight / "images" / GOOD[0]).read_bytes()
    write(flight / "images" / "CUT.JPG", data[: int(len(data) * 0.6)])
    return "CUT.JPG"


def add_png_renamed(flight: Path) -> str:
    img = cv2.imread(str(flight / "images" / GOOD[0]), cv2.IMREAD_REDUCED_COLOR_8)
    ok, png = cv2.imencode(".png", img)
    assert ok
    write(flight / "images" / "PICTURE.jpg", png.tobytes())
    return "PICTURE.jpg"


def add_no_exif(flight: Path) -> str:
    img = cv2.imread(str(flight / "images" / GOOD[1]), cv2.IMREAD_REDUCED_COLOR_4)
    ok, jpg = cv2.imencode(".jpg", img)
    assert ok
    write(flight / "images" / "NOEXIF.JPG", jpg.tobytes())
    return "NOEXIF.JPG"


def add_second_camera(flight: Path) -> str:
    src = flight / "images" / GOOD[2]
    img = cv2.imread(str(src), cv2.IMREAD_REDUCED_COLOR_2)
    ok, jpg = cv2.imencode(".jpg", img)
    assert ok
    write(flight / "images" / "HALF.JPG", with_exif_of(src.read_bytes(), jpg.tobytes()))
    return "HALF.JPG"


def add_duplicates(flight: Path) -> tuple[str, str]:
    images = flight / "images"
    for sub, name in (("a", GOOD[0]), ("b", GOOD[1])):
        (images / sub).mkdir()
        shutil.copy(images / name, images / sub / "DJI_9999.JPG")
    return "a/DJI_9999.JPG", "b/DJI_9999.JPG"


# -- the corpus, one case at a time --------------------------------------------------------
def test_zero_byte_jpeg(flight: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = add_zero_byte(flight)
    j = _inspect_json(capsys, flight, tmp_path)
    s = _skipped(j, name)
    assert s["reason"] == "empty_file" and name in s["message"] and "0 bytes" in s["message"]
    assert (j["images_total"], j["images_used"]) == (4, 3)


def test_truncated_jpeg(flight: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = add_truncated(flight)
    s = _skipped(_inspect_json(capsys, flight, tmp_path), name)
    assert s["reason"] == "truncated_jpeg" and name in s["message"] and "re-copy" in s["message"]


def test_png_renamed_jpg(flight: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = add_png_renamed(flight)
    s = _skipped(_inspect_json(capsys, flight, tmp_path), name)
    assert s["reason"] == "png_renamed" and name in s["message"] and "PNG" in s["message"]


def test_image_without_exif(flight: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = add_no_exif(flight)
    j = _inspect_json(capsys, flight, tmp_path)
    assert (j["images_read"], j["images_used"], j["images_skipped"]) == (4, 3, [])
    (np_,) = j["images_without_position"]
    assert np_["image"] == name and "no EXIF" in np_["message"]
    assert j["position_sources"] == {"exif": 3, "none": 1}
    assert len(j["cameras"]) == 2  # an unknown camera at the re-encoded size


def test_mixed_cameras(flight: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    add_second_camera(flight)
    j = _inspect_json(capsys, flight, tmp_path)
    cams = {c["id"]: c for c in j["cameras"]}
    assert set(cams) == {"dji fc300s 4000x2250 3.61mm", "dji fc300s 2000x1125 3.61mm"}
    assert cams["dji fc300s 2000x1125 3.61mm"]["images"] == 1
    assert cams["dji fc300s 2000x1125 3.61mm"]["focal_px"] == pytest.approx(cams["dji fc300s 4000x2250 3.61mm"]["focal_px"] / 2)
    assert j["images_used"] == 4


def test_duplicate_names_in_sub_folders(flight: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = add_duplicates(flight)
    j = _inspect_json(capsys, flight, tmp_path)
    names = [im["name"] for im in j["images"]]
    assert a in names and b in names and j["images_used"] == 5
    assert j["duplicate_names"] == {"DJI_9999.JPG": [a, b]}
    # A GCP file that names the bare file is ambiguous: an error naming both paths.
    write(flight / "gcp_list.txt", b"EPSG:32615\n576660 5188160 158 100 100 DJI_9999.JPG g1\n")
    code, _out, err = _cli(capsys, "inspect", str(flight), "-o", str(tmp_path / "c.geojson"))
    assert code == 2
    assert f"{flight / 'gcp_list.txt'}:2" in err and a in err and b in err and "ambiguous" in err


def test_gcp_naming_a_missing_image(flight: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gcp = write(
        flight / "gcp_list.txt",
        b"EPSG:32615\n576660 5188160 158 100 100 DJI_0018.JPG g1\n576660 5188160 158 200 150 DJI_0042.JPG g1\n",
    )
    code, _out, err = _cli(capsys, "inspect", str(flight), "-o", str(tmp_path / "c.geojson"))
    assert code == 2
    assert f"{gcp}:3" in err and "DJI_0042.JPG" in err and "not in the batch" in err


def test_gcp_pixel_outside_the_image(flight: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gcp = write(tmp_path / "my.csv", b"EPSG:32615\nname,x,y,z,image,px,py\ng1,576660,5188160,158,DJI_0019.JPG,4100,20\n")
    code, _out, err = _cli(capsys, "inspect", str(flight), "--gcp", str(gcp), "-o", str(tmp_path / "c.geojson"))
    assert code == 2 and f"{gcp}:3" in err and "outside image 'DJI_0019.JPG'" in err


def test_unknown_epsg_code(flight: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = _cli(capsys, "inspect", str(flight), "--crs", "EPSG:999999", "-o", str(tmp_path / "c.geojson"))
    assert code == 2 and "unknown CRS 'EPSG:999999'" in err
    code, _out, err = _cli(capsys, "run", str(flight), "-o", str(tmp_path / "out"), "--crs", "EPSG:999999")
    assert code == 2 and "unknown CRS 'EPSG:999999'" in err


def test_nothing_readable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "bad"
    write(root / "A.JPG", b"")
    write(root / "B.JPG", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    code, _out, err = _cli(capsys, "inspect", str(root), "-o", str(tmp_path / "c.geojson"))
    assert code == 2 and "none of the 2 images" in err and "A.JPG" in err and "B.JPG" in err


def test_run_counts_every_bad_image_and_goes_on(flight: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The whole corpus of skippable inputs in one `aerobase run`: counted, explained, and stored."""
    bad = [add_zero_byte(flight), add_truncated(flight), add_png_renamed(flight)]
    no_exif = add_no_exif(flight)
    add_second_camera(flight)
    add_duplicates(flight)
    out = tmp_path / "out"
    code, stdout, err = _cli(capsys, "run", str(flight), "-o", str(out), "--stop-after", "ingest", "--workers", "1")
    assert code == 0, err
    stats = json.loads((out / "stats.json").read_text())
    assert stats["images_total"] == 10 and stats["images_read"] == 7 and stats["images_used"] == 6
    assert sorted(s["image"] for s in stats["images_skipped"]) == sorted(bad)
    assert {s["reason"] for s in stats["images_skipped"]} == {"empty_file", "truncated_jpeg", "png_renamed"}
    assert [x["image"] for x in stats["images_without_position"]] == [no_exif]
    assert stats["cameras"] == 3
    for s in bad:
        assert s in err  # warned on the console too
    assert "Images: 6 used of 10, 3 skipped" in stdout
    for name in ("images.json", "cameras.json", "tracks.json", "gcps.json", "georef.json"):
        assert (out / "work" / "ingest" / name).exists()
    fc = json.loads((out / "cameras.geojson").read_text())
    assert sum(f["geometry"]["type"] == "Point" for f in fc["features"]) == 6
