"""Candidate image pairs from geometry: GPS neighbours and ground-footprint overlap.

Pure functions (numpy/scipy). With GPS each image is paired with its nearest
GPS neighbours (ODM's ``--matcher-neighbors``, OpenSfM's
``matching_gps_neighbors``/``matching_gps_distance``) and with the images whose
ground footprints, projected from the altitude above ground and the gimbal
angles, overlap its own; the footprints add the cross-strip pairs that the
nearest neighbours of a grid flight miss. Without GPS the fallback is
sequential pairs in capture order plus exhaustive pairs for small flights, or
retrieval by a flat visual vocabulary (a one-level vocabulary tree) for large
ones.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass
from typing import Iterable, Sequence

import cv2
import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from models.camera import CameraModel

FloatArray = NDArray[np.float64]


class PairSource(str, enum.Enum):
    """Why a pair was selected."""

    GPS_NEIGHBOR = "gps_neighbor"
    FOOTPRINT = "footprint"
    SEQUENTIAL = "sequential"
    EXHAUSTIVE = "exhaustive"
    RETRIEVAL = "retrieval"


@dataclass(frozen=True)
class PairImage:
    """What pair selection knows about one image."""

    name: str
    # Camera position (x east, y north, z up; metres, any local frame shared by all images), or None.
    position: FloatArray | None = None
    # Ground footprint polygon (K, 2) in the same horizontal frame, or None when unknown.
    footprint: FloatArray | None = None
    # Capture order key (time or index) for sequential pairs.
    order: float = 0.0


@dataclass(frozen=True)
class CandidatePair:
    """An unordered pair (image1 < image2 by name) and why it was chosen."""

    image1: str
    image2: str
    source: PairSource


# -- footprints ------------------------------------------------------------------------
def ground_footprint(
    center: FloatArray,
    R_world_to_cam: FloatArray,
    camera: CameraModel,
    ground_z: float,
    max_range_factor: float = 5.0,
    samples_per_edge: int = 4,
) -> FloatArray | None:
    """Ground polygon (K, 2) seen by a camera, intersecting its border rays with the plane z = ground_z.

    Rays above the horizon, or hitting the plane further than ``max_range_factor``
    times the height above ground, are cut at that horizontal range so oblique
    views keep a finite footprint. None when the camera is not above the ground.
    """
    center = np.asarray(center, dtype=np.float64)
    height = float(center[2] - ground_z)
    if not np.isfinite(height) or height <= 0:
        return None
    w, h = camera.width, camera.height
    t = np.linspace(0.0, 1.0, samples_per_edge, endpoint=False)
    xs, ys = -0.5 + w * t, -0.5 + h * t
    border = np.concatenate(
        [
            np.stack([xs, np.full_like(xs, -0.5)], 1),
            np.stack([np.full_like(ys, w - 0.5), ys], 1),
            np.stack([(w - 0.5) - w * t, np.full_like(xs, h - 0.5)], 1),
            np.stack([np.full_like(ys, -0.5), (h - 0.5) - h * t], 1),
        ]
    )
    rays = camera.pixel_to_ray(border) @ np.asarray(R_world_to_cam, dtype=np.float64)  # camera -> world
    max_range = max_range_factor * height
    pts = []
    for r in rays:
        horiz = float(np.hypot(r[0], r[1]))
        if r[2] < -1e-9:
            s = height / -r[2]
            d = s * horiz
            if d <= max_range:
                pts.append(center[:2] + s * r[:2])
                continue
        if horiz < 1e-12:
            continue
        pts.append(center[:2] + max_range * r[:2] / horiz)
    if len(pts) < 3:
        return None
    return convex_hull(np.asarray(pts))


def convex_hull(points: FloatArray) -> FloatArray:
    """Counter-clockwise convex hull (K, 2) of 2D points (monotone chain)."""
    pts = sorted(set(map(tuple, np.asarray(points, dtype=np.float64).tolist())))
    if len(pts) <= 2:
        return np.asarray(pts, dtype=np.float64)

    def cross(o: tuple[float, ...], a: tuple[float, ...], b: tuple[float, ...]) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[tuple[float, ...]] = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list[tuple[float, ...]] = []
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.asarray(lower[:-1] + upper[:-1], dtype=np.float64)


def polygon_area(poly: FloatArray) -> float:
    """Area of a simple polygon (shoelace)."""
    p = np.asarray(poly, dtype=np.float64)
    if len(p) < 3:
        return 0.0
    x, y = p[:, 0], p[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def clip_convex(subject: FloatArray, clip: FloatArray) -> FloatArray:
    """Intersection of two convex counter-clockwise polygons (Sutherland-Hodgman)."""
    out = [tuple(p) for p in np.asarray(subject, dtype=np.float64)]
    c = np.asarray(clip, dtype=np.float64)
    for i in range(len(c)):
        if not out:
            break
        a, b = c[i], c[(i + 1) % len(c)]
        edge = b - a

        def inside(p: tuple[float, ...]) -> bool:
            return float(edge[0] * (p[1] - a[1]) - edge[1] * (p[0] - a[0])) >= 0.0

        def meet(p: tuple[float, ...], q: tuple[float, ...]) -> tuple[float, ...]:
            d = (q[0] - p[0], q[1] - p[1])
            den = edge[0] * d[1] - edge[1] * d[0]
            if abs(den) < 1e-18:
                return q
            s = (edge[0] * (a[1] - p[1]) - edge[1] * (a[0] - p[0])) / den
            return (p[0] + s * d[0], p[1] + s * d[1])

        inp, out = out, []
        for j in range(len(inp)):
            cur, prev = inp[j], inp[j - 1]
            if inside(cur):
                if not inside(prev):
                    out.append(meet(prev, cur))
                out.append(cur)
            elif inside(prev):
                out.append(meet(prev, cur))
    return np.asarray(out, dtype=np.float64).reshape(-1, 2)


def footprint_overlap(a: FloatArray, b: FloatArray) -> float:
    """Overlap area as a fraction of the smaller footprint (0..1)."""
    area = min(polygon_area(a), polygon_area(b))
    if area <= 0:
        return 0.0
    return polygon_area(clip_convex(a, b)) / area


# -- selection -------------------------------------------------------------------------
def _pair(a: str, b: str, source: PairSource) -> CandidatePair:
    return CandidatePair(a, b, source) if a < b else CandidatePair(b, a, source)


def _merge(pairs: Iterable[CandidatePair]) -> list[CandidatePair]:
    """Unique pairs, the first source seen winning, sorted by names for determinism."""
    seen: dict[tuple[str, str], CandidatePair] = {}
    for p in pairs:
        if p.image1 != p.image2:
            seen.setdefault((p.image1, p.image2), p)
    return [seen[k] for k in sorted(seen)]


def gps_pairs(
    images: Sequence[PairImage],
    neighbors: int,
    max_distance_m: float = 0.0,
    min_overlap: float = 0.05,
) -> list[CandidatePair]:
    """Nearest-GPS-neighbour pairs united with footprint-overlap pairs (images with a position only).

    Each image is paired with its ``neighbors`` nearest images (closer than
    ``max_distance_m`` when that is > 0), and with up to ``neighbors`` images
    whose footprints overlap its own by at least ``min_overlap``, best overlap first.
    """
    located = [im for im in images if im.position is not None]
    if len(located) < 2:
        return []
    xyz = np.array([np.asarray(im.position, dtype=np.float64) for im in located])
    tree = cKDTree(xyz)
    limit = max_distance_m if max_distance_m > 0 else np.inf
    out: list[CandidatePair] = []
    k = min(neighbors + 1, len(located))
    dist, idx = tree.query(xyz, k=k)
    dist = np.asarray(dist).reshape(len(located), k)
    idx = np.asarray(idx).reshape(len(located), k)
    for i in range(len(located)):
        for d, j in zip(dist[i], idx[i]):
            if j != i and d <= limit:
                out.append(_pair(located[i].name, located[int(j)].name, PairSource.GPS_NEIGHBOR))

    with_fp = [(n, im) for n, im in enumerate(located) if im.footprint is not None and len(im.footprint) >= 3]
    if with_fp:
        centroids = np.array([np.asarray(im.footprint).mean(axis=0) for _, im in with_fp])
        radii = np.array([np.max(np.linalg.norm(np.asarray(im.footprint) - c, axis=1)) for (_, im), c in zip(with_fp, centroids)])
        fp_tree = cKDTree(centroids)
        reach = 2.0 * float(radii.max())
        for a, (ia, im_a) in enumerate(with_fp):
            scored: list[tuple[float, float, int]] = []
            for b in fp_tree.query_ball_point(centroids[a], reach):
                if b == a or np.linalg.norm(centroids[a] - centroids[b]) > radii[a] + radii[b]:
                    continue
                ib, im_b = with_fp[b]
                if np.linalg.norm(xyz[ia] - xyz[ib]) > limit:
                    continue
                assert im_a.footprint is not None and im_b.footprint is not None
                ov = footprint_overlap(im_a.footprint, im_b.footprint)
                if ov >= min_overlap:
                    scored.append((-ov, float(np.linalg.norm(xyz[ia] - xyz[ib])), b))
            for _, _, b in sorted(scored)[:neighbors]:
                out.append(_pair(im_a.name, with_fp[b][1].name, PairSource.FOOTPRINT))
    return _merge(out)


def sequential_pairs(images: Sequence[PairImage], overlap: int) -> list[CandidatePair]:
    """Each image with the ``overlap`` images that follow it in capture order."""
    ordered = sorted(images, key=lambda im: (im.order, im.name))
    out = []
    for i, im in enumerate(ordered):
        for other in ordered[i + 1 : i + 1 + overlap]:
            out.append(_pair(im.name, other.name, PairSource.SEQUENTIAL))
    return _merge(out)


def exhaustive_pairs(names: Sequence[str]) -> list[CandidatePair]:
    return _merge(_pair(a, b, PairSource.EXHAUSTIVE) for a, b in itertools.combinations(names, 2))


def select_pairs(
    images: Sequence[PairImage],
    neighbors: int,
    max_distance_m: float,
    min_overlap: float,
    sequential_overlap: int,
    exhaustive_max_images: int,
) -> tuple[list[CandidatePair], bool]:
    """Pairs for a flight; returns (pairs, needs_retrieval).

    With positions for at least half the images, GPS/footprint pairs (images
    without a position fall back to sequential pairs). Otherwise sequential
    pairs, plus exhaustive ones when the flight is small; ``needs_retrieval`` is
    True when it is too large for exhaustive matching and the caller should add
    :func:`retrieval_pairs`.
    """
    located = [im for im in images if im.position is not None]
    if len(located) >= max(2, (len(images) + 1) // 2):
        pairs = gps_pairs(images, neighbors, max_distance_m, min_overlap)
        if len(located) < len(images):
            pairs = _merge(pairs + sequential_pairs(images, sequential_overlap))
        return pairs, False
    pairs = sequential_pairs(images, sequential_overlap)
    if len(images) <= exhaustive_max_images:
        return _merge(pairs + exhaustive_pairs([im.name for im in images])), False
    return pairs, True


def merge_pairs(*groups: Sequence[CandidatePair]) -> list[CandidatePair]:
    return _merge(p for g in groups for p in g)


# -- retrieval (flat visual vocabulary) ----------------------------------------------------
def train_vocabulary(sample: NDArray[np.uint8], words: int, seed: int = 0) -> NDArray[np.float32]:
    """K-means visual words (words, 128) from a descriptor sample."""
    data = np.asarray(sample, dtype=np.float32)
    k = max(2, min(words, len(data) // 4))
    cv2.setRNGSeed(seed)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0)
    labels = np.zeros((len(data), 1), np.int32)
    _, _, centers = cv2.kmeans(data, k, labels, criteria, 1, cv2.KMEANS_PP_CENTERS)
    return np.asarray(centers, dtype=np.float32)


def word_histogram(descriptors: NDArray[np.uint8], vocabulary: NDArray[np.float32]) -> FloatArray:
    """Normalised bag-of-words histogram of one image."""
    d = np.asarray(descriptors, dtype=np.float32)
    if len(d) == 0:
        return np.zeros(len(vocabulary))
    d2 = (vocabulary * vocabulary).sum(1)[None, :] - 2.0 * d @ vocabulary.T
    words = np.argmin(d2, axis=1)
    hist = np.bincount(words, minlength=len(vocabulary)).astype(np.float64)
    return hist / max(hist.sum(), 1.0)


def retrieval_pairs(names: Sequence[str], histograms: FloatArray, neighbors: int) -> list[CandidatePair]:
    """Each image with its ``neighbors`` most similar images by tf-idf weighted word histograms."""
    H = np.asarray(histograms, dtype=np.float64)
    if len(H) < 2:
        return []
    df = (H > 0).sum(axis=0)
    idf = np.log(len(H) / np.maximum(df, 1))
    V = H * idf
    V = V / np.maximum(np.linalg.norm(V, axis=1, keepdims=True), 1e-12)
    S = V @ V.T
    np.fill_diagonal(S, -np.inf)
    out = []
    k = min(neighbors, len(H) - 1)
    for i in range(len(H)):
        for j in np.argsort(-S[i])[:k]:
            out.append(_pair(names[i], names[int(j)], PairSource.RETRIEVAL))
    return _merge(out)
