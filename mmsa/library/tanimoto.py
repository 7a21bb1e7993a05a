"""Exact Tanimoto search with popcount-bounded pruning (threshold and top-k).

Fingerprints are packed bits (uint8 [n, B], :mod:`mmsa.chem.fingerprints`' layout). A
:class:`TanimotoIndex` holds them sorted by popcount (a stable sort, so rows with one
popcount keep their library order) with the boundaries of each popcount's block. Because
``|A & B| <= min(a, b)`` and ``|A | B| >= max(a, b)`` (a, b the popcounts), the Tanimoto of
a query with popcount ``a`` to any molecule with popcount ``b`` is at most
``min(a, b) / max(a, b)`` (Swamidass and Baldi, 2007). So

- a threshold search scans only the popcounts whose bound reaches the threshold (one
  contiguous window of the sorted array around the query's popcount);
- a top-k search scans popcount blocks in order of decreasing bound, outward from the
  query's popcount, and stops before the first block whose bound is below the current
  k-th best score (a block whose bound *equals* it is still scanned: a tie there may have a
  lower row).

Scores are ``inter / union`` in float64, as RDKit's ``BulkTanimotoSimilarity`` computes them
(two empty fingerprints: 0.0), so results are identical to it, not merely close; the bound is
computed by the same division, and correctly rounded division is monotone, so pruning never
drops a molecule whose float64 score would pass. Hits are ordered by score descending, then
row ascending.

The inner loops are numba kernels (AND + hardware popcount over uint64 words, no
temporaries), imported on first use; without numba the same windows are scanned with numpy.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from functools import lru_cache
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: rows per block when counting and gathering (bounds temporary memory on memmaps)
BLOCK = 65_536
#: file names of the on-disk cache of a TanimotoIndex (in a library's cache/ folder)
CACHE_FPS = "tanimoto-sorted.u8"
CACHE_ARRAYS = "tanimoto-order.npz"
CACHE_META = "tanimoto.json"
CACHE_VERSION = 1


@lru_cache(maxsize=1)
def _kernels():
    """The numba kernels, compiled (and cached on disk by numba) on first use; None
    without numba."""
    try:
        import numba
        from numba import types
        from numba.extending import intrinsic
    except ImportError:  # pragma: no cover - numba ships with umap-learn
        log.info("numba unavailable; Tanimoto search uses numpy")
        return None

    @intrinsic
    def popc(typingctx, x):
        sig = types.uint64(types.uint64)

        def codegen(context, builder, signature, args):
            return builder.ctpop(args[0])

        return sig, codegen

    @numba.njit(cache=True, nogil=True, boundscheck=False)
    def row_counts(fps):
        n, w = fps.shape
        out = np.empty(n, np.int32)
        for i in range(n):
            c = 0
            for j in range(w):
                c += popc(fps[i, j])
            out[i] = c
        return out

    @numba.njit(cache=True, nogil=True, boundscheck=False)
    def threshold_scan(fps, counts, q, qc, lo, hi, t, pos, scores):
        """Positions in [lo, hi) with score >= t written to pos/scores; returns how many."""
        w = fps.shape[1]
        m = 0
        for i in range(lo, hi):
            inter = 0
            for j in range(w):
                inter += popc(fps[i, j] & q[j])
            union = qc + counts[i] - inter
            s = inter / union if union > 0 else 0.0
            if s >= t:
                pos[m] = i
                scores[m] = s
                m += 1
        return m

    @numba.njit(cache=True, nogil=True, boundscheck=False)
    def _worse(s1, r1, s2, r2):
        return s1 < s2 or (s1 == s2 and r1 > r2)

    @numba.njit(cache=True, nogil=True, boundscheck=False)
    def _sift_down(hs, hr, size, i):
        while True:
            left = 2 * i + 1
            if left >= size:
                return
            c = left
            right = left + 1
            if right < size and _worse(hs[right], hr[right], hs[left], hr[left]):
                c = right
            if _worse(hs[c], hr[c], hs[i], hr[i]):
                hs[i], hs[c] = hs[c], hs[i]
                hr[i], hr[c] = hr[c], hr[i]
                i = c
            else:
                return

    @numba.njit(cache=True, nogil=True, boundscheck=False)
    def topk_scan(fps, counts, order, starts, q, qc, blocks, block_bounds, k, t, hs, hr):
        """Top-k (score >= t) over popcount blocks visited in order of decreasing bound.
        A min-heap of the k best (worst at the root) in hs/hr; returns (size, rows scanned)."""
        w = fps.shape[1]
        size = 0
        scanned = 0
        for b in range(len(blocks)):
            bound = block_bounds[b]
            if bound < t:
                break
            if size == k and bound < hs[0]:
                break
            c = blocks[b]
            for i in range(starts[c], starts[c + 1]):
                inter = 0
                for j in range(w):
                    inter += popc(fps[i, j] & q[j])
                union = qc + counts[i] - inter
                s = inter / union if union > 0 else 0.0
                if s < t:
                    continue
                r = order[i]
                if size < k:
                    # push, sift up
                    j2 = size
                    hs[j2] = s
                    hr[j2] = r
                    size += 1
                    while j2 > 0:
                        p = (j2 - 1) // 2
                        if _worse(hs[j2], hr[j2], hs[p], hr[p]):
                            hs[j2], hs[p] = hs[p], hs[j2]
                            hr[j2], hr[p] = hr[p], hr[j2]
                            j2 = p
                        else:
                            break
                elif _worse(hs[0], hr[0], s, r):
                    hs[0] = s
                    hr[0] = r
                    _sift_down(hs, hr, size, 0)
            scanned += starts[c + 1] - starts[c]
        return size, scanned

    return {"row_counts": row_counts, "threshold_scan": threshold_scan,
            "topk_scan": topk_scan}


def _as_u64(packed: np.ndarray) -> np.ndarray:
    packed = np.ascontiguousarray(packed)
    if packed.dtype != np.uint8 or packed.ndim != 2 or packed.shape[1] % 8:
        raise ValueError("packed fingerprints must be uint8 [n, B] with B a multiple of 8")
    return packed.view(np.uint64)


def bound(a: int, b: np.ndarray) -> np.ndarray:
    """Upper bound of the Tanimoto between popcounts ``a`` and ``b``: min/max (float64; 0
    where both are 0, as the Tanimoto of two empty fingerprints is 0)."""
    b = np.asarray(b, dtype=np.int64)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    return np.where(hi > 0, lo / np.maximum(hi, 1), 0.0)


class TanimotoIndex:
    """Packed fingerprints sorted by popcount, for exact pruned Tanimoto search.

    Attributes:
        fps     uint64 [n, B/8] the fingerprints in popcount order (a copy in RAM)
        counts  int32 [n]       their popcounts (non-decreasing)
        order   int64 [n]       library row of each sorted position
        starts  int64 [bits+2]  positions ``starts[c]:starts[c+1]`` hold popcount ``c``
    """

    def __init__(self, fps: np.ndarray, counts: np.ndarray, order: np.ndarray,
                 starts: np.ndarray):
        self.fps, self.counts, self.order, self.starts = fps, counts, order, starts
        self.n_bits = 64 * fps.shape[1]
        #: the popcounts present, for the top-k visiting order
        self._present = np.flatnonzero(starts[1:] > starts[:-1])
        #: rows whose fingerprint was compared in the last search (for tests/benchmarks)
        self.last_scanned = 0

    def __len__(self) -> int:
        return len(self.order)

    @classmethod
    def from_packed(cls, packed: np.ndarray, block: int = BLOCK) -> TanimotoIndex:
        """Sort ``packed`` uint8 [n, B] (any array, e.g. a memmap) by popcount, stably."""
        n = len(packed)
        width = packed.shape[1] if packed.ndim == 2 else 0
        if width % 8 or width == 0:
            raise ValueError("packed fingerprints must be uint8 [n, B] with B a multiple of 8")
        kern = _kernels()
        counts = np.empty(n, np.int32)
        for s in range(0, n, block):
            part = _as_u64(np.asarray(packed[s:s + block]))
            counts[s:s + len(part)] = (kern["row_counts"](part) if kern is not None else
                                       np.bitwise_count(part).sum(axis=1, dtype=np.int32))
        order = np.argsort(counts, kind="stable").astype(np.int64)
        fps = np.empty((n, width // 8), np.uint64)
        for s in range(0, n, block):
            idx = order[s:s + block]
            # gather in row order (sequential reads of a memmap), then place
            srt = np.argsort(idx, kind="stable")
            rows = np.asarray(packed[idx[srt]])
            fps[s + srt] = _as_u64(rows)
        sorted_counts = np.ascontiguousarray(counts[order])
        starts = np.zeros(8 * width + 2, np.int64)
        np.cumsum(np.bincount(sorted_counts, minlength=8 * width + 1), out=starts[1:])
        return cls(fps, sorted_counts, order, starts)

    def _query(self, query: np.ndarray) -> tuple[np.ndarray, int]:
        q = np.ascontiguousarray(query, dtype=np.uint8).reshape(1, -1)
        if q.shape[1] * 8 != self.n_bits:
            raise ValueError(f"query has {q.shape[1] * 8} bits, the index {self.n_bits}")
        q = q.view(np.uint64)[0]
        return q, int(np.bitwise_count(q).sum())

    def threshold(self, query: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """Every row with Tanimoto >= ``threshold``: (rows int64, scores float64), by score
        descending then row."""
        q, qc = self._query(query)
        t = float(threshold)
        ok = np.flatnonzero(bound(qc, np.arange(self.n_bits + 1)) >= t)
        if len(ok) == 0 or len(self) == 0:
            self.last_scanned = 0
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        lo, hi = int(self.starts[ok[0]]), int(self.starts[ok[-1] + 1])
        self.last_scanned = hi - lo
        kern = _kernels()
        if kern is not None:
            pos = np.empty(hi - lo, np.int64)
            scores = np.empty(hi - lo, np.float64)
            m = kern["threshold_scan"](self.fps, self.counts, q, qc, lo, hi, t, pos, scores)
            pos, scores = pos[:m], scores[:m]
        else:
            scores = self._numpy_scores(q, qc, lo, hi)
            pos = np.flatnonzero(scores >= t) + lo
            scores = scores[pos - lo]
        rows = self.order[pos]
        o = np.lexsort((rows, -scores))
        return rows[o], scores[o]

    def top_k(self, query: np.ndarray, k: int,
              threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best rows (score >= ``threshold`` when given): (rows int64, scores
        float64), by score descending then row; fewer than k when the library (or the
        threshold) allows fewer."""
        q, qc = self._query(query)
        k = int(k)
        if k < 1:
            raise ValueError("k must be >= 1")
        t = -np.inf if threshold is None else float(threshold)
        present = self._present
        bounds = bound(qc, present)
        # decreasing bound; among equal bounds the nearer popcount first
        visit = np.lexsort((np.abs(present - qc), -bounds))
        blocks = np.ascontiguousarray(present[visit], dtype=np.int64)
        block_bounds = np.ascontiguousarray(bounds[visit])
        kk = min(k, len(self))
        kern = _kernels()
        if kern is not None:
            hs = np.empty(max(kk, 1), np.float64)
            hr = np.empty(max(kk, 1), np.int64)
            size, scanned = kern["topk_scan"](self.fps, self.counts, self.order, self.starts,
                                              q, qc, blocks, block_bounds, kk, t, hs, hr)
            rows, scores = hr[:size], hs[:size]
        else:
            rows, scores, scanned = self._numpy_topk(q, qc, blocks, block_bounds, kk, t)
        self.last_scanned = int(scanned)
        o = np.lexsort((rows, -scores))
        return rows[o][:k], scores[o][:k]

    def search(self, query: np.ndarray, k: int | None,
               threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`top_k` when ``k`` is given, else :meth:`threshold` (None: every row)."""
        if k is None:
            return self.threshold(query, -np.inf if threshold is None else threshold)
        return self.top_k(query, k, threshold)

    # on-disk cache ----------------------------------------------------------------------
    def save(self, folder: str | os.PathLike, source_sha256: str) -> None:
        """Write the index into ``folder`` (a library's cache/), atomically: the data files
        under temporary names, fsynced, renamed, then the JSON that names ``source_sha256``
        (the morgan.u8 it was built from) and both files' sha256, renamed last. A crash
        leaves either no cache or a complete one; content is deterministic, so two writers
        racing write the same bytes."""
        from mmsa.hashing import sha256_file

        folder = Path(folder)
        tag = secrets.token_hex(4)
        tmp_fps = folder / f".{CACHE_FPS}.tmp-{tag}"
        tmp_arr = folder / f".{CACHE_ARRAYS}.tmp-{tag}"
        tmp_meta = folder / f".{CACHE_META}.tmp-{tag}"
        try:
            for path, write in (
                (tmp_fps, lambda fh: fh.write(memoryview(self.fps.view(np.uint8)))),
                (tmp_arr, lambda fh: np.savez(fh, order=self.order, counts=self.counts,
                                               starts=self.starts)),
            ):
                with open(path, "wb") as fh:
                    write(fh)
                    fh.flush()
                    os.fsync(fh.fileno())
            meta = {"version": CACHE_VERSION, "source_sha256": source_sha256,
                    "n": len(self), "bytes_per_row": int(self.fps.shape[1] * 8),
                    CACHE_FPS: sha256_file(tmp_fps), CACHE_ARRAYS: sha256_file(tmp_arr)}
            os.replace(tmp_fps, folder / CACHE_FPS)
            os.replace(tmp_arr, folder / CACHE_ARRAYS)
            with open(tmp_meta, "w") as fh:
                json.dump(meta, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp_meta, folder / CACHE_META)
        finally:
            for path in (tmp_fps, tmp_arr, tmp_meta):
                path.unlink(missing_ok=True)

    @classmethod
    def load(cls, folder: str | os.PathLike, source_sha256: str, n: int,
             bytes_per_row: int) -> TanimotoIndex | None:
        """The index saved in ``folder`` for ``source_sha256``, or None when there is none,
        it was built from other fingerprints, or any file fails its sha256 or shape check
        (then it is simply rebuilt: never a silently wrong answer). The sorted fingerprints
        are memory-mapped, not copied."""
        from mmsa.hashing import sha256_file

        folder = Path(folder)
        try:
            meta = json.loads((folder / CACHE_META).read_text())
            if (meta.get("version") != CACHE_VERSION or meta.get("source_sha256") != source_sha256
                    or meta.get("n") != n or meta.get("bytes_per_row") != bytes_per_row):
                return None
            for name in (CACHE_FPS, CACHE_ARRAYS):
                if sha256_file(folder / name) != meta.get(name):
                    log.warning("Tanimoto cache %s is damaged; rebuilding it", folder / name)
                    return None
            with np.load(folder / CACHE_ARRAYS, allow_pickle=False) as z:
                order, counts, starts = z["order"], z["counts"], z["starts"]
            width = bytes_per_row // 8
            if n == 0:
                fps = np.zeros((0, width), np.uint64)
            else:
                # copy-on-write: writable type for the kernels (one compiled variant), never written
                fps = np.asarray(np.memmap(folder / CACHE_FPS, dtype=np.uint64, mode="c",
                                           shape=(n, width)))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        if (order.shape != (n,) or counts.shape != (n,) or starts.shape != (8 * bytes_per_row + 2,)
                or starts[-1] != n):
            return None
        return cls(fps, counts, order, starts)

    # numpy fallback ----------------------------------------------------------------------
    def _numpy_scores(self, q, qc, lo, hi) -> np.ndarray:
        out = np.empty(hi - lo, np.float64)
        for s in range(lo, hi, BLOCK):
            e = min(hi, s + BLOCK)
            inter = np.bitwise_count(self.fps[s:e] & q).sum(axis=1, dtype=np.int64)
            union = qc + self.counts[s:e].astype(np.int64) - inter
            out[s - lo:e - lo] = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        return out

    def _numpy_topk(self, q, qc, blocks, block_bounds, k, t):
        rows = np.zeros(0, np.int64)
        scores = np.zeros(0, np.float64)
        scanned = 0
        for c, b in zip(blocks, block_bounds):
            if b < t or (len(rows) == k and b < scores[-1]):
                break
            lo, hi = int(self.starts[c]), int(self.starts[c + 1])
            s = self._numpy_scores(q, qc, lo, hi)
            keep = s >= t
            rows = np.concatenate([rows, self.order[lo:hi][keep]])
            scores = np.concatenate([scores, s[keep]])
            o = np.lexsort((rows, -scores))[:k]
            rows, scores = rows[o], scores[o]
            scanned += hi - lo
        return rows, scores, scanned
