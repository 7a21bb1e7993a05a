"""Reading a sharded library's vectors as one [n, dim] array.

A sharded library (docs/architecture.md, "Sharded libraries") keeps each shard's vectors in
its own ``shard-NNNN/vectors.f32``; :class:`ShardedVectors` gives the readers of
``Library.vectors`` (neighbours, re-scoring, maps) one row space over them without copying:
global row = shard start + local row.
"""

from __future__ import annotations

import numpy as np


class ShardedVectors:
    """Read-only float32 [n, dim] view over the shards' arrays (e.g. memmaps), in order.

    Supports ``len``, ``shape``, ``dtype``, ``ndim``, indexing by an int, a slice (step 1)
    or an integer array (rows in any order, repeats allowed: a new array, rows gathered
    from their shards), and ``np.asarray`` (concatenates every shard: a copy of n * dim
    floats)."""

    def __init__(self, parts: list[np.ndarray], dim: int):
        self.parts = parts
        self.starts = np.cumsum([0] + [len(p) for p in parts]).astype(np.int64)
        self.shape = (int(self.starts[-1]), int(dim))
        self.dtype = np.dtype(np.float32)
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        out = np.concatenate([np.asarray(p, dtype=np.float32) for p in self.parts]) \
            if self.parts else np.zeros(self.shape, np.float32)
        return out if dtype is None else out.astype(dtype)

    def _locate(self, rows: np.ndarray) -> np.ndarray:
        n = self.shape[0]
        if rows.size and (rows.min() < -n or rows.max() >= n):
            raise IndexError(f"row out of range for {n} vectors")
        rows = np.where(rows < 0, rows + n, rows)
        return np.searchsorted(self.starts, rows, side="right") - 1

    def __getitem__(self, key):
        if isinstance(key, tuple):  # rows first, then columns of those rows
            rows = self[key[0]]
            return rows[(slice(None), *key[1:])] if rows.ndim == 2 else rows[key[1:]]
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            if step != 1:
                return self[np.arange(start, stop, step)]
            if stop <= start:
                return np.zeros((0, self.shape[1]), np.float32)
            out = []
            for j, (a, b) in enumerate(zip(self.starts[:-1], self.starts[1:])):
                lo, hi = max(start, a), min(stop, b)
                if lo < hi:
                    out.append(np.asarray(self.parts[j][lo - a:hi - a], dtype=np.float32))
            return out[0] if len(out) == 1 else np.concatenate(out)
        rows = np.asarray(key)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        if rows.ndim == 0:
            r = int(rows)
            j = int(self._locate(np.array([r]))[0])
            r = r + self.shape[0] if r < 0 else r
            return np.asarray(self.parts[j][r - self.starts[j]], dtype=np.float32)
        rows = rows.astype(np.int64).ravel()
        shard = self._locate(rows)
        rows = np.where(rows < 0, rows + self.shape[0], rows)
        out = np.empty((len(rows), self.shape[1]), np.float32)
        for j in np.unique(shard):
            pick = np.flatnonzero(shard == j)
            local = rows[pick] - self.starts[j]
            order = np.argsort(local, kind="stable")  # sequential reads of the memmap
            out[pick[order]] = self.parts[j][local[order]]
        return out
