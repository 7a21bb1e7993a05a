"""Batches: collate featurised molecules (graph, image, conformer) into tensors; graph
augmentation for the graph-only contrastive ablation."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

log = logging.getLogger(__name__)


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
