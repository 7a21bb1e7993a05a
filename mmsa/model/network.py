"""The composed MMSA model and its losses.

Blocks live in :mod:`mmsa.nn`; this module composes them (see mmsa/weights/MODEL_CARD.md for
every design choice and why)."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmsa.model.batch import MMSABatch, augment_graph
from mmsa.model.config import MMSAConfig
from mmsa.nn.chemistry import (
    ChemistryDecoder,
    NeighbourQueue,
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
        self.sim_queue = (NeighbourQueue(c.sim_queue, c.dim, c.target_bits)
                          if c.sim_queue > 0 and c.target_bits > 0 else None)

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
        mem_assign: cross-entropy to Sinkhorn-balanced anchor assignments (anti-collapse);
        fp/desc: chemistry decoding; sim: Tanimoto neighbour distillation on the fast-path
        vector (over the batch and, with ``sim_queue``, earlier batches: in training mode each
        call then pushes this batch into the queue); vic: VICReg on the graph code.
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
            v_ref = kernel_ref = None
            if self.sim_queue is not None:
                bits = (batch.fp_counts > 0).to(v_g.dtype)
                v_ref, kernel_ref = self.sim_queue.vectors_copy(), self.sim_queue.tanimoto(bits)
            sim = similarity_distillation(v_g, kernel, c.sim_tau, c.sim_tau_target,
                                          v_ref, kernel_ref)
            if self.sim_queue is not None and self.training:
                self.sim_queue.push(v_g, bits)
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
