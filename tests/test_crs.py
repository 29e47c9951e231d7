"""Working CRS: auto UTM, any EPSG code, CGCS2000 geographic and its 3-degree GK zones."""

from __future__ import annotations

import numpy as np
import pyproj
import pytest

from models.errors import CRSError
from models.geo import (
    HeightRef,
    Projector,
    cgcs2000_gk3_epsg,
    check_crs_spec,
    crs_label,
    parse_crs,
    resolve_working_crs,
    utm_epsg,
    vertical_reference,
    working_crs_note,
)

SHENZHEN = (114.06, 22.54)  # lon, lat


def test_cgcs2000_gk3_codes_match_the_epsg_registry() -> None:
    # EPSG:4534..4554 are "CGCS2000 / 3-degree Gauss-Kruger CM 75E" .. "CM 135E".
    for cm in range(75, 136, 3):
        code = cgcs2000_gk3_epsg(cm + 1.2)
        crs = pyproj.CRS.from_epsg(code)
        assert crs.name == f"CGCS2000 / 3-degree Gauss-Kruger CM {cm}E"
        params = {p.name: p.value for p in crs.coordinate_operation.params}
        assert params["Longitude of natural origin"] == cm
        assert params["False easting"] == 500000
    assert cgcs2000_gk3_epsg(114.06) == 4547
    assert cgcs2000_gk3_epsg(75.0) == 4534
    with pytest.raises(CRSError, match="outside the CGCS2000"):
        cgcs2000_gk3_epsg(-91.99)


def test_zone_numbered_gk_codes_are_accepted_as_is() -> None:
    crs = resolve_working_crs("EPSG:4526", *SHENZHEN)  # zone 38 (CM 114E) with the 38 prefix
    assert crs_label(crs) == "EPSG:4526"
    x, y, _ = Projector.for_crs(crs).forward(np.array([114.0]), np.array([22.5]))[0]
    assert x == pytest.approx(38_500_000, abs=1.0)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("auto", "EPSG:32650"),
        ("EPSG:4490", "EPSG:4547"),  # CGCS2000 geographic -> its 3-degree GK zone
        ("EPSG:4547", "EPSG:4547"),
        ("epsg:32649", "EPSG:32649"),  # any projected code, even a neighbouring zone
        ("32649", "EPSG:32649"),
        ("EPSG:4326", "EPSG:32650"),
        ("EPSG:2326", "EPSG:2326"),  # Hong Kong 1980 Grid
    ],
)
def test_resolve_working_crs(spec: str, expected: str) -> None:
    crs = resolve_working_crs(spec, *SHENZHEN)
    assert crs_label(crs) == expected
    assert crs.is_projected


def test_auto_is_the_flight_utm_zone() -> None:
    assert utm_epsg(-91.99, 46.84) == 32615  # Brighton Beach, Minnesota
    assert utm_epsg(-83.31, 41.04) == 32617  # Seneca, Ohio
    assert utm_epsg(151.2, -33.9) == 32756
    assert crs_label(resolve_working_crs("auto", -91.99, 46.84)) == "EPSG:32615"


def test_gk_projection_is_sane() -> None:
    p = Projector.for_crs(resolve_working_crs("EPSG:4490", *SHENZHEN))
    x, y, h = p.forward(np.array([114.0]), np.array([22.5]), np.array([10.0]))[0]
    assert x == pytest.approx(500_000, abs=0.01) and 2_480_000 < y < 2_500_000 and h == 10.0
    back = p.inverse(np.array([[x, y, h]]))[0]
    assert back == pytest.approx([114.0, 22.5, 10.0], abs=1e-9)


def test_unknown_code_names_it() -> None:
    with pytest.raises(CRSError, match="unknown CRS 'EPSG:999999'"):
        check_crs_spec("EPSG:999999")
    with pytest.raises(CRSError, match="unknown CRS 'EPSG:999999'"):
        resolve_working_crs("EPSG:999999", *SHENZHEN)
    with pytest.raises(CRSError, match="neither projected nor geographic"):
        check_crs_spec("EPSG:5703")  # a vertical CRS alone


def test_feet_crs_works_in_metres_and_says_so() -> None:
    crs = resolve_working_crs("EPSG:2236", -80.2, 25.8)  # NAD83 / Florida East (ftUS)
    assert crs_label(crs) == "EPSG:32617"
    note = working_crs_note("EPSG:2236", crs)
    assert note is not None and "US survey foot" in note


def test_vertical_reference() -> None:
    assert vertical_reference(parse_crs("EPSG:32615"), HeightRef.ORTHOMETRIC) == "orthometric"
    compound = resolve_working_crs("EPSG:32615+5703", -91.99, 46.84)
    assert crs_label(compound) == "EPSG:32615+5703"
    assert vertical_reference(compound, HeightRef.ELLIPSOIDAL) == "orthometric (NAVD88 height)"
