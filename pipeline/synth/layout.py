"""Where things are: roads, fields, buildings and GCP targets of a synthetic scene.

A layout is pure geometry in local coordinates; :mod:`pipeline.synth.texture`
paints it and :mod:`pipeline.synth.render` ray-casts its buildings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from pipeline.synth.presets import FlightPreset, SceneKind
from pipeline.synth.scene import Building, GroundPoint, RoofKind, Terrain, footprint_overlaps

FloatArray = NDArray[np.float64]

GCP_TARGET_SIZE_M = 1.0
GCP_CLEARANCE_M = 3.0  # no building closer than this to a target's centre

WALL_COLOURS: tuple[tuple[float, float, float], ...] = (
    (214, 205, 186),  # beige plaster
    (232, 228, 218),  # off-white
    (176, 172, 166),  # grey concrete
    (226, 206, 150),  # pale yellow
    (168, 92, 70),  # brick
    (196, 176, 160),  # light brown
    (150, 160, 172),  # blue-grey
)

ROOF_COLOURS: dict[RoofKind, tuple[tuple[float, float, float], ...]] = {
    RoofKind.GRAVEL: ((128, 126, 120), (146, 140, 130), (112, 112, 110)),
    RoofKind.TILES: ((156, 72, 52), (128, 60, 48), (90, 92, 100), (170, 98, 64)),
    RoofKind.METAL: ((70, 110, 150), (180, 186, 190), (60, 120, 96), (150, 64, 60)),
    RoofKind.SOLAR: ((168, 166, 160),),
    RoofKind.CONCRETE: ((196, 194, 186), (178, 176, 170)),
}


@dataclass(frozen=True)
class Strip:
    """A straight painted band: a road, a track, a sidewalk or a marking."""

    p0: tuple[float, float]
    p1: tuple[float, float]
    width: float
    kind: str  # "asphalt", "track", "sidewalk", "marking_white", "marking_yellow"
    dash: tuple[float, float] | None = None  # (dash length, gap length) for dashed markings

    def polygons(self) -> list[FloatArray]:
        """Quadrilaterals (4, 2) covering the band, one per dash."""
        a = np.asarray(self.p0, dtype=np.float64)
        b = np.asarray(self.p1, dtype=np.float64)
        d = b - a
        length = float(np.linalg.norm(d))
        if length <= 0:
            return []
        e = d / length
        n = np.array([-e[1], e[0]]) * (self.width / 2.0)
        spans: list[tuple[float, float]]
        if self.dash is None:
            spans = [(0.0, length)]
        else:
            on, off = self.dash
            spans = []
            s = 0.0
            while s < length:
                spans.append((s, min(length, s + on)))
                s += on + off
        return [np.stack([a + s0 * e - n, a + s1 * e - n, a + s1 * e + n, a + s0 * e + n]) for s0, s1 in spans]

    def distance(self, x: float, y: float) -> float:
        """Distance from a point to the band's centre segment."""
        a = np.asarray(self.p0)
        b = np.asarray(self.p1)
        p = np.array([x, y])
        d = b - a
        f = float(np.clip((p - a) @ d / max(float(d @ d), 1e-12), 0.0, 1.0))
        return float(np.linalg.norm(p - (a + f * d)))


@dataclass(frozen=True)
class Field:
    """A crop field (a painted quadrilateral with rows)."""

    corners: FloatArray  # (4, 2)
    rgb: tuple[float, float, float]
    row_angle_deg: float  # direction the rows run, counter-clockwise from grid east
    row_period_m: float  # 0 for no rows
    row_amplitude: float  # relative brightness swing of the rows


@dataclass(frozen=True)
class Spot:
    """A round painted blob: a bush, a rock, a tree crown."""

    x: float
    y: float
    radius: float
    rgb: tuple[float, float, float]
    kind: str  # "bush", "rock"


@dataclass(frozen=True)
class Car:
    x: float
    y: float
    heading_deg: float  # counter-clockwise from grid east
    rgb: tuple[float, float, float]


