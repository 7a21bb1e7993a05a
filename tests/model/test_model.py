"""The composed MMSA model, checkpoints and the encoder API (tiny config, real featurizers)."""

import numpy as np
import pytest
import torch

from mmsa.model import LOSS_TERMS, MMSA, MMSAConfig, collate, load_checkpoint, save_checkpoint
from mmsa.model.encoder import EmbedResult, Encoder, embed_batch
from mmsa.types import Failure, InputError

SMILES = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "CN1CCC[C@H]1c1cccnc1",
          "O=C(O)c1ccccc1OC(C)=O", "C1CCNCC1", "Clc1ccc(Cl)cc1", "CC(C)Cc1ccc(C(C)C(=O)O)cc1"]


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return Encoder(MMSA(MMSAConfig.tiny()).eval(), device="cpu")


def test_config_sizes_come_from_featurizers():
    from mmsa.chem.graph import GraphFeaturizer

    cfg = MMSAConfig.tiny()
    assert cfg.atom_dim == GraphFeaturizer().atom_dim
    assert cfg.bond_dim == GraphFeaturizer().bond_dim
    assert cfg.modalities == ("graph", "image", "geometry")
    assert MMSAConfig.from_dict(cfg.to_dict()) == cfg


def test_shapes_fast_and_full(encoder):
    for mode in ("fast", "full"):
        res = encoder.embed(SMILES, mode=mode, batch_size=3)
        assert isinstance(res, EmbedResult)
        assert res.vectors.shape == (len(SMILES), encoder.dim)
        assert res.vectors.dtype == np.float32
        assert res.slot_weights.shape == (len(SMILES), encoder.num_slots)
        assert res.ok.all() and res.failures == []
        np.testing.assert_allclose(np.linalg.norm(res.vectors, axis=1), 1, atol=1e-5)
        np.testing.assert_allclose(res.slot_weights.sum(1), 1, atol=1e-5)
    fast = encoder.embed(SMILES, mode="fast").vectors
    full = encoder.embed(SMILES, mode="full").vectors
    assert not np.allclose(fast, full)


def test_losses_are_finite_scalars(encoder):
    model = MMSA(encoder.config)
    g = [encoder.graph_featurizer(s) for s in SMILES]
    im = [encoder.image_featurizer(s) for s in SMILES]
    cf = [encoder.conformer_featurizer(s) for s in SMILES]
    losses = model.losses(collate(g, im, cf))
    assert set(losses) == {*LOSS_TERMS, "loss", "mem_entropy_marginal", "mem_entropy_row"}
    # a config without the chemistry objective has those terms at exactly 0
    assert all(float(losses[t]) == 0.0 for t in ("fp", "desc", "sim", "vic"))
    for v in losses.values():
        assert v.ndim == 0 and torch.isfinite(v)
    losses["loss"].backward()


def test_graph_path_ignores_atom_order(encoder):
    # one molecule (paracetamol) written from two ends: different RDKit atom orders
    a, b = "CC(=O)Nc1ccc(O)cc1", "Oc1ccc(NC(C)=O)cc1"
    ga, gb = encoder.graph_featurizer(a), encoder.graph_featurizer(b)
    assert not np.array_equal(ga.x, gb.x)
    res = encoder.embed([a, b], mode="fast")
    np.testing.assert_allclose(res.vectors[0], res.vectors[1], atol=1e-5)
    np.testing.assert_allclose(res.slot_weights[0], res.slot_weights[1], atol=1e-5)


def test_embedding_does_not_depend_on_batch(encoder):
    together = embed_batch(SMILES, encoder, mode="full")
    alone = embed_batch(SMILES[2:3], encoder, mode="full")
    np.testing.assert_allclose(together.vectors[2], alone.vectors[0], atol=1e-5)


