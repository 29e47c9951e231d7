"""GCP files: ODM gcp_list.txt and CSV, checkpoints, and checks against the image records."""

from __future__ import annotations

from pathlib import Path

import pytest

from drone_io.gcp import read_gcp_file
from models.errors import CRSError, InputError
from models.gcp import check_observations
from models.image import ImageRecord


def _rec(name: str, w: int = 4000, h: int = 3000) -> ImageRecord:
    return ImageRecord(name=name, path=Path("/x") / name, width=w, height=h, camera_id="cam")


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


ODM = """{crs}
# a comment
544256.7 5320919.9 181.2 3044.0 2622.5 DJI_0018.JPG gcp01
544256.7 5320919.9 181.2 1044.0 1622.5 DJI_0019.JPG gcp01
544300.1 5320950.2 181.0 100 200 DJI_0019.JPG CHK_A

544400.0 5320990.0 182.0 5 6 DJI_0020.JPG
544400.0 5320990.0 182.0 7 8 DJI_0021.JPG
"""


@pytest.mark.parametrize(
    "header, expected",
    [
        ("EPSG:32615", "EPSG:32615"),
        ("+proj=utm +zone=15 +datum=WGS84 +units=m +no_defs", None),
        ("WGS84 UTM 15N", "EPSG:32615"),
        ("WGS84 UTM 15S", "EPSG:32715"),
    ],
)
def test_odm_gcp_list_headers(tmp_path: Path, header: str, expected: str | None) -> None:
    g = read_gcp_file(_write(tmp_path, "gcp_list.txt", ODM.format(crs=header)))
    if expected:
        assert g.crs == expected
    else:
        assert "UTM" in g.crs or g.crs.startswith("EPSG:326")
    names = [p.name for p in g.points]
    assert names == ["gcp01", "CHK_A", "gcp1"]  # unnamed points get names by their coordinates
    assert [p.name for p in g.checkpoints] == ["CHK_A"] and len(g.control) == 2
    assert len(g.observations) == 5
    ob = g.observations[0]
    assert (ob.point, ob.image, ob.px, ob.py, ob.line) == ("gcp01", "DJI_0018.JPG", 3044.0, 2622.5, 3)
    assert g.points[0].line == 3 and (g.points[0].x, g.points[0].z) == (544256.7, 181.2)


def test_user_checkpoints_and_unknown_checkpoint(tmp_path: Path) -> None:
    p = _write(tmp_path, "gcp_list.txt", ODM.format(crs="EPSG:32615"))
    g = read_gcp_file(p, checkpoints=["gcp01"])
    assert {x.name for x in g.checkpoints} == {"gcp01", "CHK_A"}
    with pytest.raises(InputError, match="--checkpoints names GCP9"):
        read_gcp_file(p, checkpoints=["GCP9"])


@pytest.mark.parametrize(
    "text, words, line",
    [
        ("EPSG:999999\n1 2 3 4 5 a.jpg\n", "unknown CRS 'EPSG:999999'", 1),
        ("1 2 3 4 5 a.jpg\n", "first line of a GCP file is its CRS", 1),
        ("EPSG:32615\n1 2 3 4 a.jpg\n", "expected 'x y z px py image", 2),
        ("EPSG:32615\n1 2 zz 4 5 a.jpg\n", "z 'zz' is not a number", 2),
        ("EPSG:32615\n1 2 3 4 5 a.jpg p\n1 2 4 4 5 b.jpg p\n", "GCP 'p' has coordinates", 3),
        ("EPSG:32615\n1 2 3 4 5 a.jpg p\n1 2 3 6 7 a.jpg p\n", "measured twice", 3),
        ("WGS84 UTM 61N\n1 2 3 4 5 a.jpg\n", "UTM zone 61 does not exist", 1),
    ],
)
def test_odm_errors_name_file_and_line(tmp_path: Path, text: str, words: str, line: int) -> None:
    p = _write(tmp_path, "gcp_list.txt", text)
    with pytest.raises(InputError, match=words) as exc:
        read_gcp_file(p)
    assert f"{p}:{line}" in str(exc.value)