@dataclass(frozen=True)
class Layout:
    """Everything painted on the ground and built on it."""

    kind: SceneKind
    ground_rgb: tuple[float, float, float]
    fields: tuple[Field, ...]
    strips: tuple[Strip, ...]  # painted in order (roads before their markings)
    spots: tuple[Spot, ...]
    cars: tuple[Car, ...]
    parking: tuple[FloatArray, ...]  # (4, 2) asphalt lots with stall lines
    buildings: tuple[Building, ...]
    gcps: tuple[GroundPoint, ...]
    town_rotation_deg: float


def _pick(rng: np.random.Generator, options: tuple[tuple[float, float, float], ...]) -> tuple[float, float, float]:
    base = options[int(rng.integers(len(options)))]
    jitter = rng.normal(0.0, 6.0, 3)
    return (
        float(np.clip(base[0] + jitter[0], 0, 255)),
        float(np.clip(base[1] + jitter[1], 0, 255)),
        float(np.clip(base[2] + jitter[2], 0, 255)),
    )


def _make_building(
    rng: np.random.Generator,
    terrain: Terrain,
    index: int,
    cx: float,
    cy: float,
    half_u: float,
    half_v: float,
    rotation: float,
    height: float,
    bottom_z: float,
) -> Building:
    kinds = (RoofKind.GRAVEL, RoofKind.TILES, RoofKind.METAL, RoofKind.SOLAR, RoofKind.CONCRETE)
    kind = kinds[int(rng.integers(len(kinds)))]
    base_z = float(terrain.height(np.array(cx), np.array(cy)))
    return Building(
        index=index,
        cx=cx,
        cy=cy,
        half_u=half_u,
        half_v=half_v,
        rotation_deg=rotation,
        base_z=base_z,
        roof_z=round(base_z + height, 3),
        bottom_z=bottom_z,
        roof_kind=kind,
        wall_rgb=_pick(rng, WALL_COLOURS),
        roof_rgb=_pick(rng, ROOF_COLOURS[kind]),
    )


def _aoi_frame(aoi: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, float, float]:
    """Centre, unit across/along axes and half sizes of the AOI rectangle (corners from plan_flight)."""
    c = aoi.mean(axis=0)
    ea = aoi[1] - aoi[0]
    el = aoi[3] - aoi[0]
    half_a = float(np.linalg.norm(ea)) / 2.0
    half_l = float(np.linalg.norm(el)) / 2.0
    return c, ea / (2 * half_a), el / (2 * half_l), half_a, half_l


def _place_gcps(
    rng: np.random.Generator,
    preset: FlightPreset,
    terrain: Terrain,
    aoi: FloatArray,
    buildings: tuple[Building, ...],
) -> tuple[GroundPoint, ...]:
    """Targets spread over the area: control at the corners and centre, checkpoints between them."""
    c, ea, el, half_a, half_l = _aoi_frame(aoi)
    # Fractions of the half sizes; the area the image centres span is seen by the most images.
    control_sites = [(-0.9, -0.9), (0.9, -0.9), (0.9, 0.9), (-0.9, 0.9), (0.0, 0.0)]
    check_sites = [(0.0, -0.85), (-0.55, 0.45), (0.55, 0.4), (0.0, 0.85)]
    if preset.n_control < 5:
        control_sites = [(-0.8, -0.8), (0.8, 0.8), (0.8, -0.8), (-0.8, 0.8)][: preset.n_control]
    if preset.n_checkpoints < 3:
        check_sites = [(0.0, 0.0), (0.3, -0.3)][: preset.n_checkpoints]
    sites = [(f, False) for f in control_sites[: preset.n_control]] + [
        (f, True) for f in check_sites[: preset.n_checkpoints]
    ]
    out: list[GroundPoint] = []
    n_ctrl = n_chk = 0
    for (fa, fl), is_chk in sites:
        nominal = c + fa * half_a * ea + fl * half_l * el
        chosen = nominal
        for attempt in range(400):
            radius = 0.0 if attempt == 0 else min(25.0, 1.0 + 0.15 * attempt)
            cand = nominal + rng.uniform(-radius, radius, 2)
            clear = all(not bool(b.contains(cand[0], cand[1], margin=GCP_CLEARANCE_M)) for b in buildings)
            apart = all(math.hypot(cand[0] - g.x, cand[1] - g.y) > 4.0 for g in out)
            if clear and apart:
                chosen = cand
                break
        x = round(float(chosen[0]), 3)
        y = round(float(chosen[1]), 3)
        if is_chk:
            n_chk += 1
            name = f"CHK{n_chk:02d}"
        else:
            n_ctrl += 1
            name = f"GCP{n_ctrl:02d}"
        out.append(
            GroundPoint(
                name=name,
                x=x,
                y=y,
                z=float(terrain.height(np.array(x), np.array(y))),
                is_checkpoint=is_chk,
                rotation_deg=float(rng.uniform(0.0, 90.0)),
                size_m=GCP_TARGET_SIZE_M,
            )
        )
    return tuple(out)


