"""`parse_canonical` against `parse_smiles` on real molecules: the same features and
fingerprints, and how much faster.

The build re-parses every standardised (RDKit-written) SMILES for its graph, embedding and
fingerprints (mmsa.library.embed). `mmsa.chem.standardize.parse_canonical` skips the
kekulisation and aromaticity perception such a SMILES does not need. This script checks, on
every molecule of the data sets named, that both parses give identical graph features
(`GraphFeaturizer.batch_mols`), Morgan r=2 and pattern 2048-bit fingerprints and canonical
SMILES, and times both (CPU seconds, this process, median of ``--repeats``).

    PYTHONPATH=. python benchmarks/parse_canonical.py [--sets moses chembl-sample ...]
        [--n 300000] [--out benchmarks/results/parse_canonical.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from build_profile import _cpu  # this folder is on sys.path when the script runs

OUT = Path(__file__).resolve().parent / "results" / "parse_canonical.json"
SETS = ("moses", "chembl-sample", "approved-drugs", "nci-5k", "qm9")


def check(name: str, n: int | None, repeats: int) -> dict:
    import numpy as np
    import pandas as pd
    from rdkit import Chem

    import mmsa.data
    from mmsa.chem.graph import GraphFeaturizer
    from mmsa.chem.standardize import parse_canonical, parse_smiles, standardize_or_reason
    from mmsa.library.embed import fingerprints_packed
    from mmsa.types import InputError

    frame = pd.read_csv(mmsa.data.fetch(name), nrows=n)
    column = "smiles" if "smiles" in frame.columns else frame.columns[0]
    canonical = [s for s in (standardize_or_reason(str(x))[0] for x in frame[column]) if s]
    # RDKit round-trip failures: SMILES it wrote but cannot read back in full (e.g. QM9's
    # N=c1cc(=O)cc[nH]1: "Can't kekulize"); parse_canonical reads them (no kekulisation)
    not_read_back = []
    for s in canonical:
        try:
            parse_smiles(s)
        except InputError:
            not_read_back.append(s)
    skip = set(not_read_back)
    canonical = [s for s in canonical if s not in skip]
    t_full, full = _cpu(lambda: [parse_smiles(s) for s in canonical], repeats)
    t_fast, fast = _cpu(lambda: [parse_canonical(s) for s in canonical], repeats)
    feat = GraphFeaturizer()
    mismatches = {"graph features": 0, "morgan": 0, "pattern": 0, "canonical SMILES": 0}
    examples: list[str] = []
    block = 10_000
    for b0 in range(0, len(canonical), block):
        smi, a, b = (x[b0:b0 + block] for x in (canonical, full, fast))
        fa, fb = feat.batch_mols(a, smi), feat.batch_mols(b, smi)
        ma, pa = fingerprints_packed(a)
        mb, pb = fingerprints_packed(b)
        for i in range(len(smi)):
            bad = []
            if not (np.array_equal(fa[i].x, fb[i].x) and np.array_equal(fa[i].edge_index,
                    fb[i].edge_index) and np.array_equal(fa[i].edge_attr, fb[i].edge_attr)):
                bad.append("graph features")
            if not np.array_equal(ma[i], mb[i]):
                bad.append("morgan")
            if not np.array_equal(pa[i], pb[i]):
                bad.append("pattern")
            if Chem.MolToSmiles(a[i]) != Chem.MolToSmiles(b[i]):
                bad.append("canonical SMILES")
            for key in bad:
                mismatches[key] += 1
            if bad and len(examples) < 10:
                examples.append(smi[i])
    m = len(canonical)
    return {"molecules": m, "mismatches": mismatches, "examples": examples,
            "written_but_not_read_back_by_parse_smiles": len(not_read_back),
            "not_read_back_examples": not_read_back[:5],
            "parse_smiles_ms_per_mol": round(1e3 * t_full / m, 4),
            "parse_canonical_ms_per_mol": round(1e3 * t_fast / m, 4),
            "speedup": round(t_full / t_fast, 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", nargs="+", default=list(SETS))
    p.add_argument("--n", type=int, default=300_000, help="rows per data set at most")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    results = {}
    print(f"{'data set':16s} {'molecules':>9s} {'parse_smiles':>12s} {'canonical':>9s} "
          f"{'speed-up':>8s}  mismatches (CPU ms/molecule)")
    for name in args.sets:
        r = check(name, args.n, args.repeats)
        results[name] = r
        print(f"{name:16s} {r['molecules']:9d} {r['parse_smiles_ms_per_mol']:12.4f} "
              f"{r['parse_canonical_ms_per_mol']:9.4f} {r['speedup']:7.2f}x  "
              f"{sum(r['mismatches'].values())} {r['examples'][:3]}", flush=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    return 1 if any(sum(r["mismatches"].values()) for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
