"""Why is this a hit: what a query and a library molecule share, in the terms the model and a
chemist use: the embedding cosine (and per modality where the library stores it), Morgan
Tanimoto, the memory slots both are assigned to, and their maximum common substructure."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mmsa.types import MMSAError

__all__ = ["HitExplanation", "explain_hit", "shared_slots"]


@dataclass
class HitExplanation:
    """What query and hit share. ``cosine``/``tanimoto`` NaN where unknown; ``modalities``:
    per-modality cosine (empty when the library stores only the fused vector);
    ``slots``: DataFrame ``slot``, ``query weight``, ``hit weight``, ``shared`` (min of both),
    strongest shared first; ``motif``: MCS SMARTS (None below 3 atoms) with ``motif_atoms``."""

    row: int
    cosine: float
    tanimoto: float
    modalities: dict[str, float] = field(default_factory=dict)
    slots: pd.DataFrame = field(default_factory=pd.DataFrame)
    motif: str | None = None
    motif_atoms: int = 0
    note: str = ""


def shared_slots(query_weights: np.ndarray, hit_ids: np.ndarray, hit_weights: np.ndarray,
                 top: int = 8) -> pd.DataFrame:
    """Slots in both the query's top ``top`` (dense weights [num_slots]) and the hit's top-t
    (ids, weights [t]); ``shared`` = the smaller weight; strongest first."""
    q = np.asarray(query_weights, dtype=np.float64).ravel()
    q_top = set(np.argsort(-q)[:top].tolist())
    rows = [(int(s), float(q[int(s)]), float(w)) for s, w in zip(hit_ids, hit_weights)
            if int(s) in q_top and w > 0]
    frame = pd.DataFrame(rows, columns=["slot", "query weight", "hit weight"])
    frame["shared"] = np.minimum(frame["query weight"], frame["hit weight"])
    return frame.sort_values("shared", ascending=False, kind="stable").reset_index(drop=True)


def explain_hit(lib, query: str, row: int, timeout: float = 1.0) -> HitExplanation:
    """Explain library molecule ``row`` as a hit for the query SMILES ``query``.

    The embedding parts need the library's encoder (else they are NaN/empty with a note);
    the MCS and Tanimoto need only RDKit. Raises InputError when ``query`` does not parse.
    """
    from mmsa.chem.standardize import standardize_smiles
    from mmsa.library.cliffs import pair_tanimoto
    from mmsa.library.embed import morgan_packed, parse_smiles
    from mmsa.viz.depiction import shared_motif

    smiles = standardize_smiles(query)
    hit = str(lib.metadata["smiles"].iloc[int(row)])
    qfp = morgan_packed(parse_smiles(smiles))[None, :]
    both = np.vstack([qfp, np.asarray(lib.morgan[int(row)])[None, :]])
    tani = float(pair_tanimoto(both, np.array([0]), np.array([1]))[0])
    motif, atoms = shared_motif(hit, smiles, timeout=timeout)
    out = HitExplanation(row=int(row), cosine=float("nan"), tanimoto=tani, motif=motif,
                         motif_atoms=atoms)
    try:
        res = lib.encoder.embed([smiles], mode=lib.manifest["checkpoint"].get("mode", "fast"))
    except MMSAError as exc:
        out.note = f"the library's model is not available ({exc}): no cosine or slots"
        return out
    if not bool(res.ok[0]):
        out.note = "the query could not be embedded"
        return out
    vec = np.asarray(res.vectors[0], dtype=np.float32)
    out.cosine = float(np.asarray(lib.vectors[int(row)], dtype=np.float32) @ vec)
    ids, weights = lib.slot_topk
    out.slots = shared_slots(np.asarray(res.slot_weights[0]), np.asarray(ids[int(row)]),
                             np.asarray(weights[int(row)]))
    mode = lib.manifest["checkpoint"].get("mode", "fast")
    out.note = ("The library stores one fused vector per molecule"
                + (" from the fast path (graph branch + memory readout)" if mode == "fast" else "")
                + ", so there is no per-modality cosine to show.")
    return out
