"""The chemistry-aware objective: targets, Tanimoto kernel, distillation, VICReg, batches."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator as rfg

from mmsa.chem.targets import (
    DESCRIPTOR_NAMES,
    TARGET_BITS,
    compute_targets,
    standardise_descriptors,
)
from mmsa.model.corpus import analogue_batch
from mmsa.model.packed import pack_features
from mmsa.nn.chemistry import (
    NeighbourQueue,
    similarity_distillation,
    tanimoto_cross,
    tanimoto_kernel,
    vicreg_regulariser,
)

DATA = pd.read_csv("tests/data/molecules.csv")


@pytest.fixture(scope="module")
def smiles():
    return DATA["SMILES"].astype(str).tolist()[:60]


def test_targets_shapes_and_descriptor_values(smiles):
    t = compute_targets(smiles)
    assert t["counts"].shape == (len(smiles), TARGET_BITS) and t["counts"].dtype == np.uint8
    assert t["descriptors"].shape == (len(smiles), len(DESCRIPTOR_NAMES))
    heavy = [Chem.MolFromSmiles(s).GetNumHeavyAtoms() for s in smiles]
    assert t["descriptors"][:, DESCRIPTOR_NAMES.index("heavy_atoms")].tolist() == heavy
    n_idx = DESCRIPTOR_NAMES.index("n_count")
    assert t["descriptors"][0, n_idx] == sum(a.GetSymbol() == "N"
                                             for a in Chem.MolFromSmiles(smiles[0]).GetAtoms())
    # a count fingerprint sums to the number of environments (atoms x (radius + 1), capped)
    assert (t["counts"].sum(axis=1) > 0).all()
    z, centre, scale = standardise_descriptors(t["descriptors"])
    assert np.abs(z).max() <= 5.0 and np.isfinite(z).all()
    z2, _, _ = standardise_descriptors(t["descriptors"], centre, scale)
    np.testing.assert_allclose(z, z2)


def test_tanimoto_kernel_matches_rdkit(smiles):
    gen = rfg.GetMorganGenerator(radius=2, fpSize=TARGET_BITS)
    fps = [gen.GetFingerprint(Chem.MolFromSmiles(s)) for s in smiles[:20]]
    counts = torch.from_numpy(compute_targets(smiles[:20])["counts"])
    k = tanimoto_kernel(counts).numpy()
    for i in range(20):
        ref = DataStructs.BulkTanimotoSimilarity(fps[i], fps)
        np.testing.assert_allclose(k[i], ref, atol=1e-6)


def test_similarity_distillation_prefers_kernel_order():
    torch.manual_seed(0)
    kernel = torch.tensor([[1.0, 0.9, 0.1, 0.1], [0.9, 1.0, 0.1, 0.1],
                           [0.1, 0.1, 1.0, 0.8], [0.1, 0.1, 0.8, 1.0]])
    good = torch.nn.functional.normalize(torch.tensor(
        [[1.0, 0.0], [0.95, 0.05], [0.0, 1.0], [0.05, 0.95]]), dim=-1)
    bad = good[[0, 2, 1, 3]]  # neighbours swapped
    assert similarity_distillation(good, kernel) < similarity_distillation(bad, kernel)
    assert similarity_distillation(good, kernel) >= 0


def test_distillation_with_reference_set_equals_one_big_batch():
    """The queue term is the in-batch term computed over batch + reference molecules, for the
    batch's rows: a reference set changes which neighbours each row must rank."""
    torch.manual_seed(0)
    bits = (torch.rand(12, 64) < 0.3).float()
    v = torch.nn.functional.normalize(torch.randn(12, 8), dim=-1)
    full = tanimoto_kernel(bits)
    np.testing.assert_allclose(tanimoto_cross(bits, bits).numpy(), full.numpy(), atol=1e-6)
    # rows 0-4 as the batch, 5-11 as the queue: KL per row equals the full-batch KL rows
    b = 5
    split = similarity_distillation(v[:b], full[:b, :b], v_ref=v[b:], kernel_ref=full[:b, b:])
    eye = torch.eye(12, dtype=torch.bool)
    logq = torch.log_softmax((v @ v.t() / 0.1).masked_fill(eye, -1e9), dim=1)[:b]
    p = torch.softmax((full / 0.05).masked_fill(eye, -1e9), dim=1)[:b]
    ref = (p * (p.clamp(min=1e-12).log() - logq)).sum(dim=1).mean()
    assert torch.allclose(split, ref, atol=1e-5)
    # an empty reference set is the in-batch loss
    empty = similarity_distillation(v[:b], full[:b, :b], v_ref=v[:0], kernel_ref=full[:b, :0])
    assert torch.allclose(empty, similarity_distillation(v[:b], full[:b, :b]))


