"""Drop unusable GNSS fixes from a log and count why: invalid values, missing fixes and spikes.

A spike is a fix that the vehicle could not have reached: the horizontal or vertical
distance to the neighbouring good fix exceeds ``max_speed * dt + tolerance``. Isolated
outliers and short runs of displaced fixes (a "jump" that later returns) are both caught:
the longest self-consistent run of fixes is taken as the anchor and the track is grown
outward from it, accepting each fix only when it is consistent with the last accepted one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IndexArray = NDArray[np.intp]

# Metres per degree of latitude (mean); good enough for a plausibility test.
_M_PER_DEG = 111_320.0


@dataclass(frozen=True)
class CleanResult:
    """Indices of the kept fixes (time order) and the dropped counts by reason."""

    kept: IndexArray
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def dropped(self) -> int:
        return int(sum(self.reasons.values()))


def _consistent(
    dt: float, dx: float, dy: float, dz: float, max_speed_mps: float, tolerance_m: float
) -> bool:
    limit = max_speed_mps * abs(dt) + tolerance_m
    if dx * dx + dy * dy > limit * limit:
        return False
    return not (np.isfinite(dz) and abs(dz) > limit)


def clean_fixes(
    t: FloatArray,
    lat: FloatArray,
    lon: FloatArray,
    alt: FloatArray,
    *,
    valid: NDArray[np.bool_] | None = None,
    max_speed_mps: float = 60.0,
    tolerance_m: float = 10.0,
    keep_order: bool = False,
) -> CleanResult:
    """Decide which fixes to keep.

    Reasons, checked in this order: ``no_fix`` (the log flags no GNSS fix), ``nan`` (time,
    lat or lon missing), ``zero`` (0, 0), ``out_of_range``, ``duplicate_time`` (a second
    fix at the same instant) and ``spike``. A missing altitude alone does not drop a fix.
    With ``keep_order`` (positions keyed by image name, no times) only the value checks run.
    """
    t = np.asarray(t, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    alt = np.asarray(alt, dtype=np.float64)
    n = len(t)
    ok = np.ones(n, dtype=bool)
    reasons: dict[str, int] = {}

    def drop(mask: NDArray[np.bool_], reason: str) -> None:
        hit = mask & ok
        count = int(hit.sum())
        if count:
            reasons[reason] = reasons.get(reason, 0) + count
            ok[hit] = False

    with np.errstate(invalid="ignore"):
        if valid is not None:
            drop(~np.asarray(valid, dtype=bool), "no_fix")
        drop(~(np.isfinite(t) & np.isfinite(lat) & np.isfinite(lon)), "nan")
        drop((lat == 0.0) & (lon == 0.0), "zero")
        drop((np.abs(lat) > 90.0) | (np.abs(lon) > 180.0), "out_of_range")

    cand = np.flatnonzero(ok)
    if keep_order or len(cand) < 2:
        return CleanResult(kept=cand.astype(np.intp), reasons=reasons)

    cand = cand[np.argsort(t[cand], kind="stable")]
    dup = np.concatenate([[False], np.diff(t[cand]) <= 0.0])
    if dup.any():
        reasons["duplicate_time"] = reasons.get("duplicate_time", 0) + int(dup.sum())
        cand = cand[~dup]
    if len(cand) < 2:
        return CleanResult(kept=cand.astype(np.intp), reasons=reasons)

    tc, la, lo, al = t[cand], lat[cand], lon[cand], alt[cand]
    lat0 = float(np.median(la))
    y = (la - lat0) * _M_PER_DEG
    dlon = (lo - float(np.median(lo)) + 180.0) % 360.0 - 180.0
    x = dlon * _M_PER_DEG * np.cos(np.radians(lat0))
    dt = np.diff(tc)
    limit = max_speed_mps * dt + tolerance_m
    dz = np.diff(al)
    with np.errstate(invalid="ignore"):
        edge_ok = (np.hypot(np.diff(x), np.diff(y)) <= limit) & ~(np.isfinite(dz) & (np.abs(dz) > limit))
    if edge_ok.all():
        return CleanResult(kept=cand.astype(np.intp), reasons=reasons)

    # Longest run of mutually consistent consecutive fixes is the anchor.
    breaks = np.flatnonzero(~edge_ok)  # edge i joins fix i and i+1
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [len(tc) - 1]])
    lengths = ends - starts + 1
    k = int(np.argmax(lengths))
    a0, a1 = int(starts[k]), int(ends[k])
    keep = np.zeros(len(tc), dtype=bool)
    keep[a0 : a1 + 1] = True
    last = a1
    for j in range(a1 + 1, len(tc)):
        if _consistent(tc[j] - tc[last], x[j] - x[last], y[j] - y[last], al[j] - al[last], max_speed_mps, tolerance_m):
            keep[j] = True
            last = j
    last = a0
    for j in range(a0 - 1, -1, -1):
        if _consistent(tc[last] - tc[j], x[j] - x[last], y[j] - y[last], al[j] - al[last], max_speed_mps, tolerance_m):
            keep[j] = True
            last = j
    spikes = int((~keep).sum())
    if spikes:
        reasons["spike"] = reasons.get("spike", 0) + spikes
    return CleanResult(kept=cand[keep].astype(np.intp), reasons=reasons)
