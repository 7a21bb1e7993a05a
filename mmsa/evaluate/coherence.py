"""Structural coherence: do a representation's groups share chemistry a chemist can see?

The app explains a hyperedge (a molecule and its nearest neighbours) and a memory slot (the
molecules whose top anchor it is) by the maximum common substructure (MCS) of the members. A
representation whose groups share only a benzene ring gives explanations that say nothing.
This module measures it on a library (``approved-drugs`` in ``mmsa evaluate``):

- hyperedge coherence: for a seeded sample of centres, the MCS of the centre and its
  ``k`` = 4 nearest neighbours (exact kNN in the representation's own similarity);
- slot coherence: for every memory slot with at least two members, the MCS of its ``top`` = 5
  members by assignment weight (embeddings with slot weights only);
- a chance level: the MCS of random groups of the same size.

Each group is scored by the MCS size in heavy atoms and by its share of the members' mean
heavy-atom count (``mcs_share``; 1 = the members are the same molecule). The library is
deduplicated by canonical SMILES first, so salt forms of one drug cannot fill a hyperedge.
MCS settings are :func:`mmsa.chem.motifs.mcs`'s (exact elements and bond orders, complete
rings), with a timeout per group (the best found so far counts; timeouts are reported).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from mmsa.evaluate.neighbours import Space

K = 4
SLOT_TOP = 5
N_CENTRES = 200


def unique_molecules(smiles: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """``(canonical SMILES, rows)``: the first row of every distinct parseable molecule."""
    from rdkit import Chem
    from rdkit.rdBase import BlockLogs

    seen: dict[str, int] = {}
    with BlockLogs():
        for i, s in enumerate(smiles):
            mol = Chem.MolFromSmiles(str(s))
            if mol is None or mol.GetNumAtoms() == 0:
                continue
            seen.setdefault(Chem.MolToSmiles(mol), i)
    return list(seen), np.fromiter(seen.values(), dtype=np.int64, count=len(seen))


def knn_groups(space: Space, centres: np.ndarray, k: int = K, block: int = 256) -> np.ndarray:
    """``[len(centres), k + 1]`` rows: each centre, then its ``k`` most similar other rows."""
    centres = np.asarray(centres, dtype=np.int64)
    out = np.empty((len(centres), k + 1), dtype=np.int64)
    for b0 in range(0, len(centres), block):
        rows = centres[b0:b0 + block]
        sim = np.asarray(space.similarity(rows), dtype=np.float64)
        sim[np.arange(len(rows)), rows] = -np.inf  # a molecule is not its own neighbour
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sim, top, axis=1), axis=1, kind="stable")
        out[b0:b0 + len(rows), 0] = rows
        out[b0:b0 + len(rows), 1:] = np.take_along_axis(top, order, axis=1)
    return out


def slot_groups(slot_weights: np.ndarray, top: int = SLOT_TOP, min_size: int = 2
                ) -> list[np.ndarray]:
    """For each slot with at least ``min_size`` members (molecules whose largest weight is that
    slot), its ``top`` members by weight, heaviest first."""
    w = np.nan_to_num(np.asarray(slot_weights, dtype=np.float32), nan=-1.0)
    if w.ndim != 2 or w.shape[1] == 0:  # a model without a memory has no slots
        return []
    best = w.argmax(axis=1)
    groups = []
    for slot in range(w.shape[1]):
        rows = np.flatnonzero(best == slot)
        if len(rows) >= min_size:
            order = np.argsort(-w[rows, slot], kind="stable")
            groups.append(rows[order[:top]])
    return groups


def random_groups(n: int, size: int, count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` seeded groups of ``size`` distinct rows of ``n`` (the chance level)."""
    rng = np.random.default_rng(seed)
    return [rng.choice(n, size=size, replace=False) for _ in range(count)]


def _group_mcs(args: tuple[list[str], float]) -> tuple[int, float, bool]:
    from rdkit import Chem

    from mmsa.chem.motifs import mcs

    smiles, timeout = args
    res = mcs(smiles, timeout=timeout)
    heavy = np.mean([Chem.MolFromSmiles(s).GetNumAtoms() for s in smiles])
    return res.num_atoms, float(res.num_atoms / max(heavy, 1.0)), res.timed_out


def mcs_scores(smiles: Sequence[str], groups: Sequence[np.ndarray], timeout: float = 1.0,
               n_jobs: int = 1) -> dict[str, float]:
    """Mean MCS size (heavy atoms), mean ``mcs_share`` and the timeout count of ``groups``
    (arrays of rows of ``smiles``)."""
    jobs = [([smiles[int(r)] for r in g], timeout) for g in groups]
    if not jobs:
        return {"mcs_atoms": float("nan"), "mcs_share": float("nan"), "groups": 0,
                "timeouts": 0}
    if n_jobs > 1:
        with ProcessPoolExecutor(n_jobs) as pool:
            results = list(pool.map(_group_mcs, jobs, chunksize=8))
    else:
        results = [_group_mcs(j) for j in jobs]
    atoms, share, timed_out = (np.asarray(x) for x in zip(*results))
    return {"mcs_atoms": float(atoms.mean()), "mcs_share": float(share.mean()),
            "groups": len(jobs), "timeouts": int(timed_out.sum())}


def coherence_suite(spaces: dict[str, Space], smiles: Sequence[str],
                    slot_weights: dict[str, np.ndarray] | None = None, *,
                    n_centres: int = N_CENTRES, k: int = K, slot_top: int = SLOT_TOP,
                    timeout: float = 1.0, seed: int = 0, n_jobs: int = 1,
                    progress=None) -> dict[str, dict[str, float]]:
    """Hyperedge (and slot) coherence of every representation over one deduplicated library.

    ``spaces``: name -> :class:`Space` over the rows of ``smiles``; ``slot_weights``: name ->
    float [n, M] for the representations that have memory slots. Every representation gets
    the same seeded centres. Returns ``{name: {"hyperedge_mcs_atoms", "hyperedge_mcs_share",
    "hyperedge_timeouts", "slot_mcs_atoms", "slot_mcs_share", "slot_groups"}}`` plus a
    ``"chance"`` row (random groups of ``k + 1``).
    """
    n = len(smiles)
    if n < k + 1:
        raise ValueError(f"coherence needs at least {k + 1} molecules, got {n}")
    rng = np.random.default_rng(seed)
    centres = np.sort(rng.choice(n, size=min(n_centres, n), replace=False))
    out: dict[str, dict[str, float]] = {}
    for name, space in spaces.items():
        if progress:
            progress(name)
        h = mcs_scores(smiles, list(knn_groups(space, centres, k)), timeout, n_jobs)
        row = {"hyperedge_mcs_atoms": h["mcs_atoms"], "hyperedge_mcs_share": h["mcs_share"],
               "hyperedge_timeouts": h["timeouts"]}
        if slot_weights and name in slot_weights and np.shape(slot_weights[name])[-1] > 0:
            s = mcs_scores(smiles, slot_groups(slot_weights[name], slot_top), timeout, n_jobs)
            row.update(slot_mcs_atoms=s["mcs_atoms"], slot_mcs_share=s["mcs_share"],
                       slot_groups=s["groups"])
        out[name] = row
    chance = mcs_scores(smiles, random_groups(n, k + 1, len(centres), seed), timeout, n_jobs)
    out["chance (random groups)"] = {"hyperedge_mcs_atoms": chance["mcs_atoms"],
                                     "hyperedge_mcs_share": chance["mcs_share"],
                                     "hyperedge_timeouts": chance["timeouts"]}
    return out