def test_neighbour_queue_is_fifo_and_not_in_state_dict():
    q = NeighbourQueue(5, 2, 3)
    assert q.vectors_copy().shape == (0, 2) and q.tanimoto(torch.ones(4, 3)).shape == (4, 0)
    for i in range(3):  # 3 pushes of 2 rows into 5 slots: the oldest row is overwritten
        q.push(torch.full((2, 2), float(i)), torch.tensor([[1.0, 0, 0], [1.0, 1.0, 0]]) * (i > 0))
    v = q.vectors_copy()
    assert v.shape == (5, 2) and sorted(v[:, 0].tolist()) == [0.0, 1.0, 1.0, 2.0, 2.0]
    assert q.state_dict() == {}
    v[:] = 7.0  # a copy: changing it leaves the queue alone (autograd saves these tensors)
    assert q.vectors_copy().max() == 2.0


def test_neighbour_queue_tanimoto_matches_dense():
    torch.manual_seed(1)
    stored = (torch.rand(40, 64) < 0.1).float()
    stored[3] = 0  # an empty fingerprint: Tanimoto 0, not NaN
    q = NeighbourQueue(64, 4, 64)
    q.push(torch.zeros(40, 4), stored)
    batch = (torch.rand(7, 64) < 0.1).float()
    np.testing.assert_allclose(q.tanimoto(batch).numpy(), tanimoto_cross(batch, stored).numpy(),
                               atol=1e-6)


def test_vicreg_penalises_collapse():
    torch.manual_seed(0)
    spread = torch.nn.functional.normalize(torch.randn(256, 16), dim=-1)
    collapsed = torch.nn.functional.normalize(torch.ones(256, 16) + 0.01 * torch.randn(256, 16),
                                              dim=-1)
    v_s, c_s = vicreg_regulariser(spread)
    v_c, c_c = vicreg_regulariser(collapsed)
    assert v_c > 0.9 and v_s < 0.2


def test_analogue_batches_pair_scaffolds():
    from mmsa.chem.graph import GraphFeaturizer
    from mmsa.chem.targets import scaffold_ids

    smiles = DATA["SMILES"].astype(str).tolist()
    gf = GraphFeaturizer()
    packed = pack_features([gf(s) for s in smiles])
    keys = compute_targets(smiles)["scaffold_key"].tolist()
    packed.scaffold = scaffold_ids(keys)
    rng = np.random.default_rng(0)
    idx = analogue_batch(packed, rng, 32, 0.5)
    assert len(idx) == 32 and len(set(idx.tolist())) == 32
    scaf = packed.scaffold[idx]
    # at least some pairs share a scaffold (tests/data/molecules.csv has repeated scaffolds)
    shared = sum((scaf[i] >= 0) and (scaf[i] == scaf).sum() > 1 for i in range(len(idx)))
    uniform = packed.scaffold[rng.choice(len(packed), 32, replace=False)]
    assert shared > sum((s >= 0) and (s == uniform).sum() > 1 for s in uniform)


