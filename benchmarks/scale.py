"""IVF-PQ and IVF-OPQ (exact re-ranking) at 10^6 vectors in RAM and 10^7 memory-mapped.

Vectors shaped like real ones: each synthetic vector is a real MMSA embedding of a MOSES
molecule (the 100,000 vectors.f32 of a built library, ``--real``; default the app
benchmark's ``~/.cache/mmsa/bench-app/indexes/moses-100000``) plus Gaussian noise drawn in
the real vectors' principal subspace (the top 64 components, scaled by their standard
deviations, plus 10 % isotropic noise), renormalised. The noise scale is set so a synthetic
vector's cosine to its seed equals the median cosine of a real vector to its nearest real
neighbour, so neighbourhoods are as tight as in the real library. Without ``--real`` the
seeded Gaussian mixture of benchmarks/ivfpq.py is used (recorded in the results).

For each ``--n`` and index type: build seconds (``ann.build_index``: training, adding,
recall tuning on ``--sample`` (1,000) leave-one-out library queries), the knobs it tuned,
recall@10 against exact search on ``--queries`` outside queries (exact top-10 streamed over
all vectors by :func:`exact_topk`), the same without re-ranking (the codes' own ranking), single-query p50/p99 latency on one thread (re-ranking from the
memory-mapped vectors.f32, as a library does), RAM per molecule (``ann.ram_bytes``: codes,
ids, centroids, codebooks, rotation), disk per molecule (index file + the float vectors)
and peak RSS. ``--mmap`` (automatic from 5,000,000) writes the vectors to
``~/.cache/mmsa/bench/scale-N.f32`` and builds from the file through ``os.pread`` in blocks,
so no copy of the vectors is held in RAM (file pages a memmap would map count in RSS).

    nice -n 5 .venv/bin/python benchmarks/scale.py --n 1000000
    nice -n 5 .venv/bin/python benchmarks/scale.py --n 10000000 --kinds ivfpq

Prints a table and merges its figures into benchmarks/results/scale.json (one entry per n
and index type).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "scale.json"
CACHE = Path.home() / ".cache" / "mmsa" / "bench"
REAL = Path.home() / ".cache" / "mmsa" / "bench-app" / "indexes" / "moses-100000"
MMAP_FROM = 5_000_000
BLOCK = 100_000


class PreadArray:
    """A read-only [n, d] float32 file read with os.pread (slices and row arrays), so a
    10 GB file is streamed without mapping it (mapped pages would count in RSS)."""

    def __init__(self, path: Path, n: int, d: int):
        self.fd = os.open(path, os.O_RDONLY)
        self.shape = (n, d)
        self.row = 4 * d
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def _read(self, start: int, stop: int) -> np.ndarray:
        buf = os.pread(self.fd, (stop - start) * self.row, start * self.row)
        return np.frombuffer(buf, np.float32).reshape(stop - start, self.shape[1])

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            assert step == 1
            return self._read(start, max(start, stop))
        rows = np.asarray(key)
        if rows.ndim == 0:
            return self._read(int(rows), int(rows) + 1)[0]
        out = np.empty((len(rows), self.shape[1]), np.float32)
        for j, r in enumerate(rows):
            out[j] = self._read(int(r), int(r) + 1)[0]
        return out


class Generator:
    """Real vectors + principal-subspace noise, renormalised (see the module docstring)."""

    def __init__(self, real: np.ndarray, components: int = 64):
        from mmsa.library import ann

        self.real = np.ascontiguousarray(real, np.float32)
        n, d = self.real.shape
        rng = np.random.default_rng(0)
        sample = self.real[rng.choice(n, size=min(n, 20_000), replace=False)]
        centred = sample - sample.mean(axis=0)
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        std = s[:components] / np.sqrt(len(sample) - 1)
        self.basis = (vt[:components] * std[:, None]).astype(np.float32)  # [c, d]
        self.iso = float(0.1 * np.sqrt(np.mean(std ** 2)))
        q = rng.choice(n, size=2000, replace=False)
        sc, rows = ann.exact_search(self.real, self.real[q], 2)
        nn1 = np.where(rows[:, 0] == q, sc[:, 1], sc[:, 0])
        self.target_cos = float(np.median(nn1))
        # noise of norm t around a unit vector: cos = 1 / sqrt(1 + t^2)
        t = np.sqrt(1.0 / self.target_cos ** 2 - 1.0)
        unit = np.sqrt(np.sum(self.basis ** 2) + d * self.iso ** 2)  # E|noise| at scale 1
        self.scale = float(t / unit)

    def sample(self, m: int, rng: np.random.Generator) -> np.ndarray:
        seed = self.real[rng.integers(0, len(self.real), m)]
        z = rng.standard_normal((m, len(self.basis)), dtype=np.float32)
        x = seed + self.scale * (z @ self.basis + self.iso * rng.standard_normal(
            seed.shape, dtype=np.float32))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    def describe(self) -> dict:
        return {"kind": "real MMSA MOSES embeddings + principal-subspace noise",
                "real_vectors": len(self.real), "components": len(self.basis),
                "target_seed_cosine": round(self.target_cos, 4)}


class Mixture:
    def sample(self, m: int, rng: np.random.Generator) -> np.ndarray:
        sys.path.insert(0, str(HERE))
        from ivfpq import mixture

        return mixture(m, int(rng.integers(1 << 30)))

    def describe(self) -> dict:
        return {"kind": "synthetic mixture of benchmarks/ivfpq.py (no real vectors found)"}


def make_vectors(gen, n: int, seed: int, path: Path | None, d: int):
    """[n, d] vectors in RAM, or written to ``path`` (reused when complete) and returned as
    a PreadArray."""
    rng = np.random.default_rng(seed)
    if path is None:
        out = np.empty((n, d), np.float32)
        for s in range(0, n, BLOCK):
            out[s:s + BLOCK] = gen.sample(min(BLOCK, n - s), rng)
        return out
    done = path.with_suffix(".done")
    if not (path.exists() and done.exists() and path.stat().st_size == 4 * n * d):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".partial")
        with open(tmp, "wb") as fh:
            for s in range(0, n, BLOCK):
                fh.write(gen.sample(min(BLOCK, n - s), rng).tobytes())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        done.write_text(json.dumps(gen.describe()))
    return PreadArray(path, n, d)


def exact_topk(vectors, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k rows of ``queries`` over ``vectors`` streamed in blocks: one GEMM a block
    (``ann.exact_search`` runs faiss.knn, which on a few hundred queries ran at ~3 GMAC/s
    here, a GEMM at ~25), candidates merged by ``ann.merge_topk`` (score, then row)."""
    from mmsa.library import ann

    m = len(queries)
    heap_d = np.full((m, k), -np.inf, np.float32)
    heap_i = np.full((m, k), -1, np.int64)
    for start in range(0, len(vectors), BLOCK):
        xb = np.ascontiguousarray(vectors[start:start + BLOCK], dtype=np.float32)
        sims = xb @ queries.T  # [b, m]
        kk = min(k, len(xb))
        idx = np.argpartition(-sims, kk - 1, axis=0)[:kk]
        d = np.take_along_axis(sims, idx, axis=0).T
        heap_d, heap_i = ann.merge_topk([heap_d, d], [heap_i, (idx + start).T], k)
    return heap_i


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main(argv: list[str] | None = None) -> int:
    import faiss

    from mmsa.library import ann

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--kinds", nargs="+", default=["ivfpq", "ivfopq"],
                   choices=["ivf", "ivfpq", "ivfopq"])
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--sample", type=int, default=1000,
                   help="leave-one-out library queries the build tunes recall on")
    p.add_argument("--real", default=str(REAL), help="a library folder with vectors.f32")
    p.add_argument("--mmap", action="store_true", help="vectors on disk (auto from 5M)")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    logging_setup()
    real = Path(args.real) / "vectors.f32"
    d = 256
    if real.is_file():
        m = json.loads((Path(args.real) / "manifest.json").read_text())
        d = int(m["embedding"]["dim"])
        gen = Generator(np.fromfile(real, np.float32).reshape(-1, d))
    else:
        gen = Mixture()
    mmap = args.mmap or args.n >= MMAP_FROM
    t = time.perf_counter()
    path = CACHE / f"scale-{args.n}.f32" if mmap else None
    library = make_vectors(gen, args.n, 1, path, d)
    gen_s = time.perf_counter() - t
    queries = gen.sample(args.queries, np.random.default_rng(2))
    t = time.perf_counter()
    exact = exact_topk(library, queries, 10)
    exact_s = time.perf_counter() - t
    print(f"n={args.n}: vectors {gen_s:.0f} s, exact search of {args.queries} queries "
          f"{exact_s:.0f} s; rss {peak_rss_mb()} MB", file=sys.stderr, flush=True)
    # the search reads the float vectors as a library does: memory-mapped
    search_vectors = (np.memmap(path, np.float32, "r", shape=(args.n, d)) if mmap
                      else library)
    out = Path(args.out)
    res = json.loads(out.read_text()) if out.exists() else {"runs": {}}
    for kind in args.kinds:
        t = time.perf_counter()
        index, info = ann.build_index(library, kind, seed=0, sample=args.sample)
        build_s = time.perf_counter() - t
        with tempfile.TemporaryDirectory(dir=CACHE if mmap else None) as tmp:
            ann.write_index(index, Path(tmp) / "i.faiss")
            disk = os.path.getsize(Path(tmp) / "i.faiss")
        threads = faiss.omp_get_max_threads()
        _, rows = ann.search(index, info, search_vectors, queries, 10)
        _, raw = index.search(queries, 10)  # the compressed codes' own ranking
        faiss.omp_set_num_threads(1)
        ms = []
        for q in queries:
            t = time.perf_counter()
            ann.search(index, info, search_vectors, q[None, :], 10)
            ms.append((time.perf_counter() - t) * 1e3)
        faiss.omp_set_num_threads(threads)
        entry = {
            "n": args.n, "dim": d, "kind": kind, "vectors_on_disk": mmap,
            "vectors": gen.describe(), "queries": args.queries,
            "params": info["params"], "type_built": info["type"],
            "build_seconds": round(build_s, 1),
            "build_recall_at_10": info["recall_at_10"],
            "build_recall_sample": info["recall_sample"],
            "recall_at_10_outside_queries": round(ann.recall_at_k(rows, exact, 10), 4),
            "recall_at_10_without_rerank": round(ann.recall_at_k(raw, exact, 10), 4),
            "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "ram_bytes_per_molecule": info["ram_bytes_per_molecule"],
            "index_disk_bytes_per_molecule": round(disk / args.n, 1),
            "disk_bytes_per_molecule": round(disk / args.n + 4 * d, 1),
            "peak_rss_mb": peak_rss_mb(),
            "exact_search_seconds": round(exact_s, 1),
            "threads": threads,
        }
        print(kind, entry, file=sys.stderr, flush=True)
        res["runs"][f"{args.n}-{kind}"] = entry
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
        del index
    print(f"{'n':>10} {'index':<7} {'recall@10':>9} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'RAM B/mol':>9} {'disk B/mol':>10} {'build s':>8}")
    for r in sorted(res["runs"].values(), key=lambda r: (r["n"], r["kind"])):
        print(f"{r['n']:>10} {r['kind']:<7} {r['recall_at_10_outside_queries']:>9.3f} "
              f"{r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} {r['ram_bytes_per_molecule']:>9.1f} "
              f"{r['disk_bytes_per_molecule']:>10.1f} {r['build_seconds']:>8.1f}")
    return 0


def logging_setup() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)


if __name__ == "__main__":
    raise SystemExit(main())
