"""The heavy passes of DBSCAN++ and of the k-distance knee on torch tensors of one device: a GPU worker's CUDA
device, the CPU elsewhere (tasks.cluster.density describes the methods; each pass takes the rows themselves).

Distances come from blocks of rows x columns: one float32 matrix product of centred rows gives ||a||^2 + ||b||^2
- 2ab (matmul precision pinned to IEEE float32); a pair within the product's rounding bound of a radius is decided
again in float64 on the rows' host copy, so every within-radius decision is the float64 one on any device. Rows are
put in a seeded spatial order (nearest of a few seeded pivot rows) and a block pair whose bounding balls lie
farther apart than the largest radius is skipped. Nearest rows are ranked by their float32 distances."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from tasks.cluster.density import KTH_SPARE, candidate_sq, merge
from tasks.cluster.distances import EPS32, exact_sq, rounding_slack

CHUNK_ROWS = 1024  # rows of a block side on the CPU
PIVOTS = 64  # seeded pivot rows whose nearest orders the rows in space
PREP_ROWS = 65_536  # rows prepared (float64 on the host) at a time
CUDA_SHARE = 0.25  # share of a GPU's free memory that one block may take
CUDA_BLOCK_BYTES = 24  # per element of a block on a GPU: distances, bins, their per-column keys, masks


def engine_device(gpu: bool) -> torch.device:
    """CUDA (the worker's current GPU) where asked and available, else the CPU."""
    return torch.device("cuda") if gpu and torch.cuda.is_available() else torch.device("cpu")


def block_rows(device: torch.device, chunk_rows: int = CHUNK_ROWS) -> int:
    """Rows of a block side: `chunk_rows` on the CPU (its memory is in the caller's budget); on a GPU, the square
    block that fits CUDA_SHARE of the device's free memory."""
    if device.type != "cuda":
        return chunk_rows
    free, _ = torch.cuda.mem_get_info(device)
    return max(chunk_rows, int((CUDA_SHARE * free / CUDA_BLOCK_BYTES) ** 0.5) // 256 * 256)


@contextmanager
def on_device(threads: int = 1) -> Iterator[None]:
    """Float32 products in IEEE float32 (no TF32 or bf16 shortcuts: the rounding bound assumes float32) and, on
    the CPU, `threads` intra-op threads; both restored afterwards."""
    precision, before = torch.get_float32_matmul_precision(), torch.get_num_threads()
    torch.set_float32_matmul_precision("highest")
    torch.set_num_threads(max(1, threads))
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(precision)
        torch.set_num_threads(before)


class Points:
    """X in host memory (for float64 re-checks) and on the device as float32 [x, |x|^2, 1] about `origin` (X's
    mean where None; the row side of a product; `columns` gives [-2x, 1, |x|^2], the column side), with float64
    squared norms."""

    def __init__(self, X: np.ndarray, device: torch.device, origin: np.ndarray | None = None) -> None:
        self.host, self.device = X, device
        n, d = X.shape
        self.origin = np.mean(X, axis=0, dtype=np.float64) if origin is None else origin
        self.aug = torch.empty((n, d + 2), dtype=torch.float32, device=device)
        self.sq = np.empty(n)
        for start in range(0, n, PREP_ROWS):
            self.aug[start:start + PREP_ROWS], self.sq[start:start + PREP_ROWS] = self.rows_of(
                X[start:start + PREP_ROWS])

    @property
    def every(self) -> np.ndarray:
        return np.arange(len(self.host))

    def rows_of(self, Q: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """Rows of any array prepared like X's (row side), with their float64 squared norms."""
        x = Q.astype(np.float64) - self.origin
        sq = np.einsum("ij,ij->i", x, x)
        part = np.empty((len(x), x.shape[1] + 2), np.float32)
        part[:, :-2], part[:, -2], part[:, -1] = x, sq, 1
        return torch.from_numpy(part).to(self.device), sq

    def columns(self, rows: np.ndarray) -> torch.Tensor:
        a = self.aug[self.index(rows)]
        d = a.shape[1] - 2
        return torch.cat([-2 * a[:, :d], a[:, d + 1:], a[:, d:d + 1]], dim=1)

    def index(self, rows: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(rows, dtype=np.int64)).to(self.device)

    def order(self, rows: np.ndarray, seed: int) -> np.ndarray:
        """Positions of `rows` in a seeded spatial order: grouped by their nearest of PIVOTS seeded ones, the
        pivots in a chain that steps to the nearest pivot not yet taken."""
        if len(rows) <= PIVOTS:
            return np.arange(len(rows))
        chosen = rows[np.random.default_rng(seed).choice(len(rows), PIVOTS, replace=False)]
        pivots = self.columns(chosen)
        between = (self.aug[self.index(chosen)] @ pivots.T).cpu().numpy()
        chain, rank = [0], np.empty(PIVOTS, np.int64)
        between[:, 0] = np.inf
        for _ in range(PIVOTS - 1):
            chain.append(int(between[chain[-1]].argmin()))
            between[:, chain[-1]] = np.inf
        rank[chain] = np.arange(PIVOTS)
        cell = torch.cat([(self.aug[self.index(rows[s:s + PREP_ROWS])] @ pivots.T).argmin(dim=1)
                          for s in range(0, len(rows), PREP_ROWS)])
        return np.argsort(rank[cell.cpu().numpy()], kind="stable")


class Side:
    """Rows of X (host indices, in that order) cut into blocks, on the row or the column side of products, with
    each block's centre, radius and largest squared norm (for pruning and the rounding bound)."""

    def __init__(self, points: Points, rows: np.ndarray, size: int, columns: bool) -> None:
        self.points, self.rows, self.size = points, rows, size
        self.index = points.index(rows)
        self.t = points.columns(rows) if columns else points.aug[self.index]
        self.starts = list(range(0, len(rows), size))
        x = points.aug[self.index, :-2].double()
        centres = [x[s:s + size].mean(dim=0) for s in self.starts]
        self.centres = torch.stack(centres) if centres else x[:0]
        self.radii = np.array([float(torch.linalg.vector_norm(x[s:s + size] - c, dim=1).max())
                               for s, c in zip(self.starts, centres)])
        self.sq_max = np.array([points.sq[rows[s:s + size]].max() for s in self.starts])

    def block(self, i: int) -> tuple[int, torch.Tensor]:
        s = self.starts[i]
        return s, self.t[s:s + self.size]


class Pairs:
    """Block pairs of two sides and their float32 bounds: a distance at most lo[k] is surely within radius k
    (squared radii r2, increasing), above hi[k] surely beyond, in between decided in float64."""

    def __init__(self, r2: np.ndarray, a: Side, b: Side, upper: bool = False) -> None:
        self.r2, self.a, self.b, self.upper = r2, a, b, upper
        self.d = a.t.shape[1] - 2
        scale = np.sqrt(a.sq_max.max(initial=0)) + np.sqrt(b.sq_max.max(initial=0))
        # beyond `reach` no pair is within the largest radius, nor ranks below a pair that is
        reach = np.sqrt(r2[-1] + 3 * self._tol(a.sq_max.max(initial=0), b.sq_max.max(initial=0))[-1]) + 1e-4 * scale
        gap = torch.cdist(a.centres, b.centres).cpu().numpy() - a.radii[:, None] - b.radii[None, :]
        self.near = gap <= reach

    def _tol(self, sq_a: float, sq_b: float) -> np.ndarray:
        return rounding_slack(sq_a + sq_b, self.d) + 2 * EPS32 * self.r2

    def __iter__(self) -> Iterator[tuple[int, int, torch.Tensor, np.ndarray, np.ndarray]]:
        """(a's first row, b's first row, float32 squared distances, lo, hi) of each block pair within reach."""
        for i, j in zip(*np.nonzero(self.near)):
            if self.upper and j < i:
                continue
            a0, a = self.a.block(i)
            b0, b = self.b.block(j)
            tol = self._tol(self.a.sq_max[i], self.b.sq_max[j])
            yield a0, b0, a @ b.T, (self.r2 - tol).astype(np.float32), (self.r2 + tol).astype(np.float32)

    def settle(self, a0: int, b0: int, i: torch.Tensor, j: torch.Tensor, v: torch.Tensor, lo: np.ndarray,
               hi: np.ndarray, first: int = 0) -> np.ndarray:
        """(pairs, radii from `first`) bool: whether pair (a0 + i, b0 + j) of float32 distance v lies within each
        radius, in float64 where v is within the bounds' band."""
        v = v.cpu().numpy()[:, None]
        r2 = self.r2[first:first + len(lo)]
        within = v <= lo[None, :]
        unsure = np.flatnonzero(((v > lo[None, :]) & (v <= hi[None, :])).any(axis=1))
        if unsure.size:
            ia, jb = i.cpu().numpy()[unsure], j.cpu().numpy()[unsure]
            exact = exact_sq(self.a.points.host[self.a.rows[a0 + ia]], self.b.points.host[self.b.rows[b0 + jb]])
            within[unsure] = exact[:, None] <= r2[None, :]
        return within


def _track(best: torch.Tensor, closest: torch.Tensor, rows: torch.Tensor, d2: torch.Tensor, b0: int) -> None:
    """Running nearest column (float32 ranking, the first of equals) of the block's rows."""
    v, k = d2.min(dim=1)
    closer = v < best[rows]
    best[rows] = torch.where(closer, v, best[rows])
    closest[rows] = torch.where(closer, k + b0, closest[rows])


def _unsorted(r2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(r2, kind="stable")
    return order, r2[order]


def counts_and_nearest(points: Points, queries: Points, radii: Sequence[float], size: int,
                       nearest: bool = False, seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """(len(queries), len(radii)) int64 counts of X's rows (`points`) within each radius of each query row and,
    with `nearest`, each row's nearest query (a position in `queries`; for a row with no query within the largest
    radius, any query). One pass over blocks of rows x queries serves every radius."""
    order, r2 = _unsorted(np.square(np.asarray(radii, np.float64)))
    placed, m = queries.order(queries.every, seed), len(queries.host)
    data = Side(points, points.order(points.every, seed), size, columns=False)
    pairs = Pairs(r2, data, Side(queries, placed, size, columns=True))
    sure = torch.zeros((m, len(r2)), dtype=torch.int64, device=points.device)
    counts = np.zeros((m, len(r2)), np.int64)
    best = torch.full((len(points.host),), float("inf"), device=points.device)
    closest = torch.zeros(len(points.host), dtype=torch.int64, device=points.device)
    for a0, b0, d2, lo, hi in pairs:
        for k in range(len(r2)):
            inside = (d2 <= float(lo[k])).sum(dim=0)
            sure[b0:b0 + d2.shape[1], k] += inside
            band = torch.nonzero((d2 <= float(hi[k])).sum(dim=0) > inside).view(-1)
            if len(band):  # the columns with a distance that float32 cannot decide for this radius
                part = d2[:, band]
                i, j = torch.nonzero((part > float(lo[k])) & (part <= float(hi[k])), as_tuple=True)
                j = band[j]
                within = pairs.settle(a0, b0, i, j, d2[i, j], lo[k:k + 1], hi[k:k + 1], k)
                np.add.at(counts[:, k], b0 + j.cpu().numpy(), within[:, 0])
        if nearest:
            _track(best, closest, data.index[a0:a0 + d2.shape[0]], d2, b0)
    counts += sure.cpu().numpy()
    result = np.empty_like(counts)
    result[np.ix_(placed, order)] = counts
    return result, placed[closest.cpu().numpy()] if nearest else None


def nearest_within(rows: Points, targets: Points, eps: float, size: int, seed: int = 0) -> np.ndarray:
    """Each row's nearest target (a position in `targets`, float32 ranking) where one lies within eps; any target
    for a row with none within eps."""
    placed, n = targets.order(targets.every, seed), len(rows.host)
    pairs = Pairs(np.array([eps * eps]), Side(rows, rows.every, size, columns=False),
                  Side(targets, placed, size, columns=True))
    best = torch.full((n,), float("inf"), device=rows.device)
    closest = torch.zeros(n, dtype=torch.int64, device=rows.device)
    positions = torch.arange(n, device=rows.device)
    for a0, b0, d2, _, _ in pairs:
        _track(best, closest, positions[a0:a0 + d2.shape[0]], d2, b0)
    return placed[closest.cpu().numpy()]


def core_components(points: Points, eps: float, size: int, seed: int = 0) -> np.ndarray:
    """Connected-component label of each core (the rows of `points`), cores within eps (float64) linked: links
    between different current components are held for at most size^2 pairs, then merged."""
    placed = points.order(points.every, seed)
    pairs = Pairs(np.array([eps * eps]), Side(points, placed, size, columns=False),
                  Side(points, placed, size, columns=True), upper=True)
    comp, pending, held = np.arange(len(placed)), [], 0
    for a0, b0, d2, lo, hi in pairs:
        i, j = torch.nonzero(d2 <= float(hi[0]), as_tuple=True)
        keep = pairs.settle(a0, b0, i, j, d2[i, j], lo, hi)[:, 0]
        ca, cb = comp[a0 + i.cpu().numpy()[keep]], comp[b0 + j.cpu().numpy()[keep]]
        link = ca != cb
        pending.append((ca[link], cb[link]))
        held += int(link.sum())
        if held >= size * size:
            comp, pending, held = merge(comp, pending), [], 0
    comp = merge(comp, pending) if pending else comp
    out = np.empty_like(comp)
    out[placed] = comp
    return out


def kth_candidates(points: Points, queries: np.ndarray, k: int, size: int) -> np.ndarray:
    """tasks.cluster.density.kth_candidates against X's rows (`points`), on its device, block by block."""
    keep = min(k + KTH_SPARE, len(points.host))
    data = Side(points, points.every, size, columns=True)
    idx = np.empty((len(queries), keep), np.int64)
    for start in range(0, len(queries), size):
        q, _ = points.rows_of(queries[start:start + size])
        vals = torch.full((len(q), keep), float("inf"), device=points.device)
        found = torch.zeros((len(q), keep), dtype=torch.int64, device=points.device)
        for b0 in data.starts:
            _, b = data.block(b0 // size)
            columns = torch.arange(b0, b0 + len(b), device=points.device).expand(len(q), -1)
            vals, top = torch.cat([vals, q @ b.T], dim=1).topk(keep, dim=1, largest=False)
            found = torch.cat([found, columns], dim=1).gather(1, top)
        idx[start:start + len(q)] = found.cpu().numpy()
    return candidate_sq(queries, points.host, idx, size)


class TorchPasses:
    """DBSCAN++'s passes (tasks.cluster.density.DensityPasses) on `device`, X prepared there once; cells are
    labelled one after another."""

    threads = 1

    def __init__(self, device: torch.device, size: int | None = None, seed: int = 0) -> None:
        self.device, self.size, self.seed = device, size or block_rows(device), seed
        self._points: Points | None = None

    def points(self, X: np.ndarray) -> Points:
        if self._points is None or self._points.host is not X:
            self._points = Points(X, self.device)
        return self._points

    def counts(self, queries, X, radii, nearest=False):
        data = self.points(X)
        return counts_and_nearest(data, Points(queries, self.device, data.origin), radii, self.size, nearest, self.seed)

    def components(self, S, cores, radii):
        return [core_components(Points(S[core], self.device), eps, self.size, self.seed)
                for core, eps in zip(cores, radii)]

    def nearest(self, rows, targets, eps):
        aim = Points(targets, self.device)
        return nearest_within(Points(rows, self.device, aim.origin), aim, eps, self.size, self.seed)

    def kth_candidates(self, queries, X, k):
        return kth_candidates(self.points(X), queries, k, self.size)
