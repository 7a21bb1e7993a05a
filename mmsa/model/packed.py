"""Packed pre-training features: every molecule's graph (and image, conformer, targets) in
a few flat arrays, featurised once and cached on disk."""


from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mmsa.model.batch import MMSABatch
from mmsa.model.config import MMSAConfig
from mmsa.model.featurize import build_featurizer, featurize
from mmsa.paths import cache_dir
from mmsa.types import InputError

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- packed features
@dataclass
class PackedFeatures:
    """Featurised molecules packed into flat numpy arrays (fast batching, no pickles on disk).

    Graph: ``x [sum N, atom_dim]`` (uint8 when one-hot), ``node_ptr [n + 1]``,
    ``edge_index [2, sum E]`` (local atom indices), ``edge_attr [sum E, bond_dim]``,
    ``edge_ptr [n + 1]``. Image: ``images uint8 [n, C, H, W]`` or None, ``image_ok [n]``.
    Conformer: ``conf_z [sum N3]``, ``conf_pos [sum N3, 3]``, ``conf_ptr [n + 1]``,
    ``conf_ok [n]``. ``rows [n]``: position of each molecule in the SMILES list it came from.
    """

    x: np.ndarray
    node_ptr: np.ndarray
    edge_index: np.ndarray
    edge_attr: np.ndarray
    edge_ptr: np.ndarray
    rows: np.ndarray
    images: np.ndarray | None = None
    image_ok: np.ndarray | None = None
    conf_z: np.ndarray | None = None
    conf_pos: np.ndarray | None = None
    conf_ptr: np.ndarray | None = None
    conf_ok: np.ndarray | None = None
    image_row: np.ndarray | None = None  # int32 [n]: row of ``images`` per molecule, -1 none
    fp_counts: np.ndarray | None = None  # uint8 [n, bits]: Morgan count targets
    descriptors: np.ndarray | None = None  # float32 [n, D]: standardised descriptor targets
    desc_centre: np.ndarray | None = None  # [D] training statistics of the standardisation
    desc_scale: np.ndarray | None = None
    scaffold: np.ndarray | None = None  # int64 [n]: Murcko scaffold group, -1 none
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.node_ptr) - 1

    def save(self, path: str | os.PathLike) -> None:
        arrays = {k: v for k, v in self.__dict__.items()
                  if isinstance(v, np.ndarray)}
        tmp = Path(str(path) + ".tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> PackedFeatures:
        with np.load(path, allow_pickle=False) as data:
            return cls(**{k: data[k] for k in data.files})

    def batch(self, idx: np.ndarray) -> MMSABatch:
        """Collate molecules ``idx`` into an :class:`MMSABatch`."""
        idx = np.asarray(idx)
        b = len(idx)
        n0, n1 = self.node_ptr[idx], self.node_ptr[idx + 1]
        e0, e1 = self.edge_ptr[idx], self.edge_ptr[idx + 1]
        sizes = n1 - n0
        node_sel = np.concatenate([np.arange(s, e) for s, e in zip(n0, n1)])
        edge_sel = np.concatenate([np.arange(s, e) for s, e in zip(e0, e1)])
        offsets = np.cumsum(sizes) - sizes
        shift = np.repeat(offsets, e1 - e0)
        ei = self.edge_index[:, edge_sel].astype(np.int64) + shift
        out = MMSABatch(
            x=torch.from_numpy(self.x[node_sel].astype(np.float32)),
            edge_index=torch.from_numpy(ei),
            edge_attr=torch.from_numpy(self.edge_attr[edge_sel].astype(np.float32)),
            batch=torch.from_numpy(np.repeat(np.arange(b), sizes)), num_graphs=b)
        if self.images is not None and self.image_row is not None:
            rows = self.image_row[idx]
            have = rows >= 0
            stack = np.zeros((b, *self.images.shape[1:]), dtype=np.uint8)
            stack[have] = self.images[rows[have]]
            out.images = torch.from_numpy(stack)
            out.image_mask = torch.from_numpy(have.copy())
        elif self.images is not None:
            out.images = torch.from_numpy(self.images[idx])
            out.image_mask = torch.from_numpy(self.image_ok[idx].copy())
        if self.fp_counts is not None:
            out.fp_counts = torch.from_numpy(self.fp_counts[idx])
            out.descriptors = torch.from_numpy(self.descriptors[idx].astype(np.float32))
        if self.conf_ptr is not None:
            mask = self.conf_ok[idx]
            have = np.flatnonzero(mask)
            c0, c1 = self.conf_ptr[idx[have]], self.conf_ptr[idx[have] + 1]
            if len(have):
                sel = np.concatenate([np.arange(s, e) for s, e in zip(c0, c1)])
                out.z = torch.from_numpy(self.conf_z[sel].astype(np.int64))
                out.pos = torch.from_numpy(self.conf_pos[sel].astype(np.float32))
                out.pos_batch = torch.from_numpy(np.repeat(have, c1 - c0))
            out.geom_mask = torch.from_numpy(mask.copy())
        return out


def pack_features(graphs: list, images: list | None = None,
                  conformers: list | None = None) -> PackedFeatures:
    """Pack aligned featurizer outputs (graphs must all be valid; images/conformers may hold
    None or failures) into :class:`PackedFeatures`."""
    n = len(graphs)
    sizes = np.array([g.x.shape[0] for g in graphs], dtype=np.int64)
    esizes = np.array([g.edge_index.shape[1] for g in graphs], dtype=np.int64)
    x = np.concatenate([g.x for g in graphs])
    if np.array_equal(x, x.astype(np.uint8)):
        x = x.astype(np.uint8)
    ea = np.concatenate([g.edge_attr for g in graphs])
    if np.array_equal(ea, ea.astype(np.uint8)):
        ea = ea.astype(np.uint8)
    packed = PackedFeatures(
        x=x, node_ptr=np.concatenate([[0], np.cumsum(sizes)]),
        edge_index=np.concatenate([g.edge_index for g in graphs], axis=1).astype(np.int32),
        edge_attr=ea, edge_ptr=np.concatenate([[0], np.cumsum(esizes)]),
        rows=np.arange(n, dtype=np.int64))
    if images is not None:
        first = next((im for im in images if im is not None), None)
        if first is not None:
            packed.images = np.zeros((n, *first.shape), dtype=np.uint8)
            packed.image_ok = np.zeros(n, dtype=bool)
            for i, im in enumerate(images):
                if im is not None:
                    packed.images[i] = im
                    packed.image_ok[i] = True
    if conformers is not None:
        pack_conformers(packed, conformers)
    return packed


def pack_conformers(packed: PackedFeatures, conformers: list) -> None:
    """Set ``packed``'s conformer arrays from ``conformers`` (aligned with its molecules;
    ``None`` or a failure where a molecule has none)."""
    ok = np.array([c is not None and hasattr(c, "pos") and len(c.z) > 0 for c in conformers],
                  dtype=bool)
    csz = np.array([len(c.z) if o else 0 for c, o in zip(conformers, ok)], dtype=np.int64)
    good = [c for c, o in zip(conformers, ok) if o]
    packed.conf_ok = ok
    packed.conf_ptr = np.concatenate([[0], np.cumsum(csz)])
    packed.conf_z = (np.concatenate([np.asarray(c.z) for c in good]).astype(np.uint8)
                     if good else np.zeros(0, np.uint8))
    packed.conf_pos = (np.concatenate([np.asarray(c.pos) for c in good]).astype(np.float32)
                       if good else np.zeros((0, 3), np.float32))


def featurize_all(featurizer, smiles: list[str], n_jobs: int, progress: bool,
                   cache: bool = True, block: int = 10_000) -> list:
    """Featurizer outputs aligned with ``smiles``; None where featurisation failed.

    Uses ``mmsa.chem.parallel.featurize_many`` (worker processes, on-disk cache) unless a
    single process without cache is asked for.
    """
    if n_jobs <= 1 and not cache:

        return featurize(featurizer, smiles, 1)[0]
    from mmsa.chem.parallel import featurize_many

    out: list = []
    for start in range(0, len(smiles), block):  # cached block by block: an interrupted
        part = smiles[start:start + block]       # run resumes from the last finished block
        results, failures = featurize_many(featurizer, part, n_jobs=n_jobs, progress=progress,
                                           cache=cache)
        failed = {f.row for f in failures}
        out.extend(None if i in failed else r for i, r in enumerate(results))
    return out


def smiles_key(smiles: list[str]) -> str:
    h = hashlib.sha256()
    for s in smiles:
        h.update(s.encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


def featurize_for_pretraining(config: MMSAConfig, smiles: list[str], n_jobs: int = 2,
                              progress: bool = False, cache: bool = True) -> PackedFeatures:
    """Featurise ``smiles`` with every modality ``config`` uses; cached under
    ``$MMSA_CACHE/pretrain``. Molecules whose graph fails are left out (``rows`` says which
    remain); failed images/conformers are masked."""
    from mmsa.chem.conformer import ConformerFeaturizer
    from mmsa.chem.graph import GraphFeaturizer
    from mmsa.chem.image import ImageFeaturizer

    smiles = [str(s) for s in smiles]
    gf = build_featurizer(GraphFeaturizer, config.graph_featurizer)
    if (gf.atom_dim, gf.bond_dim) != (config.atom_dim, config.bond_dim):
        raise InputError("config feature sizes do not match mmsa.chem.graph.GraphFeaturizer")
    feats = {"graph": gf.config()}
    imf = cf = None
    if config.use_image:
        icfg = dict(config.image_featurizer or {})
        icfg.setdefault("size", config.image_size)
        imf = build_featurizer(ImageFeaturizer, icfg)
        feats["image"] = imf.config()
    if config.use_geometry:
        cf = build_featurizer(ConformerFeaturizer, config.conformer_featurizer)
        feats["conformer"] = cf.config()
    key = hashlib.sha256(json.dumps(feats, sort_keys=True, default=str).encode()
                         + smiles_key(smiles).encode()).hexdigest()[:20]
    path = cache_dir() / "pretrain" / f"{key}.npz"
    if cache and path.is_file():
        log.info("loading packed features from %s", path)
        return PackedFeatures.load(path)
    log.info("featurising %d molecules (%s)", len(smiles), ", ".join(feats))
    graphs = featurize_all(gf, smiles, n_jobs, progress, cache)
    keep = [i for i, g in enumerate(graphs) if g is not None and g.x.shape[0] > 0]
    if not keep:
        raise InputError("no molecule could be featurised")
    if len(keep) < len(smiles):
        log.warning("%d of %d molecules failed graph featurisation and are left out",
                    len(smiles) - len(keep), len(smiles))
    sub = [smiles[i] for i in keep]
    images = featurize_all(imf, sub, n_jobs, progress, cache) if imf is not None else None
    confs = featurize_all(cf, sub, n_jobs, progress, cache) if cf is not None else None
    packed = pack_features([graphs[i] for i in keep], images, confs)
    packed.rows = np.asarray(keep, dtype=np.int64)
    if confs is not None:
        log.info("conformers: %d of %d", int(packed.conf_ok.sum()), len(packed))
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        packed.save(path)
        log.info("packed features written to %s", path)
    return packed
