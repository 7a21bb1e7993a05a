"""Recall@10 of a built approximate library on outside (ChEMBL) queries, per nprobe.

    python benchmarks/ivf_recall.py [LIBRARY_DIR]

LIBRARY_DIR defaults to the full-MOSES library that benchmarks/search.py builds. The queries
are 100 seeded molecules of mmsa.data "chembl-sample" embedded with the shipped checkpoint;
exact top-10 by brute force over the library's vectors. Prints one line per nprobe and writes
benchmarks/results/ivf_recall.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mmsa.data import fetch
from mmsa.model.encoder import Encoder

K = 10
BLOCK = 262_144


def exact_topk(vectors: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    """Row ids int64 [q, k] of the k largest inner products, streamed in blocks."""
    ids = np.zeros((len(queries), 0), dtype=np.int64)
    scores = np.zeros((len(queries), 0), dtype=np.float32)
    for start in range(0, len(vectors), BLOCK):
        block = np.asarray(vectors[start:start + BLOCK])
        s = np.concatenate([scores, queries @ block.T], axis=1)
        i = np.concatenate([ids, np.broadcast_to(np.arange(start, start + len(block)),
                                                 (len(queries), len(block)))], axis=1)
        order = np.argsort(-s, axis=1)[:, :k]
        scores, ids = np.take_along_axis(s, order, 1), np.take_along_axis(i, order, 1)
    return ids


def main() -> None:
    import faiss

    default = Path.home() / ".cache/mmsa/bench/indexes/moses-all"
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    manifest = json.loads((root / "manifest.json").read_text())
    dim = int(manifest["embedding"]["dim"])
    vectors = np.memmap(root / "vectors.f32", dtype=np.float32, mode="r").reshape(-1, dim)
    index = faiss.read_index(str(root / "index.faiss"))
    smiles = pd.read_csv(fetch("chembl-sample"), nrows=5000)["smiles"]
    res = Encoder.load().embed(smiles.sample(100, random_state=0).tolist())
    queries = res.vectors[res.ok]
    truth = exact_topk(vectors, queries)
    rows = []
    for nprobe in (1, 2, 4, 8, 16, 32):
        index.nprobe = nprobe
        t0 = time.perf_counter()
        _, found = index.search(queries, K)
        ms = (time.perf_counter() - t0) / len(queries) * 1e3
        recall = float(np.mean([len(set(a) & set(b)) / K for a, b in zip(found, truth)]))
        rows.append({"nprobe": nprobe, "recall_at_10": round(recall, 4),
                     "ms_per_query_batched": round(ms, 4)})
        print(f"nprobe {nprobe:3d}: recall@10 {recall:.3f} on {len(queries)} outside queries, "
              f"{ms:.3f} ms/query (batched)")
    out = Path(__file__).parent / "results" / "ivf_recall.json"
    out.write_text(json.dumps({"library": str(root), "index": manifest.get("index"),
                               "queries": int(len(queries)), "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
