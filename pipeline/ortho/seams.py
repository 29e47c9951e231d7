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
so seams are consistent across tiles by construction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import breadth_first_order, maximum_flow

from models.raster import Window

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


class SeamSolver:
    """Alpha-expansion over the seam grid for ``len(inputs)`` images."""

    def __init__(self, shape: tuple[int, int], inputs: list[SeamInput], geometry_cost: F32, cell_m: float, weights: SeamWeights) -> None:
        self.shape = shape
        self.inputs = inputs
        self.geo = np.asarray(geometry_cost, dtype=np.float32)
        self.cell_m = float(cell_m)
        self.w = weights
        # How far (cells) an expansion may reach beyond the image's current territory.
        self.reach_cells = max(1, int(round(weights.reach_m / self.cell_m)))
        h, w = shape
        self.labels = np.full((h, w), NO_LABEL, np.int32)
        self.cost = np.full((h, w), np.inf, np.float32)
        # Colour of each cell's current image (kept up to date), so an expansion move looks up
        # other images' colours only across current seams.
        self.cur_rgb = np.zeros((h, w, 3), np.float32)
        for k, inp in enumerate(inputs):
            sl = inp.window.slices
            better = inp.valid & (inp.cost < self.cost[sl])
            self.labels[sl][better] = k
            self.cost[sl][better] = inp.cost[better]
            self.cur_rgb[sl][better] = inp.rgb[better]

    # -- colour lookups --------------------------------------------------------------
    def _colour_at(self, label: I32, rows: NDArray[np.int64], cols: NDArray[np.int64]) -> tuple[F32, BoolArray]:
        """Colour (n, 3) of image ``label[i]`` at cell (rows[i], cols[i]), and whether it exists."""
        out = np.zeros((label.shape[0], 3), np.float32)
        ok = np.zeros(label.shape[0], bool)
        for k in np.unique(label):
            if k < 0:
                continue
            sel = np.nonzero(label == k)[0]
            inp = self.inputs[int(k)]
            r = rows[sel] - inp.window.row_off
            c = cols[sel] - inp.window.col_off
            inside = (r >= 0) & (r < inp.window.height) & (c >= 0) & (c < inp.window.width)
            idx = sel[inside]
            rr, cc = r[inside], c[inside]
            good = inp.valid[rr, cc]
            out[idx[good]] = inp.rgb[rr[good], cc[good]]
            ok[idx[good]] = True
        return out, ok

    def _colour_diff(self, ca: F32, oka: BoolArray, cb: F32, okb: BoolArray) -> F32:
        cap = np.float32(self.w.colour_cap)
        d = np.abs(ca - cb).mean(axis=1) / np.float32(self.w.colour_sigma)
        d = np.minimum(d, cap)
        return np.where(oka & okb, d, cap).astype(np.float32)

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
            r, c = np.nonzero(np.ones((h - dr, w - dc), bool))
            r = r.astype(np.int64)
            c = c.astype(np.int64)
            la = lab[r, c]
            lb = lab[r + dr, c + dc]
            diff = (la != lb) & (la >= 0) & (lb >= 0)
            if not diff.any():
                continue
            r, c, la, lb = r[diff], c[diff], la[diff], lb[diff]
            geo = 0.5 * (self.geo[r, c] + self.geo[r + dr, c + dc])
            total += float(self._pair_cost(la, lb, (r, c), (r + dr, c + dc), geo).sum())
        return total

    # -- one expansion move -------------------------------------------------------
    def expand(self, alpha: int) -> int:
        """Let image ``alpha`` take any cells it sees where that lowers the energy; returns cells changed."""
        inp = self.inputs[alpha]
        H, W = self.shape
        win = inp.window
        region = np.zeros(self.shape, bool)
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
        region[win.slices] = free
        if not region[win.slices].any():
            return 0
        # Work on the window grown by one cell, so that edges to fixed neighbours are seen.
        ext = win.expanded(1, W, H)
        sub_region = region[ext.slices]
        rr, cc = np.nonzero(sub_region)
        rows = rr.astype(np.int64) + ext.row_off
        cols = cc.astype(np.int64) + ext.col_off
        n = rows.shape[0]
        node = np.full(self.shape, -1, np.int64)
        node[rows, cols] = np.arange(n)
        lab = self.labels
        alpha_cost = np.full(n, np.inf, np.float32)
        alpha_cost[:] = inp.cost[rows - win.row_off, cols - win.col_off]
        cur_cost = self.cost[rows, cols]
        cur_cost = np.where(np.isfinite(cur_cost), cur_cost, np.float32(1e6))
        delta = (alpha_cost - cur_cost).astype(np.float64)  # U(1) - U(0)

        src_e: list[NDArray[np.int64]] = []
        dst_e: list[NDArray[np.int64]] = []
        cap_e: list[NDArray[np.float64]] = []
        for dr, dc in ((0, 1), (1, 0)):
            # Every edge (p, q=p+(dr,dc)) with at least one end in the region.
            r0, r1 = ext.row_off, ext.row_off + ext.height - dr
            c0, c1 = ext.col_off, ext.col_off + ext.width - dc
            pr, pc = np.mgrid[r0:r1, c0:c1]
            pr = pr.ravel().astype(np.int64)
            pc = pc.ravel().astype(np.int64)
            qr, qc = pr + dr, pc + dc
            in_p = region[pr, pc]
            in_q = region[qr, qc]
            any_in = in_p | in_q
            pr, pc, qr, qc, in_p, in_q = pr[any_in], pc[any_in], qr[any_in], qc[any_in], in_p[any_in], in_q[any_in]
            lp = lab[pr, pc]
            lq = lab[qr, qc]
            geo = 0.5 * (self.geo[pr, pc] + self.geo[qr, qc])
            A, B, C = self._move_costs(alpha, lp, lq, (pr, pc), (qr, qc), geo)
            both = in_p & in_q
            only_p = in_p & ~in_q
            only_q = in_q & ~in_p
            # p free, q fixed at its label: U_p(1) - U_p(0) += V(alpha, lq) - V(lp, lq).
            # (np.bincount sums repeated indices like np.add.at, many times faster.)
            delta += np.bincount(node[pr[only_p], pc[only_p]], C[only_p] - A[only_p], minlength=n)
            # q free, p fixed: U_q(1) - U_q(0) += V(lp, alpha) - V(lp, lq).
            delta += np.bincount(node[qr[only_q], qc[only_q]], B[only_q] - A[only_q], minlength=n)
            # Both free: E = A + (C - A) x_p + (0 - C) x_q + (B + C - A) (1 - x_p) x_q.
            ip = node[pr[both], pc[both]]
            iq = node[qr[both], qc[both]]
            delta += np.bincount(ip, C[both] - A[both], minlength=n)
            delta -= np.bincount(iq, C[both], minlength=n)
            pair = np.maximum(B[both] + C[both] - A[both], 0.0)
            keep = pair > 0
            src_e.append(ip[keep])
            dst_e.append(iq[keep])
            cap_e.append(pair[keep])

        s, t = n, n + 1
        pos = delta > 0
        nodes = np.arange(n, dtype=np.int64)
        # x = 1 (take alpha) is the sink side: cutting s->p costs U(1)-U(0) > 0; p->t costs U(0)-U(1).
        rows_g = np.concatenate([np.full(int(pos.sum()), s, np.int64), nodes[~pos], *src_e])
        cols_g = np.concatenate([nodes[pos], np.full(int((~pos).sum()), t, np.int64), *dst_e])
        caps = np.concatenate([delta[pos], -delta[~pos], *cap_e])
        icaps = np.minimum(np.round(caps * _QUANT), 2**30).astype(np.int64)
        nz = icaps > 0
        graph = csr_matrix((icaps[nz], (rows_g[nz], cols_g[nz])), shape=(n + 2, n + 2))
        graph.sum_duplicates()
        flow = maximum_flow(graph, s, t, method="dinic").flow
        residual = (graph - flow).tocsr()
        residual.data = np.where(residual.data > 0, residual.data, 0)
        residual.eliminate_zeros()
        reach = breadth_first_order(residual, s, directed=True, return_predecessors=False)
        source_side = np.zeros(n + 2, bool)
        source_side[reach] = True
        take = ~source_side[:n]
        changed = take & (lab[rows, cols] != alpha)
        if changed.any():
            cr, cc2 = rows[changed], cols[changed]
            self.labels[cr, cc2] = alpha
            self.cost[cr, cc2] = alpha_cost[changed]
            self.cur_rgb[cr, cc2] = inp.rgb[cr - win.row_off, cc2 - win.col_off]
        return int(changed.sum())

    def _alpha_colour(self, alpha: int, rows: NDArray[np.int64], cols: NDArray[np.int64]) -> tuple[F32, BoolArray]:
        inp = self.inputs[alpha]
        r = rows - inp.window.row_off
        c = cols - inp.window.col_off
        inside = (r >= 0) & (r < inp.window.height) & (c >= 0) & (c < inp.window.width)
        out = np.zeros((rows.shape[0], 3), np.float32)
        ok = np.zeros(rows.shape[0], bool)
        ri, ci = r[inside], c[inside]
        good = inp.valid[ri, ci]
        idx = np.flatnonzero(inside)[good]
        out[idx] = inp.rgb[ri[good], ci[good]]
        ok[idx] = True
        return out, ok

    def _move_costs(
        self,
        alpha: int,
        lp: I32,
        lq: I32,
        p: tuple[NDArray[np.int64], NDArray[np.int64]],
        q: tuple[NDArray[np.int64], NDArray[np.int64]],
        geo: F32,
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Seam costs V(lp, lq), V(lp, alpha), V(alpha, lq) on edges p-q (per edge)."""
        cp, cq = self.cur_rgb[p], self.cur_rgb[q]
        okp, okq = lp >= 0, lq >= 0
        # I_lp(q) and I_lq(p): the current colours where the labels agree, looked up across seams.
        x, okx = cq.copy(), okq & okp
        y, oky = cp.copy(), okp & okq
        across = (lp != lq) & okp & okq
        if across.any():
            sel = np.flatnonzero(across)
            xs, okxs = self._colour_at(lp[sel], q[0][sel], q[1][sel])
            ys, okys = self._colour_at(lq[sel], p[0][sel], p[1][sel])
            x[sel], okx[sel] = xs, okxs
            y[sel], oky[sel] = ys, okys
        ap, okap = self._alpha_colour(alpha, *p)
        aq, okaq = self._alpha_colour(alpha, *q)
        d = self._colour_diff
        base = np.float32(self.w.seam / self.cell_m) * (np.float32(self.w.base) + geo)
        cw = np.float32(self.w.seam * self.w.colour / self.cell_m * 0.5)
        A = base + cw * (d(cp, okp, y, oky) + d(x, okx, cq, okq))
        B = base + cw * (d(cp, okp, ap, okap) + d(x, okx, aq, okaq))
        C = base + cw * (d(ap, okap, y, oky) + d(aq, okaq, cq, okq))
        A[(lp == lq) | ~okp | ~okq] = 0.0
        B[(lp == alpha) | ~okp] = 0.0
        C[(lq == alpha) | ~okq] = 0.0
        return A.astype(np.float64), B.astype(np.float64), C.astype(np.float64)

    def solve(self, sweeps: int = 2) -> I32:
        """Run expansion sweeps over every image until nothing changes or ``sweeps`` are done."""
        for sweep in range(sweeps):
            changed = 0
            for alpha in range(len(self.inputs)):
                changed += self.expand(alpha)
            logger.info("seam sweep %d: %d cells changed", sweep + 1, changed)
            if changed == 0:
                break
        return self.labels