def _rural(
    rng: np.random.Generator, preset: FlightPreset, terrain: Terrain, aoi: FloatArray, extent: tuple[float, float, float, float]
) -> Layout:
    xmin, ymin, xmax, ymax = extent
    c, ea, el, half_a, half_l = _aoi_frame(aoi)
    diag = math.hypot(xmax - xmin, ymax - ymin)
    bottom_z = terrain.base_z - terrain.relief_bound - 5.0

    # Strip fields, rotated a little from the grid, covering the whole extent.
    rot = float(rng.uniform(-25.0, 25.0))
    ru = np.array([math.cos(math.radians(rot)), math.sin(math.radians(rot))])
    rv = np.array([-ru[1], ru[0]])
    centre = np.array([(xmin + xmax) / 2, (ymin + ymax) / 2])
    field_colours = {
        "wheat": ((96, 128, 58), 0.9, 0.22),
        "corn": ((62, 104, 48), 1.2, 0.28),
        "soil": ((132, 104, 78), 0.7, 0.18),
        "fallow": ((160, 142, 96), 0.0, 0.0),
        "vegetable": ((84, 118, 66), 0.55, 0.3),
        "stubble": ((178, 156, 104), 0.35, 0.2),
    }
    names = sorted(field_colours)
    fields: list[Field] = []
    strips: list[Strip] = []
    u = -diag / 2
    while u < diag / 2:
        width = float(rng.uniform(14.0, 32.0))
        v = -diag / 2
        while v < diag / 2:
            length = float(rng.uniform(25.0, 70.0))
            kind = names[int(rng.integers(len(names)))]
            rgb, period, amp = field_colours[kind]
            corners = np.stack(
                [
                    centre + u * ru + v * rv,
                    centre + (u + width) * ru + v * rv,
                    centre + (u + width) * ru + (v + length) * rv,
                    centre + u * ru + (v + length) * rv,
                ]
            )
            angle = rot + (90.0 if rng.random() < 0.7 else 0.0)
            fields.append(
                Field(
                    corners=corners,
                    rgb=_pick(rng, (rgb,)),
                    row_angle_deg=angle,
                    row_period_m=period * float(rng.uniform(0.85, 1.15)) if period else 0.0,
                    row_amplitude=amp,
                )
            )
            v += length
        # A narrow footpath between strips hides the hard field edges.
        p0 = centre + (u + width) * ru - diag / 2 * rv
        p1 = centre + (u + width) * ru + diag / 2 * rv
        strips.append(Strip((float(p0[0]), float(p0[1])), (float(p1[0]), float(p1[1])), 0.8, "track"))
        u += width

    # An asphalt road across the area (off-centre) and a dirt track.
    road_angle = math.radians(float(rng.uniform(0.0, 180.0)))
    rd = np.array([math.cos(road_angle), math.sin(road_angle)])
    rn = np.array([-rd[1], rd[0]])
    road_c = c + rn * float(rng.uniform(0.25, 0.5)) * min(half_a, half_l) * (1 if rng.random() < 0.5 else -1)
    a = road_c - rd * diag
    b = road_c + rd * diag
    road = Strip((float(a[0]), float(a[1])), (float(b[0]), float(b[1])), 6.5, "asphalt")
    track_angle = road_angle + math.radians(float(rng.uniform(60.0, 120.0)))
    td = np.array([math.cos(track_angle), math.sin(track_angle)])
    tn = np.array([-td[1], td[0]])
    track_c = c + tn * float(rng.uniform(-0.6, 0.6)) * min(half_a, half_l)
    ta, tb = track_c - td * diag, track_c + td * diag
    strips.append(Strip((float(ta[0]), float(ta[1])), (float(tb[0]), float(tb[1])), 3.2, "track"))
    strips.append(road)
    for off in (-2.95, 2.95):
        pa, pb = a + rn * off, b + rn * off
        strips.append(Strip((float(pa[0]), float(pa[1])), (float(pb[0]), float(pb[1])), 0.15, "marking_white"))
    strips.append(Strip(road.p0, road.p1, 0.15, "marking_yellow", dash=(4.0, 6.0)))

    # Farm buildings inside the area, clear of the road and of each other.
    buildings: list[Building] = []
    lo, hi = preset.building_size_m
    for _ in range(2000):
        if len(buildings) >= preset.n_buildings:
            break
        p = c + float(rng.uniform(-1, 1)) * (half_a + 6) * ea + float(rng.uniform(-1, 1)) * (half_l + 6) * el
        hu = float(rng.uniform(lo, hi)) / 2
        hv = float(rng.uniform(lo, min(hi, 2.2 * hu))) / 2
        rotation = float(rng.choice([0.0, rot, rot + 90.0, float(rng.uniform(0, 90))]))
        reach = math.hypot(hu, hv)
        if road.distance(float(p[0]), float(p[1])) < road.width / 2 + reach + 2.0:
            continue
        if any(footprint_overlaps(o, float(p[0]), float(p[1]), hu, hv, rotation, 5.0) for o in buildings):
            continue
        height = float(rng.uniform(*preset.building_height_m))
        buildings.append(
            _make_building(rng, terrain, len(buildings), round(float(p[0]), 3), round(float(p[1]), 3), round(hu, 3), round(hv, 3), round(rotation, 3), height, bottom_z)
        )

    spots = _scatter(rng, extent, buildings, density_bush=1 / 30.0, density_rock=1 / 15.0)
    gcps = _place_gcps(rng, preset, terrain, aoi, tuple(buildings))
    return Layout(
        kind=SceneKind.RURAL,
        ground_rgb=(138, 120, 90),
        fields=tuple(fields),
        strips=tuple(strips),
        spots=spots,
        cars=(),
        parking=(),
        buildings=tuple(buildings),
        gcps=gcps,
        town_rotation_deg=rot,
    )


