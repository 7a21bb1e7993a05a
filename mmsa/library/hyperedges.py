"""Library hyperedges: each molecule plus its k nearest neighbours; their shared motif.

The kNN hyperedges are computed at build time (:func:`mmsa.library.ann.knn_graph`) and
stored as ``hyperedges.i32`` [n, k+1]. A hyperedge's motif is the maximum common
substructure of its members (:func:`mmsa.chem.motifs.mcs`, with a timeout), computed on
demand and cached in ``NAME/cache/motifs.json`` (keyed by the centre row, with the member
rows, so an entry can never describe other molecules).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

MOTIF_CACHE = "motifs.json"
_LOCK = threading.Lock()


def _read_cache(path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _to_dict(result) -> dict:
    if dataclasses.is_dataclass(result):
        return dataclasses.asdict(result)
    if hasattr(result, "_asdict"):
        return dict(result._asdict())
    return dict(vars(result))


def _from_dict(data: dict):
    from mmsa.chem import motifs

    cls = getattr(motifs, "MCSResult", None)
    if cls is None or not dataclasses.is_dataclass(cls):
        return data
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


def hyperedge_motif(lib, i: int, timeout: float = 2.0):
    """MCS of the members of hyperedge ``i`` of ``lib`` (cached in ``lib.cache_dir``)."""
    from mmsa.chem.motifs import mcs

    members = [int(r) for r in lib.hyperedge(i)]
    path = lib.cache_dir / MOTIF_CACHE
    entry = _read_cache(path).get(str(i))
    if entry and entry.get("members") == members and entry.get("timeout") == timeout:
        return _from_dict(entry["result"])
    smiles = lib.metadata["smiles"].to_numpy()[members].tolist()
    result = mcs(smiles, timeout=timeout)
    data = _to_dict(result)
    with _LOCK:  # threads of one app process; across processes the last writer wins
        cache = _read_cache(path)
        cache[str(i)] = {"members": members, "timeout": timeout, "result": data}
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
        tmp.write_text(json.dumps(cache, default=str))
        os.replace(tmp, path)
    return result


def coherence(lib) -> np.ndarray:
    """Mean cosine of each hyperedge's members to its centre: float32 [n] (NaN: no members)."""
    import warnings

    scores = np.asarray(lib.hyperedge_scores[:, 1:], dtype=np.float32)
    if scores.shape[1] == 0:
        return np.full(len(lib), np.nan, dtype=np.float32)
    with warnings.catch_warnings():  # all-NaN rows (a library of one) give NaN, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(scores, axis=1)


def coherent_hyperedges(lib, top: int = 20) -> pd.DataFrame:
    """The ``top`` most coherent hyperedges that share no molecule with a better one.

    Columns: ``hyperedge`` (centre row), ``id``, ``smiles`` (of the centre), ``size``
    (members), ``coherence`` (mean cosine of the members to the centre), ``members`` (list of
    rows, centre first).
    """
    coh = coherence(lib)
    order = np.argsort(-np.nan_to_num(coh, nan=-np.inf), kind="stable")
    used = np.zeros(len(lib), dtype=bool)
    picked: list[int] = []
    for i in order:
        if len(picked) >= top or np.isnan(coh[i]):
            break
        members = lib.hyperedge(int(i))
        if used[members].any():
            continue
        used[members] = True
        picked.append(int(i))
    meta = lib.metadata
    rows = np.asarray(picked, dtype=np.int64)
    return pd.DataFrame({
        "hyperedge": rows,
        "id": meta["id"].to_numpy()[rows] if len(rows) else [],
        "smiles": meta["smiles"].to_numpy()[rows] if len(rows) else [],
        "size": [len(lib.hyperedge(int(r))) for r in rows],
        "coherence": coh[rows].astype(np.float64),
        "members": [lib.hyperedge(int(r)).tolist() for r in rows],
    })


def coherent_with_motifs(lib, top: int = 20, progress=None, timeout: float = 2.0
                         ) -> pd.DataFrame:
    """:func:`coherent_hyperedges` with each one's shared motif (MCS, cached on disk by
    :func:`hyperedge_motif`): columns ``motif atoms`` (0 without a motif) and ``motif
    smarts`` ("" without one) added, sorted by motif size (largest first), then coherence.
    ``progress(done, total)`` after each hyperedge."""
    from mmsa.types import MMSAError

    table = coherent_hyperedges(lib, top=top).copy()
    atoms, smarts = [], []
    for j, row in enumerate(table["hyperedge"].tolist()):
        try:
            motif = lib.hyperedge_motif(int(row), timeout=timeout)
        except MMSAError:
            motif = None
        atoms.append(int(getattr(motif, "num_atoms", 0) or 0))
        smarts.append(str(getattr(motif, "smarts", "") or ""))
        if progress:
            progress(j + 1, len(table))
    table["motif atoms"] = atoms
    table["motif smarts"] = smarts
    return table.sort_values(["motif atoms", "coherence"], ascending=False,
                             kind="stable").reset_index(drop=True)
