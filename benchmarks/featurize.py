"""Featurisation and reading benchmark on MOSES (issue 2 item 7).

* graph, image and conformer featurisation: molecules per second of ``featurize_many`` over
  the first N (default 10,000) MOSES molecules with ``n_jobs`` (default 2) worker processes,
  wall clock including the pool start, no cache; plus each featurizer's single-process CPU
  rate (molecules per CPU-second on a subset), which does not depend on how busy the machine
  is, and the load average before and after, which says how busy it was;
* reading: peak RSS of a child process that only imports mmsa.chem and runs ``iter_library``
  over all 1,936,962 MOSES rows, standardising every one: ``VmHWM`` of /proc/self/status (the
  child's own high-water mark) and ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (on Linux this
  also counts the parent's image the child was forked from, so it is an upper bound), each
  right after the imports and at the end, with the wall time.

    nice -n 10 .venv/bin/python benchmarks/featurize.py [--n 10000] [--n-jobs 2] [--skip-rss]

Prints the figures and writes benchmarks/results/featurize.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "featurize.json"
TARGETS = {"graph": 5000.0, "image": 500.0, "conformer": 50.0}
RSS_TARGET_MB = 2048.0
# molecules for the single-process CPU rate (conformers are slow)
CPU_SUBSET = {"graph": 2000, "image": 1000, "conformer": 200}


def _moses_smiles(n: int) -> tuple[Path, list[str]]:
    import pandas as pd

    from mmsa.data import fetch

    path = fetch("moses")
    frame = pd.read_csv(path, nrows=n, usecols=["smiles"])
    return path, frame["smiles"].astype(str).tolist()


def _featurizers():
    from mmsa.chem.conformer import ConformerFeaturizer
    from mmsa.chem.graph import GraphFeaturizer
    from mmsa.chem.image import ImageFeaturizer

    return {"graph": GraphFeaturizer(), "image": ImageFeaturizer(size=64),
            "conformer": ConformerFeaturizer()}


def bench_featurizer(name: str, featurizer, smiles: list[str], n_jobs: int) -> dict:
    from mmsa.chem.parallel import featurize_many

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    results, failures = featurize_many(featurizer, smiles, n_jobs=n_jobs, progress=False)
    wall = time.perf_counter() - t0
    load_after = os.getloadavg()

    subset = smiles[:CPU_SUBSET[name]]
    c0 = time.process_time()
    featurize_many(featurizer, subset, n_jobs=1)
    cpu = time.process_time() - c0
    return {
        "date": _now(),
        "commit": _git_commit(),
        "molecules": len(smiles),
        "n_jobs": n_jobs,
        "wall_s": round(wall, 3),
        "mol_per_s": round(len(smiles) / wall, 1),
        "failures": len(failures),
        "first_failures": [str(f) for f in failures[:3]],
        "cpu_subset": len(subset),
        "mol_per_cpu_s_single_process": round(len(subset) / cpu, 1),
        "loadavg_1min_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "config": featurizer.config(),
        "target_mol_per_s": TARGETS[name],
        "meets_target": len(smiles) / wall >= TARGETS[name],
    }


def _rss_child(path: str, chunk_size: int) -> None:
    """Runs in the child: read the whole file, print JSON figures on stdout."""
    from mmsa.chem.io import iter_library

    after_import = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    hwm_import = _vm_hwm_kb()
    t0 = time.perf_counter()
    records = failures = chunks = 0
    for chunk in iter_library(path, chunk_size=chunk_size):
        records += len(chunk.records)
        failures += len(chunk.failures)
        chunks += 1
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    hwm = _vm_hwm_kb()
    print(json.dumps({"records": records, "failures": failures, "chunks": chunks,
                      "chunk_size": chunk_size, "wall_s": round(wall, 1),
                      "rows_per_s": round((records + failures) / wall, 1),
                      "peak_rss_mb": round(hwm / 1024, 1),
                      "rss_after_imports_mb": round(hwm_import / 1024, 1),
                      "ru_maxrss_mb": round(peak / 1024, 1),
                      "ru_maxrss_after_imports_mb": round(after_import / 1024, 1)}))


def _vm_hwm_kb() -> int:
    """This process's peak resident set (VmHWM, KiB); ru_maxrss where /proc is missing."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def bench_rss(path: Path, chunk_size: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--rss-child", str(path),
                           "--chunk-size", str(chunk_size)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"RSS child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["target_peak_rss_mb"] = RSS_TARGET_MB
    out["meets_target"] = max(out["peak_rss_mb"], out["ru_maxrss_mb"]) < RSS_TARGET_MB
    out["date"] = _now()
    out["commit"] = _git_commit()
    out["file"] = path.name
    return out


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, text=True,
                              capture_output=True, check=False).stdout.strip()
    except OSError:
        return ""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="MOSES molecules to featurise")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--only", nargs="*", choices=sorted(TARGETS), default=None,
                        help="featurizers to run (default all)")
    parser.add_argument("--skip-rss", action="store_true", help="skip reading all of MOSES")
    parser.add_argument("--skip-featurize", action="store_true",
                        help="only measure reading (featurisation figures kept from the file)")
    parser.add_argument("--chunk-size", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        _rss_child(args.rss_child, args.chunk_size)
        return 0

    import numpy
    import pandas
    import rdkit

    path, smiles = _moses_smiles(0 if args.skip_featurize else args.n)
    report = {
        "benchmark": "featurize",
        "date": _now(),
        "commit": _git_commit(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "rdkit": rdkit.__version__,
                    "numpy": numpy.__version__, "pandas": pandas.__version__},
        "data": f"first {args.n} rows of MOSES ({path.name})",
        "featurize": {},
    }
    names = [] if args.skip_featurize else (args.only or list(TARGETS))
    featurizers = _featurizers()
    for name in names:
        print(f"{name}: featurising {len(smiles)} molecules with n_jobs={args.n_jobs} ...",
              flush=True)
        res = bench_featurizer(name, featurizers[name], smiles, args.n_jobs)
        report["featurize"][name] = res
        print(f"  {res['mol_per_s']:>9.1f} mol/s (target {res['target_mol_per_s']:.0f}, "
              f"{'met' if res['meets_target'] else 'NOT met'}); "
              f"{res['mol_per_cpu_s_single_process']:.1f} mol per CPU-second in one process; "
              f"{res['failures']} failures; load {res['loadavg_1min_before_after']}", flush=True)
    if not args.skip_rss:
        print(f"reading all of {path.name} with iter_library in a child process ...", flush=True)
        rss = bench_rss(path, args.chunk_size)
        report["read_moses"] = rss
        print(f"  peak RSS {rss['peak_rss_mb']:.0f} MB (VmHWM; {rss['rss_after_imports_mb']:.0f}"
              f" MB after imports; getrusage ru_maxrss {rss['ru_maxrss_mb']:.0f} MB) "
              f"(target < {RSS_TARGET_MB:.0f}, {'met' if rss['meets_target'] else 'NOT met'}); "
              f"{rss['records']} records, {rss['failures']} failures in {rss['wall_s']:.0f} s "
              f"({rss['rows_per_s']:.0f} rows/s)", flush=True)

    if args.out.exists():  # keep figures of parts not rerun this time
        try:
            old = json.loads(args.out.read_text())
        except ValueError:
            old = {}
        for name, res in old.get("featurize", {}).items():
            report["featurize"].setdefault(name, res)
        if "read_moses" in old and "read_moses" not in report:
            report["read_moses"] = old["read_moses"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
