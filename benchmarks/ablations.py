"""Pre-train the ablations of MMSA and an equal-budget full-model control for `mmsa evaluate`.

Every run uses the same molecules (a seeded sample of the MOSES training split), the same
featurised tensors, the same architecture widths, batch size, number of steps and seed; only
the switches differ:

    full           the complete model (the control the ablations are compared with)
    graph_only     use_image=False, use_geometry=False (graph vs augmented-graph contrastive)
    no_hypergraph  use_hypergraph=False
    no_memory      use_memory=False

Checkpoints go to $MMSA_CACHE/ablations/STEM.pt with STEM.json (data size, steps, seed, wall
time, final losses) and the training run (log.csv, config.json) in $MMSA_CACHE/ablations/runs/.
Features are computed once and cached as $MMSA_CACHE/ablations/features-KEY.npz.

    nice -n 10 python benchmarks/ablations.py --n-molecules 10000 --steps 500
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import multiprocessing as mp
import shutil
import sys
import time
from pathlib import Path

log = logging.getLogger("benchmarks.ablations")

_FEATURIZERS: tuple = ()


def _init_worker(featurizers: tuple) -> None:
    global _FEATURIZERS
    _FEATURIZERS = featurizers


def _featurize_one(smiles: str):
    """(graph | None, image | None, conformer | ConformerFailure | None) for one molecule."""
    graph_f, image_f, conf_f = _FEATURIZERS
    try:
        graph = graph_f(smiles)
    except Exception:  # an invalid molecule is left out (counted by the caller)
        return None, None, None
    if graph.x.shape[0] == 0:
        return None, None, None
    try:
        image = image_f(smiles)
    except Exception:
        image = None
    try:
        conf = conf_f(smiles)
    except Exception:
        conf = None
    return graph, image, conf


def featurize(config, smiles: list[str], n_jobs: int, cache_root: Path):
    """Packed graph + image + conformer features of ``smiles`` (cached), molecules whose graph
    fails left out. -> (PackedFeatures, seconds spent featurising or 0 when cached)."""
    from tqdm import tqdm

    from mmsa.chem.conformer import ConformerFeaturizer
    from mmsa.chem.graph import GraphFeaturizer
    from mmsa.chem.image import ImageFeaturizer
    from mmsa.model.featurize import build_featurizer
    from mmsa.model.packed import PackedFeatures, pack_features

    icfg = dict(config.image_featurizer or {})
    icfg.setdefault("size", config.image_size)
    featurizers = (build_featurizer(GraphFeaturizer, config.graph_featurizer),
                   build_featurizer(ImageFeaturizer, icfg),
                   build_featurizer(ConformerFeaturizer, config.conformer_featurizer))
    h = hashlib.sha256(json.dumps([f.config() for f in featurizers], sort_keys=True,
                                  default=str).encode())
    for s in smiles:
        h.update(s.encode() + b"\n")
    path = cache_root / f"features-{h.hexdigest()[:20]}.npz"
    if path.is_file():
        log.info("features from cache %s", path)
        return PackedFeatures.load(path), 0.0
    t0 = time.perf_counter()
    with mp.get_context("fork").Pool(n_jobs, _init_worker, (featurizers,)) as pool:
        out = list(tqdm(pool.imap(_featurize_one, smiles, chunksize=32), total=len(smiles),
                        desc="featurise", unit="mol", file=sys.stderr))
    keep = [i for i, (g, _, _) in enumerate(out) if g is not None]
    if len(keep) < len(smiles):
        log.warning("%d of %d molecules failed graph featurisation: left out",
                    len(smiles) - len(keep), len(smiles))
    packed = pack_features([out[i][0] for i in keep], [out[i][1] for i in keep],
                           [out[i][2] for i in keep])
    import numpy as np

    packed.rows = np.asarray(keep, dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    packed.save(path)
    seconds = time.perf_counter() - t0
    log.info("featurised %d molecules in %.0f s (%d conformers) -> %s", len(keep), seconds,
             int(packed.conf_ok.sum()), path)
    return packed, seconds


def corpus_prefix(path: str | None, n: int):
    """The first ``n`` molecules of a packed pre-training corpus (graphs, images, conformers,
    chemistry targets), as a new :class:`mmsa.model.packed.PackedFeatures`."""
    import numpy as np

    from mmsa.model.packed import PackedFeatures
    from mmsa.paths import cache_dir

    if path is None:
        found = sorted((cache_dir() / "pretrain").glob("corpus-*.npz"),
                       key=lambda q: q.stat().st_mtime)
        if not found:
            raise SystemExit("no packed corpus: run `mmsa pretrain --corpus N --featurize-only`")
        path = str(found[-1])
    with np.load(path, allow_pickle=False) as d:
        node_ptr, edge_ptr = d["node_ptr"], d["edge_ptr"]
        if n >= len(node_ptr) - 1:
            raise SystemExit(f"{path} holds only {len(node_ptr) - 1} molecules")
        a, e = int(node_ptr[n]), int(edge_ptr[n])
        out = {"x": d["x"][:a], "node_ptr": node_ptr[:n + 1], "edge_index": d["edge_index"][:, :e],
               "edge_attr": d["edge_attr"][:e], "edge_ptr": edge_ptr[:n + 1],
               "rows": d["rows"][:n]}
        for k in ("fp_counts", "descriptors", "scaffold"):
            out[k] = d[k][:n]
        out["desc_centre"], out["desc_scale"] = d["desc_centre"], d["desc_scale"]
        if "image_row" in d.files:
            rows = d["image_row"][:n]
            out["image_row"], out["image_ok"] = rows, rows >= 0
            out["images"] = d["images"][:int(rows.max()) + 1]
        if "conf_ptr" in d.files:
            c = d["conf_ptr"][:n + 1]
            out["conf_ptr"], out["conf_ok"] = c, d["conf_ok"][:n]
            out["conf_z"], out["conf_pos"] = d["conf_z"][:int(c[-1])], d["conf_pos"][:int(c[-1])]
            if not out["conf_ok"].all():
                log.warning("%d of the first %d molecules have no conformer",
                            int((~out["conf_ok"]).sum()), n)
    log.info("first %d molecules of %s", n, path)
    return PackedFeatures(**out)


def main(argv: list[str] | None = None) -> int:
    from mmsa.evaluate import ABLATIONS, ablations_dir

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-molecules", type=int, default=10_000)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-jobs", type=int, default=2, help="featurisation processes")
    p.add_argument("--only", nargs="+", choices=list(ABLATIONS), help="train only these")
    p.add_argument("--force", action="store_true", help="retrain checkpoints already present")
    p.add_argument("--out", default=None, help="folder (default $MMSA_CACHE/ablations)")
    p.add_argument("--config", default=None,
                   help="JSON of MMSAConfig overrides shared by every run (default: the "
                   "shipped model's preset)")
    p.add_argument("--featurize-only", action="store_true")
    p.add_argument("--features", default=None,
                   help="use this packed-features .npz (written by an earlier run) as is")
    p.add_argument("--from-corpus", type=int, metavar="N", default=None,
                   help="train on the first N molecules of the packed pre-training corpus "
                   "(`mmsa pretrain --corpus`: chemistry targets, images and 3D included; N must "
                   "not exceed its 3D share) instead of a MOSES sample")
    p.add_argument("--corpus-features", default=None,
                   help="with --from-corpus: the packed corpus .npz (default: the newest "
                   "$MMSA_CACHE/pretrain/corpus-*.npz)")
    p.add_argument("--analogue-fraction", type=float, default=0.0,
                   help="share of each batch drawn as same-scaffold pairs (needs --from-corpus)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s", stream=sys.stderr)

    from mmsa.model.config import build_config
    from mmsa.model.corpus import moses_training_smiles
    from mmsa.model.train import pretrain

    root = Path(args.out) if args.out else ablations_dir()
    root.mkdir(parents=True, exist_ok=True)
    shared = json.loads(args.config) if args.config else {}
    base = build_config("default", **shared)
    if args.from_corpus:
        packed, feat_s = corpus_prefix(args.corpus_features, args.from_corpus), 0.0
        data = f"first {len(packed)} molecules of the pre-training corpus"
    elif args.features:
        from mmsa.model.packed import PackedFeatures

        packed, feat_s = PackedFeatures.load(args.features), 0.0
        log.info("features from %s (%d molecules)", args.features, len(packed))
    else:
        smiles = moses_training_smiles(args.n_molecules, seed=args.seed)
        packed, feat_s = featurize(base, smiles, args.n_jobs, root)
    if not args.from_corpus:
        data = "MOSES train, seeded sample"
    if args.featurize_only:
        return 0
    for stem in args.only or list(ABLATIONS):
        label, switches = ABLATIONS[stem]
        ckpt = root / f"{stem}.pt"
        if ckpt.is_file() and not args.force:
            log.info("%s exists: skipping (use --force to retrain)", ckpt)
            continue
        config = build_config("default", **shared, **switches)
        run_dir = root / "runs" / stem
        if run_dir.exists():
            shutil.rmtree(run_dir)
        log.info("pre-training %s (%s): %d molecules, %d steps", stem, label, len(packed),
                 args.steps)
        res = pretrain(config, None, run_dir, steps=args.steps, seed=args.seed,
                       batch_size=args.batch_size, features=packed, device="cpu",
                       progress=True, checkpoint_every=max(args.steps, 1),
                       analogue_fraction=args.analogue_fraction)
        shutil.copyfile(res.checkpoint, ckpt)
        meta = {
            "label": label, "switches": switches, "shared_overrides": shared,
            "n_molecules": res.num_molecules, "steps": res.steps, "seed": args.seed,
            "batch_size": args.batch_size, "wall_s": round(res.wall_time_s, 1),
            "final_losses": {k: round(v, 4) for k, v in res.final_losses.items()},
            "featurisation_s": round(feat_s, 1), "data": data,
            "analogue_fraction": args.analogue_fraction,
        }
        (root / f"{stem}.json").write_text(json.dumps(meta, indent=2) + "\n")
        print(json.dumps({stem: meta}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
