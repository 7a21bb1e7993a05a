"""Where a library build spends its CPU: per-phase CPU ms per molecule on the first N MOSES
molecules with the shipped checkpoint, the old path against the new one.

    PYTHONPATH=. python benchmarks/build_profile.py [--n 20000] [--repeats 3] [--out JSON]

Phases, each timed with ``time.process_time`` in this one process (torch on one thread),
median of ``--repeats`` runs (the two whole ``embed_chunk`` runs: ``--heavy-repeats``, and
the index, hyperedges and builds once):

* read: ``iter_library`` of the CSV (CSV parsing, parse + standardise + canonical SMILES,
  record frames); ``standardise``: the parse + standardise + canonical SMILES part alone,
  the old way (``standardize_mol`` always) and the new (``standardize_or_reason``, which skips
  the copy when there is nothing to standardise).
* parse: the canonical SMILES parsed (once in the new path; twice in the old, once for the
  graph and again for the fingerprints).
* graph: featurisation of parsed molecules (``GraphFeaturizer.batch_mols``).
* forward: collate + model forward in batches of 1,024.
* fingerprints: Morgan + pattern of parsed molecules, old (one ``np.packbits`` / FPS
  conversion per molecule) and new (:func:`mmsa.library.embed.fingerprints_packed`).
* embed_chunk: the whole per-chunk work, old (``embed_chunk_reference``) and new
  (``embed_chunk``).
* metadata: the metadata parts written and merged as a build does (parquet).
* index, hyperedges: ``ann.build_index`` (auto: flat at this size) and ``ann.knn_graph``.
* build: ``build_library(..., n_jobs=1)`` into a temporary folder, run in a child process
  (the only one running; this process waits), its CPU seconds, wall seconds and peak RSS
  (VmHWM of the child), old and new ``embed_chunk``. Old/new pairs run alternately.

The full-MOSES figure printed is a projection, not a measurement: the per-molecule CPU of
the new build path times 1,936,962 molecules, split over 2 cores, plus the index and
hyperedge times last measured on all of MOSES (they do not scale linearly from N).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MOSES_ROWS = 1_936_962
#: wall seconds of the index and hyperedge phases last measured on all of MOSES (IVF-flat)
MOSES_INDEX_S = 41.0
MOSES_HYPEREDGES_S = 224.0
RESULTS = Path(__file__).resolve().parent / "results" / "build_profile.json"


def _cpu(fn, repeats: int) -> tuple[float, object]:
    """Median CPU seconds of ``fn()`` over ``repeats`` runs, and the last result."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.process_time()
        out = fn()
        times.append(time.process_time() - t0)
    return statistics.median(times), out


def _pair(old, new, repeats: int) -> tuple[float, float, object, object]:
    """Median CPU seconds of ``old()`` and ``new()`` run alternately ``repeats`` times each
    (so a change in the machine's load hits both alike), and their last results."""
    t_old, t_new, a, b = [], [], None, None
    for _ in range(repeats):
        t, a = _cpu(old, 1)
        t_old.append(t)
        t, b = _cpu(new, 1)
        t_new.append(t)
    return statistics.median(t_old), statistics.median(t_new), a, b


def _first_rows(n: int, folder: Path) -> Path:
    import mmsa.data

    src = mmsa.data.fetch("moses")
    dst = folder / f"moses-{n}.csv"
    with open(src) as fin, open(dst, "w") as fout:
        for i, line in enumerate(fin):
            if i > n:
                break
            fout.write(line)
    return dst


def _build_child(csv: str, reference: bool) -> dict:
    """Run in the child process: one build, its CPU, wall and peak RSS."""
    import torch

    torch.set_num_threads(1)
    from mmsa.library import embed
    from mmsa.library.build import build_library

    if reference:
        embed.embed_chunk = embed.embed_chunk_reference
    enc = embed.load_encoder(None, device="cpu")
    with tempfile.TemporaryDirectory() as root:
        t0, c0 = time.perf_counter(), time.process_time()
        build_library(csv, "profile", root=root, encoder=enc, n_jobs=1)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"cpu_s": cpu, "wall_s": wall, "peak_rss_mb": _peak_rss_mb()}


