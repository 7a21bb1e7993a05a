"""The MMSA model: configuration, batches, the composed model, its losses, checkpoints.

Blocks live in :mod:`mmsa.nn`; this module composes them (see mmsa/weights/MODEL_CARD.md for
every design choice and why).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmsa.nn.chemistry import (
    ChemistryDecoder,
    similarity_distillation,
    tanimoto_kernel,
    vicreg_regulariser,
)
from mmsa.nn.fusion import ModalityAutoEncoder, info_nce, masked_mean_fuse
from mmsa.nn.geometry import GeometryEncoder
from mmsa.nn.graph import GraphEncoder
from mmsa.nn.hypergraph import HypergraphRefiner, knn_hyperedges_from_similarity
from mmsa.nn.image import ImageEncoder
from mmsa.nn.memory import MemoryBank, assignment_entropy
from mmsa.types import InputError

log = logging.getLogger(__name__)

LOSS_TERMS = ("recon", "contrast", "hyper", "mem_align", "mem_assign", "fp", "desc", "sim", "vic")
CHECKPOINT_FORMAT = 1


@dataclass
class MMSAConfig:
    """Everything that rebuilds an :class:`MMSA` model (stored in checkpoints).

    Feature sizes (``atom_dim``, ``bond_dim``, ``image_channels``, ``image_size``) come from
    the featurizers (:meth:`from_featurizers`), never from literals; the featurizers' own
    ``config()`` dicts are stored too so the encoder rebuilds the same featurisation.
    """

    atom_dim: int
    bond_dim: int
    image_channels: int = 3
    image_size: int = 64
    dim: int = 256  # shared embedding space (the vectors users get)
    feature_dim: int = 256  # output width of each modality extractor
    ae_hidden: int = 256  # hidden width of the modality auto-encoders
    graph_hidden: int = 128
    graph_layers: int = 3
    image_widths: tuple[int, ...] = (16, 32, 64, 128)
    geom_hidden: int = 64
    geom_filters: int = 64
    geom_interactions: int = 3
    geom_gaussians: int = 20
    cutoff: float = 5.0
    num_slots: int = 64
    knn: int = 4
    tau: float = 0.1  # InfoNCE temperature
    memory_tau: float = 0.1  # anchor-assignment temperature
    sinkhorn_eps: float = 0.05
    readout_weight: float = 0.5  # embedding = norm(z + readout_weight * memory_readout(z))
    use_image: bool = True
    use_geometry: bool = True
    use_hypergraph: bool = True
    use_memory: bool = True
    aug_node_mask: float = 0.15  # graph-only ablation: augmented-view node masking rate
    aug_edge_drop: float = 0.15  # graph-only ablation: augmented-view edge dropping rate
    w_recon: float = 1.0
    w_contrast: float = 1.0
    w_hyper: float = 1.0
    w_mem_align: float = 1.0
    w_mem_assign: float = 1.0
    # chemistry-aware objective (0 / absent in the first checkpoint; see MODEL_CARD.md)
    target_bits: int = 0  # folded Morgan count targets (mmsa.chem.targets), 0 = no decoder
    n_descriptors: int = 0  # RDKit descriptor targets (len(DESCRIPTOR_NAMES))
    w_fp: float = 0.0  # fingerprint-environment decoding (BCE) from every modality's code
    w_desc: float = 0.0  # descriptor decoding (MSE) from every modality's code
    w_sim: float = 0.0  # Tanimoto-kernel neighbour distillation on the fast embedding
    w_vic: float = 0.0  # VICReg variance + vic_cov * covariance on the graph code
    vic_cov: float = 0.04
    sim_tau: float = 0.1
    sim_tau_target: float = 0.05
    hyper_source: str = "embedding"  # hyperedges from "embedding" kNN or "tanimoto" kNN
    graph_featurizer: dict = field(default_factory=dict)
    image_featurizer: dict = field(default_factory=dict)
    conformer_featurizer: dict = field(default_factory=dict)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities this model was built with (``graph`` always)."""
        mods = ["graph"]
        if self.use_image:
            mods.append("image")
        if self.use_geometry:
            mods.append("geometry")
        return tuple(mods)

    def to_dict(self) -> dict:
        """Primitive-typed dict (lists, not tuples) safe for ``torch.load(weights_only=True)``."""
        d = dataclasses.asdict(self)
        d["image_widths"] = [int(w) for w in self.image_widths]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> MMSAConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            log.warning("ignoring unknown config keys %s", sorted(unknown))
        d = {k: v for k, v in d.items() if k in known}
        if "image_widths" in d:
            d["image_widths"] = tuple(d["image_widths"])
        return cls(**d)

    @classmethod
    def from_featurizers(cls, graph, image=None, conformer=None, **overrides) -> MMSAConfig:
        """Config whose feature sizes and featurizer configs come from the featurizer objects."""
        kw: dict[str, Any] = {"atom_dim": int(graph.atom_dim), "bond_dim": int(graph.bond_dim),
                              "graph_featurizer": dict(graph.config())}
        if image is not None:
            c, h, _ = image.shape
            kw.update(image_channels=int(c), image_size=int(h), image_featurizer=dict(image.config()))
        if conformer is not None:
            kw["conformer_featurizer"] = dict(conformer.config())
        kw.update(overrides)
        return cls(**kw)

    @classmethod
    def tiny(cls, **overrides) -> MMSAConfig:
        """A very small model for tests (default featurizers, 32 px images, narrow widths)."""
        from mmsa.chem.conformer import ConformerFeaturizer
        from mmsa.chem.graph import GraphFeaturizer
        from mmsa.chem.image import ImageFeaturizer

        kw = dict(dim=16, feature_dim=16, ae_hidden=16, graph_hidden=16, graph_layers=2,
                  image_widths=(4, 8, 8, 16), geom_hidden=16, geom_filters=16,
                  geom_interactions=2, geom_gaussians=10, num_slots=8, knn=3)
        kw.update(overrides)
        size = int(kw.pop("image_size", 32))
        return cls.from_featurizers(GraphFeaturizer(), ImageFeaturizer(size=size),
                                    ConformerFeaturizer(), **kw)


