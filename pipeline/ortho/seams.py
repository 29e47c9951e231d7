"""Seamlines: a flight-level labelling of a coarse seam grid by alpha-expansion graph cuts.

Each seam-grid cell takes the image it is drawn from. The labelling minimises

    E(L) = sum_cells D_L(p)(p)  +  sum_neighbour pairs with L(p) != L(q)  V(p, q)

- D: the view cost of :mod:`pipeline.ortho.select` (off-nadir angle, ground
  resolution, blur); only images that see the cell (in frame, not occluded by
  the DSM) may take it.
- V: the cost of a seam between p and q, per metre of seam:
  ``seam_weight * (base + G(p, q) + colour_weight * colour difference)``.
  G comes from the DSM (how far a cell stands above the local ground, and
  the local slope), so seams run round buildings and trees, not through them;
  the colour term is the difference of the two images at p and q (Kwatra et
  al.), so seams avoid places where the images disagree (moving objects,
  parallax). Both terms are metrics, so each expansion move is a submodular
  binary problem solved exactly by a minimum cut (Boykov, Veksler & Zabih).

Data costs are per square metre and seam costs per metre, so the balance does
not depend on the seam grid's cell size. The solve runs once for the flight,
so seams are consistent across tiles by construction. It runs coarse to fine
(:func:`solve_labels`): the long seam moves on a grid coarsened by 2, then
short moves at full resolution, for about half the max-flow work of a
full-resolution solve and no higher energy on the bench flight.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import breadth_first_order, maximum_flow

from models.raster import Window
from pipeline.ortho.dsm import block_sum

logger = logging.getLogger(__name__)

F32 = NDArray[np.float32]
U8 = NDArray[np.uint8]
I32 = NDArray[np.int32]
BoolArray = NDArray[np.bool_]

NO_LABEL = -1
# Integer scale of costs in the max-flow graph.
_QUANT = 256.0


@dataclass(frozen=True)
class SeamWeights:
    """Weights of the seam cost (per metre of seam; the data cost is per square metre)."""

    seam: float = 1.0  # overall weight of seams against view quality
    base: float = 0.2  # cost of any seam, per metre: keeps seams short and smooth
    colour: float = 1.0  # weight of the colour difference (in units of colour_sigma grey levels)
    colour_sigma: float = 10.0  # grey levels of difference that cost one unit
    colour_cap: float = 4.0  # most a colour difference (or a missing sample) can cost
    height: float = 8.0  # cost of a seam over a cell standing >= height_ref above the ground
    height_ref_m: float = 1.0  # height above ground at which the height cost is full
    slope: float = 4.0  # cost per unit of DSM slope (rise over run), capped at slope 2
    reach_m: float = 25.0  # how far an expansion move may push a seam beyond its current place
    coarse_cell_m: float = 2.5  # the solve starts on the grid coarsened by 2 (repeatedly) while its cells stay this small
    refine_reach_cells: int = 10  # how far a finer level may move the seams of the coarser one (cells)


@dataclass(frozen=True, eq=False)
class SeamInput:
    """One image's samples on the seam grid, over its window."""

    window: Window  # where the arrays sit in the seam grid
    valid: BoolArray  # (h, w) in frame and not occluded
    cost: F32  # (h, w) view cost (data term per square metre)
    rgb: U8  # (h, w, 3) gain-compensated colour of the image at the cells
    nxy: F32 | None = None  # (h, w, 2) position in the image (half-diagonals from the principal point)


def seam_geometry_cost(z: F32, cell_m: float, weights: SeamWeights, ground_radius_m: float = 15.0) -> F32:
    """Per-cell DSM part of the seam cost: height above the local ground, and slope."""
    z = np.asarray(z, dtype=np.float32)
    radius = max(1, int(round(ground_radius_m / cell_m)))
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * radius + 1, 2 * radius + 1))
    ground = cv2.morphologyEx(z, cv2.MORPH_OPEN, kernel, borderType=cv2.BORDER_REPLICATE)
    above = np.clip((z - ground) / np.float32(weights.height_ref_m), 0.0, 1.0)
    gx = cv2.Sobel(z, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE) / np.float32(8.0 * cell_m)
    gy = cv2.Sobel(z, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE) / np.float32(8.0 * cell_m)
    slope = np.clip(np.sqrt(gx * gx + gy * gy), 0.0, 2.0)
    # A cell next to a step also counts as the step (the seam must not hug a wall).
    slope = cv2.dilate(slope, np.ones((3, 3), np.uint8))
    above = cv2.dilate(above, np.ones((3, 3), np.uint8))
    return np.asarray(np.float32(weights.height) * above + np.float32(weights.slope) * slope, dtype=np.float32)


