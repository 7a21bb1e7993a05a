"""Library build and search benchmark on MOSES subsets (issue 4 item 6).

For each size (first N rows of MOSES; "all" = 1,936,962): build the library in a child
process (wall time, molecules/s, peak RSS of the whole process tree sampled from /proc and
the largest single process from getrusage), then on the built library, over seeded queries
from outside MOSES (ChEMBL molecules of mmsa.data "chembl-sample"): embedding search latency
p50/p99 at k=10 (end to end: standardise + embed the query + FAISS + Tanimoto of the hits +
result table, wall and CPU time; and the FAISS search alone), recall@10 of the index against
exact search, exact Morgan Tanimoto search (numpy popcount), and per query on the same
library RDKit BulkTanimotoSimilarity (+ top 10) and FPSim2 top_k.

    nice -n 10 .venv/bin/python benchmarks/search.py --sizes 10000 100000 [--checkpoint PT]
    nice -n 10 .venv/bin/python benchmarks/search.py --sizes all

Prints a table and merges its figures into benchmarks/results/search.json (one entry per size).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "search.json"


# ---------------------------------------------------------------------------- helpers


def _tree_rss(root_pid: int) -> int:
    """Resident set size (bytes) of ``root_pid`` and all its descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            with open(f"/proc/{entry}/statm") as fh:
                pages = int(fh.read().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = pages * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def _percentiles(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 3),
            "p99_ms": round(float(np.percentile(a, 99)), 3),
            "mean_ms": round(float(a.mean()), 3), "n": len(a)}


def _subset(moses: Path, n: int | None, cache: Path) -> Path:
    if n is None:
        return moses
    out = cache / f"moses-{n}.csv"
    if out.exists():
        return out
    tmp = out.with_suffix(".tmp")
    with open(moses) as src, open(tmp, "w") as dst:
        for i, line in enumerate(src):
            if i > n:
                break
            dst.write(line)
    os.replace(tmp, out)
    return out


def _child_build(args) -> int:
    """Run in the child process: build and write the report as JSON."""
    import logging

    from mmsa.library import build_library

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    last = [0.0]

    def progress(done, total):
        now = time.time()
        if now - last[0] > 30:
            last[0] = now
            print(f"  ... {done:,}/{total or '?'} rows", file=sys.stderr, flush=True)

    ray = args.engine == "ray"
    rep = build_library(args.csv, args.name, root=args.root, encoder=args.checkpoint,
                        n_jobs=1 if ray else args.n_jobs, chunk_size=args.chunk_size,
                        overwrite=True, progress=progress, engine=args.engine,
                        workers=args.n_jobs if ray else None)
    Path(args.report).write_text(json.dumps({
        "n_ok": rep.n_ok, "n_failed": rep.n_failed, "seconds": rep.seconds,
        "index": rep.index,
    }))
    return 0