def _scatter(
    rng: np.random.Generator,
    extent: tuple[float, float, float, float],
    buildings: list[Building],
    density_bush: float,
    density_rock: float,
) -> tuple[Spot, ...]:
    xmin, ymin, xmax, ymax = extent
    area = (xmax - xmin) * (ymax - ymin)
    spots: list[Spot] = []
    for kind, density, rmin, rmax, palette in (
        ("bush", density_bush, 0.25, 1.3, ((46, 78, 38), (60, 92, 44), (34, 60, 32), (78, 96, 52))),
        ("rock", density_rock, 0.08, 0.35, ((196, 190, 178), (92, 88, 82), (150, 140, 124), (222, 218, 206))),
    ):
        n = int(area * density)
        xs = rng.uniform(xmin, xmax, n)
        ys = rng.uniform(ymin, ymax, n)
        rs = np.exp(rng.uniform(math.log(rmin), math.log(rmax), n))
        for x, y, r in zip(xs, ys, rs):
            if any(bool(b.contains(x, y, margin=r)) for b in buildings):
                continue
            spots.append(Spot(float(x), float(y), float(r), _pick(rng, palette), kind))
    return tuple(spots)


def _town(
    rng: np.random.Generator, preset: FlightPreset, terrain: Terrain, aoi: FloatArray, extent: tuple[float, float, float, float]
) -> Layout:
    xmin, ymin, xmax, ymax = extent
    c, ea, el, half_a, half_l = _aoi_frame(aoi)
    bottom_z = terrain.base_z - terrain.relief_bound - 5.0
    rot = preset.town_rotation_deg
    ru = np.array([math.cos(math.radians(rot)), math.sin(math.radians(rot))])
    rv = np.array([-ru[1], ru[0]])
    diag = math.hypot(xmax - xmin, ymax - ymin)
    road_w = 9.0
    walk_w = 2.5
    pitch_u = 58.0
    pitch_v = 52.0
    origin = c + float(rng.uniform(-8, 8)) * ru + float(rng.uniform(-8, 8)) * rv
    n_u = int(math.ceil(diag / pitch_u)) + 1
    n_v = int(math.ceil(diag / pitch_v)) + 1
    strips: list[Strip] = []
    road_us = [k * pitch_u for k in range(-n_u, n_u + 1)]
    road_vs = [k * pitch_v for k in range(-n_v, n_v + 1)]

    def pt(u: float, v: float) -> tuple[float, float]:
        p = origin + u * ru + v * rv
        return (float(p[0]), float(p[1]))

    span = diag
    for u in road_us:  # roads running along v
        strips.append(Strip(pt(u, -span), pt(u, span), road_w + 2 * walk_w, "sidewalk"))
    for v in road_vs:  # roads running along u
        strips.append(Strip(pt(-span, v), pt(span, v), road_w + 2 * walk_w, "sidewalk"))
    for u in road_us:
        strips.append(Strip(pt(u, -span), pt(u, span), road_w, "asphalt"))
    for v in road_vs:
        strips.append(Strip(pt(-span, v), pt(span, v), road_w, "asphalt"))
    # Lane markings stop short of the junctions; zebra crossings sit at each junction.
    half_road = road_w / 2 + walk_w
    for u in road_us:
        for v0, v1 in zip(road_vs[:-1], road_vs[1:]):
            strips.append(Strip(pt(u, v0 + half_road + 4), pt(u, v1 - half_road - 4), 0.15, "marking_white", dash=(3.0, 4.0)))
    for v in road_vs:
        for u0, u1 in zip(road_us[:-1], road_us[1:]):
            strips.append(Strip(pt(u0 + half_road + 4, v), pt(u1 - half_road - 4, v), 0.15, "marking_white", dash=(3.0, 4.0)))
    for u in road_us:
        for v in road_vs:
            if math.hypot(*(np.array(pt(u, v)) - c)) > diag / 2 + 10:
                continue
            for side in (-1, 1):
                # stripes across the road running along v, just outside the junction
                vc = v + side * (half_road + 1.8)
                for k in range(-4, 5):
                    uc = u + k * 1.0
                    strips.append(Strip(pt(uc, vc - 1.5), pt(uc, vc + 1.5), 0.5, "marking_white"))
                uc2 = u + side * (half_road + 1.8)
                for k in range(-4, 5):
                    vc2 = v + k * 1.0
                    strips.append(Strip(pt(uc2 - 1.5, vc2), pt(uc2 + 1.5, vc2), 0.5, "marking_white"))

    # Blocks: lots with buildings, parking or courtyards.
    inner = diag / 2 + 5
    buildings: list[Building] = []
    parking: list[FloatArray] = []
    cars: list[Car] = []
    lo, hi = preset.building_size_m
    hmin, hmax = preset.building_height_m
    candidates: list[tuple[float, float, float, float, float, float]] = []
    for u0, u1 in zip(road_us[:-1], road_us[1:]):
        for v0, v1 in zip(road_vs[:-1], road_vs[1:]):
            bu0, bu1 = u0 + half_road + 1.0, u1 - half_road - 1.0
            bv0, bv1 = v0 + half_road + 1.0, v1 - half_road - 1.0
            bc = np.array(pt((bu0 + bu1) / 2, (bv0 + bv1) / 2))
            if not (xmin - 20 < bc[0] < xmax + 20 and ymin - 20 < bc[1] < ymax + 20):
                continue
            n_cols = int(rng.integers(2, 4))
            n_rows = 2
            lot_u = (bu1 - bu0) / n_cols
            lot_v = (bv1 - bv0) / n_rows
            for i in range(n_cols):
                for j in range(n_rows):
                    lu0 = bu0 + i * lot_u
                    lv0 = bv0 + j * lot_v
                    lc = np.array(pt(lu0 + lot_u / 2, lv0 + lot_v / 2))
                    if math.hypot(*(lc - c)) > inner:
                        continue
                    r = rng.random()
                    if r < 0.12:
                        corners = np.stack([pt(lu0 + 0.5, lv0 + 0.5), pt(lu0 + lot_u - 0.5, lv0 + 0.5), pt(lu0 + lot_u - 0.5, lv0 + lot_v - 0.5), pt(lu0 + 0.5, lv0 + lot_v - 0.5)])
                        parking.append(np.asarray(corners, dtype=np.float64))
                        for k in range(int((lot_u - 2) // 2.6)):
                            for vv in (lv0 + 3.0, lv0 + lot_v - 3.0):
                                if rng.random() < 0.55:
                                    p = np.array(pt(lu0 + 1.8 + k * 2.6, vv))
                                    cars.append(Car(float(p[0]), float(p[1]), rot + 90.0, _car_colour(rng)))
                        continue
                    if r < 0.22:
                        continue  # courtyard: grass and trees
                    su = float(rng.uniform(max(lo, 0.55 * lot_u), max(lo, min(hi, lot_u - 3.0))))
                    sv = float(rng.uniform(max(lo, 0.55 * lot_v), max(lo, min(hi, lot_v - 3.0))))
                    su = min(su, lot_u - 2.0)
                    sv = min(sv, lot_v - 2.0)
                    cu = lu0 + lot_u / 2 + float(rng.uniform(-1, 1)) * max(0.0, (lot_u - su) / 2 - 1.0)
                    cv = lv0 + lot_v / 2 + float(rng.uniform(-1, 1)) * max(0.0, (lot_v - sv) / 2 - 1.0)
                    p = np.array(pt(cu, cv))
                    tall = rng.random() < 0.15
                    height = float(rng.uniform(hmax * 0.7, hmax)) if tall else float(rng.uniform(hmin, hmax * 0.55))
                    candidates.append((float(np.hypot(*(p - c))), float(p[0]), float(p[1]), su, sv, height))
    # The lots nearest the centre get the buildings; the rest stay courtyards.
    candidates.sort(key=lambda cand: cand[0])
    for _dist, px, py, su, sv, height in candidates[: preset.n_buildings]:
        buildings.append(
            _make_building(rng, terrain, len(buildings), round(px, 3), round(py, 3), round(su / 2, 3), round(sv / 2, 3), rot, height, bottom_z)
        )
    # Cars along the kerbs.
    for u in road_us:
        for v0, v1 in zip(road_vs[:-1], road_vs[1:]):
            for vv in np.arange(v0 + half_road + 3, v1 - half_road - 3, 6.5):
                if rng.random() < 0.3:
                    side = 1 if rng.random() < 0.5 else -1
                    p = np.array(pt(u + side * (road_w / 2 - 1.3), float(vv)))
                    if xmin < p[0] < xmax and ymin < p[1] < ymax:
                        cars.append(Car(float(p[0]), float(p[1]), rot + 90.0, _car_colour(rng)))
    for v in road_vs:
        for u0, u1 in zip(road_us[:-1], road_us[1:]):
            for uu in np.arange(u0 + half_road + 3, u1 - half_road - 3, 6.5):
                if rng.random() < 0.3:
                    side = 1 if rng.random() < 0.5 else -1
                    p = np.array(pt(float(uu), v + side * (road_w / 2 - 1.3)))
                    if xmin < p[0] < xmax and ymin < p[1] < ymax:
                        cars.append(Car(float(p[0]), float(p[1]), rot, _car_colour(rng)))
    spots = _scatter(rng, extent, buildings, density_bush=1 / 60.0, density_rock=1 / 40.0)
    # Keep greenery off the roads: the painter draws roads over spots, so only trim far outliers here.
    gcps = _place_gcps(rng, preset, terrain, aoi, tuple(buildings))
    return Layout(
        kind=SceneKind.TOWN,
        ground_rgb=(96, 126, 70),
        fields=(),
        strips=tuple(strips),
        spots=spots,
        cars=tuple(cars),
        parking=tuple(parking),
        buildings=tuple(buildings),
        gcps=gcps,
        town_rotation_deg=rot,
    )


def _car_colour(rng: np.random.Generator) -> tuple[float, float, float]:
    return _pick(rng, ((230, 230, 228), (30, 30, 34), (150, 152, 158), (160, 30, 32), (40, 70, 140), (210, 190, 60), (90, 96, 100)))


def make_layout(
    rng: np.random.Generator, preset: FlightPreset, terrain: Terrain, aoi: FloatArray, extent: tuple[float, float, float, float]
) -> Layout:
    """The roads, fields, buildings and GCP targets of a preset's scene."""
    if preset.scene_kind is SceneKind.TOWN:
        return _town(rng, preset, terrain, aoi, extent)
    return _rural(rng, preset, terrain, aoi, extent)