def test_csv_with_crs_line(tmp_path: Path) -> None:
    text = (
        "EPSG:4547\n"
        "Name;Easting;Northing;Elevation;Image;px;py\n"
        "G1;500100.5;2500200.25;12.5;IMG_1.jpg;10;20\n"
        "G1;500100.5;2500200.25;12.5;IMG_2.jpg;30;40\n"
        "CHK1;500150.0;2500250.0;13.0;;;\n"
    )
    g = read_gcp_file(_write(tmp_path, "points.csv", text))
    assert g.crs == "EPSG:4547"
    assert [p.name for p in g.points] == ["G1", "CHK1"] and g.points[1].is_checkpoint
    assert [(o.image, o.px, o.py, o.line) for o in g.observations] == [("IMG_1.jpg", 10.0, 20.0, 3), ("IMG_2.jpg", 30.0, 40.0, 4)]


def test_csv_with_crs_column_and_latlon(tmp_path: Path) -> None:
    text = "name,lat,lon,alt,image,px,py,epsg\nA,46.84,-91.99,180,DJI_0018.JPG,1,2,4326\n"
    g = read_gcp_file(_write(tmp_path, "gcp.txt", text))
    assert g.crs == "EPSG:4326"
    assert (g.points[0].x, g.points[0].y) == (-91.99, 46.84)  # x is longitude


def test_csv_errors(tmp_path: Path) -> None:
    with pytest.raises(CRSError, match="no CRS given"):
        read_gcp_file(_write(tmp_path, "a.csv", "name,x,y,z\nA,1,2,3\n"))
    with pytest.raises(InputError, match="lacks the column"):
        read_gcp_file(_write(tmp_path, "b.csv", "EPSG:32615\nname,x,y\nA,1,2\n"))
    p = _write(tmp_path, "c.csv", "EPSG:32615\nname,x,y,z,image,px,py\nA,1,2,3,a.jpg,x,2\n")
    with pytest.raises(InputError, match=f"{p}:3: px 'x' is not a number"):
        read_gcp_file(p)


def test_check_observations(tmp_path: Path) -> None:
    p = _write(tmp_path, "gcp_list.txt", ODM.format(crs="EPSG:32615"))
    g = read_gcp_file(p)
    recs = [_rec(f"sub/DJI_00{i}.JPG") for i in (18, 19, 20, 21)]
    checked = check_observations(g, recs)
    assert checked.observations[0].image == "sub/DJI_0018.JPG"  # bare name resolved to the record name

    with pytest.raises(InputError, match=rf"{p}:3: GCP 'gcp01' is measured in image 'DJI_0018.JPG', which is not in the batch"):
        check_observations(g, recs[1:])
    with pytest.raises(InputError, match=r"which was skipped \(truncated_jpeg\)"):
        check_observations(g, recs[1:], skipped={"sub/DJI_0018.JPG": "truncated_jpeg"})
    small = [_rec("sub/DJI_0018.JPG", 3000, 2000)] + recs[1:]
    with pytest.raises(InputError, match=rf"{p}:3: GCP 'gcp01' pixel \(3044, 2622.5\) lies outside image"):
        check_observations(g, small)
    dup = recs + [_rec("other/DJI_0018.JPG")]
    with pytest.raises(InputError, match=rf"{p}:3: .*ambiguous.*other/DJI_0018.JPG and sub/DJI_0018.JPG"):
        check_observations(g, dup)


def test_pixel_bounds_follow_the_pixel_centre_convention(tmp_path: Path) -> None:
    p = _write(tmp_path, "gcp_list.txt", "EPSG:32615\n1 2 3 -0.5 99.5 a.jpg\n1 2 3 99.5 -0.5 b.jpg\n")
    g = read_gcp_file(p)
    check_observations(g, [_rec("a.jpg", 100, 100), _rec("b.jpg", 100, 100)])
    p2 = _write(tmp_path, "gcp2.txt", "EPSG:32615\n1 2 3 100.0 5 a.jpg\n")
    with pytest.raises(InputError, match="outside"):
        check_observations(read_gcp_file(p2), [_rec("a.jpg", 100, 100)])