# --------------------------------------------------------------------------- batches
@dataclass
class MMSABatch:
    """A collated batch of ``num_graphs`` molecules (torch tensors).

    Graph: ``x [N, atom_dim]``, ``edge_index [2, E]``, ``edge_attr [E, bond_dim]``,
    ``batch [N]``. Image: ``images`` uint8 ``[B, C, H, W]`` or None, ``image_mask [B]``.
    Geometry: ``z [N3]``, ``pos [N3, 3]``, ``pos_batch [N3]`` (molecule index in 0..B-1),
    ``geom_mask [B]`` (False where the molecule has no conformer).
    """

    x: Tensor
    edge_index: Tensor
    edge_attr: Tensor
    batch: Tensor
    num_graphs: int
    images: Tensor | None = None
    image_mask: Tensor | None = None
    z: Tensor | None = None
    pos: Tensor | None = None
    pos_batch: Tensor | None = None
    geom_mask: Tensor | None = None
    fp_counts: Tensor | None = None  # uint8 [B, target_bits] (pre-training targets)
    descriptors: Tensor | None = None  # float32 [B, n_descriptors], standardised

    def to(self, device: torch.device | str) -> MMSABatch:
        moved = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            moved[f.name] = v.to(device, non_blocking=True) if isinstance(v, Tensor) else v
        return MMSABatch(**moved)


def _has_conformer(c) -> bool:
    return c is not None and hasattr(c, "pos") and hasattr(c, "z") and len(c.z) > 0


