"""``mmsa pretrain`` and ``mmsa embed``: parsing only, the work is in mmsa.model.train / mmsa.model.encoder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pretrain", help="pre-train MMSA on a SMILES set (default: MOSES training molecules)",
        description="Pre-train MMSA. Featurisation is cached under $MMSA_CACHE; writes "
                    "config.json, log.csv (per-step losses), last.pt and model.pt to --out.")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--input", help="CSV/SMI/SDF of training molecules (default: MOSES train)")
    p.add_argument("--smiles-col", help="SMILES column of --input")
    p.add_argument("--n-molecules", type=int, default=50_000,
                   help="molecules drawn from MOSES train (default 50000)")
    p.add_argument("--corpus", type=int, metavar="N",
                   help="train on the mixed corpus of N molecules (all drug-like ChEMBL of "
                        "chembl-sample + MOSES, evaluation sets excluded) with the chemistry "
                        "targets (Morgan environments, descriptors, scaffold analogues)")
    p.add_argument("--n-multimodal", type=int, default=100_000,
                   help="with --corpus: molecules that also get a depiction (default 100000)")
    p.add_argument("--n-geometry", type=int,
                   help="with --corpus: molecules (of those) that also get a 3D conformer "
                        "(default: --n-multimodal)")
    p.add_argument("--analogue-fraction", type=float, default=0.5,
                   help="with --corpus: share of each batch drawn as same-scaffold pairs")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=200)
    p.add_argument("--max-minutes", type=float, help="stop after this much training time")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--init", metavar="CKPT",
                   help="start from these weights (fine-tune with another objective; same "
                        "architecture, fresh optimizer and schedule)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    p.add_argument("--n-jobs", type=int, default=2, help="featurisation processes")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--preset", choices=("default", "tiny"), default="default")
    p.add_argument("--config", help="JSON object of MMSAConfig overrides, e.g. '{\"dim\": 64}'")
    p.add_argument("--image-size", type=int, help="depiction size in pixels")
    for name in ("image", "geometry", "hypergraph", "memory"):
        p.add_argument(f"--no-{name}", action="store_true", help=f"ablation: use_{name}=False")
    p.add_argument("--export", help="also copy the final model (no optimizer state) here")
    p.add_argument("--featurize-only", action="store_true",
                   help="only featurise and cache the training set")
    p.set_defaults(func=run_pretrain)

    e = subparsers.add_parser(
        "embed", help="embed a library file into an .npy matrix (one row per input row)",
        description="Embed every row of INPUT with an MMSA checkpoint. OUT.npy is float32 "
                    "[rows, dim] in input order (row i is input row i: line i of a SMILES "
                    "file, data row i of a CSV/TSV, record i of an SDF), NaN rows where a "
                    "molecule failed (listed on stderr) or a line was skipped (blank, "
                    "comment, header); OUT.slots.npy holds the memory-slot weights "
                    "[rows, num_slots]. The delimiter and SMILES column used are printed.")
    e.add_argument("input", help=".smi, .csv, .tsv, .sdf (also .smiles .ism .can .txt .tab "
                                 ".sd), optionally .gz")
    e.add_argument("--out", required=True, help="output .npy path")
    e.add_argument("--smiles-col", help="SMILES column (found automatically by default)")
    e.add_argument("--id-col", help="id column (found automatically by default)")
    e.add_argument("--mode", choices=("fast", "full"), default="fast")
    e.add_argument("--checkpoint", help="checkpoint (default: the shipped mmsa/weights/mmsa.pt)")
    e.add_argument("--batch-size", type=int, default=1024)
    e.add_argument("--n-jobs", type=int, default=1)
    e.add_argument("--device", default="auto")
    e.add_argument("--no-slots", action="store_true", help="do not write OUT.slots.npy")
    e.set_defaults(func=run_embed)


def run_pretrain(args: argparse.Namespace) -> int:
    from mmsa.model.config import build_config
    from mmsa.model.corpus import featurize_corpus, moses_training_smiles, pretraining_corpus
    from mmsa.model.packed import featurize_for_pretraining
    from mmsa.model.train import pretrain

    overrides = json.loads(args.config) if args.config else {}
    for name in ("image", "geometry", "hypergraph", "memory"):
        if getattr(args, f"no_{name}"):
            overrides[f"use_{name}"] = False
    config = build_config(args.preset, image_size=args.image_size, **overrides)
    if args.corpus:
        smiles = pretraining_corpus(args.corpus, seed=args.seed, n_jobs=args.n_jobs)
        packed = featurize_corpus(config, smiles, args.n_multimodal, n_jobs=args.n_jobs,
                                        n_geometry=args.n_geometry,
                                        progress=True)
        print(f"corpus: {len(packed)} molecules", file=sys.stderr)
        if args.featurize_only:
            return 0
        result = pretrain(config, None, args.out, steps=args.steps, seed=args.seed,
                                batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
                                checkpoint_every=args.checkpoint_every, resume=args.resume,
                                device=args.device, progress=True, features=packed,
                                max_minutes=args.max_minutes, threads=args.threads,
                                analogue_fraction=args.analogue_fraction, init=args.init)
        return _finish_pretrain(args, result)
    if args.input:
        from mmsa.chem.io import read_library

        records, _ = read_library(args.input, smiles_col=args.smiles_col)
        smiles = records["smiles"].tolist()
    else:
        smiles = moses_training_smiles(args.n_molecules, seed=args.seed)
    if args.featurize_only:
        packed = featurize_for_pretraining(config, smiles, n_jobs=args.n_jobs,
                                                 progress=True)
        print(f"featurised {len(packed)} molecules", file=sys.stderr)
        return 0
    result = pretrain(config, smiles, args.out, steps=args.steps, seed=args.seed,
                            batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
                            n_jobs=args.n_jobs, checkpoint_every=args.checkpoint_every,
                            resume=args.resume, device=args.device, progress=True,
                            max_minutes=args.max_minutes, threads=args.threads,
                            init=args.init)
    return _finish_pretrain(args, result)


def _finish_pretrain(args: argparse.Namespace, result) -> int:
    from mmsa.model.checkpoint import export_checkpoint
    from mmsa.model.train import plot_loss_curves

    plot_loss_curves(result.out_dir / "log.csv", result.out_dir / "loss_curves.png")
    if args.export:
        export_checkpoint(result.checkpoint, args.export)
    losses = ", ".join(f"{k}={v:.4f}" for k, v in result.final_losses.items())
    print(f"{result.steps} steps on {result.num_molecules} molecules in "
          f"{result.wall_time_s:.0f} s; final {losses}", file=sys.stderr)
    print(result.checkpoint)
    return 0


def run_embed(args: argparse.Namespace) -> int:
    import numpy as np
    import pandas as pd

    from mmsa.chem.io import iter_library
    from mmsa.model.encoder import Encoder
    from mmsa.types import Failure

    frames, read_failures, skipped, n, info = [], [], 0, 0, None
    for chunk in iter_library(args.input, smiles_col=args.smiles_col, id_col=args.id_col):
        frames.append(chunk.records)
        read_failures.extend(chunk.failures)
        skipped += chunk.skipped
        n = max(n, chunk.end_row)
        info = chunk.info
    records = pd.concat(frames, ignore_index=True)
    print(f"read {args.input}: {info.describe()}", file=sys.stderr)
    encoder = Encoder.load(args.checkpoint, device=args.device)
    res = encoder.embed(records["smiles"].tolist(), mode=args.mode,
                        batch_size=args.batch_size, n_jobs=args.n_jobs, progress=True)
    rows = records["row"].to_numpy(dtype=np.int64)
    vectors = np.full((n, encoder.dim), np.nan, dtype=np.float32)
    slots = np.full((n, encoder.num_slots), np.nan, dtype=np.float32)
    vectors[rows] = res.vectors
    slots[rows] = res.slot_weights
    failures = list(read_failures)
    inputs = records["input_smiles"].tolist()
    failures += [Failure(int(rows[f.row]), inputs[f.row], f.reason) for f in res.failures]
    out = Path(args.out)
    if out.suffix != ".npy":
        out = out.with_name(out.name + ".npy")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, vectors)
    if not args.no_slots:
        np.save(out.with_name(out.name[:-4] + ".slots.npy"), slots)
    for f in sorted(failures, key=lambda f: f.row):
        print(f"failed: {f}", file=sys.stderr)
    total = len(records) + len(read_failures)
    note = (f"; {skipped} blank/comment/header lines skipped (NaN rows, so row i is input "
            "row i)" if skipped else "")
    print(f"embedded {total - len(failures)} of {total} rows ({len(failures)} failed){note}"
          f" -> {out} [{n} rows]", file=sys.stderr)
    return 0
