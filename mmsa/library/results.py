"""Search results as a user sees them: substructure queries read as SMARTS, the embedding
cosine of every hit, and one entry per parent structure (salt forms and duplicates grouped).

These functions sit on top of :meth:`mmsa.library.Library.search` and the library's public
arrays; the app and notebooks call them so that presentation rules live in one place.

    >>> from mmsa.library.results import search_parents          # doctest: +SKIP
    >>> rows, parents = search_parents(lib, "c1ccc2[nH]ccc2c1", "substructure", k=12)
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from mmsa.types import InputError, MMSAError

__all__ = ["K_MAX", "check_k", "collapse_parents", "fill_cosine", "parse_pattern",
           "search_parents", "substructure_search"]

log = logging.getLogger(__name__)

#: the largest k a page offers (a grid of thousands of pictures helps no one)
K_MAX = 1000
#: with k given, substructure hits are ranked among the first matches in library order
SUBSTRUCTURE_SCAN = 10_000
#: result columns that are not the library's own properties
SCORE_COLUMNS = ("rank", "row", "id", "smiles", "score", "tanimoto", "cosine")


def check_k(k) -> int:
    """``k`` as an int in 1..K_MAX; InputError (with the allowed range) otherwise."""
    try:
        value = int(k)
    except (TypeError, ValueError):
        raise InputError(f"k must be a whole number from 1 to {K_MAX}, not {k!r}") from None
    if value != k and not (isinstance(k, float) and float(value) == k):
        raise InputError(f"k must be a whole number from 1 to {K_MAX}, not {k!r}")
    if not 1 <= value <= K_MAX:
        raise InputError(f"k must be from 1 to {K_MAX} (got {value})")
    return value


def parse_pattern(text: str):
    """A substructure query read as SMARTS (a SMILES is valid SMARTS), as RDKit query Mol.

    SMARTS semantics apply: ``[nH]`` requires an aromatic N carrying one hydrogen, lower-case
    atoms are aromatic, upper-case aliphatic. One convenience: a ring written in Kekulé form
    (``C1=CC=CC=C1``) that RDKit perceives as aromatic is read in its aromatic form, so it
    matches aromatic rings as a chemist means it to.

    Returns:
        ``(query Mol, the SMARTS text used, molecule or None)``: the molecule is the query
        parsed as SMILES where that works (for Tanimoto ranking), else None.

    Raises:
        InputError: the text is not SMARTS.
    """
    from rdkit import Chem
    from rdkit.rdBase import BlockLogs

    text = (text or "").strip()
    if not text:
        raise InputError("enter a SMARTS pattern (or a SMILES)")
    with BlockLogs():
        patt = Chem.MolFromSmarts(text)
        mol = Chem.MolFromSmiles(text)
    if patt is None or patt.GetNumAtoms() == 0:
        raise InputError(f"could not parse {text!r} as a SMARTS pattern")
    used = text
    if mol is not None and mol.GetNumAtoms() == patt.GetNumAtoms():
        kekule = any(a.GetIsAromatic() and not _aromatic_query(patt.GetAtomWithIdx(a.GetIdx()))
                     for a in mol.GetAtoms())
        if kekule:
            used = Chem.MolToSmiles(mol)
            with BlockLogs():
                patt = Chem.MolFromSmarts(used)
    if mol is not None and mol.GetNumAtoms() == 0:
        mol = None
    return patt, used, mol


def _aromatic_query(atom) -> bool:
    """Whether a SMARTS query atom can only be aromatic-or-anything (not forced aliphatic)."""
    desc = atom.DescribeQuery()
    first = desc.splitlines()[0] if desc else ""
    if first.startswith("AtomType"):  # "AtomType 1006 = val": aromatic; "AtomType 6": aliphatic
        try:
            return int(first.split()[1]) >= 1000
        except (IndexError, ValueError):
            return True
    return "AtomAliphatic" not in desc


def _frame(lib, rows: np.ndarray, tanimoto: np.ndarray) -> pd.DataFrame:
    """The result frame of :meth:`Library.search` for substructure ``rows``."""
    meta = lib.metadata
    rows = np.asarray(rows, dtype=np.int64)
    part = meta.iloc[rows]
    data = {
        "rank": np.arange(1, len(rows) + 1),
        "row": rows,
        "id": part["id"].to_numpy(),
        "smiles": part["smiles"].to_numpy(),
        "score": np.ones(len(rows)),
        "tanimoto": np.asarray(tanimoto, dtype=np.float64),
        "cosine": np.full(len(rows), np.nan),
    }
    for col in lib.property_columns:
        if col in meta.columns and col not in data:
            data[col] = part[col].to_numpy()
    return pd.DataFrame(data)


def substructure_search(lib, text: str, k: int | None = 12) -> pd.DataFrame:
    """Molecules of ``lib`` containing the SMARTS pattern ``text`` (see :func:`parse_pattern`).

    Same columns as ``Library.search(mode="substructure")``. Ranked by Morgan Tanimoto to the
    query where the text is also a molecule (library order otherwise); with ``k`` given,
    among the first ``SUBSTRUCTURE_SCAN`` matches in library order.
    """
    from mmsa.library import search as S
    from mmsa.library.embed import morgan_packed

    patt, _, mol = parse_pattern(text)
    limit = None if k is None else max(int(k), SUBSTRUCTURE_SCAN)
    rows = S.substructure_rows(patt, np.asarray(lib.pattern), lib.metadata["smiles"].to_numpy(),
                               limit=limit)
    if mol is not None and len(rows):
        tani = S.tanimoto_rows(morgan_packed(mol), np.asarray(lib.morgan), rows)
        order = np.lexsort((rows, -tani))
    else:
        tani = np.full(len(rows), np.nan)
        order = np.arange(len(rows))
    rows, tani = rows[order], tani[order]
    if k is not None:
        rows, tani = rows[:k], tani[:k]
    return _frame(lib, rows, tani)


def fill_cosine(lib, hits: pd.DataFrame, query: str) -> pd.DataFrame:
    """``hits`` with the embedding cosine to ``query`` filled where it is NaN (fingerprint,
    substructure and exact hits), so both similarities show whatever the mode. Needs the
    library's encoder; a query that is not a molecule (a SMARTS pattern) keeps NaN."""
    from mmsa.chem.standardize import standardize_smiles

    if hits.empty or "cosine" not in hits or hits["cosine"].notna().all():
        return hits
    try:
        vec = lib.embed_query(standardize_smiles(query))
    except MMSAError:
        return hits
    out = hits.copy()
    rows = out["row"].to_numpy(dtype=np.int64)
    out["cosine"] = np.asarray(lib.vectors[rows], dtype=np.float32) @ vec
    return out


