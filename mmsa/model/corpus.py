"""The pre-training corpus: drug-like ChEMBL + MOSES molecules, their cached chemistry
targets and packed features, and scaffold-analogue batches."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from mmsa.model.config import MMSAConfig
from mmsa.model.featurize import build_featurizer
from mmsa.model.packed import (
    PackedFeatures,
    featurize_all,
    pack_conformers,
    pack_features,
    smiles_key,
)
from mmsa.paths import cache_dir
from mmsa.types import InputError

log = logging.getLogger(__name__)



def moses_training_smiles(n: int, seed: int = 0) -> list[str]:
    """``n`` SMILES drawn (seeded) from the MOSES training split (``mmsa.data.fetch``)."""
    import pandas as pd

    from mmsa.data import fetch

    df = pd.read_csv(fetch("moses"), usecols=["smiles", "split"])
    train = df.loc[df["split"] == "train", "smiles"].to_numpy()
    if n > len(train):
        raise InputError(f"MOSES has only {len(train)} training molecules")
    rng = np.random.default_rng(seed)
    return [str(s) for s in train[np.sort(rng.choice(len(train), n, replace=False))]]


# --------------------------------------------------------------------------- the corpus
EVALUATION_SETS = ("b3db", "b3db-regression", "freesolv", "solubility", "cdk2", "egfr",
                   "approved-drugs")
_ORGANIC = frozenset((1, 5, 6, 7, 8, 9, 14, 15, 16, 17, 34, 35, 53))


def _canonical_or_none(smiles: str) -> str | None:
    from mmsa.chem.standardize import standardize_or_reason

    std, _ = standardize_or_reason(smiles)
    return std


def _druglike(smiles: str, min_heavy: int = 6, max_heavy: int = 60) -> bool:
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    if mol is None or not min_heavy <= mol.GetNumHeavyAtoms() <= max_heavy:
        return False
    return all(a.GetAtomicNum() in _ORGANIC for a in mol.GetAtoms())


def _canonical_druglike_block(smiles: list[str]) -> list[str | None]:
    from rdkit.rdBase import BlockLogs

    out: list[str | None] = []
    with BlockLogs():
        for s in smiles:
            c = _canonical_or_none(s)
            out.append(c if c is not None and _druglike(c) else None)
    return out


def _map_blocks(fn, items: list, n_jobs: int, block: int = 5_000) -> list:
    """``fn`` over blocks of ``items`` in ``n_jobs`` processes, results concatenated in order."""
    blocks = [items[i:i + block] for i in range(0, len(items), block)]
    if n_jobs <= 1:
        parts = [fn(b) for b in blocks]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(n_jobs, mp_context=multiprocessing.get_context("spawn")) as ex:
            parts = list(ex.map(fn, blocks))
    return parts


def pretraining_corpus(n_molecules: int = 500_000, seed: int = 0, n_jobs: int = 2,
                       cache: bool = True) -> list[str]:
    """The pre-training set: every drug-like ChEMBL molecule of ``chembl-sample`` plus MOSES
    training molecules up to ``n_molecules``, standardised (largest fragment, neutral),
    canonical, distinct, without any molecule of the evaluation sets
    (:data:`EVALUATION_SETS`), shuffled with ``seed``. Cached under ``$MMSA_CACHE/pretrain``.

    Drug-like: 6-60 heavy atoms of H, B, C, N, O, F, Si, P, S, Cl, Se, Br, I.
    """
    import pandas as pd

    from mmsa.data import fetch

    path = cache_dir() / "pretrain" / f"corpus-{n_molecules}-{seed}.txt"
    if cache and path.is_file():
        return path.read_text().split("\n")
    exclude: set[str] = set()
    for name in EVALUATION_SETS:
        df = pd.read_csv(fetch(name), usecols=["smiles"])
        exclude.update(c for c in _canonical_blocks(df["smiles"].astype(str).tolist(), n_jobs)
                       if c)
    chembl = pd.read_csv(fetch("chembl-sample"), usecols=["smiles"])["smiles"].astype(str)
    seen: dict[str, None] = {}
    for c in _canonical_blocks(chembl.tolist(), n_jobs):
        if c and c not in exclude:
            seen.setdefault(c, None)
    n_chembl = len(seen)
    need = n_molecules - n_chembl
    if need > 0:
        moses = moses_training_smiles(min(need + need // 10 + 1000, 1_500_000), seed=seed)
        for c in _canonical_blocks(moses, n_jobs):
            if len(seen) >= n_molecules:
                break
            if c and c not in exclude:
                seen.setdefault(c, None)
    smiles = list(seen)[:n_molecules]
    if len(smiles) < n_molecules:
        log.warning("corpus has %d molecules (asked %d)", len(smiles), n_molecules)
    order = np.random.default_rng(seed).permutation(len(smiles))
    smiles = [smiles[i] for i in order]
    log.info("corpus: %d molecules (%d drug-like ChEMBL, %d MOSES), %d evaluation "
             "molecules excluded", len(smiles), min(n_chembl, len(smiles)),
             max(0, len(smiles) - n_chembl), len(exclude))
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text("\n".join(smiles))
        os.replace(tmp, path)
    return smiles


def _canonical_blocks(smiles: list[str], n_jobs: int) -> list[str | None]:
    out: list[str | None] = []
    for part in _map_blocks(_canonical_druglike_block, smiles, n_jobs):
        out.extend(part)
    return out


def _targets_block(smiles: list[str]) -> dict[str, np.ndarray]:
    from mmsa.chem.targets import compute_targets

    return compute_targets(smiles)


def compute_corpus_targets(smiles: list[str], n_jobs: int = 2) -> dict[str, np.ndarray]:
    """Morgan count targets, raw descriptors and scaffold groups for ``smiles``."""
    from mmsa.chem.targets import scaffold_ids

    parts = _map_blocks(_targets_block, smiles, n_jobs)
    keys = np.concatenate([p["scaffold_key"] for p in parts])
    return {"counts": np.concatenate([p["counts"] for p in parts]),
            "descriptors": np.concatenate([p["descriptors"] for p in parts]),
            "scaffold": scaffold_ids(keys.tolist())}


def _targets_path(config: MMSAConfig, smiles: list[str]) -> Path:
    key = hashlib.sha256(json.dumps([config.target_bits, config.n_descriptors]).encode()
                         + smiles_key(smiles).encode()).hexdigest()[:20]
    return cache_dir() / "pretrain" / f"targets-{key}.npz"


def cached_corpus_targets(config: MMSAConfig, smiles: list[str],
                          n_jobs: int = 2) -> dict[str, np.ndarray]:
    """:func:`compute_corpus_targets` with standardised descriptors (``desc_centre``,
    ``desc_scale``), computed once per molecule list and cached under
    ``$MMSA_CACHE/pretrain``, so that changing the image or 3D share of a corpus does not
    recompute them (500k molecules: ~12 min on 2 cores)."""
    from mmsa.chem.targets import standardise_descriptors

    path = _targets_path(config, smiles)
    if path.is_file():
        log.info("loading chemistry targets from %s", path)
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    log.info("computing chemistry targets")
    t = compute_corpus_targets(smiles, n_jobs)
    desc, centre, scale = standardise_descriptors(t["descriptors"])
    out = {"counts": t["counts"], "descriptors": desc, "desc_centre": centre,
           "desc_scale": scale, "scaffold": t["scaffold"]}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(path) + ".tmp.npz")
    np.savez(tmp, **out)
    os.replace(tmp, path)
    return out


def featurize_corpus(config: MMSAConfig, smiles: list[str], n_multimodal: int,
                     n_jobs: int = 2, progress: bool = False,
                     n_geometry: int | None = None) -> PackedFeatures:
    """Graphs + chemistry targets for every molecule, the depiction for the first
    ``n_multimodal`` and the conformer for the first ``n_geometry`` (default the same; the
    corpus is shuffled, so they are random subsets). Cached."""
    n_geometry = n_multimodal if n_geometry is None else min(n_geometry, n_multimodal)
    from mmsa.chem.conformer import ConformerFeaturizer
    from mmsa.chem.graph import GraphFeaturizer
    from mmsa.chem.image import ImageFeaturizer

    gf = build_featurizer(GraphFeaturizer, config.graph_featurizer)
    icfg = dict(config.image_featurizer or {})
    icfg.setdefault("size", config.image_size)
    imf = build_featurizer(ImageFeaturizer, icfg) if config.use_image else None
    cf = build_featurizer(ConformerFeaturizer, config.conformer_featurizer) if config.use_geometry else None
    feats = {"graph": gf.config(), "image": imf.config() if imf else None,
             "conformer": cf.config() if cf else None, "n_multimodal": n_multimodal,
             "n_geometry": n_geometry,
             "targets": [config.target_bits, config.n_descriptors]}
    key = hashlib.sha256(json.dumps(feats, sort_keys=True, default=str).encode()
                         + smiles_key(smiles).encode()).hexdigest()[:20]
    path = cache_dir() / "pretrain" / f"corpus-{key}.npz"
    if path.is_file():
        log.info("loading packed corpus from %s", path)
        return PackedFeatures.load(path)
    log.info("featurising %d graphs", len(smiles))
    # in this process: the batched graph featuriser is faster than shipping its arrays back
    # from worker processes (measured: 10k graphs per ~60 s through a pool on a busy machine)
    graphs = featurize_all(gf, smiles, 1, progress, True)
    keep = [i for i, g in enumerate(graphs) if g is not None and g.x.shape[0] > 0]
    sub = [smiles[i] for i in keep]
    m = sum(1 for i in keep if i < n_multimodal)
    m3 = sum(1 for i in keep if i < n_geometry)
    images = featurize_all(imf, sub[:m], n_jobs, progress, True) if imf else None
    confs = featurize_all(cf, sub[:m3], n_jobs, progress, True) if cf else None
    packed = pack_features([graphs[i] for i in keep])
    packed.rows = np.asarray(keep, dtype=np.int64)
    n = len(keep)
    if images is not None:
        ok = np.array([im is not None for im in images], dtype=bool)
        first = next(im for im in images if im is not None)
        packed.images = np.zeros((int(ok.sum()), *first.shape), dtype=np.uint8)
        packed.image_row = np.full(n, -1, dtype=np.int32)
        for j, i in enumerate(np.flatnonzero(ok)):
            packed.images[j] = images[i]
            packed.image_row[i] = j
        packed.image_ok = packed.image_row >= 0
    if confs is not None:
        pack_conformers(packed, list(confs) + [None] * (n - m3))
        log.info("conformers: %d of %d", int(packed.conf_ok.sum()), m3)
    t = cached_corpus_targets(config, sub, n_jobs)
    packed.fp_counts = t["counts"]
    packed.descriptors, packed.desc_centre, packed.desc_scale = (
        t["descriptors"], t["desc_centre"], t["desc_scale"])
    packed.scaffold = t["scaffold"]
    path.parent.mkdir(parents=True, exist_ok=True)
    packed.save(path)
    log.info("packed corpus written to %s", path)
    return packed


def analogue_batch(features: PackedFeatures, rng: np.random.Generator, batch_size: int,
                   analogue_fraction: float) -> np.ndarray:
    """Indices of one batch: ``analogue_fraction`` of it as pairs of molecules sharing a
    Murcko scaffold (so the batch holds close analogues for the similarity terms), the rest
    drawn uniformly."""
    n = len(features)
    n_pairs = int(batch_size * analogue_fraction) // 2
    groups = features.extra.get("_groups")
    if groups is None:
        scaf = features.scaffold if features.scaffold is not None else np.full(n, -1)
        valid = np.flatnonzero(scaf >= 0)
        order = valid[np.argsort(scaf[valid], kind="stable")]
        ids, start, size = np.unique(scaf[order], return_index=True, return_counts=True)
        multi = size >= 2
        member_group = np.repeat(np.arange(len(ids)), size)
        in_multi = multi[member_group]
        groups = (order, start, size, np.flatnonzero(in_multi), member_group)
        features.extra["_groups"] = groups
    order, start, size, candidates, member_group = groups
    if n_pairs == 0 or len(candidates) == 0:
        return rng.choice(n, batch_size, replace=False)
    pos = rng.choice(candidates, n_pairs, replace=False)
    g = member_group[pos]
    within = pos - start[g]
    sib = start[g] + (within + rng.integers(1, size[g])) % size[g]
    anchors = np.unique(np.concatenate([order[pos], order[sib]]))
    rest = rng.choice(n, batch_size - len(anchors) + 16, replace=False)
    rest = rest[~np.isin(rest, anchors)][:batch_size - len(anchors)]
    return np.concatenate([anchors, rest])
