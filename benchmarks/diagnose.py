"""Diagnosis and loss-weight sweep of MMSA pre-training, scored by neighbour quality.

Why did the first pre-training make cosine neighbours worse than random weights? This script
trains the same architecture on the same molecules for the same short budget with one loss
term at a time (and with the weight sets of the sweep), then scores each checkpoint by what a
user of the search gets (mmsa.evaluate.neighbours: kNN on the VALID part of the scaffold
splits, never the test part; same-target retrieval), plus effective rank and
alignment/uniformity. Results: benchmarks/results/diagnose.json, a table on stdout.

    python benchmarks/diagnose.py baseline            # shipped vs random init vs ECFP4
    python benchmarks/diagnose.py runs --steps 400    # one term alone + sweep, equal budget
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

log = logging.getLogger("benchmarks.diagnose")
RESULTS = ROOT / "benchmarks" / "results" / "diagnose.json"

# (name, MMSAConfig overrides): every weight not named is 0, so each run is one term alone
_ZERO = {"w_recon": 0.0, "w_contrast": 0.0, "w_hyper": 0.0, "w_mem_align": 0.0,
         "w_mem_assign": 0.0, "w_fp": 0.0, "w_desc": 0.0, "w_sim": 0.0, "w_vic": 0.0}
OLD = {"w_recon": 1.0, "w_contrast": 1.0, "w_hyper": 1.0, "w_mem_align": 1.0,
       "w_mem_assign": 1.0, "hyper_source": "embedding"}
RUNS = {
    # the first checkpoint's objective, and each of its terms alone
    "old_objective": OLD,
    "recon_only": {"w_recon": 1.0},
    "contrast_only": {"w_contrast": 1.0},
    "hyper_only": {"w_hyper": 1.0, "hyper_source": "embedding"},
    "memory_only": {"w_mem_align": 1.0, "w_mem_assign": 1.0},
    # the new terms alone
    "fp_only": {"w_fp": 1.0},
    "desc_only": {"w_desc": 1.0},
    "sim_only": {"w_sim": 1.0},
    "vic_only": {"w_vic": 1.0},
    # sweep of the combined objective (all MMSA terms kept)
    "sweep_a": {"w_recon": 1.0, "w_contrast": 1.0, "w_hyper": 0.5, "w_mem_align": 0.2,
                "w_mem_assign": 0.2, "w_fp": 1.0, "w_desc": 1.0, "w_sim": 1.0, "w_vic": 1.0,
                "hyper_source": "tanimoto"},
    "sweep_b": {"w_recon": 0.5, "w_contrast": 0.5, "w_hyper": 0.25, "w_mem_align": 0.1,
                "w_mem_assign": 0.1, "w_fp": 1.0, "w_desc": 1.0, "w_sim": 2.0, "w_vic": 1.0,
                "hyper_source": "tanimoto"},
    "sweep_c": {"w_recon": 1.0, "w_contrast": 1.0, "w_hyper": 0.5, "w_mem_align": 0.2,
                "w_mem_assign": 0.2, "w_fp": 0.5, "w_desc": 2.0, "w_sim": 1.0, "w_vic": 1.0,
                "hyper_source": "tanimoto"},
}


def _methods(checkpoints: dict[str, Path], ecfp: bool = True) -> dict:
    from mmsa.evaluate import checkpoint_method, ecfp4

    methods = {name: ("cosine", checkpoint_method(p)) for name, p in checkpoints.items()}
    if ecfp:
        methods["ecfp4"] = ("tanimoto", ecfp4)
    return methods


def _rank_and_uniformity(path: Path, smiles: list[str]) -> dict[str, float]:
    from mmsa.evaluate import effective_rank
    from mmsa.evaluate.neighbours import alignment_uniformity
    from mmsa.model.encoder import Encoder

    X = Encoder.load(path).embed(smiles).vectors
    X = X[np.isfinite(X).all(axis=1)]
    _, uni = alignment_uniformity(X, np.zeros((0, 2), dtype=int))
    return {"effective_rank": effective_rank(X), "uniformity": uni}


def _table(results: dict) -> str:
    metrics = sorted({m for r in results.values() for m in r})
    lines = ["| method | " + " | ".join(metrics) + " |",
             "|---" * (len(metrics) + 1) + "|"]
    for name, r in results.items():
        cells = [f"{np.nanmean(r[m]):.3f}" if m in r else "" for m in metrics]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _save(section: str, payload: dict) -> None:
    data = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    data[section] = payload
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=1, default=float))


def baseline(args) -> None:
    from mmsa.evaluate import random_init_checkpoint
    from mmsa.evaluate.neighbours import neighbour_suite
    from mmsa.paths import DEFAULT_CHECKPOINT, cache_dir

    ckpt = Path(args.checkpoint or DEFAULT_CHECKPOINT)
    rnd = random_init_checkpoint(ckpt, cache_dir() / "diagnose" / "random-init.pt", seed=0)
    methods = _methods({"mmsa": ckpt, "random_init": rnd})
    res = neighbour_suite(methods, part=args.part, seeds=args.seeds,
                          hybrid={"hybrid": ("mmsa", "ecfp4", 0.5)})
    print(_table(res))
    _save(f"baseline-{ckpt.stem}-{args.part}", {"checkpoint": str(ckpt), "results": res})


def runs(args) -> None:
    from mmsa.evaluate.neighbours import neighbour_suite
    from mmsa.model.config import build_config
    from mmsa.model.corpus import featurize_corpus, pretraining_corpus
    from mmsa.model.train import pretrain
    from mmsa.paths import cache_dir

    smiles = pretraining_corpus(args.corpus, seed=0, n_jobs=2)[:args.n_molecules]
    base = build_config("default")
    features = featurize_corpus(base, smiles, n_multimodal=args.n_multimodal, n_jobs=2)
    out_root = cache_dir() / "diagnose" / "runs"
    names = args.only or list(RUNS)
    results, meta = {}, {}
    for name in names:
        overrides = {**_ZERO, **RUNS[name]}
        config = build_config("default", **overrides)
        t0 = time.monotonic()
        res = pretrain(config, None, out_root / name, steps=args.steps, seed=0,
                             batch_size=args.batch_size, lr=1e-3, warmup=50,
                             features=features, checkpoint_every=10**9,
                             analogue_fraction=args.analogue_fraction)
        meta[name] = {"overrides": RUNS[name], "train_s": time.monotonic() - t0,
                      "final_losses": res.final_losses,
                      **_rank_and_uniformity(res.checkpoint, smiles[-3000:])}
        r = neighbour_suite(_methods({name: res.checkpoint}, ecfp=False), part="valid",
                            seeds=args.seeds)
        results[name] = r[name]
        log.info("%s: %s", name, {k: round(float(np.nanmean(v)), 3) for k, v in r[name].items()})
        _save(f"runs-{args.steps}", {"args": vars(args) | {"only": names}, "results": results,
                                     "meta": meta})
    print(_table(results))


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("baseline")
    b.add_argument("--checkpoint")
    b.add_argument("--part", default="test", choices=("valid", "test"))
    b.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    r = sub.add_parser("runs")
    r.add_argument("--steps", type=int, default=400)
    r.add_argument("--batch-size", type=int, default=256)
    r.add_argument("--corpus", type=int, default=500_000)
    r.add_argument("--n-molecules", type=int, default=30_000)
    r.add_argument("--n-multimodal", type=int, default=3_000)
    r.add_argument("--analogue-fraction", type=float, default=0.5)
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    r.add_argument("--only", nargs="+", choices=list(RUNS))
    args = p.parse_args()
    {"baseline": baseline, "runs": runs}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