def test_pretrain_with_chemistry_targets(tmp_path):
    """A tiny model trains on the new objective with images for a subset only (image_row)."""
    from mmsa.chem.graph import GraphFeaturizer
    from mmsa.chem.image import ImageFeaturizer
    from mmsa.chem.targets import scaffold_ids
    from mmsa.model import LOSS_TERMS, MMSAConfig, load_checkpoint
    from mmsa.model.network import MMSA
    from mmsa.model.train import load_training_log, pretrain
    from mmsa.types import InputError

    smiles = DATA["SMILES"].astype(str).tolist()[:64]
    gf, imf = GraphFeaturizer(), ImageFeaturizer(size=32)
    packed = pack_features([gf(s) for s in smiles])
    images = [imf(s) for s in smiles[:16]]
    packed.images = np.stack(images)
    packed.image_row = np.full(len(smiles), -1, dtype=np.int32)
    packed.image_row[:16] = np.arange(16)
    packed.image_ok = packed.image_row >= 0
    t = compute_targets(smiles)
    packed.fp_counts = t["counts"]
    packed.descriptors, packed.desc_centre, packed.desc_scale = standardise_descriptors(
        t["descriptors"])
    packed.scaffold = scaffold_ids(t["scaffold_key"].tolist())
    config = MMSAConfig.tiny(use_geometry=False, target_bits=TARGET_BITS,
                             n_descriptors=len(DESCRIPTOR_NAMES), w_fp=1.0, w_desc=1.0,
                             w_sim=1.0, w_vic=1.0, hyper_source="tanimoto")
    batch = packed.batch(np.arange(20))
    assert batch.image_mask.tolist() == [True] * 16 + [False] * 4
    assert batch.images[16:].sum() == 0 and batch.fp_counts.shape == (20, TARGET_BITS)
    res = pretrain(config, None, tmp_path / "run", steps=12, batch_size=24, warmup=2,
                   features=packed, checkpoint_every=5, analogue_fraction=0.5)
    log = load_training_log(tmp_path / "run" / "log.csv")
    for term in ("fp", "desc", "sim", "vic"):
        assert term in LOSS_TERMS and np.isfinite(log[term]).all() and (log[term] > 0).all()
    ckpt = torch.load(res.checkpoint, weights_only=True)
    assert len(ckpt["extra"]["descriptor_scale"]) == len(DESCRIPTOR_NAMES)
    model = load_checkpoint(res.checkpoint)
    assert model.chemistry is not None
    # the loss went down on the same molecules (fp decoding is learnable in a few steps)
    assert log["fp"][-3:].mean() < log["fp"][:3].mean()

    # fine-tuning from these weights with a neighbour queue (another objective, same net)
    tuned = MMSAConfig.from_dict({**config.to_dict(), "sim_queue": 48, "w_sim": 2.0})
    res2 = pretrain(tuned, None, tmp_path / "tuned", steps=4, batch_size=24, warmup=1,
                    features=packed, checkpoint_every=100, analogue_fraction=0.5,
                    init=res.checkpoint)
    start = load_checkpoint(res.checkpoint).state_dict()
    after = load_checkpoint(res2.checkpoint)
    assert set(after.state_dict()) == set(start)  # the queue is not in the checkpoint
    assert np.isfinite(load_training_log(tmp_path / "tuned" / "log.csv")["sim"]).all()
    # the first step started from the given weights: its fp loss is the trained one, far
    # below a fresh model's
    assert load_training_log(tmp_path / "tuned" / "log.csv")["fp"][0] < log["fp"][0]
    model = MMSA(tuned).train()
    model.losses(packed.batch(np.arange(24)))
    assert model.sim_queue.count == 24
    model.eval().losses(packed.batch(np.arange(24)))
    assert model.sim_queue.count == 24  # evaluation does not fill the queue
    other = MMSAConfig.from_dict({**config.to_dict(), "graph_hidden": 24})
    with pytest.raises(InputError, match="graph_hidden"):
        pretrain(other, None, tmp_path / "bad", steps=1, batch_size=24, features=packed,
                 init=res.checkpoint)
