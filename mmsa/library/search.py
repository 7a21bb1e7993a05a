"""Fingerprint searches over packed bit arrays (numpy popcount), exact over the whole library.

Morgan fingerprints are stored as uint8 [n, 256] (2048 bits); they are viewed as uint64
[n, 32] so that Tanimoto is a bitwise AND and a popcount (``np.bitwise_count``), streamed in
blocks of rows. FAISS binary indexes are Hamming only, so Tanimoto is computed here exactly.
"""

from __future__ import annotations

import logging
import re

import numpy as np

from mmsa.types import InputError

log = logging.getLogger(__name__)

BLOCK = 32_768


def _as_u64(packed: np.ndarray) -> np.ndarray:
    packed = np.asarray(packed)
    if packed.dtype != np.uint8 or packed.shape[-1] % 8:
        raise ValueError("packed fingerprints must be uint8 with a multiple of 8 bytes per row")
    return packed.view(np.uint64)


def popcounts(packed: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """Bits set per row of ``packed`` uint8 [n, B]: int32 [n]."""
    n = len(packed)
    out = np.empty(n, dtype=np.int32)
    for s in range(0, n, block):
        out[s : s + block] = np.bitwise_count(_as_u64(np.asarray(packed[s : s + block]))).sum(
            axis=1, dtype=np.int32
        )
    return out


def tanimoto_all(
    query: np.ndarray, packed: np.ndarray, counts: np.ndarray | None = None, block: int = BLOCK
) -> np.ndarray:
    """Tanimoto of one packed fingerprint ``query`` uint8 [B] to every row of ``packed``
    uint8 [n, B]: float32 [n]. Two empty fingerprints have Tanimoto 0. ``counts`` (bits per
    row, :func:`popcounts`) saves recounting the library."""
    q = _as_u64(np.ascontiguousarray(query, dtype=np.uint8).reshape(1, -1))
    qc = int(np.bitwise_count(q).sum())
    n = len(packed)
    out = np.empty(n, dtype=np.float32)
    words = q.shape[1]
    buf = np.empty((min(block, n), words), dtype=np.uint64)  # reused: no temporaries per block
    cnt = np.empty((min(block, n), words), dtype=np.uint8)
    for s in range(0, n, block):
        lib = _as_u64(np.ascontiguousarray(packed[s : s + block]))
        m = len(lib)
        np.bitwise_and(lib, q, out=buf[:m])
        np.bitwise_count(buf[:m], out=cnt[:m])
        inter = np.add.reduce(cnt[:m], axis=1, dtype=np.int32)
        if counts is not None:
            c = np.asarray(counts[s : s + block], dtype=np.int32)
        else:
            np.bitwise_count(lib, out=cnt[:m])
            c = np.add.reduce(cnt[:m], axis=1, dtype=np.int32)
        union = c + qc - inter
        out[s : s + m] = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    return out


def tanimoto_rows(query: np.ndarray, packed: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Tanimoto of ``query`` to the given ``rows`` of ``packed``: float32 [len(rows)]."""
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        return np.zeros(0, np.float32)
    return tanimoto_all(query, np.asarray(packed[np.sort(rows)]))[np.argsort(np.argsort(rows))]


def top_k(scores: np.ndarray, k: int | None, threshold: float | None) -> np.ndarray:
    """Rows of the best scores (descending, ties by row), at most ``k`` (None = all), with
    score >= ``threshold`` when given: int64 [<= k]."""
    scores = np.asarray(scores)
    cand = np.arange(len(scores))
    if threshold is not None:
        cand = cand[scores >= threshold]
    if k is not None and len(cand) > k:
        part = np.argpartition(-scores[cand], k - 1)[:k]
        kth = scores[cand][part].min()
        cand = cand[scores[cand] >= kth]  # keep ties at the boundary for a stable order
    order = np.lexsort((cand, -scores[cand]))
    cand = cand[order]
    return cand[:k] if k is not None else cand


def contains_screen(query: np.ndarray, packed: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """Rows whose packed fingerprint has every bit of ``query`` set (the pattern-fingerprint
    screen: a necessary condition for a substructure match): int64 [m]."""
    q = _as_u64(np.ascontiguousarray(query, dtype=np.uint8).reshape(1, -1))
    out = []
    for s in range(0, len(packed), block):
        lib = _as_u64(np.ascontiguousarray(packed[s : s + block]))
        ok = np.all((lib & q) == q, axis=1)
        out.append(np.flatnonzero(ok) + s)
    return np.concatenate(out) if out else np.zeros(0, np.int64)


#: text that only SMARTS can mean: logical operators, wildcards, recursion, [#n] atoms
_SMARTS_ONLY = re.compile(r"[~*$!;&,]|\[[^\]]*#")


def parse_query(query: str, *, allow_smarts: bool = False):
    """RDKit Mol of a query; InputError if it does not parse. Returns (mol, is_smarts).

    Without ``allow_smarts`` the query must be SMILES. With it (substructure search), text
    using SMARTS-only syntax (``~ * $ ! ; & ,`` or ``[#n]``) is read as SMARTS; anything else
    as SMILES first (so Kekulé rings match aromatic ones, as chemists expect), then as SMARTS;
    SMILES that would mean a radical (``[CH2]``, ``[P]``) are read as SMARTS. Queries over :data:`mmsa.limits.MAX_QUERY_CHARS` characters are refused.
    """
    from mmsa import limits
    from mmsa.library.embed import parse_smiles

    query = limits.check_query_text(query)
    if not (allow_smarts and _SMARTS_ONLY.search(query)):
        mol = parse_smiles(query)
        # a radical ("[CH2]", "[P]") is almost never meant: bracket atoms with their H count
        # written out read as SMARTS, which is what such queries mean in substructure search
        if mol is not None and mol.GetNumAtoms() > 0 and not (
                allow_smarts and any(a.GetNumRadicalElectrons() for a in mol.GetAtoms())):
            return mol, False
    if allow_smarts:
        from rdkit import Chem
        from rdkit.rdBase import BlockLogs

        with BlockLogs():
            patt = Chem.MolFromSmarts(query)
        if patt is not None and patt.GetNumAtoms() > 0:
            return patt, True
        raise InputError(f"could not parse query {query!r} as SMILES or SMARTS")
    raise InputError(f"could not parse query SMILES {query!r}")


def substructure_rows(
    pattern,
    pattern_fps: np.ndarray,
    smiles,
    limit: int | None = None,
    *,
    screen: np.ndarray | None = None,
    seconds: float | None = None,
) -> np.ndarray:
    """Rows whose molecule contains ``pattern`` (an RDKit Mol from SMILES or SMARTS).

    Screens with pattern fingerprints (:func:`contains_screen` with ``screen``, default
    :func:`mmsa.chem.fingerprints.screen_fingerprint` of the pattern, which is safe for
    SMARTS: no false negatives) and confirms each candidate with RDKit substructure matching
    (``rdSubstructLibrary.SubstructLibrary`` over the candidates' SMILES). ``smiles`` is
    indexable by row. Stops after ``limit`` confirmed matches (rows in ascending order).
    Raises InputError when matching takes longer than ``seconds``.
    """
    import time

    from rdkit import Chem
    from rdkit.Chem import rdSubstructLibrary

    if screen is None:
        from mmsa.chem.fingerprints import screen_fingerprint

        screen = screen_fingerprint(pattern)
    t0 = time.perf_counter()
    cand = contains_screen(screen, pattern_fps)
    log.debug("substructure screen kept %d of %d", len(cand), len(pattern_fps))
    hits: list[int] = []
    params = Chem.SubstructMatchParameters()
    params.useChirality = False
    step = 512
    for s in range(0, len(cand), step):
        if seconds is not None and time.perf_counter() - t0 > seconds:
            raise InputError(
                f"substructure search stopped after {seconds:g} seconds ({s:,} of "
                f"{len(cand):,} candidates checked, {len(hits):,} matches): make the "
                f"pattern more specific")
        rows = cand[s : s + step]
        holder = rdSubstructLibrary.CachedTrustedSmilesMolHolder()
        for r in rows:
            holder.AddSmiles(str(smiles[int(r)]))
        lib = rdSubstructLibrary.SubstructLibrary(holder)
        want = len(rows) if limit is None else min(len(rows), limit - len(hits))
        found = sorted(lib.GetMatches(pattern, params, numThreads=1, maxResults=want))
        hits.extend(int(rows[j]) for j in found)
        if limit is not None and len(hits) >= limit:
            break
    return np.asarray(hits[:limit] if limit is not None else hits, dtype=np.int64)
