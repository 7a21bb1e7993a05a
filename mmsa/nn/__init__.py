"""Torch / PyG building blocks of MMSA, one block per file.

graph.GraphEncoder (GINEConv), image.ImageEncoder (ResNet-18-class CNN),
geometry.GeometryEncoder (SchNet over a per-molecule radius graph), fusion (modality
auto-encoders + InfoNCE), hypergraph (kNN hyperedges + HypergraphConv), memory (anchor bank).
"""
