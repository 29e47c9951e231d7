"""Geotag images from flight logs by time: clock-offset estimation and interpolation.

Pure functions over ``models`` values (no workspace, no files).

The clock offset is *camera clock minus log clock*: an image taken at camera time ``tc``
sits at log time ``tc - offset``. It is found, in order of preference, from
1. ``manual``: ``cfg.ingest.clock_offset_s`` when the user set it;
2. ``triggers``: the log's camera trigger events matched to the image sequence (robust to
   missing and extra triggers and to whole-hour time-zone differences);
3. ``exif_gps``: the offset that best fits the images that still have EXIF GPS to the track
   (coarse search over every overlap, then a fine search);
4. ``time_zone``: the whole or quarter-hour shift that puts the images inside the log's span,
   when only that is unique (the camera clock is assumed right apart from its zone).
Logs keyed by image name (ODM geo.txt) need no clock (``image_name``).

Positions are interpolated linearly in time in the UTM zone of the track; attitude is
interpolated on the rotation group (quaternion slerp). Images outside a log's time span,
or inside a gap longer than ``max_interpolation_gap_s``, are skipped with a reason, never
extrapolated.
"""

from __future__ import annotations

import enum
import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from models.errors import InputError
from models.geo import Projector, parse_crs, utm_epsg
from models.image import Attitude, GpsPosition, ImageIndex, ImageRecord, PositionSource, SkippedItem
from models.pose import gimbal_from_rotation, quat_from_matrix, matrix_from_quat, rotation_from_gimbal, slerp
from models.track import AttitudeSeries, FlightTrack
from pipeline.config import IngestConfig

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]

_HOW_TO_SET = (
    "set the offset by hand: put 'ingest: {clock_offset_s: SECONDS}' in a YAML file passed with --config "
    "(camera clock minus log clock; e.g. 7200 when the camera shows 14:00 for a log time of 12:00 UTC)"
)
# Quarter-hour steps cover every time zone (UTC+5:45, +8:45, ...), up to 14 hours each way.
_ZONE_STEP_S = 900.0
_ZONE_MAX_S = 14 * 3600.0
# Pairwise image/trigger differences evaluated at most (memory bound of the vote).
_MAX_PAIRS = 4_000_000


class OffsetMethod(str, enum.Enum):
    """How a camera-to-log clock offset was found."""

    MANUAL = "manual"
    TRIGGERS = "triggers"
    EXIF_GPS = "exif_gps"
    TIME_ZONE = "time_zone"
    IMAGE_NAME = "image_name"  # geo.txt: matched by file name, no clock involved


_PRIORITY = {
    OffsetMethod.IMAGE_NAME: 0,
    OffsetMethod.MANUAL: 1,
    OffsetMethod.TRIGGERS: 2,
    OffsetMethod.EXIF_GPS: 3,
    OffsetMethod.TIME_ZONE: 4,
}


