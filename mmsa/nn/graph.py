"""Graph encoder: GIN with edge features (PyG ``GINEConv``), MMSA's 2D-graph extractor."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn import GINEConv
from torch_geometric.utils import scatter


class GraphEncoder(nn.Module):
    """GINE message passing over atoms, mean-pooled per molecule.

    Args:
        atom_dim: width of the atom features (``GraphFeaturizer.atom_dim``).
        bond_dim: width of the bond features (``GraphFeaturizer.bond_dim``).
        hidden: hidden width of every layer.
        num_layers: number of GINEConv layers.
        out_dim: width of the molecule embedding.

    ``forward(x [N, atom_dim], edge_index [2, E], edge_attr [E, bond_dim], batch [N],
    num_graphs)`` returns ``[num_graphs, out_dim]``. The readout concatenates the mean-pooled
    node states of every layer (jumping knowledge), so it is invariant to the atom order.
    """

    def __init__(self, atom_dim: int, bond_dim: int, hidden: int = 128, num_layers: int = 4,
                 out_dim: int = 128):
        super().__init__()
        self.atom_in = nn.Linear(atom_dim, hidden)
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        for _ in range(num_layers):
            mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
            self.convs.append(GINEConv(mlp, train_eps=True, edge_dim=bond_dim))
            self.norms.append(nn.LayerNorm(hidden))
        self.out = nn.Sequential(nn.Linear(hidden * num_layers, hidden), nn.ReLU(),
                                 nn.Linear(hidden, out_dim))
        self.out_dim = out_dim

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, batch: Tensor,
                num_graphs: int) -> Tensor:
        h = self.atom_in(x)
        pooled = []
        for conv, norm in zip(self.convs, self.norms):
            h = h + torch.relu(norm(conv(h, edge_index, edge_attr)))
            pooled.append(scatter(h, batch, dim=0, dim_size=num_graphs, reduce="mean"))
        return self.out(torch.cat(pooled, dim=-1))
