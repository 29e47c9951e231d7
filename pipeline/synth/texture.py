"""The ground and roof texture: one band-limited RGB raster in local coordinates.

The ground under a footprint is never visible (the walls enclose it), so the
roofs are painted into the same raster as the ground: the renderer samples it
at the (x, y) of any roof or ground hit, and the true orthophoto is the same
raster averaged over each output cell. Painting happens in three steps:

1. vector layers (fields, roads, markings, spots, cars, roofs, GCP targets) are
   drawn anti-aliased with OpenCV into an albedo raster and a class raster;
2. per row strip, each class gets its pattern (crop rows, paving joints, tile
   courses, roof ribs) and every texel a multi-octave value-noise modulation;
3. a Gaussian blur of ~0.6 texel band-limits the result.

Texels are finer than the GSD (``texture_oversample`` per GSD), so images
rendered with supersampling and the orthophoto agree without aliasing.
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from pipeline.synth.layout import Layout
from pipeline.synth.scene import Building, GroundPoint, RoofKind

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
F32 = NDArray[np.float32]
U8 = NDArray[np.uint8]

# Class ids of the class raster (uint8).
CLASS_GROUND = 0
CLASS_FIELD0 = 1  # fields are 1..99
CLASS_ASPHALT = 100
CLASS_MARKING = 101
CLASS_TRACK = 102
CLASS_SIDEWALK = 103
CLASS_TARGET = 104
CLASS_BUSH = 105
CLASS_ROCK = 106
CLASS_CAR = 107
CLASS_ROOF0 = 128  # roofs are 128..255 (building index modulo 128)

_SHIFT = 4  # fixed-point bits of OpenCV drawing coordinates
_ONE = 1 << _SHIFT
_STRIP_ROWS = 128


@dataclass(frozen=True, eq=False)
class GroundTexture:
    """An RGB raster over the local extent: texel (r, c) centre at (x_min + (c+0.5) res, y_max - (r+0.5) res)."""

    rgb: U8  # (H, W, 3), RGB order
    x_min: float
    y_max: float
    res: float

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.rgb.shape[0]), int(self.rgb.shape[1])

    def texel_coords(self, x: FloatArray, y: FloatArray) -> tuple[F32, F32]:
        """Fractional (col, row) of local points, integer at texel centres."""
        col = (np.asarray(x, dtype=np.float64) - self.x_min) / self.res - 0.5
        row = (self.y_max - np.asarray(y, dtype=np.float64)) / self.res - 0.5
        return col.astype(np.float32), row.astype(np.float32)

    def sample(self, x: FloatArray, y: FloatArray) -> F32:
        """Bilinear RGB (float32, 0..255) at local points of any shape; outside the raster it mirrors."""
        x = np.asarray(x, dtype=np.float64)
        shape = x.shape
        col, row = self.texel_coords(x.reshape(-1), np.asarray(y, dtype=np.float64).reshape(-1))
        n = col.shape[0]
        width = 2048
        rows = max(1, -(-n // width))
        pad = rows * width - n
        if pad:
            col = np.concatenate([col, np.zeros(pad, np.float32)])
            row = np.concatenate([row, np.zeros(pad, np.float32)])
        out = cv2.remap(
            self.rgb,
            col.reshape(rows, width),
            row.reshape(rows, width),
            interpolation=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT_101,
        )
        return out.reshape(-1, 3)[:n].astype(np.float32).reshape(shape + (3,))

    def sample_grid(self, col: F32, row: F32) -> U8:
        """Bilinear RGB (uint8) at a 2D grid of texel coordinates (a fast path for images)."""
        out = cv2.remap(self.rgb, col, row, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        return np.asarray(out, dtype=np.uint8)


RGB = tuple[float, float, float]


def _tone(rgb: RGB, factor: float, add: float = 0.0) -> RGB:
    """``rgb * factor + add``, clipped to 0..255."""
    r, g, b = (min(255.0, max(0.0, c * factor + add)) for c in rgb)
    return (r, g, b)


class _Painter:
    """Draws local-coordinate shapes into the albedo and class rasters."""

    def __init__(self, albedo: U8, classes: U8, x_min: float, y_max: float, res: float) -> None:
        self.albedo = albedo
        self.classes = classes
        self.x_min = x_min
        self.y_max = y_max
        self.res = res

    def _px(self, pts: FloatArray) -> NDArray[np.int32]:
        p = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        col = (p[:, 0] - self.x_min) / self.res - 0.5
        row = (self.y_max - p[:, 1]) / self.res - 0.5
        return np.round(np.stack([col, row], axis=-1) * _ONE).astype(np.int32)

    def polygon(self, pts: FloatArray, rgb: tuple[float, float, float], cls: int) -> None:
        poly = [self._px(pts)]
        colour = tuple(int(round(c)) for c in rgb)
        cv2.fillPoly(self.albedo, poly, colour, lineType=cv2.LINE_AA, shift=_SHIFT)
        cv2.fillPoly(self.classes, poly, int(cls), lineType=cv2.LINE_8, shift=_SHIFT)

    def circle(self, x: float, y: float, radius: float, rgb: tuple[float, float, float], cls: int) -> None:
        c = self._px(np.array([[x, y]]))[0]
        r = int(round(radius / self.res * _ONE))
        colour = tuple(int(round(v)) for v in rgb)
        centre = (int(c[0]), int(c[1]))
        cv2.circle(self.albedo, centre, r, colour, thickness=-1, lineType=cv2.LINE_AA, shift=_SHIFT)
        cv2.circle(self.classes, centre, r, int(cls), thickness=-1, lineType=cv2.LINE_8, shift=_SHIFT)

    def rect(self, cx: float, cy: float, half_u: float, half_v: float, angle_deg: float, rgb: tuple[float, float, float], cls: int) -> None:
        a = math.radians(angle_deg)
        u = np.array([math.cos(a), math.sin(a)])
        v = np.array([-math.sin(a), math.cos(a)])
        c = np.array([cx, cy])
        pts = np.stack([c - half_u * u - half_v * v, c + half_u * u - half_v * v, c + half_u * u + half_v * v, c - half_u * u + half_v * v])
        self.polygon(pts, rgb, cls)


@dataclass
class _ClassTables:
    """Per-class pattern parameters (256 entries each)."""

    ox: F32
    oy: F32
    cos: F32
    sin: F32
    noise_amp: F32
    rows_amp: F32
    rows_k: F32
    rows_phase: F32
    joint_amp: F32
    joint_pu: F32
    joint_pv: F32
    joint_w: F32
    shade_amp: F32
    shade_p: F32

    @classmethod
    def empty(cls) -> "_ClassTables":
        z = lambda: np.zeros(256, np.float32)  # noqa: E731
        t = cls(z(), z(), z(), z(), z(), z(), z(), z(), z(), z(), z(), z(), z(), z())
        t.cos[:] = 1.0
        t.noise_amp[:] = 1.0
        t.joint_w[:] = 1.0
        t.shade_p[:] = 1.0
        return t

    def frame(self, c: int, ox: float, oy: float, angle_deg: float) -> None:
        self.ox[c] = ox
        self.oy[c] = oy
        self.cos[c] = math.cos(math.radians(angle_deg))
        self.sin[c] = math.sin(math.radians(angle_deg))


def _paint_roof(p: _Painter, t: _ClassTables, b: Building, rng: np.random.Generator) -> None:
    cls = CLASS_ROOF0 + (b.index % 128)
    rgb = b.roof_rgb
    p.polygon(b.corners(), rgb, cls)
    t.frame(cls, b.cx, b.cy, b.rotation_deg)
    t.noise_amp[cls] = 0.6
    darker = _tone(rgb, 0.72)
    lighter = _tone(rgb, 1.18, 12.0)
    parapet = 0.35
    kind = b.roof_kind
    if kind in (RoofKind.GRAVEL, RoofKind.CONCRETE, RoofKind.SOLAR):
        # parapet ring: a lighter band along the roof edge
        outer = b.corners()
        inner_b = Building(b.index, b.cx, b.cy, b.half_u - parapet, b.half_v - parapet, b.rotation_deg, 0, 0, 0, kind, b.wall_rgb, rgb)
        p.polygon(outer, lighter, cls)
        p.polygon(inner_b.corners(), rgb, cls)
    if kind is RoofKind.GRAVEL:
        t.noise_amp[cls] = 1.3
        for _ in range(int(rng.integers(1, 5))):
            hu = float(rng.uniform(0.6, 1.6))
            hv = float(rng.uniform(0.5, 1.2))
            if b.half_u - parapet - hu < 0.6 or b.half_v - parapet - hv < 0.6:
                continue
            uu = float(rng.uniform(-1, 1)) * (b.half_u - parapet - hu - 0.5)
            vv = float(rng.uniform(-1, 1)) * (b.half_v - parapet - hv - 0.5)
            au, av = b.axes
            c = np.array([b.cx, b.cy]) + uu * au + vv * av
            p.rect(float(c[0]), float(c[1]), hu + 0.12, hv + 0.12, b.rotation_deg, darker, cls)
            p.rect(float(c[0]), float(c[1]), hu, hv, b.rotation_deg, (214, 216, 214), cls)
    elif kind is RoofKind.TILES:
        t.joint_amp[cls] = 0.35
        t.joint_pu[cls] = 0.0
        t.joint_pv[cls] = 0.32
        t.joint_w[cls] = 0.03
        t.shade_amp[cls] = 0.16
        t.shade_p[cls] = 0.32
        p.rect(b.cx, b.cy, b.half_u, 0.15, b.rotation_deg, darker, cls)  # ridge
    elif kind is RoofKind.METAL:
        t.frame(cls, b.cx, b.cy, b.rotation_deg + 90.0)
        t.rows_amp[cls] = 0.14
        t.rows_k[cls] = 2 * math.pi / 0.45
        t.joint_amp[cls] = 0.2
        t.joint_pu[cls] = 3.0
        t.joint_pv[cls] = 0.0
        t.joint_w[cls] = 0.03
    elif kind is RoofKind.SOLAR:
        au, av = b.axes
        pw, ph = 1.0, 1.7
        nu = int((2 * (b.half_u - parapet) - 1.0) // (pw + 0.05))
        row_pitch = ph + 1.1
        nv = int((2 * (b.half_v - parapet) - 1.0) // row_pitch)
        for i in range(max(0, nu)):
            for j in range(max(0, nv)):
                uu = -b.half_u + parapet + 0.5 + (i + 0.5) * (pw + 0.05)
                vv = -b.half_v + parapet + 0.5 + (j + 0.5) * row_pitch
                c = np.array([b.cx, b.cy]) + uu * au + vv * av
                shade = float(rng.uniform(-8, 8))
                p.rect(float(c[0]), float(c[1]), pw / 2, ph / 2, b.rotation_deg, (196, 200, 206), cls)
                p.rect(float(c[0]), float(c[1]), pw / 2 - 0.04, ph / 2 - 0.04, b.rotation_deg, (34 + shade, 46 + shade, 88 + shade), cls)
    elif kind is RoofKind.CONCRETE:
        t.joint_amp[cls] = 0.25
        t.joint_pu[cls] = 3.0
        t.joint_pv[cls] = 3.0
        t.joint_w[cls] = 0.03
        au, av = b.axes
        for _ in range(int(rng.integers(1, 4))):
            hu, hv = 0.6, 0.9
            if b.half_u < 3 or b.half_v < 3:
                break
            uu = float(rng.uniform(-1, 1)) * (b.half_u - 2.0)
            vv = float(rng.uniform(-1, 1)) * (b.half_v - 2.0)
            c = np.array([b.cx, b.cy]) + uu * au + vv * av
            p.rect(float(c[0]), float(c[1]), hu, hv, b.rotation_deg, (60, 74, 84), cls)


def _paint_target(p: _Painter, g: GroundPoint) -> None:
    """A square target of four quadrants, two white and two black; the centre is the surveyed point.

    Painted analytically (box-filtered edges one texel wide, symmetric about the
    centre) rather than with polygon fills, so the checker's saddle point sits
    exactly on the surveyed coordinate.
    """
    h = g.size_m / 2.0
    res = p.res
    reach = h * math.sqrt(2.0) + 2 * res
    c0 = max(0, int(math.floor((g.x - reach - p.x_min) / res)))
    c1 = min(p.albedo.shape[1], int(math.ceil((g.x + reach - p.x_min) / res)) + 1)
    r0 = max(0, int(math.floor((p.y_max - (g.y + reach)) / res)))
    r1 = min(p.albedo.shape[0], int(math.ceil((p.y_max - (g.y - reach)) / res)) + 1)
    if c0 >= c1 or r0 >= r1:
        return
    xs = p.x_min + (np.arange(c0, c1) + 0.5) * res
    ys = p.y_max - (np.arange(r0, r1) + 0.5) * res
    X, Y = np.meshgrid(xs - g.x, ys - g.y)
    a = math.radians(g.rotation_deg)
    s = X * math.cos(a) + Y * math.sin(a)
    t = -X * math.sin(a) + Y * math.cos(a)

    def ramp(d: FloatArray) -> FloatArray:
        return np.asarray(np.clip(d / res + 0.5, 0.0, 1.0), dtype=np.float64)

    sign = (2 * ramp(s) - 1) * (2 * ramp(t) - 1)  # +1 in the white quadrants (s*t > 0)
    cover = ramp(h - np.abs(s)) * ramp(h - np.abs(t))
    white = np.array([246.0, 246.0, 242.0])
    black = np.array([18.0, 18.0, 20.0])
    value = black + (white - black) * ((1 + sign) / 2)[..., None]
    block = p.albedo[r0:r1, c0:c1].astype(np.float64)
    mixed = block * (1 - cover[..., None]) + value * cover[..., None]
    p.albedo[r0:r1, c0:c1] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    cls = p.classes[r0:r1, c0:c1]
    cls[cover > 0.5] = CLASS_TARGET


def _paint_car(p: _Painter, car_x: float, car_y: float, heading: float, rgb: tuple[float, float, float]) -> None:
    a = math.radians(heading)
    u = np.array([math.cos(a), math.sin(a)])
    c = np.array([car_x, car_y])
    p.rect(car_x, car_y, 2.2, 0.9, heading, rgb, CLASS_CAR)
    glass = (40, 48, 56)
    w = c + 0.75 * u
    p.rect(float(w[0]), float(w[1]), 0.35, 0.75, heading, glass, CLASS_CAR)
    r = c - 1.45 * u
    p.rect(float(r[0]), float(r[1]), 0.22, 0.72, heading, glass, CLASS_CAR)
    roof = c - 0.3 * u
    p.rect(float(roof[0]), float(roof[1]), 0.75, 0.72, heading, _tone(rgb, 1.08), CLASS_CAR)


def _paint_layout(p: _Painter, t: _ClassTables, layout: Layout, rng: np.random.Generator) -> None:
    for i, f in enumerate(layout.fields):
        cls = CLASS_FIELD0 + (i % 99)
        p.polygon(f.corners, f.rgb, cls)
        t.frame(cls, 0.0, 0.0, f.row_angle_deg)
        t.noise_amp[cls] = 1.2
        if f.row_period_m > 0:
            t.rows_amp[cls] = f.row_amplitude
            t.rows_k[cls] = 2 * math.pi / f.row_period_m
            t.rows_phase[cls] = float(rng.uniform(0, 2 * math.pi))
    for s in layout.spots:
        if s.kind == "bush":
            p.circle(s.x, s.y, s.radius, s.rgb, CLASS_BUSH)
            hl = _tone(s.rgb, 1.25, 8.0)
            p.circle(s.x - 0.25 * s.radius, s.y + 0.25 * s.radius, 0.45 * s.radius, hl, CLASS_BUSH)
        else:
            p.circle(s.x, s.y, s.radius, s.rgb, CLASS_ROCK)
    kinds = {
        "asphalt": ((74, 74, 76), CLASS_ASPHALT),
        "track": ((170, 146, 112), CLASS_TRACK),
        "sidewalk": ((170, 166, 158), CLASS_SIDEWALK),
        "marking_white": ((236, 236, 230), CLASS_MARKING),
        "marking_yellow": ((226, 188, 60), CLASS_MARKING),
    }
    for strip in layout.strips:
        rgb, cls = kinds[strip.kind]
        for poly in strip.polygons():
            p.polygon(poly, rgb, cls)
    for lot in layout.parking:
        p.polygon(lot, (82, 82, 84), CLASS_ASPHALT)
        e = lot[1] - lot[0]
        length = float(np.linalg.norm(e))
        e = e / length
        n = lot[3] - lot[0]
        depth = float(np.linalg.norm(n))
        n = n / depth
        k = 0.3
        while k < length:
            for v0, v1 in ((0.3, 5.3), (depth - 5.3, depth - 0.3)):
                a = lot[0] + k * e + v0 * n
                b = lot[0] + k * e + v1 * n
                quad = np.stack([a - 0.06 * e, a + 0.06 * e, b + 0.06 * e, b - 0.06 * e])
                p.polygon(quad, (230, 230, 224), CLASS_MARKING)
            k += 2.6
    for car in layout.cars:
        _paint_car(p, car.x, car.y, car.heading_deg, car.rgb)
    for b in layout.buildings:
        _paint_roof(p, t, b, rng)
    for g in layout.gcps:
        _paint_target(p, g)


def _set_class_defaults(t: _ClassTables, layout: Layout) -> None:
    t.noise_amp[CLASS_GROUND] = 1.0
    t.noise_amp[CLASS_ASPHALT] = 0.55
    t.noise_amp[CLASS_MARKING] = 0.25
    t.noise_amp[CLASS_TRACK] = 1.0
    t.noise_amp[CLASS_TARGET] = 0.08
    t.noise_amp[CLASS_BUSH] = 1.5
    t.noise_amp[CLASS_ROCK] = 0.5
    t.noise_amp[CLASS_CAR] = 0.15
    t.noise_amp[CLASS_SIDEWALK] = 0.45
    t.frame(CLASS_SIDEWALK, 0.0, 0.0, layout.town_rotation_deg)
    t.joint_amp[CLASS_SIDEWALK] = 0.3
    t.joint_pu[CLASS_SIDEWALK] = 0.6
    t.joint_pv[CLASS_SIDEWALK] = 0.6
    t.joint_w[CLASS_SIDEWALK] = 0.025
    t.shade_amp[CLASS_SIDEWALK] = 0.08
    t.shade_p[CLASS_SIDEWALK] = 0.6


@dataclass(frozen=True, eq=False)
class _Lattice:
    values: F32
    x0: float  # local x of lattice node (0, 0)
    y1: float  # local y of lattice node (0, 0) (rows go south)
    spacing: float
    amplitude: float


def _lattices(rng: np.random.Generator, extent: tuple[float, float, float, float], finest: float, count: int, amp_coarse: float, amp_fine: float) -> list[_Lattice]:
    xmin, ymin, xmax, ymax = extent
    out: list[_Lattice] = []
    for k in range(count):
        spacing = finest * 2.5 ** (count - 1 - k)
        nx = int(math.ceil((xmax - xmin) / spacing)) + 5
        ny = int(math.ceil((ymax - ymin) / spacing)) + 5
        vals = rng.standard_normal((ny, nx)).astype(np.float32)
        amp = amp_coarse + (amp_fine - amp_coarse) * (k / max(1, count - 1))
        out.append(_Lattice(vals, xmin - 2 * spacing, ymax + 2 * spacing, spacing, amp))
    return out


def _octave(lat: _Lattice, xs: F32, ys: F32, res: float) -> F32:
    """One bicubic value-noise octave at the grid xs (W,) x ys (R,).

    Coarse octaves are evaluated on a grid ``k`` times sparser (at least 4 samples per
    lattice cell) and interpolated linearly; the sparse grid is aligned to absolute
    texel indices (strips start at multiples of ``k``), so strips join seamlessly.
    """
    k = 1
    while k < 16 and lat.spacing / (res * k * 2) >= 4.0:
        k *= 2
    if k == 1:
        gx, gy = xs, ys
    else:
        cc = -(-xs.shape[0] // k) + 2
        cr = -(-ys.shape[0] // k) + 2
        gx = (xs[0] + ((np.arange(cc) - 0.5) * k - 0.5) * res).astype(np.float32)
        gy = (ys[0] - ((np.arange(cr) - 0.5) * k - 0.5) * res).astype(np.float32)
    mx = ((gx - lat.x0) / lat.spacing).astype(np.float32)
    my = ((lat.y1 - gy) / lat.spacing).astype(np.float32)
    shape = (gy.shape[0], gx.shape[0])
    map_x = np.ascontiguousarray(np.broadcast_to(mx[None, :], shape))
    map_y = np.ascontiguousarray(np.broadcast_to(my[:, None], shape))
    v = cv2.remap(lat.values, map_x, map_y, interpolation=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)
    if k == 1:
        return np.asarray(v, dtype=np.float32)
    up = cv2.resize(v, (shape[1] * k, shape[0] * k), interpolation=cv2.INTER_LINEAR)
    return np.asarray(up[k : k + ys.shape[0], k : k + xs.shape[0]], dtype=np.float32)


def _noise(lats: list[_Lattice], xs: F32, ys: F32, res: float) -> F32:
    """Sum of value-noise octaves at the grid xs (W,) x ys (R,)."""
    total = np.zeros((ys.shape[0], xs.shape[0]), np.float32)
    for lat in lats:
        total += lat.amplitude * _octave(lat, xs, ys, res)
    return total


def _periodic_line(s: F32, period: F32, width: F32) -> F32:
    """1 on lines at multiples of ``period``, falling off as a Gaussian of ``width``."""
    m = np.mod(s, period)
    d = np.minimum(m, period - m)
    return np.asarray(np.exp(-((d / width) ** 2)), dtype=np.float32)


def _modulate_strip(
    albedo: U8,
    classes: U8,
    xs: F32,
    ys: F32,
    t: _ClassTables,
    lum: list[_Lattice],
    chroma_r: list[_Lattice],
    chroma_b: list[_Lattice],
    shade_table: F32,
    res: float,
) -> U8:
    cls = classes.astype(np.intp)
    mod = 1.0 + t.noise_amp[cls] * _noise(lum, xs, ys, res)
    X = np.broadcast_to(xs[None, :], cls.shape)
    Y = np.broadcast_to(ys[:, None], cls.shape)
    patterned = (t.rows_amp[cls] > 0) | (t.joint_amp[cls] > 0) | (t.shade_amp[cls] > 0)
    if patterned.any():
        c = cls[patterned]
        dx = X[patterned] - t.ox[c]
        dy = Y[patterned] - t.oy[c]
        co, si = t.cos[c], t.sin[c]
        u = dx * co + dy * si
        v = -dx * si + dy * co
        f = np.ones_like(u)
        ra = t.rows_amp[c]
        f *= 1.0 + ra * np.cos(t.rows_k[c] * v + t.rows_phase[c])
        ja = t.joint_amp[c]
        if (ja > 0).any():
            pu, pv, w = t.joint_pu[c], t.joint_pv[c], t.joint_w[c]
            lu = np.where(pu > 0, _periodic_line(u, np.where(pu > 0, pu, 1.0), w), 0.0)
            lv = np.where(pv > 0, _periodic_line(v, np.where(pv > 0, pv, 1.0), w), 0.0)
            f *= 1.0 - ja * np.maximum(lu, lv)
        sa = t.shade_amp[c]
        if (sa > 0).any():
            idx = (np.floor(v / t.shade_p[c]).astype(np.int64) + 37 * c) % shade_table.shape[0]
            f *= 1.0 + sa * shade_table[idx]
        mod[patterned] *= f
    out = albedo.astype(np.float32) * mod[:, :, None]
    out[:, :, 0] *= 1.0 + _noise(chroma_r, xs, ys, res)
    out[:, :, 2] *= 1.0 + _noise(chroma_b, xs, ys, res)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def build_texture(
    layout: Layout,
    extent: tuple[float, float, float, float],
    res: float,
    gsd: float,
    rng: np.random.Generator,
    workers: int = 1,
) -> GroundTexture:
    """Paint the layout into a band-limited RGB raster of ``res`` metres per texel over ``extent``."""
    xmin, ymin, xmax, ymax = extent
    width = int(round((xmax - xmin) / res))
    height = int(round((ymax - ymin) / res))
    if max(width, height) >= 32767:
        raise ValueError(f"texture of {width}x{height} texels is too large for OpenCV; use a coarser resolution")
    logger.info("painting the ground texture: %d x %d texels at %.1f cm", width, height, 100 * res)
    albedo = np.empty((height, width, 3), np.uint8)
    albedo[:] = np.array(layout.ground_rgb, dtype=np.uint8)
    classes = np.zeros((height, width), np.uint8)
    tables = _ClassTables.empty()
    _set_class_defaults(tables, layout)
    painter = _Painter(albedo, classes, xmin, ymax, res)
    _paint_layout(painter, tables, layout, rng)

    finest = max(2.5 * gsd, 2.0 * res)
    lum = _lattices(rng, extent, finest, 6, 0.07, 0.055)
    chroma_r = _lattices(rng, extent, 1.5, 2, 0.035, 0.02)
    chroma_b = _lattices(rng, extent, 1.5, 2, 0.035, 0.02)
    shade_table = rng.uniform(-1.0, 1.0, 1024).astype(np.float32)

    xs = (xmin + (np.arange(width) + 0.5) * res).astype(np.float32)

    def strip(r0: int) -> None:
        r1 = min(height, r0 + _STRIP_ROWS)
        ys = (ymax - (np.arange(r0, r1) + 0.5) * res).astype(np.float32)
        albedo[r0:r1] = _modulate_strip(albedo[r0:r1], classes[r0:r1], xs, ys, tables, lum, chroma_r, chroma_b, shade_table, res)

    # Strips are independent (each writes its own rows), so threads change nothing in the result.
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(strip, range(0, height, _STRIP_ROWS)))
    del classes, painter
    cv2.GaussianBlur(albedo, (0, 0), sigmaX=0.6, dst=albedo, borderType=cv2.BORDER_REFLECT_101)
    return GroundTexture(rgb=albedo, x_min=xmin, y_max=ymax, res=res)
