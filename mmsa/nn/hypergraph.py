"""Structure awareness, part 1: a hypergraph whose nodes are molecules.

Each molecule ``i`` of a batch spans one hyperedge holding itself and its ``k`` nearest
neighbours (cosine) in the shared space; PyG's ``HypergraphConv`` then refines every embedding
from the hyperedges it belongs to. Incidence is PyG's ``[2, nnz]`` (node, hyperedge) index.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import HypergraphConv


@torch.no_grad()
def knn_hyperedges(z: Tensor, k: int) -> Tensor:
    """kNN hyperedges over the rows of ``z [B, D]`` (normalised).

    Returns ``hyperedge_index [2, B * (k' + 1)]`` (row 0: molecule, row 1: hyperedge id), where
    hyperedge ``i`` = {i} plus its ``k' = min(k, B - 1)`` most cosine-similar molecules.
    """
    return knn_hyperedges_from_similarity(z @ z.t(), k)


@torch.no_grad()
def knn_hyperedges_from_similarity(sim: Tensor, k: int) -> Tensor:
    """kNN hyperedges from a similarity matrix ``sim [B, B]`` (e.g. the batch's Tanimoto
    kernel); same output as :func:`knn_hyperedges`."""
    b = sim.size(0)
    k = max(0, min(k, b - 1))
    centre = torch.arange(b, device=sim.device)
    if k == 0:
        return torch.stack([centre, centre])
    sim = sim.clone()
    sim.fill_diagonal_(-float("inf"))
    nbrs = sim.topk(k, dim=1).indices  # [B, k]
    members = torch.cat([centre.unsqueeze(1), nbrs], dim=1)  # [B, k + 1]
    edges = centre.unsqueeze(1).expand_as(members)
    return torch.stack([members.reshape(-1), edges.reshape(-1)])


class HypergraphRefiner(nn.Module):
    """``forward(z [B, D]) -> (z' [B, D] normalised, hyperedge_index)``: z' = norm(z + HGC(z))."""

    def __init__(self, dim: int, k: int = 4):
        super().__init__()
        self.k = k
        self.conv = HypergraphConv(dim, dim)
        self.act = nn.PReLU()

    def forward(self, z: Tensor, index: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``index``: a precomputed ``[2, nnz]`` incidence (e.g. kNN under the Tanimoto kernel
        of the batch, :func:`knn_hyperedges` on it); default kNN over ``z`` itself."""
        if index is None:
            index = knn_hyperedges(z, self.k)
        h = self.conv(z, index, num_edges=z.size(0))
        return F.normalize(z + self.act(h), dim=-1), index