def _neighbours(x: NDArray[Any], fill: Any) -> NDArray[Any]:
    """(2, h, w, ...): [0] each cell's right neighbour's value, [1] its lower neighbour's (``fill`` past the edge)."""
    out = np.full((2,) + x.shape, fill, x.dtype)
    out[0, :, :-1] = x[:, 1:]
    out[1, :-1] = x[1:]
    return out


class SeamSolver:
    """Alpha-expansion over the seam grid for ``len(inputs)`` images."""

    def __init__(
        self,
        shape: tuple[int, int],
        inputs: list[SeamInput],
        geometry_cost: F32,
        cell_m: float,
        weights: SeamWeights,
        start: I32 | None = None,
        reach_cells: int | None = None,
    ) -> None:
        """Best-view labelling, or ``start`` where its image sees the cell (best view elsewhere).

        ``reach_cells`` overrides how far an expansion may push a seam (``weights.reach_m``).
        """
        self.shape = shape
        self.inputs = inputs
        self.geo = np.asarray(geometry_cost, dtype=np.float32)
        # DSM part of the seam cost per edge (mean of its two cells): [0] each cell's edge to its
        # right neighbour, [1] to its lower one (zero past the grid).
        self.geo_edge = np.zeros((2,) + self.geo.shape, np.float32)
        self.geo_edge[0, :, :-1] = np.float32(0.5) * (self.geo[:, 1:] + self.geo[:, :-1])
        self.geo_edge[1, :-1, :] = np.float32(0.5) * (self.geo[1:, :] + self.geo[:-1, :])
        self.cell_m = float(cell_m)
        self.w = weights
        # How far (cells) an expansion may reach beyond the image's current territory.
        self.reach_cells = reach_cells if reach_cells is not None else max(1, int(round(weights.reach_m / self.cell_m)))
        # Every image's samples end to end (flat), with where each one's window starts and sits.
        sizes = [inp.window.width * inp.window.height for inp in inputs]
        self._start = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64) if inputs else np.zeros(0, np.int64)
        self._row_off = np.array([inp.window.row_off for inp in inputs], np.int64)
        self._col_off = np.array([inp.window.col_off for inp in inputs], np.int64)
        self._width = np.array([inp.window.width for inp in inputs], np.int64)
        self._height = np.array([inp.window.height for inp in inputs], np.int64)
        self._all_valid = np.concatenate([inp.valid.ravel() for inp in inputs] + [np.zeros(1, bool)])
        self._all_rgb = np.concatenate([inp.rgb.reshape(-1, 3) for inp in inputs] + [np.zeros((1, 3), np.uint8)])
        h, w = shape
        self.labels = np.full((h, w), NO_LABEL, np.int32)
        self.cost = np.full((h, w), np.inf, np.float32)
        for k, inp in enumerate(inputs):
            sl = inp.window.slices
            better = inp.valid & (inp.cost < self.cost[sl])
            self.labels[sl][better] = k
            self.cost[sl][better] = inp.cost[better]
        if start is not None:
            for k, inp in enumerate(inputs):
                sl = inp.window.slices
                take = inp.valid & (start[sl] == k)
                self.labels[sl][take] = k
                self.cost[sl][take] = inp.cost[take]
        # Colour of each cell's current image (kept up to date), so an expansion move looks up
        # other images' colours only across current seams.
        rows, cols = np.indices((h, w), dtype=np.int64)
        rgb, ok = self._colour_at(self.labels, rows, cols)
        self.cur_rgb = np.where(ok[..., None], rgb, np.float32(0.0))

    # -- colour lookups --------------------------------------------------------------
    def _colour_at(self, label: I32, rows: NDArray[np.integer], cols: NDArray[np.integer]) -> tuple[F32, BoolArray]:
        """Colour (n, 3) of image ``label[i]`` at cell (rows[i], cols[i]), and whether it exists.

        One gather from every image's samples laid end to end, whatever the mix of labels.
        """
        k = np.maximum(label, 0)
        r = rows - self._row_off[k]
        c = cols - self._col_off[k]
        width = self._width[k]
        inside = (label >= 0) & (r >= 0) & (r < self._height[k]) & (c >= 0) & (c < width)
        idx = np.where(inside, self._start[k] + r * width + c, 0)
        ok = inside & self._all_valid[idx]
        return self._all_rgb[idx].astype(np.float32), ok

    def _colour_diff(self, ca: F32, oka: BoolArray, cb: F32, okb: BoolArray) -> F32:
        """Mean absolute difference of colours (..., 3) in ``colour_sigma`` units, capped; the cap
        where either colour is missing.

        Channel by channel: numpy's reductions along a 3-long last axis are several times slower.
        """
        cap = np.float32(self.w.colour_cap)
        d = np.abs(ca[..., 0] - cb[..., 0])
        d += np.abs(ca[..., 1] - cb[..., 1])
        d += np.abs(ca[..., 2] - cb[..., 2])
        d *= np.float32(1.0 / (3.0 * self.w.colour_sigma))
        np.minimum(d, cap, out=d)
        d[~(oka & okb)] = cap
        return np.asarray(d, dtype=np.float32)

    def _pair_cost(
        self, la: I32, lb: I32, p: tuple[NDArray[np.int64], NDArray[np.int64]], q: tuple[NDArray[np.int64], NDArray[np.int64]], geo_pq: F32
    ) -> F32:
        """V(la, lb) on edges p-q (per edge, already scaled by the edge length)."""
        cap_p, ok_ap = self._colour_at(la, *p)
        cbp, ok_bp = self._colour_at(lb, *p)
        caq, ok_aq = self._colour_at(la, *q)
        cbq, ok_bq = self._colour_at(lb, *q)
        colour = 0.5 * (self._colour_diff(cap_p, ok_ap, cbp, ok_bp) + self._colour_diff(caq, ok_aq, cbq, ok_bq))
        v = np.float32(self.w.seam) * (np.float32(self.w.base) + geo_pq + np.float32(self.w.colour) * colour)
        # Seam cost is per metre and data per square metre: per edge, divide by the cell size.
        v = v / np.float32(self.cell_m)
        v[(la == lb) | (la < 0) | (lb < 0)] = 0.0
        return v.astype(np.float32)

    def energy(self) -> float:
        """Total energy of the current labelling (for tests and logs)."""
        lab = self.labels
        total = float(self.cost[lab >= 0].sum())
        h, w = self.shape
        for dr, dc in ((0, 1), (1, 0)):
            la, lb = lab[: h - dr, : w - dc], lab[dr:, dc:]
            r, c = np.nonzero((la != lb) & (la >= 0) & (lb >= 0))
            if r.size == 0:
                continue
            r, c = r.astype(np.int64), c.astype(np.int64)
            la, lb = la[r, c], lb[r, c]
            geo = 0.5 * (self.geo[r, c] + self.geo[r + dr, c + dc])
            total += float(self._pair_cost(la, lb, (r, c), (r + dr, c + dc), geo).sum())
        return total

    # -- one expansion move -------------------------------------------------------
    def expand(self, alpha: int) -> int:
        """Let image ``alpha`` take any cells it sees where that lowers the energy; returns cells changed.

        The move's graph is built on dense arrays over the bounding box of the free cells (grown
        by one cell for the edges to fixed neighbours): away from current seams every seam cost of
        the move is a sum of per-cell colour differences, so only the edges that cross a seam need
        colour lookups in other images.
        """
        inp = self.inputs[alpha]
        H, W = self.shape
        win = inp.window
        # Free cells: those alpha sees and does not hold yet (its own cells cannot change in an
        # expansion move, so they enter only as fixed neighbours) ...
        mine = self.labels[win.slices] == alpha
        free = inp.valid & ~mine
        # ... within reach of its territory (a cell far from it would have to join as an
        # island, which never pays after the best-view start).
        if self.reach_cells > 0 and mine.any():
            k = 2 * self.reach_cells + 1
            near = cv2.dilate(mine.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))) > 0
            free &= near
        rows_any = np.flatnonzero(free.any(axis=1))
        if rows_any.size == 0:
            return 0
        cols_any = np.flatnonzero(free.any(axis=0))
        r0, r1 = int(rows_any[0]), int(rows_any[-1]) + 1
        c0, c1 = int(cols_any[0]), int(cols_any[-1]) + 1
        box = Window(win.col_off + c0, win.row_off + r0, c1 - c0, r1 - r0).expanded(1, W, H)
        h, w = box.height, box.width
        # The free cells, alpha's samples and the current state over the box.
        region = np.zeros((h, w), bool)
        inner = Window(win.col_off + c0, win.row_off + r0, c1 - c0, r1 - r0).relative_to(box)
        region[inner.slices] = free[r0:r1, c0:c1]
        a_ok = np.zeros((h, w), bool)
        a_rgb = np.zeros((h, w, 3), np.float32)
        a_cost = np.zeros((h, w), np.float32)
        ov = box.intersection(win)
        if ov.width and ov.height:
            ob, ow = ov.relative_to(box).slices, ov.relative_to(win).slices
            a_ok[ob] = inp.valid[ow]
            a_rgb[ob] = inp.rgb[ow]
            a_cost[ob] = inp.cost[ow]
        lab = self.labels[box.slices]
        ok = lab >= 0
        cur = self.cur_rgb[box.slices]
        # Colour difference of the current image and alpha at each cell: away from seams it is
        # the whole colour term of the moves that put alpha next to a current label.
        dca = self._colour_diff(cur, ok, a_rgb, a_ok)
        s_over_c = np.float32(self.w.seam / self.cell_m)
        cw = np.float32(self.w.seam * self.w.colour / self.cell_m * 0.5)
        cur_cost = self.cost[box.slices]
        delta = np.where(region, a_cost - np.where(np.isfinite(cur_cost), cur_cost, np.float32(1e6)), np.float32(0.0)).astype(np.float64)
        # Every cell's edges to its right (0) and lower (1) neighbour at once, with the
        # neighbour's values shifted onto the cell (edges past the box have no neighbour).
        lab_q, in_q, dca_q = _neighbours(lab, NO_LABEL), _neighbours(region, False), _neighbours(dca, 0.0)
        ok_q = lab_q >= 0
        base = s_over_c * (np.float32(self.w.base) + self.geo_edge[(slice(None),) + box.slices])
        # V(lp, alpha) = B and V(alpha, lq) = C; V(lp, lq) = A is zero off the seams.
        B = base + cw * (dca + dca_q)
        C = B.copy()
        A = np.zeros_like(B)
        dd, ar, ac = np.nonzero((lab != lab_q) & ok & ok_q & (region | in_q))
        if ar.size:
            # I_lp(q) and I_lq(p): each side's image across the seam.
            qr, qc = ar + dd, ac + 1 - dd
            x, okx = self._colour_at(lab[ar, ac], qr + box.row_off, qc + box.col_off)
            y, oky = self._colour_at(lab_q[dd, ar, ac], ar + box.row_off, ac + box.col_off)
            cp, cq, ap, aq = cur[ar, ac], cur[qr, qc], a_rgb[ar, ac], a_rgb[qr, qc]
            okap, okaq = a_ok[ar, ac], a_ok[qr, qc]
            ones = np.ones(ar.shape[0], bool)
            # The six colour differences of A, B and C in one pass.
            diff = self._colour_diff(
                np.concatenate([cp, x, cp, x, ap, aq]), np.concatenate([ones, okx, ones, okx, okap, okaq]),
                np.concatenate([y, cq, ap, aq, y, cq]), np.concatenate([oky, ones, okap, okaq, oky, ones]),
            ).reshape(6, -1)
            b = base[dd, ar, ac]
            A[dd, ar, ac] = b + cw * (diff[0] + diff[1])
            B[dd, ar, ac] = b + cw * (diff[2] + diff[3])
            C[dd, ar, ac] = b + cw * (diff[4] + diff[5])
        B[:, (lab == alpha) | ~ok] = 0.0
        C[(lab_q == alpha) | ~ok_q] = 0.0
        # p free, q fixed or free: U_p(1) - U_p(0) += V(alpha, lq) - V(lp, lq).
        at_p = np.where(region, C - A, np.float32(0.0))
        # q free, p fixed: U_q(1) - U_q(0) += V(lp, alpha) - V(lp, lq); both free:
        # E = A + (C - A) x_p - C x_q + (B + C - A) (1 - x_p) x_q.
        at_q = np.where(in_q, np.where(region, -C, B - A), np.float32(0.0))
        delta += at_p[0]
        delta[:, 1:] += at_q[0, :, :-1]
        delta += at_p[1]
        delta[1:, :] += at_q[1, :-1, :]
        pair = np.maximum(B + C - A, np.float32(0.0))
        qpair = np.where(region & in_q, np.minimum(np.round(pair.astype(np.float64) * _QUANT), 2**30), 0).astype(np.int32)
        take = np.zeros((h, w), bool)
        take[region] = self._min_cut(region, np.clip(np.round(delta * _QUANT), -(2**30), 2**30), qpair[0], qpair[1])
        if not take.any():
            return 0
        rr, cc = np.nonzero(take)
        rr += box.row_off
        cc += box.col_off
        self.labels[rr, cc] = alpha
        self.cost[rr, cc] = a_cost[take]
        self.cur_rgb[rr, cc] = a_rgb[take]
        return int(rr.size)

    @staticmethod
    def _min_cut(region: BoolArray, qd: NDArray[np.float64], qh: I32, qv: I32) -> BoolArray:
        """The cells of ``region`` (row-major order) that take alpha in the move's minimum cut.

        ``qd``: U(1) - U(0) per cell; ``qh``, ``qv``: the pairwise weight w of the edge from a
        cell to its right or lower neighbour, E += w (1 - x_p) x_q (zero where either cell is
        fixed); all in integer units of 1/_QUANT. The graph holds every edge in both directions
        (the reverse at zero capacity), so scipy adds none and its flow comes back in the same
        layout as the capacities: the residual is one subtraction. The max-flow runs from
        whichever terminal has fewer edges (the sink, for the graph reversed, when the source
        has more): Dinic's searches then start from the smaller side, which the bench flight's
        moves solve about twice as fast. The cut taken is the one nearest the sink (the most
        cells to alpha) either way.
        """
        h, w = region.shape
        flat = np.flatnonzero(region)
        n = flat.size
        # Node number of each cell, -1 off the region; padded so that a neighbour index past
        # either end of the box (negative ones wrap) lands on -1.
        node = np.full(h * w + w + 1, -1, np.int32)
        node[flat] = np.arange(n, dtype=np.int32)
        d = qd.ravel()[flat].astype(np.int64)
        qh_f, qv_f = qh.ravel(), qv.ravel()
        # Edge weights at each node's up, left, right and down sides. A cell's left (upper)
        # neighbour's right (down) weight wraps to the box's last column (row) at the box's
        # edge, where weights are zero.
        cap_u, cap_l = qv_f[flat - w], qh_f[flat - 1]
        cap_r, cap_d = qh_f[flat], qv_f[flat]
        zero = np.zeros(n, np.int64)
        s_side, t_side = d > 0, d < 0
        exists = np.stack([cap_u > 0, cap_l > 0, cap_r > 0, cap_d > 0, s_side, t_side], axis=1)
        cols = np.stack([node[flat - w], node[flat - 1], node[flat + 1], node[flat + w], np.full(n, n, np.int32), np.full(n, n + 1, np.int32)], axis=1)
        fwd = np.stack([zero, zero, cap_r, cap_d, zero, -d], axis=1)  # x = 1 (alpha) is the sink side
        bwd = np.stack([cap_u, cap_l, zero, zero, d, zero], axis=1)  # the reversed graph's capacities
        s_nodes, t_nodes = np.flatnonzero(s_side), np.flatnonzero(t_side)
        counts = np.concatenate([exists.sum(axis=1), [s_nodes.size, t_nodes.size]])
        indptr = np.zeros(n + 3, np.int32)
        np.cumsum(counts, out=indptr[1:])
        indices = np.concatenate([cols[exists], s_nodes.astype(np.int32), t_nodes.astype(np.int32)])
        cap = np.concatenate([fwd[exists], d[s_nodes], np.zeros(t_nodes.size, np.int64)])
        reverse = s_nodes.size > t_nodes.size
        if reverse:
            rcap = np.concatenate([bwd[exists], np.zeros(s_nodes.size, np.int64), -d[t_nodes]])
            graph = csr_matrix((rcap.astype(np.int32), indices, indptr), shape=(n + 2, n + 2))
            flow = maximum_flow(graph, n + 1, n, method="dinic").flow
        else:
            graph = csr_matrix((cap.astype(np.int32), indices, indptr), shape=(n + 2, n + 2))
            flow = maximum_flow(graph, n, n + 1, method="dinic").flow
        if flow.nnz != indices.size or not np.array_equal(flow.indptr, indptr):
            raise RuntimeError("max-flow result does not follow the graph's layout")
        residual = cap + flow.data if reverse else cap - flow.data
        keep = residual > 0
        kept = np.zeros(indices.size + 1, np.int32)
        np.cumsum(keep, out=kept[1:])
        res = csr_matrix((np.ones(int(kept[-1])), indices[keep], kept[indptr]), shape=(n + 2, n + 2))
        reach = breadth_first_order(res, n, directed=True, return_predecessors=False)
        take = np.ones(n + 2, bool)
        take[reach] = False
        return take[:n]

    def solve(self, sweeps: int = 2) -> I32:
        """Run expansion sweeps over every image until nothing changes or ``sweeps`` are done."""
        for sweep in range(sweeps):
            changed = 0
            for alpha in range(len(self.inputs)):
                changed += self.expand(alpha)
            logger.info("seam sweep %d on %d x %d cells: %d cells changed", sweep + 1, self.shape[1], self.shape[0], changed)
            if changed == 0:
                break
        return self.labels


