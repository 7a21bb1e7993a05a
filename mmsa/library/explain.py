"""Why is this a hit: what a query and a library molecule share, in the terms the model and a
chemist use: the embedding cosine, the cosine of each modality's code (2D graph, depiction,
3D conformer: computed for the pair, since a library stores one fused vector), Morgan
Tanimoto, the memory slots both are assigned to, and their maximum common substructure."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mmsa.types import MMSAError

__all__ = ["MODALITY_LABELS", "HitExplanation", "explain_hit", "modality_cosines",
           "shared_slots"]

#: how the pages name the model's modalities
MODALITY_LABELS = {"graph": "2D graph", "image": "2D depiction", "geometry": "3D conformer"}


@dataclass
class HitExplanation:
    """What query and hit share. ``cosine``/``tanimoto`` NaN where unknown; ``modalities``:
    cosine of each modality's code of the two molecules (:func:`modality_cosines`; a
    modality either molecule lacks, e.g. no 3D conformer, is left out; empty without the
    library's model);
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


def modality_cosines(encoder, a: str, b: str) -> dict[str, float]:
    """Cosine of the two molecules' codes per modality (``Encoder.modality_vectors``: each
    modality's code in the shared space, before fusion and memory readout), in the model's
    modality order; a modality that either molecule lacks is left out."""
    vecs = encoder.modality_vectors([a, b])
    out = {}
    for name in encoder.modalities:
        v = vecs.get(name)
        if v is None or not np.isfinite(v).all():
            continue
        out[name] = float(np.clip(v[0] @ v[1], -1.0, 1.0))
    return out


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
    out.modalities = modality_cosines(lib.encoder, smiles, hit)
    missing = [MODALITY_LABELS.get(m, m) for m in lib.encoder.modalities
               if m not in out.modalities]
    mode = lib.manifest["checkpoint"].get("mode", "fast")
    out.note = ("Per-modality cosines compare each modality's code of the two molecules "
                "(before fusion and memory readout), computed now; the library stores one "
                "fused vector"
                + (" from the fast path (graph branch + memory readout)" if mode == "fast" else "")
                + ", which gives the embedding cosine."
                + (f" Not available for this pair: {', '.join(missing)}." if missing else ""))
    return out