@dataclass(frozen=True)
class OffsetEstimate:
    """The clock offset found for one log."""

    log: str  # the track's source file name
    method: OffsetMethod
    offset_s: float  # camera clock minus log clock
    # RMS time residual of matched triggers (s), or median EXIF-GPS-to-track misfit (m); 0 otherwise.
    residual: float
    residual_unit: str  # "s", "m" or ""
    images_used: int  # images that constrained the estimate
    note: str = ""
    # Image name -> index of the trigger event it was matched to (triggers method only).
    matches: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class GeotagResult:
    """Records after geotagging, the offsets found and the images left without a log position."""

    records: tuple[ImageRecord, ...]
    offsets: tuple[OffsetEstimate, ...]
    geotagged: tuple[str, ...]  # names of the images that took a position from a log
    skipped: tuple[SkippedItem, ...]  # images that needed a position and got none
    # Per log: how many images it geotagged.
    per_log: dict[str, int] = field(default_factory=dict)

    @property
    def primary(self) -> OffsetEstimate | None:
        """The offset of the log that geotagged the most images."""
        if not self.offsets:
            return None
        return max(self.offsets, key=lambda o: (self.per_log.get(o.log, 0), -_PRIORITY[o.method]))

    @property
    def clock_offset_s(self) -> float | None:
        p = self.primary
        return None if p is None else p.offset_s

    @property
    def method(self) -> str | None:
        p = self.primary
        return None if p is None else p.method.value

    @property
    def images_outside_log(self) -> int:
        return sum(1 for s in self.skipped if s.reason == "outside_log")

    def figures(self) -> dict[str, object]:
        """Stage figures: {"clock_offset_s", "method", "images_geotagged", "images_outside_log", ...}."""
        return {
            "clock_offset_s": self.clock_offset_s,
            "method": self.method,
            "images_geotagged": len(self.geotagged),
            "images_outside_log": self.images_outside_log,
            "images_not_geotagged": [{"image": s.item, "reason": s.reason, "message": s.message} for s in self.skipped],
            "offsets": [
                {
                    "log": o.log,
                    "method": o.method.value,
                    "offset_s": o.offset_s,
                    "residual": o.residual,
                    "residual_unit": o.residual_unit,
                    "images_used": o.images_used,
                    "images_geotagged": self.per_log.get(o.log, 0),
                    "note": o.note,
                }
                for o in self.offsets
            ],
        }


# -- camera times ---------------------------------------------------------------------
def camera_times(images: Sequence[ImageRecord]) -> dict[str, float]:
    """Capture time per image name (camera clock, as EXIF recorded it).

    Offsets are defined on these values as recorded: when the camera writes whole seconds
    only, the offset absorbs the mean truncation (about half a second) and positions
    interpolated at ``capture_time - offset`` stay unbiased.
    """
    return {r.name: float(r.capture_time) for r in images if r.capture_time is not None and math.isfinite(r.capture_time)}


# -- track interpolation ---------------------------------------------------------------
@dataclass(frozen=True)
class _Local:
    """A track's fixes in its UTM zone (metres), for interpolation and misfits."""

    t: FloatArray
    xyz: FloatArray
    projector: Projector


def _local(track: FlightTrack) -> _Local:
    p = track.positions
    lon0, lat0 = float(np.median(p.lon)), float(np.median(p.lat))
    projector = Projector.for_crs(parse_crs(f"EPSG:{utm_epsg(lon0, lat0)}"))
    xyz = projector.forward(p.lon, p.lat, p.alt)
    return _Local(t=np.asarray(p.t, dtype=np.float64), xyz=xyz, projector=projector)


def _bracket(t: FloatArray, tq: FloatArray, max_gap_s: float) -> tuple[NDArray[np.intp], FloatArray, list[str]]:
    """Left index, fraction and status ('ok', 'before_start', 'after_end', 'gap') for each query time."""
    n = len(t)
    idx = np.clip(np.searchsorted(t, tq, side="right") - 1, 0, max(n - 2, 0))
    status: list[str] = []
    frac = np.zeros(len(tq))
    for k, q in enumerate(tq):
        if n == 0 or not math.isfinite(q) or q < t[0]:
            status.append("before_start")
            continue
        if q > t[-1]:
            status.append("after_end")
            continue
        if n == 1:
            status.append("ok")
            continue
        i = int(idx[k])
        dt = t[i + 1] - t[i]
        if dt > max_gap_s and q != t[i] and q != t[i + 1]:
            status.append("gap")
            continue
        frac[k] = 0.0 if dt <= 0 else (q - t[i]) / dt
        status.append("ok")
    return idx, frac, status


