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
from mmsa.nn.chemistry import similarity_distillation, tanimoto_kernel, vicreg_regulariser

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
    from mmsa.model.train import load_training_log, pretrain

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