def coarsen(shape: tuple[int, int], inputs: list[SeamInput], geometry_cost: F32, f: int = 2) -> tuple[tuple[int, int], list[SeamInput], F32]:
    """The seam problem on cells of f x f cells.

    An image sees a coarse cell only if it sees every one of its cells (so a coarse label
    is valid for all the fine cells under it); its cost and colour there are the means, and
    so is the DSM cost (a block's highest value would push coarse seams off half-wall cells
    that the fine level then has to pull back).
    """
    H, W = shape
    ch, cw = -(-H // f), -(-W // f)
    out = []
    for inp in inputs:
        win = inp.window
        c0, r0 = win.col_off // f, win.row_off // f
        c1, r1 = -(-(win.col_off + win.width) // f), -(-(win.row_off + win.height) // f)
        fh, fw = (r1 - r0) * f, (c1 - c0) * f
        oy, ox = win.row_off - r0 * f, win.col_off - c0 * f
        valid = np.zeros((fh, fw), bool)
        cost = np.zeros((fh, fw), np.float32)
        rgb = np.zeros((fh, fw, 3), np.uint8)
        sub = (slice(oy, oy + win.height), slice(ox, ox + win.width))
        valid[sub] = inp.valid
        cost[sub] = np.where(inp.valid, inp.cost, np.float32(0.0))
        rgb[sub] = inp.rgb
        # Cells past the grid's edge do not exist: they neither count nor spoil a block.
        in_grid = np.zeros((fh, fw), bool)
        in_grid[: max(0, min(fh, H - r0 * f)), : max(0, min(fw, W - c0 * f))] = True
        n_in, n_ok = block_sum(in_grid, f), block_sum(valid, f)
        ok = (n_ok == n_in) & (n_in > 0)
        div = np.maximum(n_ok, 1.0)
        c_cost = np.where(ok, block_sum(cost, f) / div, np.inf).astype(np.float32)
        c_rgb = np.where(ok[..., None], np.rint(block_sum(rgb, f) / div[..., None]), 0.0).astype(np.uint8)
        out.append(SeamInput(Window(c0, r0, c1 - c0, r1 - r0), ok, c_cost, c_rgb))
    geo = np.zeros((ch * f, cw * f), np.float32)
    geo[:H, :W] = geometry_cost
    n_geo = np.zeros((ch * f, cw * f), np.float32)
    n_geo[:H, :W] = 1.0
    c_geo = (block_sum(geo, f) / block_sum(n_geo, f)).astype(np.float32)
    return (ch, cw), out, c_geo


def solve_labels(
    shape: tuple[int, int], inputs: list[SeamInput], geometry_cost: F32, cell_m: float, weights: SeamWeights, sweeps: int
) -> SeamSolver:
    """Alpha-expansion from coarse to fine: the solved solver at ``shape``.

    Each expansion is a max-flow over every cell the image may take, so the solve's cost
    grows with the number of cells, and most of it goes into moving seams far (up to
    ``reach_m``). On a grid coarsened by 2 those moves cost a quarter; the finer level then
    starts from the coarse labels and only moves seams by a few cells, to fit them to the
    detail that the coarse cells blur.
    """
    H, W = shape
    coarse_ok = 2.0 * cell_m <= weights.coarse_cell_m and min(H, W) >= 8 * 2
    if not coarse_ok:
        solver = SeamSolver(shape, inputs, geometry_cost, cell_m, weights)
        solver.solve(sweeps)
        return solver
    cshape, cinputs, cgeo = coarsen(shape, inputs, geometry_cost, 2)
    coarse = solve_labels(cshape, cinputs, cgeo, 2.0 * cell_m, weights, sweeps)
    start = np.repeat(np.repeat(coarse.labels, 2, axis=0), 2, axis=1)[:H, :W]
    solver = SeamSolver(shape, inputs, geometry_cost, cell_m, weights, start=start, reach_cells=weights.refine_reach_cells)
    solver.solve(sweeps)
    return solver
