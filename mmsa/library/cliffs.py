"""Activity cliffs: close neighbours with a large difference in a numeric property, ranked by
the structure-activity landscape index SALI = |y_i - y_j| / (1 - sim(i, j)) (Guha & Van
Drie, 2008). Neighbours come from the library's stored hyperedges (embedding cosine) or
from Morgan Tanimoto among them."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["activity_cliffs", "numeric_columns", "pair_tanimoto", "sali"]

#: similarity is capped below 1 so identical neighbours get a large, finite SALI
MAX_SIM = 0.99


def sali(delta: np.ndarray, sim: np.ndarray) -> np.ndarray:
    """SALI of pairs: float [m] from property differences and similarities (both [m])."""
    sim = np.minimum(np.asarray(sim, dtype=np.float64), MAX_SIM)
    return np.abs(np.asarray(delta, dtype=np.float64)) / (1.0 - sim)


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.int32)


def pair_tanimoto(packed: np.ndarray, a: np.ndarray, b: np.ndarray, block: int = 65536
                  ) -> np.ndarray:
    """Tanimoto of fingerprint pairs (``packed`` uint8 [n, bytes]; rows ``a``, ``b`` [m])."""
    out = np.empty(len(a), dtype=np.float64)
    for s in range(0, len(a), block):
        x, y = packed[a[s:s + block]], packed[b[s:s + block]]
        inter = _POPCOUNT[x & y].sum(1)
        union = _POPCOUNT[x | y].sum(1)
        out[s:s + block] = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    return out


def numeric_columns(metadata: pd.DataFrame) -> list[str]:
    """Property columns with numbers in at least half the rows (an activity, a logBB)."""
    from mmsa.library.slots import NON_PROPERTY_COLUMNS

    out = []
    for c in metadata.columns:
        if c in NON_PROPERTY_COLUMNS:
            continue
        values = pd.to_numeric(metadata[c], errors="coerce")
        if values.notna().mean() >= 0.5 and values.nunique() > 2:
            out.append(c)
    return out


def activity_cliffs(lib, column: str, top: int = 50, similarity: str = "cosine",
                    min_similarity: float = 0.0) -> pd.DataFrame:
    """The ``top`` pairs of neighbours with the highest SALI for ``column``.

    Pairs are each molecule with the members of its stored hyperedge (its nearest
    neighbours in the embedding), counted once; ``similarity`` is "cosine" (embedding) or
    "tanimoto" (Morgan, computed for those pairs). Pairs with a missing value, the same
    parent structure or similarity below ``min_similarity`` are left out.

    Returns columns ``row_a``, ``row_b``, ``id_a``, ``id_b``, ``smiles_a``, ``smiles_b``,
    ``value_a``, ``value_b``, ``delta`` (b - a), ``similarity``, ``sali``; by SALI, highest
    first.
    """
    meta = lib.metadata
    y = pd.to_numeric(meta[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    edges = np.asarray(lib.hyperedges, dtype=np.int64)
    scores = np.asarray(lib.hyperedge_scores, dtype=np.float64)
    n, width = edges.shape
    a = np.repeat(np.arange(n), width - 1)
    b = edges[:, 1:].ravel()
    sim = scores[:, 1:].ravel()
    ok = (b >= 0) & (b != a)
    a, b, sim = a[ok], b[ok], sim[ok]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    key = lo * n + hi
    _, first = np.unique(key, return_index=True)
    a, b, sim = lo[first], hi[first], sim[first]
    smiles = meta["smiles"].to_numpy()
    ok = np.isfinite(y[a]) & np.isfinite(y[b]) & (smiles[a] != smiles[b])
    a, b, sim = a[ok], b[ok], sim[ok]
    if similarity == "tanimoto":
        sim = pair_tanimoto(np.asarray(lib.morgan), a, b)
    elif similarity != "cosine":
        raise ValueError(f"similarity must be 'cosine' or 'tanimoto', not {similarity!r}")
    ok = sim >= min_similarity
    a, b, sim = a[ok], b[ok], sim[ok]
    s = sali(y[b] - y[a], sim)
    order = np.lexsort((b, a, -s))[:top]
    a, b, sim, s = a[order], b[order], sim[order], s[order]
    ids = meta["id"].to_numpy()
    return pd.DataFrame({
        "row_a": a, "row_b": b, "id_a": ids[a], "id_b": ids[b],
        "smiles_a": smiles[a], "smiles_b": smiles[b], "value_a": y[a], "value_b": y[b],
        "delta": y[b] - y[a], "similarity": sim, "sali": s,
    })