def collate(graphs: Sequence, images: Sequence | None = None,
            conformers: Sequence | None = None) -> MMSABatch:
    """Collate numpy featurizer outputs into an :class:`MMSABatch`.

    Args:
        graphs: ``GraphFeatures``-like objects (``x``, ``edge_index``, ``edge_attr``), each with
            at least one atom.
        images: optional list of uint8 ``[C, H, W]`` arrays, ``None`` where missing.
        conformers: optional list of ``Conformer`` (``z [n]``, ``pos [n, 3]``); ``None`` or a
            ``ConformerFailure`` where missing.
    """
    b = len(graphs)
    sizes = np.array([g.x.shape[0] for g in graphs], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]) if b else np.zeros(0, np.int64)
    x = np.concatenate([g.x for g in graphs]).astype(np.float32, copy=False)
    ei = np.concatenate([np.asarray(g.edge_index, dtype=np.int64) + o
                         for g, o in zip(graphs, offsets)], axis=1)
    ea = np.concatenate([g.edge_attr for g in graphs]).astype(np.float32, copy=False)
    out = MMSABatch(x=torch.from_numpy(x), edge_index=torch.from_numpy(ei),
                    edge_attr=torch.from_numpy(ea),
                    batch=torch.from_numpy(np.repeat(np.arange(b), sizes)), num_graphs=b)
    if images is not None:
        first = next((im for im in images if im is not None), None)
        if first is not None:
            stack = np.zeros((b, *first.shape), dtype=np.uint8)
            mask = np.zeros(b, dtype=bool)
            for i, im in enumerate(images):
                if im is not None:
                    stack[i] = im
                    mask[i] = True
            out.images = torch.from_numpy(stack)
            out.image_mask = torch.from_numpy(mask)
    if conformers is not None:
        mask = np.array([_has_conformer(c) for c in conformers], dtype=bool)
        idx = np.flatnonzero(mask)
        if len(idx):
            out.z = torch.from_numpy(np.concatenate([np.asarray(conformers[i].z, np.int64)
                                                     for i in idx]))
            out.pos = torch.from_numpy(np.concatenate([np.asarray(conformers[i].pos, np.float32)
                                                       for i in idx]))
            out.pos_batch = torch.from_numpy(np.repeat(idx, [len(conformers[i].z) for i in idx]))
        out.geom_mask = torch.from_numpy(mask)
    return out


def augment_graph(batch: MMSABatch, node_mask: float, edge_drop: float,
                  generator: torch.Generator | None = None) -> MMSABatch:
    """A randomly perturbed graph view (atom features zeroed, directed edges dropped)."""
    keep_node = torch.rand(batch.x.size(0), generator=generator, device=batch.x.device) >= node_mask
    keep_edge = torch.rand(batch.edge_index.size(1), generator=generator,
                           device=batch.x.device) >= edge_drop
    return dataclasses.replace(batch, x=batch.x * keep_node.unsqueeze(-1).to(batch.x.dtype),
                               edge_index=batch.edge_index[:, keep_edge],
                               edge_attr=batch.edge_attr[keep_edge])