def _build(csv: Path, name: str, root: Path, checkpoint, n_jobs: int, chunk_size: int,
           engine: str = "local") -> dict:
    report = root / f"{name}.report.json"
    cmd = [sys.executable, __file__, "--child-build", "--csv", str(csv), "--name", name,
           "--root", str(root), "--n-jobs", str(n_jobs), "--chunk-size", str(chunk_size),
           "--report", str(report), "--engine", engine]
    if checkpoint:
        cmd += ["--checkpoint", str(checkpoint)]
    t0 = time.perf_counter()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(cmd)
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            done.wait(0.5)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    rc = proc.wait()
    done.set()
    th.join()
    wall = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"build of {name} failed (exit {rc})")
    rep = json.loads(report.read_text())
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    single = ru.ru_maxrss * 1024
    cpu = (ru.ru_utime + ru.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    return {"build_seconds": round(wall, 1), "build_seconds_in_library": round(rep["seconds"], 1),
            "molecules": rep["n_ok"], "failed": rep["n_failed"],
            "mol_per_s": round(rep["n_ok"] / wall, 1),
            "cpu_seconds": round(cpu, 1),
            "cpu_ms_per_mol": round(1e3 * cpu / max(1, rep["n_ok"]), 3),
            "peak_rss_gb_tree": round(peak[0] / 2**30, 3),
            "peak_rss_gb_largest_process": round(single / 2**30, 3), "index": rep["index"]}


def fpsim2_db(csv: Path, cache: Path) -> Path:
    """FPSim2 database (Morgan r=2, 2048 bits) of the SMILES of ``csv``, built once and cached.

    The same molecules as the library built from ``csv`` (MOSES SMILES are already neutral
    single fragments, so standardisation does not change their fingerprints)."""
    import csv as csvmod

    from FPSim2.io import create_db_file

    h5 = cache / f"fpsim2-{csv.stem}.h5"
    if h5.exists():
        return h5
    t = time.perf_counter()

    def rows():
        with open(csv, newline="") as fh:
            for i, r in enumerate(csvmod.DictReader(fh)):
                yield r["smiles"], i

    tmp = h5.with_suffix(".tmp.h5")
    create_db_file(rows(), str(tmp), mol_format="smiles", fp_type="Morgan",
                   fp_params={"radius": 2, "fpSize": 2048})
    os.replace(tmp, h5)
    print(f"   FPSim2 database {h5.name}: {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return h5


def _queries(n: int, seed: int) -> list[str]:
    """``n`` seeded query molecules from outside MOSES: ChEMBL SMILES (mmsa.data
    "chembl-sample"), standardised as every query is, so no query is trivially in the library."""
    import pandas as pd

    from mmsa.chem.standardize import standardize_smiles
    from mmsa.data import fetch
    from mmsa.types import InputError

    smiles = pd.read_csv(fetch("chembl-sample"), usecols=["smiles"])["smiles"]
    out: list[str] = []
    for s in smiles.sample(frac=1.0, random_state=seed):
        try:
            out.append(standardize_smiles(s))
        except InputError:
            continue
        if len(out) == n:
            break
    return out


def _bench_library(name: str, root: Path, checkpoint, n_queries: int, n_bulk: int,
                   fpsim2: bool, cache: Path, csv: Path, seed: int = 0) -> dict:
    from rdkit import DataStructs

    from mmsa.library import ann, open_library

    lib = open_library(name, root=root, encoder=checkpoint, verify="size")
    n = len(lib)
    queries = _queries(n_queries, seed)
    lib.search(queries[0], k=10)  # warm up: index, metadata, encoder
    out: dict = {"library": name, "molecules": n, "queries": len(queries),
                 "index": lib.manifest["index"],
                 "build_phases_seconds": {
                     "read_embed_fingerprint": lib.manifest["sources"][-1]["seconds"],
                     "index_and_recall": lib.manifest["index"]["build_seconds"],
                     "hyperedges": lib.manifest["hyperedges"]["seconds"]}}

    e2e, cpu = [], []
    for q in queries:
        t, c = time.perf_counter(), time.process_time()
        lib.search(q, k=10)
        e2e.append((time.perf_counter() - t) * 1e3)
        cpu.append((time.process_time() - c) * 1e3)
    out["embedding_search_end_to_end"] = _percentiles(e2e)
    # CPU time of the (single-threaded) query: what the wall time would be on an idle core
    out["embedding_search_end_to_end_cpu"] = _percentiles(cpu)

    qv = np.stack([lib.embed_query(q) for q in queries])
    raw, found = [], []
    for v in qv:
        t = time.perf_counter()
        _, i = lib.search_vectors(v[None, :], 10)
        raw.append((time.perf_counter() - t) * 1e3)
        found.append(i[0])
    out["embedding_search_faiss_only"] = _percentiles(raw)
    _, exact = ann.exact_search(lib.vectors, qv, 10)
    out["recall_at_10"] = round(ann.recall_at_k(np.stack(found), exact), 4)

    tan = []
    lib.search(queries[0], k=10, mode="tanimoto")  # warm up popcounts
    for q in queries[:n_bulk]:
        t = time.perf_counter()
        lib.search(q, k=10, mode="tanimoto")
        tan.append((time.perf_counter() - t) * 1e3)
    out["tanimoto_numpy_exact"] = _percentiles(tan)

    # RDKit BulkTanimotoSimilarity on the same fingerprints (built from the stored bits)
    t = time.perf_counter()
    fps = []
    block = 100_000
    for s in range(0, n, block):
        bits = np.unpackbits(np.asarray(lib.morgan[s : s + block]), axis=1)
        for row in bits:
            bv = DataStructs.ExplicitBitVect(2048)
            bv.SetBitsFromList(np.flatnonzero(row).tolist())
            fps.append(bv)
    out["rdkit_fp_setup_seconds"] = round(time.perf_counter() - t, 1)
    bulk = []
    from mmsa.library.embed import morgan_generator

    for q in queries[:n_bulk]:
        qfp = morgan_generator().GetFingerprint(lib._standard_query(q))
        t = time.perf_counter()
        sims = np.asarray(DataStructs.BulkTanimotoSimilarity(qfp, fps))
        np.argpartition(-sims, 10)[:10]
        bulk.append((time.perf_counter() - t) * 1e3)
    out["rdkit_bulk_tanimoto"] = _percentiles(bulk)
    del fps

    if fpsim2:
        from FPSim2 import FPSim2Engine

        h5 = fpsim2_db(csv, cache)
        engine = FPSim2Engine(str(h5))  # our own file in the cache (FPSim2 pickles its config)
        engine.top_k(queries[0], k=10, threshold=0.0, n_workers=1)
        fs = []
        for q in queries[:n_bulk]:
            t = time.perf_counter()
            engine.top_k(q, k=10, threshold=0.0, n_workers=1)
            fs.append((time.perf_counter() - t) * 1e3)
        out["fpsim2_top_k"] = _percentiles(fs)
        out["fpsim2_molecules"] = int(engine.fps.shape[0])
        # kernels alone, interleaved query by query: the same prebuilt Morgan query
        # fingerprint into the library's TanimotoIndex.top_k and into FPSim2's top_k
        from mmsa.library.embed import morgan_packed
        from mmsa.library.query import tanimoto_index

        tindex = tanimoto_index(lib)
        ours, theirs, agree = [], [], 0
        for q in queries[:n_bulk]:
            mol = lib._standard_query(q)
            packed, bv = morgan_packed(mol), morgan_generator().GetFingerprint(mol)
            t = time.perf_counter()
            _, mine = tindex.top_k(packed, 10)
            ours.append((time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            hits = engine.top_k(bv, k=10, threshold=0.0, n_workers=1)
            theirs.append((time.perf_counter() - t) * 1e3)
            agree += int(np.allclose(np.sort(mine)[::-1][:len(hits)],
                                     np.sort(np.asarray(hits["coeff"], float))[::-1], atol=1e-6))
        out["tanimoto_kernel_top_k"] = _percentiles(ours)
        out["fpsim2_kernel_top_k"] = _percentiles(theirs)
        out["tanimoto_kernel_same_top10_scores_as_fpsim2"] = f"{agree}/{len(ours)}"
        del engine

    e = out["embedding_search_end_to_end"]["p50_ms"]
    f = out["embedding_search_faiss_only"]["p50_ms"]
    b = out["rdkit_bulk_tanimoto"]["p50_ms"]
    out["speedup_vs_bulk_tanimoto_end_to_end"] = round(b / e, 1)
    out["speedup_vs_bulk_tanimoto_faiss_only"] = round(b / f, 1)
    if "fpsim2_top_k" in out:
        out["speedup_vs_fpsim2_end_to_end"] = round(out["fpsim2_top_k"]["p50_ms"] / e, 2)
    return out


def _table(results: dict) -> str:
    cols = ["size", "build s", "mol/s", "CPU ms/mol", "RSS GB", "index", "recall@10", "e2e p50", "e2e p99",
            "faiss p50", "faiss p99", "tanimoto p50", "Bulk p50", "FPSim2 p50", "x Bulk"]
    lines = ["  ".join(cols)]
    for key, r in results.items():
        if not isinstance(r, dict) or "search" not in r:
            continue
        b, s = r["build"], r["search"]
        lines.append("  ".join(str(x) for x in [
            key, b["build_seconds"], b["mol_per_s"], b.get("cpu_ms_per_mol", "-"),
            b["peak_rss_gb_tree"], s["index"]["type"],
            s["recall_at_10"], s["embedding_search_end_to_end"]["p50_ms"],
            s["embedding_search_end_to_end"]["p99_ms"],
            s["embedding_search_faiss_only"]["p50_ms"],
            s["embedding_search_faiss_only"]["p99_ms"], s["tanimoto_numpy_exact"]["p50_ms"],
            s["rdkit_bulk_tanimoto"]["p50_ms"],
            s.get("fpsim2_top_k", {}).get("p50_ms", "-"),
            s["speedup_vs_bulk_tanimoto_end_to_end"],
        ]))
    return "\n".join(lines)


def markdown(results: dict) -> str:
    """The results as the markdown table quoted in docs/benchmarks.md."""
    head = ("| MOSES molecules | index (build recall@10) | query recall@10 | build s | mol/s | build CPU ms/mol | "
            "peak RSS GB | embedding p50 / p99 ms (end to end) | its CPU p50 ms | "
            "FAISS p50 / p99 ms | "
            "numpy Tanimoto p50 ms | RDKit Bulk p50 ms | FPSim2 p50 ms | Bulk / end to end |")
    lines = [head, "|" + "---|" * 14]
    for r in results.values():
        if not isinstance(r, dict) or "search" not in r or "build" not in r:
            continue
        b, s = r["build"], r["search"]
        e, f = s["embedding_search_end_to_end"], s["embedding_search_faiss_only"]
        lines.append(
            f"| {s['molecules']:,} | {s['index']['type']} ({s['index']['recall_at_10']:.3f}) | "
            f"{s['recall_at_10']:.3f} | "
            f"{b['build_seconds']:,.0f} | {b['mol_per_s']:,.0f} | {b.get('cpu_ms_per_mol', '-')} | "
            f"{b['peak_rss_gb_tree']:.2f} | {e['p50_ms']:.1f} / {e['p99_ms']:.1f} | "
            f"{s.get('embedding_search_end_to_end_cpu', {}).get('p50_ms', float('nan')):.1f} | "
            f"{f['p50_ms']:.2f} / {f['p99_ms']:.2f} | {s['tanimoto_numpy_exact']['p50_ms']:.1f} | "
            f"{s['rdkit_bulk_tanimoto']['p50_ms']:.1f} | "
            f"{s.get('fpsim2_top_k', {}).get('p50_ms', float('nan')):.1f} | "
            f"{s['speedup_vs_bulk_tanimoto_end_to_end']:.1f}x |"
        )
    builds = [(key, r) for key, r in results.items() if isinstance(r, dict) and "build" in r]
    lines += ["", "| library | engine | molecules | build wall s (min) | CPU ms/mol | "
              "peak RSS GB (tree / largest process) | read + embed s | index s | hyperedges s |",
              "|" + "---|" * 9]
    for key, r in builds:
        b, ph = r["build"], r.get("search", {}).get("build_phases_seconds", {})
        lines.append(
            f"| moses-{key} | {b.get('engine', 'local')} | {b['molecules']:,} | "
            f"{b['build_seconds']:,.0f} ({b['build_seconds'] / 60:.1f}) | "
            f"{b.get('cpu_ms_per_mol', '-')} | {b['peak_rss_gb_tree']:.2f} / "
            f"{b['peak_rss_gb_largest_process']:.2f} | {ph.get('read_embed_fingerprint', '-')} | "
            f"{ph.get('index_and_recall', '-')} | {ph.get('hyperedges', '-')} |")
    kern = [(key, r["search"]) for key, r in results.items() if isinstance(r, dict)
            and "tanimoto_kernel_top_k" in r.get("search", {})]
    if kern:
        lines += ["", "| library | Tanimoto top-10, mmsa kernel p50 / p99 ms | FPSim2 0.7.4 "
                  "top_k p50 / p99 ms | FPSim2 / mmsa (p50) | same top-10 scores |",
                  "|---|---|---|---|---|"]
        for key, s in kern:
            a, f = s["tanimoto_kernel_top_k"], s["fpsim2_kernel_top_k"]
            lines.append(f"| moses-{key} | {a['p50_ms']:.1f} / {a['p99_ms']:.1f} | "
                         f"{f['p50_ms']:.1f} / {f['p99_ms']:.1f} | "
                         f"{f['p50_ms'] / a['p50_ms']:.2f}x | "
                         f"{s['tanimoto_kernel_same_top10_scores_as_fpsim2']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["10000", "100000"],
                   help="numbers of MOSES rows, or 'all'")
    p.add_argument("--checkpoint", default=None, help="MMSA checkpoint (default: shipped)")
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--bulk-queries", type=int, default=20,
                   help="queries timed for RDKit BulkTanimoto, FPSim2 and numpy Tanimoto")
    p.add_argument("--n-jobs", type=int, default=2,
                   help="worker processes (local engine) or Ray actors (--engine ray)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="build engine; ray: a private local Ray instance, results under "
                        "the size + '-ray'")
    p.add_argument("--build-only", action="store_true", help="time the build, no searches")
    p.add_argument("--chunk-size", type=int, default=4096)
    p.add_argument("--root", default=None, help="libraries folder (default $MMSA_CACHE/bench)")
    p.add_argument("--no-fpsim2", action="store_true")
    p.add_argument("--skip-build", action="store_true", help="reuse libraries already built")
    p.add_argument("--prepare-fpsim2", action="store_true",
                   help="only build (and cache) the FPSim2 databases of the sizes")
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--markdown", action="store_true",
                   help="only print the results file as the markdown table of docs/benchmarks.md")
    # child mode
    p.add_argument("--child-build", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--csv", help=argparse.SUPPRESS)
    p.add_argument("--name", help=argparse.SUPPRESS)
    p.add_argument("--report", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child_build:
        return _child_build(args)
    if args.markdown:
        print(markdown(json.loads(Path(args.out).read_text())))
        return 0

    from mmsa.data import fetch
    from mmsa.paths import DEFAULT_CHECKPOINT, cache_dir

    cache = cache_dir() / "bench"
    cache.mkdir(exist_ok=True)
    root = Path(args.root) if args.root else cache / "indexes"
    root.mkdir(parents=True, exist_ok=True)
    checkpoint = Path(args.checkpoint or os.environ.get("MMSA_CHECKPOINT") or DEFAULT_CHECKPOINT)
    moses = fetch("moses")
    out_path = Path(args.out)
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    from mmsa.model.encoder import file_sha256

    results["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version()}
    for size in args.sizes:
        n = None if size == "all" else int(size)
        csv = _subset(moses, n, cache)
        key = ("all" if n is None else str(n)) + ("-ray" if args.engine == "ray" else "")
        name = f"moses-{key}"
        if args.prepare_fpsim2:
            fpsim2_db(csv, cache)
            continue
        print(f"== {name}: building from {csv}", file=sys.stderr, flush=True)
        entry = results.get(key, {}) if args.skip_build else {}
        if not args.skip_build:
            entry["build"] = _build(csv, name, root, checkpoint, args.n_jobs, args.chunk_size,
                                    args.engine)
            entry["build"]["engine"] = args.engine
            print(f"   build: {entry['build']}", file=sys.stderr, flush=True)
        if args.build_only:
            entry["checkpoint"] = {"path": str(checkpoint), "sha256": file_sha256(checkpoint)}
            entry["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            results[key] = entry
            out_path.write_text(json.dumps(results, indent=1))
            continue
        entry["search"] = _bench_library(name, root, checkpoint, args.queries, args.bulk_queries,
                                         not args.no_fpsim2, cache, csv)
        entry["checkpoint"] = {"path": str(checkpoint), "sha256": file_sha256(checkpoint)}
        entry["n_jobs"] = args.n_jobs
        entry["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        results[key] = entry
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(results, indent=1))
        print(json.dumps(entry["search"], indent=1), file=sys.stderr, flush=True)
    print(_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
