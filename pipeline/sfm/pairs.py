"""Candidate image pairs from geometry: GPS neighbours and ground-footprint overlap.

Pure functions (numpy/scipy). With GPS each image is paired with its nearest
GPS neighbours (ODM's ``--matcher-neighbors``, OpenSfM's
``matching_gps_neighbors``/``matching_gps_distance``) and with the images whose
ground footprints (:func:`models.footprint.footprint`, from the height above
ground and the gimbal angles) overlap its own; the footprints add the cross-strip pairs that the
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

from models.footprint import ccw, intersection_area, polygon_area

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
def footprint_overlap(a: FloatArray, b: FloatArray) -> float:
    """Overlap area of two convex footprints as a fraction of the smaller one (0..1)."""
    area = min(polygon_area(a), polygon_area(b))
    if area <= 0:
        return 0.0
    return intersection_area(ccw(a), ccw(b)) / area


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
    ``max_distance_m`` when that is > 0), and, in each compass sector around
    it, with the ``neighbors / 4`` images whose footprints overlap its own most
    (at least ``min_overlap``).
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
        per_sector = max(1, -(-neighbors // 4))
        for a, (ia, im_a) in enumerate(with_fp):
            # Best overlaps per compass sector (N, E, S, W of the image), so the partners include the
            # neighbouring strips on both sides and not only the next shots along the strip.
            sectors: dict[int, list[tuple[float, float, int]]] = {}
            for b in fp_tree.query_ball_point(centroids[a], reach):
                if b == a or np.linalg.norm(centroids[a] - centroids[b]) > radii[a] + radii[b]:
                    continue
                ib, im_b = with_fp[b]
                d = xyz[ib] - xyz[ia]
                if np.linalg.norm(d) > limit:
                    continue
                assert im_a.footprint is not None and im_b.footprint is not None
                ov = footprint_overlap(im_a.footprint, im_b.footprint)
                if ov >= min_overlap:
                    sector = int(((np.degrees(np.arctan2(d[0], d[1])) + 45.0) % 360.0) // 90.0)
                    sectors.setdefault(sector, []).append((-ov, float(np.linalg.norm(d)), b))
            for scored in sectors.values():
                for _, _, b in sorted(scored)[:per_sector]:
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