# --------------------------------------------------------------------------- model
class MMSA(nn.Module):
    """Multi-modal molecular representation learning with structure awareness.

    Extractors (GINE graph, ResNet image, SchNet geometry) -> per-modality auto-encoders into a
    shared space (``config.dim``) -> fused embedding -> kNN hypergraph refinement over the batch
    and a memory bank of ``config.num_slots`` anchors.

    ``embed(batch, mode)`` gives per-molecule vectors (independent of the other molecules of
    the batch); ``losses(batch)`` gives the pre-training loss terms.
    """

    def __init__(self, config: MMSAConfig):
        super().__init__()
        self.config = c = config
        self.graph_encoder = GraphEncoder(c.atom_dim, c.bond_dim, c.graph_hidden, c.graph_layers,
                                          c.feature_dim)
        self.autoencoders = nn.ModuleDict(
            {"graph": ModalityAutoEncoder(c.feature_dim, c.dim, c.ae_hidden)})
        if c.use_image:
            self.image_encoder = ImageEncoder(c.image_channels, c.image_widths, c.feature_dim)
            self.autoencoders["image"] = ModalityAutoEncoder(c.feature_dim, c.dim, c.ae_hidden)
        if c.use_geometry:
            self.geometry_encoder = GeometryEncoder(c.geom_hidden, c.geom_filters,
                                                    c.geom_interactions, c.geom_gaussians,
                                                    c.cutoff, c.feature_dim)
            self.autoencoders["geometry"] = ModalityAutoEncoder(c.feature_dim, c.dim, c.ae_hidden)
        self.hypergraph = HypergraphRefiner(c.dim, c.knn) if c.use_hypergraph else None
        self.memory = MemoryBank(c.num_slots, c.dim, c.memory_tau) if c.use_memory else None
        self.chemistry = (ChemistryDecoder(c.dim, c.ae_hidden, c.target_bits, c.n_descriptors)
                          if c.target_bits > 0 and c.n_descriptors > 0 else None)

    @property
    def num_slots(self) -> int:
        return self.memory.num_slots if self.memory is not None else 0

    # -- modality features
    def _graph(self, batch: MMSABatch) -> Tensor:
        return self.graph_encoder(batch.x, batch.edge_index, batch.edge_attr, batch.batch,
                                  batch.num_graphs)

    def _image(self, batch: MMSABatch) -> Tensor:
        return self.image_encoder(batch.images)

    def _geometry(self, batch: MMSABatch) -> Tensor:
        return self.geometry_encoder(batch.z, batch.pos, batch.pos_batch, batch.num_graphs)

    def _views(self, batch: MMSABatch, mode: str) -> list[tuple[str, Tensor, Tensor, Tensor, Tensor]]:
        """(name, features, code, recon, mask) per available modality."""
        ones = torch.ones(batch.num_graphs, dtype=torch.bool, device=batch.x.device)
        f = self._graph(batch)
        z, rec = self.autoencoders["graph"](f)
        views = [("graph", f, z, rec, ones)]
        if mode == "fast":
            return views
        c = self.config
        if c.use_image and batch.images is not None and bool(batch.image_mask.any()):
            f = self._image(batch)
            z, rec = self.autoencoders["image"](f)
            views.append(("image", f, z, rec, batch.image_mask))
        if c.use_geometry and batch.pos is not None and bool(batch.geom_mask.any()):
            f = self._geometry(batch)
            z, rec = self.autoencoders["geometry"](f)
            views.append(("geometry", f, z, rec, batch.geom_mask))
        return views

    def _readout(self, z: Tensor) -> tuple[Tensor, Tensor]:
        if self.memory is None:
            return z, z.new_zeros(z.size(0), 0)
        w = self.memory.assign(z)
        v = F.normalize(z + self.config.readout_weight * self.memory.readout(w), dim=-1)
        return v, w

    def embed(self, batch: MMSABatch, mode: str = "fast") -> tuple[Tensor, Tensor]:
        """``(vectors [B, dim] L2-normalised, slot_weights [B, num_slots])``.

        ``fast``: graph branch + memory readout. ``full``: mean of the graph, image and 3D codes
        the molecule has (masking), + memory readout.
        """
        if mode not in ("fast", "full"):
            raise InputError(f"unknown embedding mode {mode!r} (use 'fast' or 'full')")
        views = self._views(batch, mode)
        z = masked_mean_fuse([v[2] for v in views], [v[4] for v in views])
        return self._readout(z)

    def modality_codes(self, batch: MMSABatch) -> dict[str, tuple[Tensor, Tensor]]:
        """Each modality's code in the shared space, before fusion and memory readout:
        ``{name: (codes [B, dim], mask bool [B])}`` for ``graph`` and, when the model and the
        batch have them, ``image`` and ``geometry`` (``mask`` False where a molecule lacks
        that modality: its code row is then meaningless)."""
        return {name: (z, mask) for name, _f, z, _rec, mask in self._views(batch, "full")}

    def losses(self, batch: MMSABatch, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Pre-training loss terms (scalars) and their weighted sum ``loss``.

        recon: auto-encoder reconstruction of every modality's features;
        contrast: symmetric InfoNCE between every pair of modalities (graph vs augmented graph
        when image and geometry are both off); hyper: InfoNCE between the graph code and the
        hypergraph-refined fused code; mem_align: 1 - cos(embedding, memory readout);
        mem_assign: cross-entropy to Sinkhorn-balanced anchor assignments (anti-collapse).
        With a memory, ``mem_entropy_marginal``/``mem_entropy_row`` (diagnostics, not in
        ``loss``) give the entropy of the batch's mean anchor assignment and the mean
        per-molecule entropy (nats) of the graph embeddings.
        """
        c = self.config
        views = self._views(batch, "full")
        if not c.use_image and not c.use_geometry:
            aug = augment_graph(batch, c.aug_node_mask, c.aug_edge_drop, generator)
            f = self._graph(aug)
            z, rec = self.autoencoders["graph"](f)
            views.append(("graph_aug", f, z, rec, views[0][4]))
        zero = views[0][2].sum() * 0.0
        recon = torch.stack([ModalityAutoEncoder.reconstruction_loss(f, rec, m)
                             for _, f, _, rec, m in views]).mean()
        pairs = [info_nce(a[2], b[2], c.tau, a[4] & b[4])
                 for i, a in enumerate(views) for b in views[i + 1:]
                 if int((a[4] & b[4]).sum()) >= 2]
        contrast = torch.stack(pairs).mean() if pairs else zero
        z_g = views[0][2]
        z_f = masked_mean_fuse([v[2] for v in views], [v[4] for v in views])
        kernel = (tanimoto_kernel(batch.fp_counts)
                  if batch.fp_counts is not None else None)
        if self.hypergraph is not None:
            index = None
            if c.hyper_source == "tanimoto" and kernel is not None:
                index = knn_hyperedges_from_similarity(kernel, self.hypergraph.k)
            z_h, _ = self.hypergraph(z_f, index)
            hyper = info_nce(z_g, z_h, c.tau)
        else:
            z_h, hyper = z_f, zero
        if self.memory is not None:
            mem_align = 0.5 * (self.memory.alignment_loss(z_g) + self.memory.alignment_loss(z_f))
            mem_assign = 0.5 * (self.memory.assignment_loss(z_g, z_h, c.sinkhorn_eps)
                                + self.memory.assignment_loss(z_f, z_h, c.sinkhorn_eps))
        else:
            mem_align = mem_assign = zero
        fp = desc = sim = vic = zero
        if self.chemistry is not None and batch.fp_counts is not None:
            counts = batch.fp_counts.to(z_g.dtype)
            parts = [self.chemistry.loss(v[2], counts, batch.descriptors, v[4])
                     for v in views if v[0] != "graph_aug"]
            fp = torch.stack([p[0] for p in parts]).mean()
            desc = torch.stack([p[1] for p in parts]).mean()
        if kernel is not None and c.w_sim > 0:
            v_g, _ = self._readout(z_g)  # the fast-path vector users search with
            sim = similarity_distillation(v_g, kernel, c.sim_tau, c.sim_tau_target)
        if c.w_vic > 0:
            var, cov = vicreg_regulariser(z_g)
            vic = var + c.vic_cov * cov
        out = {"recon": recon, "contrast": contrast, "hyper": hyper,
               "mem_align": mem_align, "mem_assign": mem_assign, "fp": fp, "desc": desc,
               "sim": sim, "vic": vic}
        out["loss"] = (c.w_recon * recon + c.w_contrast * contrast + c.w_hyper * hyper
                       + c.w_mem_align * mem_align + c.w_mem_assign * mem_assign
                       + c.w_fp * fp + c.w_desc * desc + c.w_sim * sim + c.w_vic * vic)
        if self.memory is not None:  # diagnostics (no gradient): anchor usage of the fast path
            with torch.no_grad():
                w = self.memory.assign(z_g.detach())
                out["mem_entropy_marginal"], out["mem_entropy_row"] = assignment_entropy(w)
        return out


# --------------------------------------------------------------------------- checkpoints
def _versions() -> dict[str, str]:
    import torch_geometric

    import mmsa

    v = {"mmsa": str(mmsa.__version__), "torch": str(torch.__version__),
         "torch_geometric": str(torch_geometric.__version__), "format": str(CHECKPOINT_FORMAT)}
    try:
        from rdkit import rdBase

        v["rdkit"] = str(rdBase.rdkitVersion)
    except ImportError:  # pragma: no cover
        pass
    return v


def save_checkpoint(model: MMSA, path: str | os.PathLike, extra: dict | None = None,
                    half: bool = False) -> Path:
    """Write ``{hyper_parameters, state_dict, versions, extra}`` atomically.

    Only primitive types and tensors, so it loads with ``torch.load(weights_only=True)``.
    ``half=True`` stores floating tensors as float16 (the shipped checkpoint, to stay small);
    loading converts them back to float32.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.detach().cpu().half() if half and v.is_floating_point() else v.detach().cpu())
             for k, v in model.state_dict().items()}
    payload = {"hyper_parameters": model.config.to_dict(), "state_dict": state,
               "versions": _versions(), "extra": dict(extra or {})}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The raw checkpoint dict (``torch.load(weights_only=True)``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupted or not a checkpoint
        raise InputError(f"cannot read checkpoint {path}: {exc}") from exc


def model_from_checkpoint(ckpt: dict) -> MMSA:
    """Rebuild the model of a checkpoint dict (float32, eval mode)."""
    for key in ("hyper_parameters", "state_dict"):
        if key not in ckpt:
            raise InputError(f"not an MMSA checkpoint (no {key!r})")
    model = MMSA(MMSAConfig.from_dict(ckpt["hyper_parameters"]))
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in ckpt["state_dict"].items()}
    model.load_state_dict(state)
    return model.eval()


def load_checkpoint(path: str | os.PathLike) -> MMSA:
    """Load a checkpoint written by :func:`save_checkpoint` into a model in eval mode."""
    return model_from_checkpoint(read_checkpoint(path))
