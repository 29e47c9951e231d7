"""Read ground control points: ODM ``gcp_list.txt`` and CSV with a header.

ODM ``gcp_list.txt`` (whitespace separated)::

    EPSG:32616                      first line: the CRS, as EPSG:N, a PROJ string
                                    (+proj=utm +zone=16 ...) or 'WGS84 UTM 16N'
    x y z px py image [name]        one line per observation of a point in an image

``x y`` are easting/northing, or longitude/latitude for a geographic CRS.
``px py`` are pixel coordinates with the centre of the top-left pixel at (0, 0),
x right, y down, in the image as stored (after EXIF orientation). Points
without a name are named gcp1, gcp2, ... by their coordinates, in order of
first appearance. Lines starting with ``#`` and blank lines are ignored.

CSV (``.csv``, or any file whose header line holds commas, semicolons or tabs)::

    EPSG:32616                      optional CRS line (same forms as above);
                                    or a 'crs'/'epsg' column with one value
    name,x,y,z,image,px,py          header: any order, case-insensitive
    GCP01,544256.7,5320919.9,181.2,DJI_0018.JPG,3044,2622
    CHK01,544300.1,5320950.2,181.0,,,          a point with no observation

Header aliases: name = label/id/gcp/point; x = easting/east/lon/longitude;
y = northing/north/lat/latitude; z = elevation/height/alt/altitude/h;
image = image_name/file/filename/photo; px = pixel_x/image_x/col/u;
py = pixel_y/image_y/row/v. With lat/lon columns the CRS defaults to
EPSG:4326 when no CRS is given. Several rows of one name give several
observations of one point; their coordinates must agree.

A point is a checkpoint when its name starts with ``CHK`` (any case) or is
listed in ``checkpoints``. Errors name the file and the line.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from models.errors import CRSError, InputError
from models.gcp import GcpObservation, GcpSet, GroundControlPoint
from models.geo import crs_label, parse_crs

_UTM_TEXT = re.compile(r"^\s*WGS\s*-?\s*84\s+UTM\s+(\d{1,2})\s*([NS])\s*$", re.IGNORECASE)

_ALIASES: dict[str, tuple[str, ...]] = {
    "name": ("name", "label", "id", "gcp", "gcp_name", "point", "point_name"),
    "x": ("x", "easting", "east", "e", "lon", "long", "longitude", "geo_x"),
    "y": ("y", "northing", "north", "n", "lat", "latitude", "geo_y"),
    "z": ("z", "elevation", "height", "alt", "altitude", "h", "geo_z"),
    "image": ("image", "image_name", "imagename", "file", "filename", "photo", "img"),
    "px": ("px", "pixel_x", "image_x", "im_x", "col", "column", "u"),
    "py": ("py", "pixel_y", "image_y", "im_y", "row", "v"),
    "crs": ("crs", "epsg", "srs"),
}
_GEOGRAPHIC_X = {"lon", "long", "longitude"}


def crs_from_header(text: str, where: str) -> str:
    """The CRS of a GCP header line as 'EPSG:N' or WKT; raises CRSError naming ``where``."""
    t = text.strip()
    m = _UTM_TEXT.match(t)
    if m:
        zone = int(m.group(1))
        if not 1 <= zone <= 60:
            raise CRSError(f"{where}: UTM zone {zone} does not exist (zones are 1-60)")
        return f"EPSG:{(32600 if m.group(2).upper() == 'N' else 32700) + zone}"
    try:
        crs = parse_crs(t)
    except CRSError as exc:
        raise CRSError(
            f"{where}: {exc}. The first line of a GCP file is its CRS: EPSG:N, a PROJ string "
            "(+proj=utm +zone=16 +datum=WGS84) or 'WGS84 UTM 16N'"
        ) from None
    return crs_label(crs)


def _looks_like_crs(text: str) -> bool:
    t = text.strip()
    return bool(
        t.upper().startswith("EPSG:")
        or t.startswith("+proj")
        or t.startswith("+init")
        or _UTM_TEXT.match(t)
        or t.upper().startswith(("PROJCS[", "GEOGCS[", "PROJCRS[", "GEOGCRS[", "COMPOUNDCRS[", "COMPD_CS["))
        or t.isdigit()
    )


def _float(text: str, what: str, where: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise InputError(f"{where}: {what} '{text}' is not a number") from None
    if not math.isfinite(v):
        raise InputError(f"{where}: {what} '{text}' is not a finite number")
    return v


@dataclass
class _Builder:
    """Accumulates points and observations, checking their consistency."""

    source: str
    checkpoints: frozenset[str]
    points: dict[str, GroundControlPoint] = field(default_factory=dict)
    point_line: dict[str, int] = field(default_factory=dict)
    by_coords: dict[tuple[float, float, float], str] = field(default_factory=dict)
    observations: list[GcpObservation] = field(default_factory=list)
    seen: dict[tuple[str, str], int] = field(default_factory=dict)

    def point(self, name: str | None, x: float, y: float, z: float, line: int) -> str:
        if not name:
            key = (round(x, 4), round(y, 4), round(z, 4))
            name = self.by_coords.get(key) or f"gcp{len(self.by_coords) + 1}"
            self.by_coords[key] = name
        old = self.points.get(name)
        if old is None:
            is_chk = name.upper().startswith("CHK") or name in self.checkpoints
            self.points[name] = GroundControlPoint(name, x, y, z, is_checkpoint=is_chk, line=line)
            self.point_line[name] = line
        elif max(abs(old.x - x), abs(old.y - y), abs(old.z - z)) > 1e-3:
            raise InputError(
                f"{self.source}:{line}: GCP '{name}' has coordinates ({x}, {y}, {z}) but line "
                f"{self.point_line[name]} gave ({old.x}, {old.y}, {old.z}); one point has one position, "
                "fix the coordinates or rename one of the points"
            )
        return name

    def observe(self, name: str, image: str, px: float, py: float, line: int) -> None:
        key = (name, image)
        if key in self.seen:
            raise InputError(
                f"{self.source}:{line}: GCP '{name}' is measured twice in image '{image}' "
                f"(lines {self.seen[key]} and {line}); keep one measurement"
            )
        self.seen[key] = line
        self.observations.append(GcpObservation(point=name, image=image, px=px, py=py, line=line))

    def build(self, crs: str) -> GcpSet:
        missing = sorted(self.checkpoints - set(self.points))
        if missing:
            raise InputError(
                f"{self.source}: --checkpoints names {', '.join(missing)}, which the file does not contain; "
                f"its points are {', '.join(sorted(self.points)) or 'none'}"
            )
        if not self.points:
            raise InputError(f"{self.source}: the GCP file holds no points")
        return GcpSet(source=self.source, crs=crs, points=tuple(self.points.values()), observations=tuple(self.observations))


def _data_lines(text: str) -> list[tuple[int, str]]:
    out = []
    for i, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip().lstrip("\ufeff")
        if line and not line.startswith("#"):
            out.append((i, line))
    return out


def _read_odm(lines: list[tuple[int, str]], b: _Builder) -> GcpSet:
    (crs_line_no, crs_text), rest = lines[0], lines[1:]
    crs = crs_from_header(crs_text, f"{b.source}:{crs_line_no}")
    for line_no, text in rest:
        where = f"{b.source}:{line_no}"
        parts = text.split()
        if len(parts) < 6:
            raise InputError(
                f"{where}: expected 'x y z px py image [name]', got {len(parts)} field(s): '{text}'"
            )
        x, y, z = (_float(parts[i], w, where) for i, w in ((0, "x"), (1, "y"), (2, "z")))
        px, py = _float(parts[3], "pixel x", where), _float(parts[4], "pixel y", where)
        name = b.point(parts[6] if len(parts) > 6 else None, x, y, z, line_no)
        b.observe(name, parts[5], px, py, line_no)
    return b.build(crs)


def _column_map(header: list[str], where: str) -> dict[str, int]:
    cols: dict[str, int] = {}
    for i, h in enumerate(header):
        key = h.strip().lower().replace(" ", "_")
        for field_name, aliases in _ALIASES.items():
            if key in aliases and field_name not in cols:
                cols[field_name] = i
    missing = [f for f in ("name", "x", "y", "z") if f not in cols]
    if missing:
        raise InputError(
            f"{where}: the CSV header '{','.join(header)}' lacks the column(s) {', '.join(missing)}; "
            "expected name,x,y,z,image,px,py (see the accepted layout in the documentation)"
        )
    obs = [f for f in ("image", "px", "py") if f in cols]
    if obs and len(obs) < 3:
        raise InputError(f"{where}: the CSV header has {', '.join(obs)} but not all of image, px, py")
    return cols


def _csv_crs_line(text: str) -> str | None:
    """The CRS of a CSV's first line ('EPSG:32616', 'EPSG:32616,,,', 'epsg,32616', 'crs;EPSG:4547'), else None."""
    if _looks_like_crs(text) and not text.strip().isdigit():
        return text.strip()
    fields = [f.strip() for f in re.split(r"[,;\t]", text)]
    fields = [f for f in fields if f]
    if len(fields) == 1 and _looks_like_crs(fields[0]):
        return fields[0] if not fields[0].isdigit() else f"EPSG:{fields[0]}"
    if len(fields) == 2 and fields[0].lower() in ("epsg", "crs", "srs"):
        return f"EPSG:{fields[1]}" if fields[1].isdigit() else fields[1]
    return None


