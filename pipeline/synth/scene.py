"""The synthetic world: a smooth terrain heightfield and box buildings with vertical walls.

All geometry here is in *local* coordinates: x, y are the scene CRS easting and
northing minus ``Scene.origin`` (so float math stays exact to micrometres) and z
is the ellipsoidal height itself. The synthetic world has no geoid undulation:
orthometric and ellipsoidal heights coincide.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class Terrain:
    """A gentle heightfield: mean height, a regional tilt and a sum of plane waves.

    ``h(x, y) = base + sx*x + sy*y + sum_i a_i * sin(kx_i*x + ky_i*y + phase_i)``
    """

    base_z: float
    slope_x: float
    slope_y: float
    amplitudes: tuple[float, ...]
    kx: tuple[float, ...]
    ky: tuple[float, ...]
    phases: tuple[float, ...]

    @classmethod
    def random(
        cls, rng: np.random.Generator, base_z: float, amplitudes: tuple[float, ...], wavelengths: tuple[float, ...]
    ) -> "Terrain":
        kx: list[float] = []
        ky: list[float] = []
        for lam in wavelengths:
            theta = float(rng.uniform(0.0, 2.0 * math.pi))
            k = 2.0 * math.pi / lam
            kx.append(k * math.cos(theta))
            ky.append(k * math.sin(theta))
        phases = tuple(float(p) for p in rng.uniform(0.0, 2.0 * math.pi, len(wavelengths)))
        slope = rng.normal(0.0, 0.004, 2)
        return cls(base_z, float(slope[0]), float(slope[1]), tuple(amplitudes), tuple(kx), tuple(ky), phases)

    @property
    def relief_bound(self) -> float:
        """An upper bound of |h - base| inside a radius of 1000 m."""
        return float(sum(abs(a) for a in self.amplitudes) + 1000.0 * math.hypot(self.slope_x, self.slope_y))

    def height(self, x: FloatArray, y: FloatArray) -> FloatArray:
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        h = self.base_z + self.slope_x * x + self.slope_y * y
        for a, kx, ky, ph in zip(self.amplitudes, self.kx, self.ky, self.phases):
            h = h + a * np.sin(kx * x + ky * y + ph)
        return np.asarray(h, dtype=np.float64)

    def height_and_gradient(self, x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        h = self.base_z + self.slope_x * x + self.slope_y * y
        gx = np.full_like(h, self.slope_x)
        gy = np.full_like(h, self.slope_y)
        for a, kx, ky, ph in zip(self.amplitudes, self.kx, self.ky, self.phases):
            arg = kx * x + ky * y + ph
            h = h + a * np.sin(arg)
            c = a * np.cos(arg)
            gx = gx + c * kx
            gy = gy + c * ky
        return h, gx, gy


class RoofKind(str, enum.Enum):
    """How a flat roof is painted."""

    GRAVEL = "gravel"  # grey gravel with rooftop units
    TILES = "tiles"  # rows of clay tiles
    METAL = "metal"  # ribbed metal sheet
    SOLAR = "solar"  # concrete with rows of solar panels
    CONCRETE = "concrete"  # light concrete with skylights


@dataclass(frozen=True)
class Building:
    """A box with vertical walls on a rotated rectangular footprint and a flat roof.

    The footprint is centred on (cx, cy) (local coordinates); its local u axis
    points ``rotation_deg`` counter-clockwise from grid east. Walls reach down to
    ``bottom_z`` (below the lowest terrain), so the ground meets them wherever it is.
    """

    index: int
    cx: float
    cy: float
    half_u: float
    half_v: float
    rotation_deg: float
    base_z: float  # terrain height at the centre (for floors and the height figure)
    roof_z: float
    bottom_z: float
    roof_kind: RoofKind
    wall_rgb: tuple[float, float, float]  # 0..255
    roof_rgb: tuple[float, float, float]  # 0..255

    @property
    def height_m(self) -> float:
        return self.roof_z - self.base_z

    @property
    def axes(self) -> tuple[FloatArray, FloatArray]:
        """Unit vectors of the local u and v axes in local world xy."""
        a = math.radians(self.rotation_deg)
        return np.array([math.cos(a), math.sin(a)]), np.array([-math.sin(a), math.cos(a)])

    def corners(self) -> FloatArray:
        """(4, 2) footprint corners in local xy, counter-clockwise."""
        u, v = self.axes
        c = np.array([self.cx, self.cy])
        return np.stack(
            [
                c - self.half_u * u - self.half_v * v,
                c + self.half_u * u - self.half_v * v,
                c + self.half_u * u + self.half_v * v,
                c - self.half_u * u + self.half_v * v,
            ]
        )

    def to_local(self, x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
        """World local xy -> footprint (u, v) coordinates."""
        a = math.radians(self.rotation_deg)
        ca, sa = math.cos(a), math.sin(a)
        dx = np.asarray(x, dtype=np.float64) - self.cx
        dy = np.asarray(y, dtype=np.float64) - self.cy
        return dx * ca + dy * sa, -dx * sa + dy * ca

    def contains(self, x: FloatArray, y: FloatArray, margin: float = 0.0) -> BoolArray:
        """Whether points lie inside the footprint grown by ``margin`` metres."""
        u, v = self.to_local(x, y)
        return np.asarray((np.abs(u) <= self.half_u + margin) & (np.abs(v) <= self.half_v + margin))

    def box_corners(self) -> FloatArray:
        """(8, 3) corners of the box in local coordinates."""
        c2 = self.corners()
        lo = np.column_stack([c2, np.full(4, self.bottom_z)])
        hi = np.column_stack([c2, np.full(4, self.roof_z)])
        return np.vstack([lo, hi])

    def edge_points(self, per_edge: int = 12) -> FloatArray:
        """Points along the 12 box edges, for bounding the projection of a distorted view."""
        corners = self.box_corners()
        edges = [(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7)]
        f = np.linspace(0.0, 1.0, per_edge)[:, None]
        return np.vstack([corners[a] * (1 - f) + corners[b] * f for a, b in edges])


@dataclass(frozen=True)
class GroundPoint:
    """A painted GCP target: a 2x2 black/white checker whose centre is the surveyed point."""

    name: str
    x: float  # local
    y: float  # local
    z: float  # terrain height at (x, y)
    is_checkpoint: bool
    rotation_deg: float  # target rotation from grid east
    size_m: float  # side of the whole square target


@dataclass(frozen=True)
class Scene:
    """Terrain, buildings and GCP targets of one synthetic flight, in local coordinates."""

    crs: str
    origin: tuple[float, float]  # scene CRS (x, y) of local (0, 0)
    terrain: Terrain
    buildings: tuple[Building, ...]
    gcps: tuple[GroundPoint, ...]
    extent: tuple[float, float, float, float]  # local (xmin, ymin, xmax, ymax) of the textured ground / truth rasters
    aoi_corners: FloatArray  # (4, 2) local corners of the area the image centres span

    def top_height(self, x: FloatArray, y: FloatArray) -> FloatArray:
        """Height of the top surface (roof or ground): the true DSM."""
        z = self.terrain.height(x, y)
        for b in self.buildings:
            inside = b.contains(x, y)
            z = np.where(inside, np.maximum(z, b.roof_z), z)
        return z

    def building_mask(self, x: FloatArray, y: FloatArray) -> BoolArray:
        mask = np.zeros(np.broadcast(np.asarray(x), np.asarray(y)).shape, dtype=bool)
        for b in self.buildings:
            mask |= b.contains(x, y)
        return mask


def footprint_overlaps(a: Building, cx: float, cy: float, half_u: float, half_v: float, rot: float, gap: float) -> bool:
    """Conservative overlap test of two rotated rectangles (bounding circles, then separating axes)."""
    ra = math.hypot(a.half_u, a.half_v)
    rb = math.hypot(half_u, half_v)
    if math.hypot(a.cx - cx, a.cy - cy) > ra + rb + gap:
        return False
    other = Building(-1, cx, cy, half_u + gap / 2, half_v + gap / 2, rot, 0, 0, 0, RoofKind.GRAVEL, (0, 0, 0), (0, 0, 0))
    grown = Building(-1, a.cx, a.cy, a.half_u + gap / 2, a.half_v + gap / 2, a.rotation_deg, 0, 0, 0, RoofKind.GRAVEL, (0, 0, 0), (0, 0, 0))
    pa = grown.corners()
    pb = other.corners()
    for box in (grown, other):
        for axis in box.axes:
            da = pa @ axis
            db = pb @ axis
            if da.max() < db.min() or db.max() < da.min():
                return False
    return True


def scene_from_json(doc: dict[str, Any]) -> Scene:
    """Rebuild the scene geometry from ``truth/scene.json`` (as written by ``aerobase synth``)."""
    ox, oy = (float(v) for v in doc["local_origin"])
    t = doc["terrain"]
    terrain = Terrain(
        base_z=float(t["base_z"]),
        slope_x=float(t["slope_x"]),
        slope_y=float(t["slope_y"]),
        amplitudes=tuple(float(v) for v in t["amplitudes"]),
        kx=tuple(float(v) for v in t["kx"]),
        ky=tuple(float(v) for v in t["ky"]),
        phases=tuple(float(v) for v in t["phases"]),
    )
    buildings = tuple(
        Building(
            index=int(b["index"]),
            cx=float(b["center"][0]) - ox,
            cy=float(b["center"][1]) - oy,
            half_u=float(b["size_m"][0]) / 2.0,
            half_v=float(b["size_m"][1]) / 2.0,
            rotation_deg=float(b["rotation_deg"]),
            base_z=float(b["base_z"]),
            roof_z=float(b["roof_z"]),
            bottom_z=float(b["bottom_z"]),
            roof_kind=RoofKind(b["roof"]),
            wall_rgb=(float(b["wall_rgb"][0]), float(b["wall_rgb"][1]), float(b["wall_rgb"][2])),
            roof_rgb=(float(b["roof_rgb"][0]), float(b["roof_rgb"][1]), float(b["roof_rgb"][2])),
        )
        for b in doc["buildings"]
    )
    gcps = tuple(
        GroundPoint(
            name=str(g["name"]),
            x=float(g["x"]) - ox,
            y=float(g["y"]) - oy,
            z=float(g["z"]),
            is_checkpoint=bool(g["checkpoint"]),
            rotation_deg=float(g["rotation_deg"]),
            size_m=float(g["size_m"]),
        )
        for g in doc["gcps"]
    )
    ex = doc["extent"]
    aoi = np.asarray(doc["flight"]["aoi_corners"], dtype=np.float64) - np.array([ox, oy])
    return Scene(
        crs=str(doc["crs"]),
        origin=(ox, oy),
        terrain=terrain,
        buildings=buildings,
        gcps=gcps,
        extent=(float(ex[0]) - ox, float(ex[1]) - oy, float(ex[2]) - ox, float(ex[3]) - oy),
        aoi_corners=aoi,
    )
