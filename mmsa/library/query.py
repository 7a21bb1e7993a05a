"""The four search modes over an opened :class:`mmsa.library.library.Library`.

Kernels (popcount Tanimoto, the subset screen, SubstructLibrary matching) are in
:mod:`mmsa.library.search`; the popcount-pruned Tanimoto mode in :mod:`mmsa.library.tanimoto`;
fingerprints in :mod:`mmsa.chem.fingerprints`; limits in :mod:`mmsa.limits`.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from mmsa import limits
from mmsa.library.library import HYBRID_WEIGHT, MODES
from mmsa.types import InputError

log = logging.getLogger(__name__)

#: substructure search with k ranks at most this many matches (the first, in library order)
SUBSTRUCTURE_SCAN = 10_000
#: hybrid mode scores every molecule up to this library size, else a candidate union
HYBRID_EXACT_MAX = 500_000
HYBRID_CANDIDATES = 2_000


def standard_query(query: str):
    """Standardised RDKit Mol of a query SMILES (as the library's molecules were)."""
    from mmsa.chem.standardize import parse_smiles, standardize_mol

    query = limits.check_query_text(query)
    try:
        mol = standardize_mol(parse_smiles(query))
    except InputError as exc:
        raise InputError(f"could not parse query SMILES {query!r}: {exc}") from None
    limits.check_query_atoms(mol)
    return mol


def search_vectors(lib, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Index search of ``queries`` float32 [m, dim]: (scores float32 [m, k], rows int64
    [m, k]); rows -1 where fewer than k hits."""
    k = limits.check_k(k, allow_none=False)
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    if q.shape[1] != lib.dim:
        raise InputError(f"query vectors have width {q.shape[1]}, the library {lib.dim}")
    if len(lib) == 0:
        return np.zeros((len(q), k), np.float32), np.full((len(q), k), -1, np.int64)
    from mmsa.library import ann

    kk = min(k, len(lib))
    if lib.shards:  # each shard's index, the per-shard top-k merged
        parts = lib.shard_parts

        def run():
            return ann.search_shards(parts, q, kk)
    else:
        index, info = lib.index, lib.manifest["index"]
        # IVF-PQ / IVF-OPQ re-rank their candidates from the memory-mapped vectors
        vectors = lib.vectors if info.get("type") in ann.RERANKED else None

        def run():
            return ann.search(index, info, vectors, q, kk)
    if len(q) <= 8:  # a few queries: OpenMP threads only add synchronisation
        import faiss

        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            d, i = run()
        finally:
            faiss.omp_set_num_threads(threads)
    else:
        d, i = run()
    if kk < k:
        d = np.concatenate([d, np.full((len(q), k - kk), -np.inf, d.dtype)], axis=1)
        i = np.concatenate([i, np.full((len(q), k - kk), -1, i.dtype)], axis=1)
    return d.astype(np.float32), i.astype(np.int64)


def tanimoto_index(lib):
    """The library's :class:`mmsa.library.tanimoto.TanimotoIndex` (Morgan fingerprints sorted
    by popcount), kept on the Library object. At the first Tanimoto search it is loaded from
    ``lib.cache_dir`` when a cache there was built from this morgan.u8 (its sha256) and
    passes its own checksums, else built from morgan.u8 and saved there atomically (a failed
    save only costs the rebuild next time). Derived from morgan.u8 alone, so every library,
    old ones included, gets it."""
    index = getattr(lib, "_tanimoto_index", None)
    if index is None:
        from mmsa.library.tanimoto import TanimotoIndex

        morgan = lib.morgan  # verifies morgan.u8 first
        entry = lib.manifest["files"]["morgan.u8"]
        n, width = len(lib), int(entry["shape"][1])
        try:
            folder = lib.cache_dir
        except OSError:
            folder = None
        index = (TanimotoIndex.load(folder, entry["sha256"], n, width)
                 if folder is not None else None)
        if index is None:
            index = TanimotoIndex.from_packed(morgan)
            if folder is not None:
                try:
                    index.save(folder, entry["sha256"])
                except OSError as exc:
                    log.warning("could not cache the Tanimoto index in %s: %s", folder, exc)
        lib._tanimoto_index = index
    return index


def _columns(lib) -> dict[str, np.ndarray]:
    """Metadata columns as numpy arrays (cached; fancy indexing them is fast)."""
    if lib._cols is None:
        meta = lib.metadata
        names = ["id", "smiles"] + [c for c in lib.property_columns if c in meta.columns]
        lib._cols = {c: meta[c].to_numpy() for c in names}
    return lib._cols


def frame(lib, rows, scores, tanimoto, cosine) -> pd.DataFrame:
    """The hits table of :meth:`Library.search`."""
    cols = _columns(lib)
    rows = np.asarray(rows, dtype=np.int64)
    n = len(rows)
    data = {
        "rank": np.arange(1, n + 1),
        "row": rows,
        "id": cols["id"][rows],
        "smiles": cols["smiles"][rows],
        "score": np.asarray(scores, dtype=np.float64),
        "tanimoto": np.asarray(tanimoto, dtype=np.float64),
        "cosine": (np.asarray(cosine, dtype=np.float64) if cosine is not None
                   else np.full(n, np.nan)),
    }
    for col, values in cols.items():
        if col not in data:
            data[col] = values[rows]
    return pd.DataFrame(data)


def substructure(lib, query: str, k: int | None) -> pd.DataFrame:
    from mmsa.chem.fingerprints import morgan_fingerprint, repack_pattern, screen_fingerprint
    from mmsa.library import search as S

    patt, is_smarts = S.parse_query(query, allow_smarts=True)
    limits.check_query_atoms(patt)
    # with k given, rank the first SUBSTRUCTURE_SCAN matches (library order), so that a
    # common pattern in a million molecules still answers in seconds
    limit = None if k is None else max(int(k), SUBSTRUCTURE_SCAN)
    screen = repack_pattern(screen_fingerprint(patt), lib.pattern_packing)
    rows = S.substructure_rows(patt, lib.pattern, _columns(lib)["smiles"], limit=limit,
                               screen=screen, seconds=limits.QUERY_SECONDS)
    if is_smarts:
        tani = np.full(len(rows), np.nan)
        order = np.arange(len(rows))
    else:
        tani = S.tanimoto_rows(morgan_fingerprint(patt), lib.morgan, rows)
        order = np.lexsort((rows, -tani))
    rows, tani = rows[order], tani[order]
    if k is not None:
        rows, tani = rows[:k], tani[:k]
    return frame(lib, rows, np.ones(len(rows)), tani, None)


def search(lib, query: str, k: int | None = 10, mode: str = "embedding",
           threshold: float | None = None) -> pd.DataFrame:
    """:meth:`Library.search` (see there)."""
    from rdkit import Chem

    from mmsa.chem.fingerprints import morgan_fingerprint
    from mmsa.library import search as S

    if mode not in MODES:
        raise InputError(f"unknown search mode {mode!r}; choose one of {', '.join(MODES)}")
    k = limits.check_k(k, allow_none=mode != "embedding")
    if mode == "substructure":
        return substructure(lib, query, k)
    mol = standard_query(query)
    qfp = morgan_fingerprint(mol)
    smiles = Chem.MolToSmiles(mol)
    if mode == "exact":
        rows = np.flatnonzero(_columns(lib)["smiles"] == smiles)
        if k is not None:
            rows = rows[:k]
        return frame(lib, rows, np.ones(len(rows)), S.tanimoto_rows(qfp, lib.morgan, rows),
                     None)
    if mode == "tanimoto":
        # popcount-pruned exact search; float64 scores equal to RDKit's BulkTanimotoSimilarity
        rows, scores = tanimoto_index(lib).search(qfp, k, threshold)
        return frame(lib, rows, scores, scores, None)
    if mode == "hybrid":
        return hybrid(lib, smiles, qfp, k, threshold)
    # embedding
    vec = lib.embed_query(smiles)
    d, i = search_vectors(lib, vec[None, :], k)
    keep = i[0] >= 0
    rows, scores = i[0][keep], d[0][keep]
    if threshold is not None:
        sel = scores >= threshold
        rows, scores = rows[sel], scores[sel]
    tani = S.tanimoto_rows(qfp, lib.morgan, rows)
    return frame(lib, rows, scores, tani, scores)


def hybrid_weight(lib) -> float:
    """The library's hybrid weight of the cosine (manifest ``hybrid.weight``, else default)."""
    w = (lib.manifest.get("hybrid") or {}).get("weight", HYBRID_WEIGHT)
    try:
        w = float(w)
    except (TypeError, ValueError):
        w = float("nan")
    if not 0.0 <= w <= 1.0:
        raise InputError(f"library manifest: hybrid weight must be in [0, 1], got {w!r}")
    return w


def hybrid(lib, smiles: str, qfp: np.ndarray, k: int | None,
           threshold: float | None) -> pd.DataFrame:
    """``w * cosine + (1 - w) * Tanimoto`` ranking (ties by row)."""
    from mmsa.library import search as S

    w = hybrid_weight(lib)
    vec = np.asarray(lib.embed_query(smiles), dtype=np.float32)
    n = len(lib)
    if n <= HYBRID_EXACT_MAX:
        rows = np.arange(n, dtype=np.int64)
    else:  # candidates: the best of each part, rescored exactly
        c = min(max(HYBRID_CANDIDATES, 20 * (k or 0)), limits.MAX_K)
        _, emb = search_vectors(lib, vec[None, :], c)
        tan, _ = tanimoto_index(lib).search(qfp, c, None)
        rows = np.union1d(emb[0][emb[0] >= 0], tan).astype(np.int64)
    vectors = lib.vectors
    cos = np.empty(len(rows), dtype=np.float64)
    for start in range(0, len(rows), 65_536):
        part = rows[start:start + 65_536]
        cos[start:start + len(part)] = np.asarray(vectors[part], dtype=np.float32) @ vec
    tani = S.tanimoto_rows(qfp, lib.morgan, rows)
    score = w * cos + (1 - w) * tani
    order = np.lexsort((rows, -score))
    if threshold is not None:
        order = order[score[order] >= threshold]
    if k is not None:
        order = order[:k]
    return frame(lib, rows[order], score[order], tani[order], cos[order])


def neighbors(lib, row: int, k: int = 10) -> pd.DataFrame:
    """Nearest library molecules to library molecule ``row`` (the molecule excluded)."""
    from mmsa.library import search as S

    row = lib._check_row(row)
    k = limits.check_k(k, allow_none=False)
    d, i = search_vectors(lib, np.asarray(lib.vectors[row])[None, :], min(k + 1, limits.MAX_K))
    keep = (i[0] >= 0) & (i[0] != row)
    rows, scores = i[0][keep][:k], d[0][keep][:k]
    tani = S.tanimoto_rows(np.asarray(lib.morgan[row]), lib.morgan, rows)
    return frame(lib, rows, scores, tani, scores)