def test_invalid_smiles_are_nan_rows_with_failures(encoder):
    res = encoder.embed(["CCO", "not-a-smiles", "c1ccccc1"], mode="fast")
    assert res.ok.tolist() == [True, False, True]
    assert np.isnan(res.vectors[1]).all() and np.isnan(res.slot_weights[1]).all()
    assert len(res.failures) == 1 and isinstance(res.failures[0], Failure)
    assert res.failures[0].row == 1 and res.failures[0].input == "not-a-smiles"
    with pytest.raises(InputError):
        encoder.embed(["CCO"], mode="bogus")


def test_molecule_without_conformer_embeds_in_full_mode(encoder, monkeypatch):
    from mmsa.chem.conformer import ConformerFailure

    real = encoder.conformer_featurizer
    no_conf = "CN1CCC[C@H]1c1cccnc1"

    class Flaky:
        def __call__(self, smiles):
            return ConformerFailure("embedding failed (forced)") if smiles == no_conf \
                else real(smiles)

    monkeypatch.setattr(encoder, "conformer_featurizer", Flaky())
    res = encoder.embed(SMILES, mode="full")
    assert res.ok.all()
    np.testing.assert_allclose(np.linalg.norm(res.vectors, axis=1), 1, atol=1e-5)
    # the others still use their conformers: unchanged from an all-conformer run
    monkeypatch.setattr(encoder, "conformer_featurizer", real)
    ref = encoder.embed(SMILES, mode="full")
    i = SMILES.index(no_conf)
    others = [j for j in range(len(SMILES)) if j != i]
    np.testing.assert_allclose(res.vectors[others], ref.vectors[others], atol=1e-5)
    assert not np.allclose(res.vectors[i], ref.vectors[i], atol=1e-4)


def test_checkpoint_round_trip(encoder, tmp_path):
    path = save_checkpoint(encoder.model, tmp_path / "m.pt", extra={"note": "test"})
    raw = torch.load(path, weights_only=True)
    assert set(raw) >= {"hyper_parameters", "state_dict", "versions"}
    loaded = Encoder.load(path, device="cpu")
    assert loaded.checkpoint_hash and len(loaded.checkpoint_hash) == 64
    assert (loaded.dim, loaded.num_slots, loaded.modalities) == (
        encoder.dim, encoder.num_slots, encoder.modalities)
    for mode in ("fast", "full"):
        np.testing.assert_array_equal(loaded.embed(SMILES, mode=mode).vectors,
                                      encoder.embed(SMILES, mode=mode).vectors)
    model = load_checkpoint(path)
    assert not model.training
    half = save_checkpoint(encoder.model, tmp_path / "h.pt", half=True)
    v = Encoder.load(half, device="cpu").embed(SMILES).vectors
    np.testing.assert_allclose(v, encoder.embed(SMILES).vectors, atol=5e-3)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        Encoder.load(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError):
        Encoder.load(bad)


def test_ablation_configs_build_and_train_step():
    for kw in ({"use_image": False, "use_geometry": False}, {"use_hypergraph": False},
               {"use_memory": False}):
        cfg = MMSAConfig.tiny(**kw)
        enc = Encoder(MMSA(cfg), device="cpu")
        res = enc.embed(SMILES[:4], mode="full")
        assert res.ok.all() and res.vectors.shape == (4, cfg.dim)
        assert res.slot_weights.shape == (4, cfg.num_slots if cfg.use_memory else 0)
        g = [enc.graph_featurizer(s) for s in SMILES]
        im = [enc.image_featurizer(s) for s in SMILES] if cfg.use_image else None
        cf = [enc.conformer_featurizer(s) for s in SMILES] if cfg.use_geometry else None
        losses = enc.model.train().losses(collate(g, im, cf))
        assert torch.isfinite(losses["loss"]) and losses["contrast"] > 0
        if not cfg.use_memory:
            assert losses["mem_assign"] == 0


@pytest.mark.slow
def test_worker_processes_give_the_same_vectors(encoder):
    smiles = SMILES + ["bad smiles"]
    one = encoder.embed(smiles, mode="full", n_jobs=1)
    two = encoder.embed(smiles, mode="full", n_jobs=2, batch_size=3)
    np.testing.assert_allclose(one.vectors, two.vectors, atol=1e-6)
    assert [f.row for f in two.failures] == [len(SMILES)]
