"""Shapes and invariances of the building blocks (synthetic inputs, no RDKit)."""

import math

import torch
import torch.nn.functional as F

from mmsa.nn.fusion import ModalityAutoEncoder, info_nce, masked_mean_fuse
from mmsa.nn.geometry import GeometryEncoder, RadiusInteractionGraph
from mmsa.nn.graph import GraphEncoder
from mmsa.nn.hypergraph import HypergraphRefiner, knn_hyperedges
from mmsa.nn.image import ImageEncoder
from mmsa.nn.memory import MemoryBank, assignment_entropy, sinkhorn


def _random_rotation(gen):
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q.float()


def test_graph_encoder_shape_and_node_permutation():
    torch.manual_seed(0)
    enc = GraphEncoder(atom_dim=7, bond_dim=3, hidden=16, num_layers=3, out_dim=10).eval()
    x = torch.randn(5, 7)
    ei = torch.tensor([[0, 1, 1, 2, 2, 3, 3, 4], [1, 0, 2, 1, 3, 2, 4, 3]])
    ea = torch.randn(8, 3)
    out = enc(x, ei, ea, torch.zeros(5, dtype=torch.long), 1)
    assert out.shape == (1, 10)
    perm = torch.tensor([3, 0, 4, 1, 2])  # new node i is old node perm[i]
    inv = torch.argsort(perm)
    out2 = enc(x[perm], inv[ei], ea, torch.zeros(5, dtype=torch.long), 1)
    assert torch.allclose(out, out2, atol=1e-5)


def test_image_encoder_shape():
    enc = ImageEncoder(in_channels=3, widths=(4, 8, 8, 16), out_dim=12)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    assert enc(images).shape == (2, 12)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in enc.modules()) >= 17  # ResNet-18 layout


def test_radius_graph_matches_brute_force():
    gen = torch.Generator().manual_seed(1)
    pos = torch.randn(9, 3, generator=gen) * 2
    batch = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2])
    ei, w = RadiusInteractionGraph(cutoff=2.5)(pos, batch)
    expected = {(i, j) for i in range(9) for j in range(9)
                if i != j and batch[i] == batch[j] and (pos[i] - pos[j]).norm() <= 2.5}
    assert set(map(tuple, ei.t().tolist())) == expected
    assert torch.allclose(w, (pos[ei[0]] - pos[ei[1]]).norm(dim=-1))


def test_geometry_encoder_is_rotation_translation_invariant():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(2)
    enc = GeometryEncoder(hidden=16, filters=16, interactions=2, gaussians=10, cutoff=5.0,
                          out_dim=8).eval()
    z = torch.tensor([6, 6, 8, 7, 6, 6, 8])
    pos = torch.randn(7, 3, generator=gen) * 1.5
    batch = torch.tensor([0, 0, 0, 0, 2, 2, 2])  # molecule 1 has no conformer
    out = enc(z, pos, batch, 3)
    assert out.shape == (3, 8)
    assert torch.all(out[1] == 0)
    rot = _random_rotation(gen)
    moved = pos @ rot.t() + torch.tensor([3.0, -7.0, 11.0])
    out2 = enc(z, moved, batch, 3)
    assert torch.allclose(out, out2, atol=1e-4)
    assert not torch.allclose(out[0], out[2])


def test_fusion_autoencoder_and_info_nce():
    ae = ModalityAutoEncoder(in_dim=6, dim=4, hidden=8)
    f = torch.randn(5, 6)
    z, rec = ae(f)
    assert z.shape == (5, 4) and rec.shape == (5, 6)
    assert torch.allclose(z.norm(dim=-1), torch.ones(5), atol=1e-5)
    mask = torch.tensor([True, False, True, True, False])
    assert ae.reconstruction_loss(f, rec, mask).ndim == 0
    a = F.normalize(torch.randn(6, 4), dim=-1)
    # identical views beat random views
    assert info_nce(a, a, 0.1) < info_nce(a, F.normalize(torch.randn(6, 4), dim=-1), 0.1)
    assert info_nce(a, a, 0.1, torch.tensor([True] + [False] * 5)) == 0
    fused = masked_mean_fuse([a, -a], [torch.ones(6, dtype=torch.bool),
                                       torch.zeros(6, dtype=torch.bool)])
    assert torch.allclose(fused, a, atol=1e-6)  # missing modality is ignored


def test_knn_hyperedges_and_refiner():
    z = F.normalize(torch.tensor([[1.0, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]]), dim=-1)
    index = knn_hyperedges(z, 1)
    assert index.shape == (2, 8)
    edges = {e: sorted(index[0, index[1] == e].tolist()) for e in range(4)}
    assert edges == {0: [0, 1], 1: [0, 1], 2: [2, 3], 3: [2, 3]}
    assert knn_hyperedges(z[:1], 4).shape == (2, 1)
    ref = HypergraphRefiner(dim=2, k=2)
    out, _ = ref(z)
    assert out.shape == (4, 2)
    assert torch.allclose(out.norm(dim=-1), torch.ones(4), atol=1e-5)


def test_memory_bank_and_sinkhorn_balance():
    torch.manual_seed(0)
    mem = MemoryBank(num_slots=8, dim=4, tau=0.1)
    z = F.normalize(torch.randn(32, 4), dim=-1)
    w = mem.assign(z)
    assert w.shape == (32, 8)
    assert torch.allclose(w.sum(-1), torch.ones(32), atol=1e-5)
    assert mem.readout(w).shape == (32, 4)
    # all molecules prefer anchor 0: Sinkhorn still spreads them over all anchors
    scores = torch.zeros(32, 8)
    scores[:, 0] = 1.0
    q = sinkhorn(scores + 0.01 * torch.randn(32, 8), eps=0.05, iters=10)
    assert torch.allclose(q.sum(-1), torch.ones(32), atol=1e-4)
    h_marg, _ = assignment_entropy(q)
    assert h_marg > 0.95 * math.log(8)
    collapsed = torch.zeros(32, 8)
    collapsed[:, 0] = 1
    assert assignment_entropy(collapsed)[0] < 1e-6
    loss = mem.assignment_loss(z, z) + mem.alignment_loss(z)
    loss.backward()
    assert mem.anchors.grad is not None
