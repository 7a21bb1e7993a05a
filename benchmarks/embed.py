"""Embedding throughput: molecules per second of the MMSA fast and full paths.

Measured on the first N molecules of the MOSES training split (default 10,000), featurisation
included (SMILES in, vectors out, exactly `Encoder.embed`), on the CPU (the machine's cores;
torch's own thread count). In the same run, as baselines: graph featurisation alone and the
model alone (collate + forward on pre-computed graphs), which together show where the fast
path spends its time. The full multi-modal path (graph + depiction + ETKDG conformer) is
measured on fewer molecules (default 300): conformer generation dominates it.
Every figure is the median over ``--repeats`` runs. Prints a table and writes
benchmarks/results/embed.json and the "Embedding throughput" section of docs/benchmarks.md.

    nice -n 10 python benchmarks/embed.py [--checkpoint mmsa/weights/mmsa.pt]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path

log = logging.getLogger("benchmarks.embed")
ROOT = Path(__file__).resolve().parents[1]
TARGET_FAST = 2000.0


def _timed(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def moses_smiles(n: int) -> list[str]:
    """The first ``n`` SMILES of the MOSES training split (mmsa.data.fetch("moses"))."""
    import pandas as pd

    from mmsa.data import fetch

    df = pd.read_csv(fetch("moses"), nrows=n, usecols=["smiles", "split"])
    smiles = df.loc[df["split"] == "train", "smiles"].astype(str).tolist()
    if len(smiles) < n:
        raise SystemExit(f"only {len(smiles)} MOSES training molecules in the first {n} rows")
    return smiles


def random_checkpoint(path: Path) -> Path:
    """A randomly initialised model of the default architecture (speed does not depend on
    the weights); used only when no trained checkpoint exists."""
    import torch

    from mmsa.model import MMSA, save_checkpoint
    from mmsa.model.config import build_config

    torch.manual_seed(0)
    return save_checkpoint(MMSA(build_config("default")), path)


def run(smiles: list[str], checkpoint: Path, repeats: int, n_full: int, n_jobs: int,
        batch_size: int) -> dict:
    import torch

    from mmsa.model import collate
    from mmsa.model.encoder import Encoder

    enc = Encoder.load(checkpoint, device="cpu")
    n = len(smiles)
    results: dict = {}

    def graph_only():
        return [enc.graph_featurizer(s) for s in smiles]

    enc.embed(smiles[:256], mode="fast")  # warm-up (lazy imports, allocator)
    t, ts = _timed(graph_only, repeats)
    results["graph_featurize"] = {"n": n, "n_jobs": 1, "median_s": t, "times_s": ts,
                                  "mol_per_s": n / t}
    log.info("graph featurisation: %.0f mol/s", n / t)

    if hasattr(enc.graph_featurizer, "batch"):
        t, ts = _timed(lambda: enc.graph_featurizer.batch(smiles), repeats)
        results["graph_featurize_batch"] = {"n": n, "n_jobs": 1, "median_s": t, "times_s": ts,
                                            "mol_per_s": n / t}
        log.info("graph featurisation, batched: %.0f mol/s", n / t)

    graphs = graph_only()

    def model_only():
        with torch.inference_mode():
            for i in range(0, n, batch_size):
                enc.model.embed(collate(graphs[i:i + batch_size]), mode="fast")

    t, ts = _timed(model_only, repeats)
    results["model_only_fast"] = {"n": n, "batch_size": batch_size, "median_s": t,
                                  "times_s": ts, "mol_per_s": n / t}
    log.info("model only (collate + forward): %.0f mol/s", n / t)

    for jobs in sorted({1, n_jobs}):
        if jobs > 1:
            try:
                import mmsa.chem.parallel  # noqa: F401
            except ImportError:
                log.warning("mmsa.chem.parallel missing: n_jobs=%d not measured", jobs)
                continue

        def fast(jobs=jobs):
            res = enc.embed(smiles, mode="fast", batch_size=batch_size, n_jobs=jobs)
            assert res.ok.sum() >= 0.99 * n, "too many failures"
            return res

        t, ts = _timed(fast, repeats)
        results[f"fast_n_jobs_{jobs}"] = {"n": n, "n_jobs": jobs, "batch_size": batch_size,
                                          "median_s": t, "times_s": ts, "mol_per_s": n / t}
        log.info("fast path (n_jobs=%d): %.0f mol/s", jobs, n / t)

    if n_full > 0 and len(enc.modalities) > 1:
        sub = smiles[:n_full]
        full_jobs = n_jobs if f"fast_n_jobs_{n_jobs}" in results else 1

        def full():
            return enc.embed(sub, mode="full", batch_size=batch_size, n_jobs=full_jobs)

        t, ts = _timed(full, max(1, min(repeats, 3)))
        results["full"] = {"n": len(sub), "n_jobs": full_jobs, "batch_size": batch_size,
                           "median_s": t, "times_s": ts, "mol_per_s": len(sub) / t}
        log.info("full path (n_jobs=%d, %d molecules): %.1f mol/s", full_jobs, len(sub),
                 len(sub) / t)
    return results


def render(payload: dict) -> str:
    r = payload["results"]
    rows = [("Graph featurisation only (baseline, 1 process, molecule by molecule)",
             "graph_featurize")]
    if "graph_featurize_batch" in r:
        rows.append(("Graph featurisation only, batched (`GraphFeaturizer.batch`, 1 process)",
                     "graph_featurize_batch"))
    rows.append(("Model only: collate + forward on pre-computed graphs", "model_only_fast"))
    rows += [(f"Fast path (graph + memory readout), n_jobs={v['n_jobs']}", k)
             for k, v in r.items() if k.startswith("fast_n_jobs_")]
    if "full" in r:
        rows.append((f"Full multi-modal path (graph + image + 3D), n_jobs={r['full']['n_jobs']}",
                     "full"))
    m = payload["machine"]
    lines = [
        f"SMILES in, L2-normalised vectors out (`Encoder.embed`, featurisation included), on "
        f"{m['cpu_count']} CPU cores ({m['processor']}), torch {m['torch']} with "
        f"{m['torch_threads']} threads, batch size {payload['batch_size']}; median of "
        f"{payload['repeats']} runs. Molecules: the first {payload['n_molecules']:,} of the "
        f"MOSES training split (the full path: the first {payload['n_full']:,}). The machine "
        f"was shared with other jobs while measuring (1-minute load average "
        f"{m['loadavg_1m_at_end']:.1f} at the end), so these are lower bounds.",
        "",
        "| What | Molecules | Median time (s) | mol/s |",
        "|---|---|---|---|",
    ]
    for title, key in rows:
        v = r[key]
        lines.append(f"| {title} | {v['n']:,} | {v['median_s']:.2f} | {v['mol_per_s']:,.0f} |")
    best = payload["fast_mol_per_s"]
    verdict = "meets" if best >= TARGET_FAST else "misses"
    lines += ["", f"Fast path: {best:,.0f} mol/s, which {verdict} the target of "
              f"{TARGET_FAST:,.0f} mol/s."]
    if payload.get("breakdown"):
        lines.append(payload["breakdown"])
    ck = payload["checkpoint"]
    lines.append(f"Checkpoint: `{Path(ck['path']).name}` (sha256 {ck['sha256'][:12]}"
                 f"{', random weights: speed does not depend on them' if ck['random'] else ''}"
                 "). Reproduce with `python benchmarks/embed.py`; numbers in "
                 "benchmarks/results/embed.json.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="default: the shipped mmsa/weights/mmsa.pt")
    p.add_argument("--n", type=int, default=10_000, help="molecules for the fast path")
    p.add_argument("--n-full", type=int, default=300, help="molecules for the full path")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--n-jobs", type=int, default=2, help="featurisation processes to also try")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0: torch's default, one per core)")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/embed.json"))
    p.add_argument("--doc", default=str(ROOT / "docs/benchmarks.md"),
                   help="markdown file whose 'Embedding throughput' section is rewritten "
                   "('' to skip)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    from mmsa.evaluate import update_markdown_section, write_json
    from mmsa.model.encoder import file_sha256
    from mmsa.paths import DEFAULT_CHECKPOINT, cache_dir

    ckpt = Path(args.checkpoint) if args.checkpoint else DEFAULT_CHECKPOINT
    is_random = False
    if not ckpt.is_file():
        if args.checkpoint:
            raise SystemExit(f"checkpoint not found: {ckpt}")
        log.warning("no shipped checkpoint yet: timing a random-weights model of the default "
                    "architecture")
        ckpt, is_random = random_checkpoint(cache_dir() / "bench" / "embed-random.pt"), True
    smiles = moses_smiles(args.n)
    results = run(smiles, ckpt, args.repeats, args.n_full, args.n_jobs, args.batch_size)
    fast = max(v["mol_per_s"] for k, v in results.items() if k.startswith("fast_n_jobs_"))
    g, mo = results["graph_featurize"], results["model_only_fast"]
    breakdown = (f"Where the fast path's time goes (1 process, per 1,000 molecules): graph "
                 f"featurisation {1000 / g['mol_per_s']:.2f} s, model (collate + forward) "
                 f"{1000 / mo['mol_per_s']:.2f} s.")
    payload = {
        "benchmark": "embed",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or
                    platform.machine(), "python": platform.python_version(),
                    "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                    "loadavg_1m_at_end": os.getloadavg()[0]},
        "checkpoint": {"path": str(ckpt), "sha256": file_sha256(ckpt), "random": is_random},
        "n_molecules": len(smiles), "n_full": min(args.n_full, len(smiles)),
        "repeats": args.repeats, "batch_size": args.batch_size,
        "data": "MOSES train split, first rows (molsets 0.3.1 via mmsa.data.fetch('moses'))",
        "results": results,
        "fast_mol_per_s": fast,
        "full_mol_per_s": results.get("full", {}).get("mol_per_s"),
        "target_fast_mol_per_s": TARGET_FAST,
        "meets_target": fast >= TARGET_FAST,
        "breakdown": breakdown,
    }
    write_json(args.out, payload)
    text = render(payload)
    if args.doc:
        update_markdown_section(args.doc, "Embedding throughput", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