def collapse_parents(hits: pd.DataFrame) -> pd.DataFrame:
    """One row per parent structure (the standardised canonical ``smiles``), in rank order.

    Salt forms and duplicate entries standardise to the same parent; the first (best ranked)
    row stands for the group and keeps its scores. Added columns: ``ids`` (list of every id),
    ``rows`` (list of every library row) and ``forms`` (how many rows). A property column
    whose values differ within a group holds them joined by `` / ``.
    """
    if hits.empty:
        out = hits.copy()
        out["ids"], out["rows"], out["forms"] = [], [], []
        return out
    props = [c for c in hits.columns if c not in SCORE_COLUMNS]
    groups = hits.groupby("smiles", sort=False)
    first = groups.head(1).reset_index(drop=True)
    ids = groups["id"].agg(list)
    rows = groups["row"].agg(list)
    first["ids"] = [[str(i) for i in ids[s]] for s in first["smiles"]]
    first["rows"] = [[int(r) for r in rows[s]] for s in first["smiles"]]
    first["forms"] = [len(r) for r in first["rows"]]
    if (first["forms"] > 1).any():
        for col in props:
            values = groups[col].agg(_joined)
            first[col] = [values[s] for s in first["smiles"]]
    first["rank"] = np.arange(1, len(first) + 1)
    return first


def _joined(values: pd.Series):
    uniq = list(dict.fromkeys(v for v in values.tolist() if not _missing(v)))
    if len(uniq) <= 1:
        return uniq[0] if uniq else values.iloc[0]
    return " / ".join(str(v) for v in uniq)


def _missing(value) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def search_parents(lib, query: str, mode: str = "embedding", k: int = 12,
                   threshold: float | None = None, *, cosine: bool = True
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Search ``lib`` and group the hits by parent structure: up to ``k`` parents.

    Substructure queries are SMARTS (:func:`substructure_search`); the other modes go to
    ``Library.search``. More rows are fetched until ``k`` distinct parents are found (or the
    library is exhausted), so salt forms do not crowd out other compounds.

    Returns:
        ``(rows, parents)``: every library row of the kept parents (for export; ``rank``
        renumbered), and :func:`collapse_parents` of them (one per parent, at most ``k``).
        With ``cosine=True`` the embedding cosine is filled for non-embedding modes
        (:func:`fill_cosine`; needs the library's encoder).

    Raises:
        InputError: empty query, unknown mode, k out of range, unparseable query.
    """
    query = (query or "").strip()
    if not query:
        raise InputError("enter a query SMILES" + (" or SMARTS" if mode == "substructure" else ""))
    k = check_k(k)
    n = len(lib)
    fetch = k
    while True:
        if mode == "substructure":
            hits = substructure_search(lib, query, k=fetch)
        else:
            hits = lib.search(query, k=fetch, mode=mode, threshold=threshold)
        parents = collapse_parents(hits)
        if len(parents) >= k or len(hits) < fetch or fetch >= n:
            break
        fetch = min(n, max(fetch * 2, fetch + (k - len(parents)) * 2))
    parents = parents.head(k)
    keep = {r for rows in parents["rows"] for r in rows}
    rows = hits[hits["row"].isin(keep)].reset_index(drop=True)
    rows["rank"] = np.arange(1, len(rows) + 1)
    if cosine and mode not in ("embedding", "hybrid"):
        rows = fill_cosine(lib, rows, query)
        cos = dict(zip(rows["row"], rows["cosine"]))
        parents = parents.copy()
        parents["cosine"] = [cos.get(int(r), np.nan) for r in parents["row"]]
    return rows, parents