def interpolate_positions(
    track: FlightTrack, tq: FloatArray, max_gap_s: float, local: _Local | None = None
) -> tuple[FloatArray, list[str]]:
    """(N, 3) lon, lat, alt at log times ``tq`` (NaN where not 'ok') and the status of each."""
    loc = local or _local(track)
    tq = np.asarray(tq, dtype=np.float64)
    idx, frac, status = _bracket(loc.t, tq, max_gap_s)
    out = np.full((len(tq), 3), np.nan)
    if len(loc.t) == 1:
        xyz = np.repeat(loc.xyz[:1], len(tq), axis=0)
    else:
        xyz = loc.xyz[idx] * (1.0 - frac)[:, None] + loc.xyz[np.minimum(idx + 1, len(loc.t) - 1)] * frac[:, None]
    ok = np.asarray([s == "ok" for s in status])
    if ok.any():
        out[ok] = loc.projector.inverse(xyz[ok])
    return out, status


def interpolate_attitude(series: AttitudeSeries | None, tq: float, max_gap_s: float) -> Attitude | None:
    """Attitude at one time by slerp between the bracketing samples; None outside the series or in a gap."""
    if series is None or len(series) == 0:
        return None
    idx, frac, status = _bracket(np.asarray(series.t), np.asarray([tq]), max_gap_s)
    if status[0] != "ok":
        return None
    i = int(idx[0])
    if len(series) == 1:
        return Attitude(float(series.yaw[0]), float(series.pitch[0]), float(series.roll[0]))
    q0 = quat_from_matrix(rotation_from_gimbal(float(series.yaw[i]), float(series.pitch[i]), float(series.roll[i])))
    q1 = quat_from_matrix(
        rotation_from_gimbal(float(series.yaw[i + 1]), float(series.pitch[i + 1]), float(series.roll[i + 1]))
    )
    R = matrix_from_quat(slerp(q0, q1, float(frac[0])))
    yaw, pitch, roll = gimbal_from_rotation(R.T)
    return Attitude(yaw=yaw, pitch=pitch, roll=roll)


# -- offset estimation ------------------------------------------------------------------
def _hour_distance(d: float) -> float:
    return abs(d - _ZONE_STEP_S * round(d / _ZONE_STEP_S))


def _match(img_t: FloatArray, trig_t: FloatArray, d: float, tol: float) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """One-to-one matches (image index, trigger index) within ``tol`` after shifting images by ``-d``."""
    shifted = img_t - d
    j = np.clip(np.searchsorted(trig_t, shifted), 1, len(trig_t) - 1) if len(trig_t) > 1 else np.zeros(len(img_t), dtype=np.intp)
    if len(trig_t) > 1:
        left = j - 1
        use_left = np.abs(shifted - trig_t[left]) <= np.abs(shifted - trig_t[j])
        j = np.where(use_left, left, j)
    res = np.abs(shifted - trig_t[j])
    best: dict[int, int] = {}
    for i in np.argsort(res):
        if res[i] > tol:
            break
        if int(j[i]) not in best:
            best[int(j[i])] = int(i)
    ii = np.asarray(sorted(best.values()), dtype=np.intp)
    jj = np.asarray([int(j[i]) for i in ii], dtype=np.intp)
    return ii, jj


