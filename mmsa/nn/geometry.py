"""Geometry encoder: SchNet over a radius graph built within each molecule (E(3)-invariant).

PyG's SchNet uses ``torch_cluster.radius_graph`` by default, which needs a package PyPI lacks;
:class:`RadiusInteractionGraph` builds the same graph with plain torch ops (all atom pairs of
each molecule, kept when closer than the cutoff). SchNet only sees interatomic distances and
atomic numbers, so its output is invariant to rotations, reflections and translations.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn.models import SchNet


class RadiusInteractionGraph(nn.Module):
    """``(pos [N, 3], batch [N]) -> (edge_index [2, E], edge_weight [E])``.

    Pairs ``(i, j)``, ``i != j`` of atoms of the same molecule with ``|pos_i - pos_j| <= cutoff``;
    ``edge_weight`` is that distance. Cost is sum over molecules of n_atoms**2, fine for
    drug-sized molecules. ``batch`` must be sorted (as PyG batches are).
    """

    def __init__(self, cutoff: float = 5.0):
        super().__init__()
        self.cutoff = float(cutoff)

    def forward(self, pos: Tensor, batch: Tensor) -> tuple[Tensor, Tensor]:
        n = pos.size(0)
        if n == 0:
            return pos.new_zeros((2, 0), dtype=torch.long), pos.new_zeros(0)
        counts = torch.bincount(batch)
        ptr = torch.cumsum(counts, 0) - counts  # first atom of each molecule
        per_node = counts[batch]  # partners of each atom (incl. itself)
        row = torch.repeat_interleave(torch.arange(n, device=pos.device), per_node)
        start = torch.repeat_interleave(torch.cumsum(per_node, 0) - per_node, per_node)
        local = torch.arange(row.numel(), device=pos.device) - start
        col = ptr[batch[row]] + local
        dist = (pos[row] - pos[col]).norm(dim=-1)
        keep = (row != col) & (dist <= self.cutoff)
        return torch.stack([row[keep], col[keep]]), dist[keep]


class GeometryEncoder(nn.Module):
    """SchNet embedding of a conformer.

    Args:
        hidden, filters, interactions, gaussians, cutoff: SchNet's hyper-parameters.
        out_dim: width of the molecule embedding.

    ``forward(z [N] int64, pos [N, 3], batch [N], num_graphs)`` returns ``[num_graphs, out_dim]``
    (mean readout over atoms; molecules with no atoms in the batch get zeros).
    """

    def __init__(self, hidden: int = 64, filters: int = 64, interactions: int = 3,
                 gaussians: int = 25, cutoff: float = 5.0, out_dim: int = 128):
        super().__init__()
        self.schnet = SchNet(hidden_channels=hidden, num_filters=filters,
                             num_interactions=interactions, num_gaussians=gaussians,
                             cutoff=cutoff, interaction_graph=RadiusInteractionGraph(cutoff),
                             readout="mean")
        # SchNet regresses one scalar; its last layer becomes the embedding projection.
        self.schnet.lin2 = nn.Linear(hidden // 2, out_dim)
        nn.init.xavier_uniform_(self.schnet.lin2.weight)
        nn.init.zeros_(self.schnet.lin2.bias)
        self.out_dim = out_dim

    def forward(self, z: Tensor, pos: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        s = self.schnet
        h = s.embedding(z)
        edge_index, edge_weight = s.interaction_graph(pos, batch)
        edge_attr = s.distance_expansion(edge_weight)
        for interaction in s.interactions:
            h = h + interaction(h, edge_index, edge_weight, edge_attr)
        h = s.lin2(s.act(s.lin1(h)))
        out = h.new_zeros(num_graphs, h.size(-1))
        out.index_add_(0, batch, h)
        count = torch.bincount(batch, minlength=num_graphs).clamp(min=1).unsqueeze(-1)
        return out / count
