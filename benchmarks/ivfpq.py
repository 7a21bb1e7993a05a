"""IVF-PQ with exact re-ranking against IVF-flat on synthetic 256-d vectors.

The vectors are a seeded mixture of anisotropic Gaussians (64 components, each spread over a
24-dim subspace, L2-normalised; the generator of tests/library/test_ann_ivfpq.py), not real
embeddings. For ``--n`` library vectors (default 200,000) and 100 outside queries from the
same mixture: build seconds, the knobs the build tuned, recall@10 against exact search,
single-query p50/p99 latency (one thread), RAM per molecule (``ann.ram_bytes``) and disk per
molecule of the index file (every library also stores vectors.f32, 4 d bytes a molecule,
which IVF-PQ re-ranks from). Writes benchmarks/results/ivfpq.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "ivfpq.json"
D = 256


def mixture(n: int, seed: int, d: int = D, comps: int = 64, rank: int = 24) -> np.ndarray:
    rng = np.random.default_rng(0)  # the mixture itself is fixed; seed picks the points
    centers = rng.standard_normal((comps, d))
    bases = 0.35 * rng.standard_normal((comps, rank, d))
    rng = np.random.default_rng(seed)
    out = np.empty((n, d), np.float32)
    for s in range(0, n, 50_000):
        m = min(50_000, n - s)
        comp = rng.integers(0, comps, m)
        x = centers[comp] + np.einsum("nr,nrd->nd", rng.standard_normal((m, rank)),
                                      bases[comp]) + 0.05 * rng.standard_normal((m, d))
        out[s:s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def main(argv: list[str] | None = None) -> int:
    import faiss

    from mmsa.library import ann

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    library = mixture(args.n, 1)
    queries = mixture(args.queries, 2)
    _, exact = ann.exact_search(library, queries, 10)
    res: dict = {"n": args.n, "dim": D, "queries": args.queries,
                 "vectors": "synthetic mixture (64 anisotropic Gaussians), L2-normalised"}
    faiss.omp_set_num_threads(1)
    for kind in ("ivf", "ivfpq"):
        t = time.perf_counter()
        index, info = ann.build_index(library, kind, seed=0)
        build_s = time.perf_counter() - t
        with tempfile.TemporaryDirectory() as tmp:
            ann.write_index(index, Path(tmp) / "i.faiss")
            disk = os.path.getsize(Path(tmp) / "i.faiss")
        _, rows = ann.search(index, info, library, queries, 10)
        ms = []
        for q in queries:
            t = time.perf_counter()
            ann.search(index, info, library, q[None, :], 10)
            ms.append((time.perf_counter() - t) * 1e3)
        res[kind] = {
            "params": info["params"], "build_seconds": round(build_s, 1),
            "build_recall_at_10": info["recall_at_10"],
            "recall_at_10_outside_queries": round(ann.recall_at_k(rows, exact, 10), 4),
            "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "ram_bytes_per_molecule": info["ram_bytes_per_molecule"],
            "index_disk_bytes_per_molecule": round(disk / args.n, 1),
        }
        print(kind, res[kind], file=sys.stderr, flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(f"{'index':<6} {'recall@10':>9} {'p50 ms':>7} {'p99 ms':>7} {'RAM B/mol':>9} "
          f"{'index disk B/mol':>16} {'build s':>7}")
    for kind in ("ivf", "ivfpq"):
        r = res[kind]
        disk = r["index_disk_bytes_per_molecule"]
        print(f"{kind:<6} {r['recall_at_10_outside_queries']:>9.3f} {r['p50_ms']:>7.2f} "
              f"{r['p99_ms']:>7.2f} {r['ram_bytes_per_molecule']:>9.1f} {disk:>16.1f} "
              f"{r['build_seconds']:>7.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