def _offset_from_triggers(names: list[str], img_t: FloatArray, track: FlightTrack) -> OffsetEstimate | str:
    trig = track.triggers
    if trig is None or len(trig) == 0:
        return "the log has no camera trigger events"
    trig_t = np.sort(np.asarray(trig.t, dtype=np.float64))
    n, m = len(img_t), len(trig_t)
    if n < 2:
        return "fewer than 2 images with a capture time to match to the trigger events"
    # Bin width: wide enough for EXIF times kept to the second, narrow enough to tell shots apart.
    interval = float(np.median(np.diff(trig_t))) if m > 1 else 1.0
    whole = bool(np.all(np.mod(img_t, 1.0) == 0.0))
    w = max(0.05, min(0.4 * interval, 1.0 if whole else 0.25))
    sub = img_t
    if n * m > _MAX_PAIRS:
        sub = img_t[np.linspace(0, n - 1, max(2, _MAX_PAIRS // m)).astype(int)]
    diffs = (sub[:, None] - trig_t[None, :]).ravel()
    candidates: list[float] = []
    for shift in (0.0, 0.5):
        bins = np.floor(diffs / w + shift).astype(np.int64)
        values, counts = np.unique(bins, return_counts=True)
        top = np.argsort(counts)[::-1][:6]
        candidates.extend(float((values[k] - shift + 0.5) * w) for k in top)
    scored: list[tuple[int, float, float, float, NDArray[np.intp], NDArray[np.intp]]] = []
    for d0 in candidates:
        ii, jj = _match(img_t, trig_t, d0, w)
        if len(ii) == 0:
            continue
        d1 = float(np.median(img_t[ii] - trig_t[jj]))
        ii, jj = _match(img_t, trig_t, d1, w)
        if len(ii) == 0:
            continue
        d2 = float(np.median(img_t[ii] - trig_t[jj]))
        rms = float(np.sqrt(np.mean((img_t[ii] - trig_t[jj] - d2) ** 2)))
        scored.append((len(ii), rms, _hour_distance(d2), d2, ii, jj))
    if not scored:
        return "no image time lines up with a trigger event"
    scored.sort(key=lambda s: (-s[0], s[1], s[2]))
    count, rms, _, offset, ii, jj = scored[0]
    need = max(2, math.ceil(0.5 * min(n, m)))
    if count < need:
        return f"only {count} of {n} images line up with the {m} trigger events (need {need})"
    note = ""
    rivals = [s for s in scored[1:] if s[0] == count and abs(s[3] - offset) > 2 * w]
    if rivals:
        note = f"ambiguous: offset {rivals[0][3]:.3f} s matches as many images; chose the smaller residual"
    unmatched_img, unmatched_trig = n - count, m - count
    if unmatched_img or unmatched_trig:
        extra = f"{unmatched_img} image(s) without a trigger, {unmatched_trig} trigger(s) without an image"
        note = f"{note}; {extra}" if note else extra
    # Map back to the track's trigger order (sorted already by the reader; keep exact indices).
    order = np.argsort(np.asarray(trig.t, dtype=np.float64), kind="stable")
    return OffsetEstimate(
        log=track.source,
        method=OffsetMethod.TRIGGERS,
        offset_s=offset,
        residual=rms,
        residual_unit="s",
        images_used=count,
        note=note,
        matches={names[int(i)]: int(order[int(j)]) for i, j in zip(ii, jj)},
    )


def _misfit(local: _Local, img_t: FloatArray, img_xy: FloatArray, offsets: FloatArray) -> FloatArray:
    """(len(offsets), n) horizontal distance image-to-track (NaN where the shifted time is outside)."""
    tq = img_t[None, :] - offsets[:, None]
    x = np.interp(tq, local.t, local.xyz[:, 0])
    y = np.interp(tq, local.t, local.xyz[:, 1])
    dist = np.hypot(x - img_xy[None, :, 0], y - img_xy[None, :, 1])
    dist[(tq < local.t[0]) | (tq > local.t[-1])] = np.nan
    return dist


def _offset_from_exif_gps(images: Sequence[ImageRecord], times: dict[str, float], track: FlightTrack) -> OffsetEstimate | str:
    with_gps = [r for r in images if r.gps is not None and r.position_source == PositionSource.EXIF and r.name in times]
    if len(with_gps) < 3:
        return f"only {len(with_gps)} image(s) have both EXIF GPS and a capture time (need 3)"
    if len(track.positions) < 2:
        return "the log has fewer than 2 position fixes"
    local = _local(track)
    img_t = np.asarray([times[r.name] for r in with_gps])
    img_xy = local.projector.forward(
        np.asarray([r.gps.lon for r in with_gps if r.gps]), np.asarray([r.gps.lat for r in with_gps if r.gps])
    )[:, :2]
    n = len(img_t)
    need = max(3, math.ceil(0.5 * n))
    lo = float(img_t.min() - local.t[-1])
    hi = float(img_t.max() - local.t[0])
    step = max(0.5, (hi - lo) / 200_000.0)
    grid = np.arange(lo, hi + step, step)
    best_d, best_score = math.nan, math.inf
    for start in range(0, len(grid), 2000):
        chunk = grid[start : start + 2000]
        dist = _misfit(local, img_t, img_xy, chunk)
        inside = np.sum(np.isfinite(dist), axis=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: no overlap at that offset
            score = np.where(inside >= need, np.nanmedian(dist, axis=1), np.inf)
        k = int(np.argmin(score))
        if score[k] < best_score:
            best_d, best_score = float(chunk[k]), float(score[k])
    if not math.isfinite(best_score):
        return f"no offset puts {need} of the {n} images with EXIF GPS inside the log's time span"
    # Fine search on the mean squared misfit of the inliers.
    fine = np.arange(best_d - 2 * step, best_d + 2 * step + 0.005, 0.01)
    dist = _misfit(local, img_t, img_xy, fine)
    gate = max(3.0 * best_score, 5.0)
    inlier = np.isfinite(dist) & (dist <= gate)
    used = np.sum(inlier, axis=1)
    sq = np.where(inlier, dist, 0.0) ** 2
    mse = np.where(used >= need, sq.sum(axis=1) / np.maximum(used, 1), np.inf)
    k = int(np.argmin(mse))
    offset = float(fine[k]) if math.isfinite(mse[k]) else best_d
    final = _misfit(local, img_t, img_xy, np.asarray([offset]))[0]
    median = float(np.nanmedian(final))
    if median > 50.0:
        return f"the best fit leaves the EXIF GPS {median:.0f} m from the track: the log is probably from another flight"
    return OffsetEstimate(
        log=track.source,
        method=OffsetMethod.EXIF_GPS,
        offset_s=offset,
        residual=median,
        residual_unit="m",
        images_used=int(np.sum(np.isfinite(final))),
    )


def _offset_from_time_zone(images: Sequence[ImageRecord], times: dict[str, float], track: FlightTrack) -> OffsetEstimate | str:
    if not track.absolute_time:
        return "the log has boot-relative time only"
    t = np.asarray(list(times.values()))
    if len(t) == 0:
        return "no image has a capture time"
    t0, t1 = float(track.positions.t[0]), float(track.positions.t[-1])
    zone_known = track.time_zone_known and all(r.time_zone_known for r in images if r.name in times)
    steps = [0.0] if zone_known else list(np.arange(-_ZONE_MAX_S, _ZONE_MAX_S + 1, _ZONE_STEP_S))
    counts = {d: int(np.sum((t - d >= t0) & (t - d <= t1))) for d in steps}
    best = max(counts.values())
    if best < max(1, math.ceil(0.8 * len(t))):
        return f"no whole time-zone shift puts most images inside the log's span (best: {best} of {len(t)})"
    winners = [d for d, c in counts.items() if c == best]
    if len(winners) > 1:
        return f"{len(winners)} time-zone shifts fit equally well; the images cannot be placed"
    return OffsetEstimate(
        log=track.source,
        method=OffsetMethod.TIME_ZONE,
        offset_s=float(winners[0]),
        residual=0.0,
        residual_unit="",
        images_used=best,
        note="assumes the camera clock is right apart from its time zone; positions are only as good as that clock",
    )


def estimate_clock_offset(
    images: Sequence[ImageRecord], track: FlightTrack, manual_offset_s: float | None = None
) -> OffsetEstimate:
    """Camera-minus-log clock offset for one track; InputError saying how to set it when nothing works."""
    if track.by_image_name:
        return OffsetEstimate(track.source, OffsetMethod.IMAGE_NAME, 0.0, 0.0, "", len(images))
    if manual_offset_s is not None:
        return OffsetEstimate(track.source, OffsetMethod.MANUAL, float(manual_offset_s), 0.0, "", 0)
    times = camera_times(images)
    names = sorted(times, key=lambda k: times[k])
    img_t = np.asarray([times[k] for k in names])
    reasons: list[str] = []
    for attempt in (
        lambda: _offset_from_triggers(names, img_t, track),
        lambda: _offset_from_exif_gps(images, times, track),
        lambda: _offset_from_time_zone(images, times, track),
    ):
        found = attempt()
        if isinstance(found, OffsetEstimate):
            return found
        reasons.append(found)
    raise InputError(
        f"cannot find the clock offset between the images and log {track.source}: "
        + "; ".join(reasons)
        + f". {_HOW_TO_SET}"
    )


# -- geotagging -------------------------------------------------------------------------
_REASON_TEXT = {
    "before_start": ("outside_log", "was taken before the log starts"),
    "after_end": ("outside_log", "was taken after the log ends"),
    "gap": ("log_gap", "falls in a gap of the log longer than ingest.max_interpolation_gap_s"),
    "no_altitude": ("log_no_altitude", "has no altitude in the log"),
}


def _by_name(records: Sequence[ImageRecord], track: FlightTrack) -> dict[str, tuple[int, int]]:
    """Record name -> (position index, trigger index) for a track keyed by image name (geo.txt)."""
    trig = track.triggers
    if trig is None or trig.names is None:
        return {}
    entry_of_pos = {int(round(v)): k for k, v in enumerate(track.positions.t)}
    index = ImageIndex([r.name for r in records])
    out: dict[str, tuple[int, int]] = {}
    unknown: list[str] = []
    for j, ref in enumerate(trig.names):
        try:
            name = index.lookup(ref)
        except InputError as exc:
            raise InputError(f"{track.source}: {exc}") from exc
        if name is None:
            unknown.append(ref)
        elif j in entry_of_pos and name not in out:
            out[name] = (entry_of_pos[j], j)
    if unknown:
        logger.warning(
            "%s lists %d image(s) that are not in the flight, e.g. %s", track.source, len(unknown), unknown[0]
        )
    return out


def _with_log_position(
    rec: ImageRecord,
    lon: float,
    lat: float,
    alt: float,
    track: FlightTrack,
    source: PositionSource,
    t_log: float | None,
    trig_idx: int | None,
    cfg: IngestConfig,
) -> ImageRecord:
    std_h = std_v = None
    trig = track.triggers
    if trig is not None and trig_idx is not None:
        if trig.std_horizontal_m is not None and math.isfinite(trig.std_horizontal_m[trig_idx]):
            std_h = float(trig.std_horizontal_m[trig_idx])
        if trig.std_vertical_m is not None and math.isfinite(trig.std_vertical_m[trig_idx]):
            std_v = float(trig.std_vertical_m[trig_idx])
    gps = GpsPosition(
        lat=float(lat),
        lon=float(lon),
        alt=float(alt),
        height_ref=track.positions.height_ref,
        std_horizontal_m=std_h,
        std_vertical_m=std_v,
    )
    flight, gimbal = rec.flight, rec.gimbal
    if t_log is not None:
        if flight is None:
            flight = interpolate_attitude(track.attitude, t_log, cfg.max_interpolation_gap_s)
        if gimbal is None:
            gimbal = interpolate_attitude(track.gimbal, t_log, cfg.max_interpolation_gap_s)
    elif track.attitude is not None and trig_idx is not None and gimbal is None:
        # geo.txt angles describe the camera; the attitude series is indexed by entry order.
        gimbal = interpolate_attitude(track.attitude, float(trig_idx), 0.5)
    return replace(rec, gps=gps, position_source=source, flight=flight, gimbal=gimbal)


def geotag_images(
    records: Sequence[ImageRecord],
    tracks: Sequence[FlightTrack],
    cfg: IngestConfig,
    *,
    override_exif: bool = False,
) -> GeotagResult:
    """Give images without usable GPS (every image with ``override_exif``) a position from the logs.

    Returns new records (``position_source=LOG`` or ``GEO_TXT``), the offset found per log and
    the images that needed a position but got none, each with its reason. Raises
    :class:`InputError` (saying how to set the offset) when images need a position and no
    log's clock offset can be found.
    """
    out = {r.name: r for r in records}
    order = [r.name for r in records]
    geotagged: list[str] = []
    per_log: dict[str, int] = {}
    offsets: list[OffsetEstimate] = []

    for track in (t for t in tracks if t.by_image_name):
        hits = _by_name(records, track)
        for name, (pi, tj) in sorted(hits.items()):
            p = track.positions
            out[name] = _with_log_position(
                out[name], float(p.lon[pi]), float(p.lat[pi]), float(p.alt[pi]), track, PositionSource.GEO_TXT, None, tj, cfg
            )
            geotagged.append(name)
        per_log[track.source] = len(hits)
        offsets.append(OffsetEstimate(track.source, OffsetMethod.IMAGE_NAME, 0.0, 0.0, "", len(hits)))

    done = set(geotagged)
    need = [
        out[n]
        for n in order
        if n not in done and (override_exif or out[n].gps is None or out[n].position_source is PositionSource.NONE)
    ]
    timed = [t for t in tracks if not t.by_image_name]
    skipped: list[SkippedItem] = []
    if not need or not timed:
        return GeotagResult(tuple(out[n] for n in order), tuple(offsets), tuple(geotagged), tuple(skipped), per_log)

    failures: list[str] = []
    estimates: list[tuple[OffsetEstimate, FlightTrack, _Local]] = []
    for track in timed:
        try:
            est = estimate_clock_offset(list(out.values()), track, cfg.clock_offset_s)
        except InputError as exc:
            failures.append(str(exc))
            logger.warning("%s", exc)
            continue
        logger.info(
            "log %s: clock offset %.3f s (%s, %d images%s)",
            track.source,
            est.offset_s,
            est.method.value,
            est.images_used,
            f", residual {est.residual:.3g} {est.residual_unit}" if est.residual_unit else "",
        )
        if est.note:
            logger.warning("log %s: %s", track.source, est.note)
        estimates.append((est, track, _local(track)))
        offsets.append(est)
    if not estimates:
        raise InputError(
            f"{len(need)} image(s) need a position from the logs, but no log's clock offset could be found: "
            + " | ".join(failures)
        )
    estimates.sort(key=lambda e: (_PRIORITY[e[0].method], -e[0].images_used))

    times = camera_times(list(out.values()))
    for rec in need:
        t_cam = times.get(rec.name)
        if t_cam is None:
            skipped.append(
                SkippedItem(rec.name, "no_capture_time", f"{rec.name}: no capture time in EXIF, so it cannot be placed on the log")
            )
            continue
        first_reason: tuple[str, str] | None = None
        for est, track, local in estimates:
            trig_idx = est.matches.get(rec.name)
            trig = track.triggers
            t_log = float(trig.t[trig_idx]) if trig is not None and trig_idx is not None else t_cam - est.offset_s
            lla, status = interpolate_positions(track, np.asarray([t_log]), cfg.max_interpolation_gap_s, local)
            state = status[0]
            if state == "ok" and not math.isfinite(lla[0, 2]):
                alt = rec.gps.alt if rec.gps is not None else math.nan
                if not math.isfinite(alt):
                    state = "no_altitude"
                else:
                    lla[0, 2] = alt
            if state == "ok":
                out[rec.name] = _with_log_position(
                    rec, lla[0, 0], lla[0, 1], lla[0, 2], track, PositionSource.LOG, t_log, trig_idx, cfg
                )
                geotagged.append(rec.name)
                per_log[track.source] = per_log.get(track.source, 0) + 1
                break
            if first_reason is None:
                code, text = _REASON_TEXT[state]
                first_reason = (code, f"{rec.name} {text} {track.source} (log time {t_log:.3f} s); not geotagged")
        else:
            assert first_reason is not None
            skipped.append(SkippedItem(rec.name, first_reason[0], first_reason[1]))
    for s in skipped:
        logger.warning("%s", s.message)
    return GeotagResult(tuple(out[n] for n in order), tuple(offsets), tuple(geotagged), tuple(skipped), per_log)