def _read_csv(lines: list[tuple[int, str]], b: _Builder) -> GcpSet:
    crs: str | None = None
    crs_text = _csv_crs_line(lines[0][1])
    if crs_text is not None:
        crs = crs_from_header(crs_text, f"{b.source}:{lines[0][0]}")
        lines = lines[1:]
    if not lines:
        raise InputError(f"{b.source}: the CSV has no header line (name,x,y,z,image,px,py)")
    header_no, header_text = lines[0]
    delimiter = max((",", ";", "\t"), key=header_text.count)
    header = next(csv.reader(io.StringIO(header_text), delimiter=delimiter))
    cols = _column_map(header, f"{b.source}:{header_no}")
    geographic_cols = header[cols["x"]].strip().lower() in _GEOGRAPHIC_X
    crs_values: set[str] = set()
    for line_no, text in lines[1:]:
        where = f"{b.source}:{line_no}"
        row = next(csv.reader(io.StringIO(text), delimiter=delimiter))
        row += [""] * (len(header) - len(row))

        def get(f: str) -> str:
            return row[cols[f]].strip() if f in cols else ""

        name = get("name")
        if not name:
            raise InputError(f"{where}: the row has no point name")
        x, y, z = (_float(get(f), f, where) for f in ("x", "y", "z"))
        b.point(name, x, y, z, line_no)
        if get("crs"):
            crs_values.add(get("crs"))
        image = get("image")
        if image:
            b.observe(name, image, _float(get("px"), "px", where), _float(get("py"), "py", where), line_no)
        elif get("px") or get("py"):
            raise InputError(f"{where}: pixel coordinates without an image name")
    if crs_values:
        if len(crs_values) > 1:
            raise InputError(f"{b.source}: the crs column holds several CRSs ({', '.join(sorted(crs_values))}); use one")
        col_crs = next(iter(crs_values))
        col_crs = f"EPSG:{col_crs}" if col_crs.isdigit() else col_crs
        col_label = crs_from_header(col_crs, f"{b.source}: crs column")
        if crs is not None and col_label != crs:
            raise InputError(f"{b.source}: the CRS line says {crs} but the crs column says {col_label}")
        crs = col_label
    if crs is None:
        if not geographic_cols:
            raise CRSError(
                f"{b.source}: no CRS given; put a line such as EPSG:32616 before the header, "
                "or add a crs column"
            )
        crs = "EPSG:4326"
    return b.build(crs)


def read_gcp_file(path: Path, checkpoints: Sequence[str] = ()) -> GcpSet:
    """Read an ODM gcp_list.txt or a GCP CSV into a :class:`GcpSet` (see the module doc for the layouts)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"GCP file {path} cannot be read ({exc.strerror}); check the path") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    lines = _data_lines(text)
    if not lines:
        raise InputError(f"GCP file {path} is empty; its first line must be the CRS, e.g. EPSG:32616")
    b = _Builder(source=str(path), checkpoints=frozenset(n.strip() for n in checkpoints if n.strip()))
    first_is_crs = _looks_like_crs(lines[0][1]) or _csv_crs_line(lines[0][1]) is not None
    header_candidate = lines[1][1] if len(lines) > 1 and first_is_crs else lines[0][1]
    first_field = re.split(r"[,;\t]", header_candidate)[0]
    is_csv = path.suffix.lower() == ".csv" or (
        any(d in header_candidate for d in (",", ";", "\t")) and re.search(r"[A-Za-z]", first_field) is not None
    )
    return _read_csv(lines, b) if is_csv else _read_odm(lines, b)