def _peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM (reset at exec, unlike ``ru_maxrss``, which a child
    started by fork + exec inherits from its parent on Linux)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _build(csv: Path, reference: bool) -> dict:
    cmd = [sys.executable, __file__, "--child-build", str(csv)]
    if reference:
        cmd.append("--reference")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def profile(n: int = 20_000, repeats: int = 3, builds: bool = True,
            heavy_repeats: int = 1) -> dict:
    import numpy as np
    import pandas as pd
    import torch
    from rdkit import Chem

    torch.set_num_threads(1)
    from mmsa.chem.io import iter_library
    from mmsa.chem.standardize import parse_smiles, standardize_mol, standardize_or_reason
    from mmsa.library import ann
    from mmsa.library import embed as E
    from mmsa.model.batch import collate

    enc = E.load_encoder(None, device="cpu")
    phases: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        csv = _first_rows(n, tmp)
        raw = pd.read_csv(csv)["smiles"].astype(str).tolist()
        m = len(raw)

        def per_mol(seconds: float) -> float:
            return round(1e3 * seconds / m, 4)

        def read():
            return [c.records for c in iter_library(csv, chunk_size=10_000)]

        def std_old():
            out = []
            for s in raw:
                text = s.strip()
                mol = parse_smiles(s)
                out.append(Chem.MolToSmiles(standardize_mol(
                    mol, fragments="." in text, charges="+" in text or "-" in text)))
            return out

        t_read, frames = _cpu(read, repeats)
        records = pd.concat(frames, ignore_index=True)
        smiles = records["smiles"].tolist()
        t_std_old, t_std_new, ref_std, new_std = _pair(
            std_old, lambda: [standardize_or_reason(s)[0] for s in raw], repeats)
        assert ref_std == new_std == smiles
        phases["read (iter_library)"] = {"new": per_mol(t_read)}
        phases["standardise"] = {"old": per_mol(t_std_old), "new": per_mol(t_std_new)}

        t_parse, mols = _cpu(lambda: [parse_smiles(s) for s in smiles], repeats)
        phases["parse canonical SMILES"] = {"old": per_mol(2 * t_parse), "new": per_mol(t_parse)}
        feat = enc.graph_featurizer
        t_graph, graphs = _cpu(lambda: feat.batch_mols(mols, smiles), repeats)
        phases["graph featurisation"] = {"new": per_mol(t_graph)}

        def forward():
            out = []
            for b0 in range(0, len(graphs), 1024):
                batch = collate(graphs[b0:b0 + 1024])
                with torch.inference_mode():
                    v, _ = enc.model.embed(batch.to(enc.device), mode="fast")
                out.append(v.numpy())
            return out

        t_fwd, _ = _cpu(forward, repeats)
        phases["collate + forward"] = {"new": per_mol(t_fwd)}
        t_fp_old, t_fp_new, old_fp, new_fp = _pair(
            lambda: ([E.morgan_packed(x) for x in mols], [E.pattern_packed(x) for x in mols]),
            lambda: E.fingerprints_packed(mols), repeats)
        assert (np.stack(old_fp[0]) == new_fp[0]).all()
        assert (np.stack(old_fp[1]) == new_fp[1]).all()
        phases["fingerprints (Morgan + pattern)"] = {"old": per_mol(t_fp_old),
                                                     "new": per_mol(t_fp_new)}

        t_ref, t_new, ref, new = _pair(lambda: E.embed_chunk_reference(smiles, enc),
                                       lambda: E.embed_chunk(smiles, enc), heavy_repeats)
        assert (ref.vectors == new.vectors).all() and (ref.pattern == new.pattern).all()
        phases["embed_chunk (all of the above but read)"] = {"old": per_mol(t_ref),
                                                             "new": per_mol(t_new)}

        def metadata():
            part_dir = Path(tempfile.mkdtemp(dir=tmp))
            for p, c0 in enumerate(range(0, len(records), 10_000)):
                records.iloc[c0:c0 + 10_000].to_parquet(part_dir / f"_meta-{p:06d}.parquet",
                                                        index=False)
            parts = sorted(part_dir.glob("_meta-*.parquet"))
            meta = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
            meta.to_parquet(part_dir / "metadata.parquet", index=False)

        t_meta, _ = _cpu(metadata, repeats)
        phases["metadata (parts + merge)"] = {"new": per_mol(t_meta)}

        vectors = np.ascontiguousarray(new.vectors)
        t_idx, (idx, info) = _cpu(lambda: ann.build_index(vectors, "auto"), 1)
        t_hyp, _ = _cpu(lambda: ann.knn_graph(idx, vectors, 8, info=info), 1)
        phases[f"index ({info['type']})"] = {"new": per_mol(t_idx)}
        phases[f"hyperedges (k=8, {info['type']})"] = {"new": per_mol(t_hyp)}

        result: dict = {"molecules": m, "repeats": repeats, "heavy_repeats": heavy_repeats,
                        "phases": phases,
                        "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count()}
        if builds:
            old_b, new_b = _build(csv, reference=True), _build(csv, reference=False)
            for b in (old_b, new_b):
                b["cpu_ms_per_mol"] = per_mol(b["cpu_s"])
            result["build"] = {"old": old_b, "new": new_b}

    # projection: per-molecule phases scale with n; index + hyperedges as last measured
    per_mol_new = (phases["read (iter_library)"]["new"]
                   + phases["embed_chunk (all of the above but read)"]["new"]
                   + phases["metadata (parts + merge)"]["new"])
    per_mol_old = (phases["read (iter_library)"]["new"] - phases["standardise"]["new"]
                   + phases["standardise"]["old"]
                   + phases["embed_chunk (all of the above but read)"]["old"]
                   + phases["metadata (parts + merge)"]["new"])
    result["projection"] = {
        "what": ("PROJECTION, not a measurement: per-molecule CPU x 1,936,962 / 2 cores "
                 "(perfect overlap of n_jobs=2 workers and the reader) + the index and "
                 "hyperedge wall times last measured on all of MOSES"),
        "per_molecule_cpu_ms": {"old": round(per_mol_old, 4), "new": round(per_mol_new, 4)},
        "index_s": MOSES_INDEX_S, "hyperedges_s": MOSES_HYPEREDGES_S,
    }
    for key, ms in (("old", per_mol_old), ("new", per_mol_new)):
        cpu = ms * MOSES_ROWS / 1e3
        result["projection"][f"{key}_minutes_2_cores"] = round(
            (cpu / 2 + MOSES_INDEX_S + MOSES_HYPEREDGES_S) / 60, 1)
        result["projection"][f"{key}_minutes_1_core"] = round(
            (cpu + MOSES_INDEX_S + MOSES_HYPEREDGES_S) / 60, 1)
    return result


def table(result: dict) -> str:
    lines = [f"{'phase':42s} {'old':>8s} {'new':>8s} {'old/new':>8s}   CPU ms/molecule, "
             f"{result['molecules']} MOSES molecules, median of {result['repeats']}"]
    for name, row in result["phases"].items():
        old, new = row.get("old"), row["new"]
        ratio = f"{old / new:8.2f}" if old else f"{'':8s}"
        lines.append(f"{name:42s} {old if old else '':>8} {new:>8} {ratio}")
    if "build" in result:
        for key in ("old", "new"):
            b = result["build"][key]
            lines.append(f"build_library n_jobs=1 ({key}): {b['cpu_ms_per_mol']} CPU ms/mol, "
                         f"{b['wall_s']:.1f} s wall, peak RSS {b['peak_rss_mb']:.0f} MB")
    p = result["projection"]
    lines.append(f"{p['what']}:")
    lines.append(f"  old {p['per_molecule_cpu_ms']['old']} ms/mol -> "
                 f"{p['old_minutes_2_cores']} min on 2 cores ({p['old_minutes_1_core']} on 1)")
    lines.append(f"  new {p['per_molecule_cpu_ms']['new']} ms/mol -> "
                 f"{p['new_minutes_2_cores']} min on 2 cores ({p['new_minutes_1_core']} on 1)")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--heavy-repeats", type=int, default=1,
                    help="repeats of the two whole embed_chunk runs")
    ap.add_argument("--no-build", action="store_true", help="skip the two whole builds")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--child-build", help=argparse.SUPPRESS)
    ap.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child_build:
        print(json.dumps(_build_child(args.child_build, args.reference)))
        return
    result = profile(args.n, args.repeats, builds=not args.no_build,
                     heavy_repeats=args.heavy_repeats)
    print(table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
