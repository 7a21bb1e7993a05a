"""Tanimoto search latency: popcount-pruned index vs full numpy scan, RDKit Bulk and FPSim2.

Builds Morgan r=2 2048-bit fingerprints of the first N MOSES molecules (mmsa.data "moses";
N=200,000 by default, ``--n``) and times, on ``--queries`` outside molecules (ChEMBL,
mmsa.data "chembl-sample", standardised), one query at a time on one thread:

- ``pruned_top10``      mmsa.library.tanimoto.TanimotoIndex.top_k(k=10)
- ``pruned_thr07``      TanimotoIndex.threshold(0.7)
- ``numpy_full_top10``  the previous Tanimoto mode: search.tanimoto_all over every row
                        (stored popcounts) + search.top_k (the baseline of the ratios)
- ``rdkit_bulk_top10``  DataStructs.BulkTanimotoSimilarity + argpartition
- ``fpsim2_top10``      FPSim2Engine.top_k(k=10, threshold=0), ``fpsim2_thr07`` similarity(0.7)

and the top-10 rows again (``*_moses_queries``) on MOSES-like queries: the ``--queries`` MOSES
rows after the first N (not in the library). Methods are timed query by query in turn.

Queries go in as prebuilt fingerprints (packed bits / RDKit bit vectors), so parsing is not
timed. Every pruned result is checked against RDKit Bulk (same rows, same float64 scores).
Prints a table and writes benchmarks/results/tanimoto.json (ratios against the numpy scan of
the same run). Run niced on a shared machine: figures from a loaded machine are noisy.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "tanimoto.json"


def _percentiles(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 3),
            "p99_ms": round(float(np.percentile(a, 99)), 3),
            "mean_ms": round(float(a.mean()), 3), "n": len(a)}


def _moses_smiles(n: int) -> list[str]:
    from mmsa.data import fetch

    out = []
    with open(fetch("moses"), newline="") as fh:
        for r in csv.DictReader(fh):
            out.append(r["smiles"])
            if len(out) == n:
                break
    return out


def _packed(bv) -> np.ndarray:
    """RDKit bit vector -> np.packbits layout (mmsa.chem.fingerprints' big-endian order)."""
    from rdkit import DataStructs

    from mmsa.chem.fingerprints import _REVERSE_BITS

    return _REVERSE_BITS[np.frombuffer(bytes.fromhex(DataStructs.BitVectToFPSText(bv)),
                                       dtype=np.uint8)]


def _fingerprints(smiles: list[str]) -> tuple[list, np.ndarray]:
    from rdkit import Chem, RDLogger

    from mmsa.library.embed import morgan_generator

    RDLogger.DisableLog("rdApp.*")
    try:
        gen = morgan_generator()
        bvs = []
        for s in smiles:
            mol = Chem.MolFromSmiles(s)
            bvs.append(gen.GetFingerprint(mol))
    finally:
        RDLogger.EnableLog("rdApp.*")
    return bvs, np.stack([_packed(b) for b in bvs])


def _fpsim2_db(smiles: list[str], cache: Path) -> Path:
    from FPSim2.io import create_db_file

    h5 = cache / f"fpsim2-moses-first-{len(smiles)}.h5"
    if not h5.exists():
        t = time.perf_counter()
        tmp = h5.with_suffix(".tmp.h5")
        create_db_file(((s, i) for i, s in enumerate(smiles)), str(tmp), mol_format="smiles",
                       fp_type="Morgan", fp_params={"radius": 2, "fpSize": 2048})
        os.replace(tmp, h5)
        print(f"   FPSim2 database {h5.name}: {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return h5


def _time_interleaved(methods: dict) -> dict[str, list[float]]:
    """Milliseconds per query of every method, query by query in turn (so a load change on a
    shared machine hits every method alike). ``methods``: name -> (fn, queries)."""
    for fn, queries in methods.values():
        fn(queries[0])  # warm-up (JIT, caches)
    out: dict[str, list[float]] = {name: [] for name in methods}
    for i in range(len(next(iter(methods.values()))[1])):
        for name, (fn, queries) in methods.items():
            t = time.perf_counter()
            fn(queries[i])
            out[name].append((time.perf_counter() - t) * 1e3)
    return out


def run(n: int, n_queries: int, fpsim2: bool, seed: int = 0) -> dict:
    from rdkit import Chem, DataStructs

    from mmsa.library import search as S
    from mmsa.library.embed import morgan_generator
    from mmsa.library.tanimoto import TanimotoIndex, _kernels
    from mmsa.paths import cache_dir

    sys.path.insert(0, str(HERE))
    from search import _queries  # the outside ChEMBL queries of benchmarks/search.py

    cache = cache_dir() / "bench"
    cache.mkdir(parents=True, exist_ok=True)
    out: dict = {"molecules": n, "queries": n_queries, "seed": seed}
    t = time.perf_counter()
    smiles = _moses_smiles(n)
    bvs, packed = _fingerprints(smiles)
    out["fingerprint_seconds"] = round(time.perf_counter() - t, 1)
    print(f"   {len(bvs)} fingerprints: {out['fingerprint_seconds']} s", file=sys.stderr)

    gen = morgan_generator()
    qbvs = [gen.GetFingerprint(Chem.MolFromSmiles(s)) for s in _queries(n_queries, seed)]
    qpacked = [_packed(b) for b in qbvs]
    mbvs, mpacked_arr = _fingerprints(_moses_smiles(n + n_queries)[n:])
    mpacked = list(mpacked_arr)

    t = time.perf_counter()
    _kernels()
    index = TanimotoIndex.from_packed(packed[:1000])
    index.top_k(qpacked[0], 10)
    index.threshold(qpacked[0], 0.7)
    out["numba_compile_or_load_seconds"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    index = TanimotoIndex.from_packed(packed)
    out["index_build_seconds"] = round(time.perf_counter() - t, 3)

    # exactness on every query: the same rows and float64 scores as RDKit Bulk
    scanned_top, scanned_thr = [], []
    for qp, qb in zip(qpacked, qbvs):
        ref = np.asarray(DataStructs.BulkTanimotoSimilarity(qb, bvs))
        order = np.lexsort((np.arange(len(ref)), -ref))
        rows, scores = index.top_k(qp, 10)
        scanned_top.append(index.last_scanned)
        assert np.array_equal(rows, order[:10]) and np.array_equal(scores, ref[order[:10]])
        rows, scores = index.threshold(qp, 0.7)
        scanned_thr.append(index.last_scanned)
        want = order[ref[order] >= 0.7]
        assert np.array_equal(rows, want) and np.array_equal(scores, ref[want])
    out["identical_to_rdkit_bulk"] = True
    out["rows_scanned_fraction_top10_median"] = round(float(np.median(scanned_top)) / n, 4)
    out["rows_scanned_fraction_thr07_median"] = round(float(np.median(scanned_thr)) / n, 4)
    scanned_m = []
    for qp, qb in zip(mpacked, mbvs):
        ref = np.asarray(DataStructs.BulkTanimotoSimilarity(qb, bvs))
        order = np.lexsort((np.arange(len(ref)), -ref))
        rows, scores = index.top_k(qp, 10)
        scanned_m.append(index.last_scanned)
        assert np.array_equal(rows, order[:10]) and np.array_equal(scores, ref[order[:10]])
    out["rows_scanned_fraction_top10_moses_queries_median"] = round(
        float(np.median(scanned_m)) / n, 4)

    counts = S.popcounts(packed)
    methods = {
        "pruned_top10": (lambda q: index.top_k(q, 10), qpacked),
        "pruned_thr07": (lambda q: index.threshold(q, 0.7), qpacked),
        "numpy_full_top10": (
            lambda q: S.top_k(S.tanimoto_all(q, packed, counts), 10, None), qpacked),
        "rdkit_bulk_top10": (
            lambda q: np.argpartition(-np.asarray(DataStructs.BulkTanimotoSimilarity(q, bvs)),
                                      10)[:10], qbvs),
        # MOSES-like queries (the MOSES rows after the first N: not in the library), whose
        # neighbours are closer, so the top-k bound prunes more
        "pruned_top10_moses_queries": (lambda q: index.top_k(q, 10), mpacked),
        "numpy_full_top10_moses_queries": (
            lambda q: S.top_k(S.tanimoto_all(q, packed, counts), 10, None), mpacked),
    }
    if fpsim2:
        from FPSim2 import FPSim2Engine

        engine = FPSim2Engine(str(_fpsim2_db(smiles, cache)))
        methods["fpsim2_top10"] = (
            lambda q: engine.top_k(q, k=10, threshold=0.0, n_workers=1), qbvs)
        methods["fpsim2_thr07"] = (lambda q: engine.similarity(q, 0.7, n_workers=1), qbvs)
        methods["fpsim2_top10_moses_queries"] = (
            lambda q: engine.top_k(q, k=10, threshold=0.0, n_workers=1), mbvs)
    timings = _time_interleaved(methods)
    for name, ms in timings.items():
        out[name] = _percentiles(ms)
    for name in timings:  # against the numpy scan of the same queries, same run
        base = ("numpy_full_top10_moses_queries" if name.endswith("_moses_queries")
                else "numpy_full_top10")
        out[name]["speedup_vs_numpy_p50"] = round(
            out[base]["p50_ms"] / out[name]["p50_ms"], 2)
    return out


def table(res: dict) -> str:
    lines = [f"{'method':<32} {'p50 ms':>9} {'p99 ms':>9} {'x numpy':>8}"]
    for name in ("pruned_top10", "pruned_thr07", "numpy_full_top10", "rdkit_bulk_top10",
                 "fpsim2_top10", "fpsim2_thr07", "pruned_top10_moses_queries",
                 "numpy_full_top10_moses_queries", "fpsim2_top10_moses_queries"):
        if name in res:
            r = res[name]
            lines.append(f"{name:<32} {r['p50_ms']:>9.2f} {r['p99_ms']:>9.2f} "
                         f"{r['speedup_vs_numpy_p50']:>8.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200_000, help="MOSES molecules (first N rows)")
    p.add_argument("--queries", type=int, default=100, help="outside (ChEMBL) queries")
    p.add_argument("--no-fpsim2", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    res = run(args.n, args.queries, not args.no_fpsim2, args.seed)
    res["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                      "python": platform.python_version(),
                      "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}
    print(table(res))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
