"""The shipped checkpoint: small, safe to load, usable by default, meaningful embeddings."""

import numpy as np
import torch

from mmsa.model.encoder import Encoder
from mmsa.paths import DEFAULT_CHECKPOINT, WEIGHTS_DIR


def test_shipped_checkpoint_is_small_and_loads_weights_only():
    assert DEFAULT_CHECKPOINT.is_file()
    assert DEFAULT_CHECKPOINT.stat().st_size <= 25 * 1024 * 1024
    ckpt = torch.load(DEFAULT_CHECKPOINT, weights_only=True)
    assert set(ckpt) >= {"hyper_parameters", "state_dict", "versions"}
    assert "optimizer" not in ckpt.get("extra", {})
    assert (WEIGHTS_DIR / "MODEL_CARD.md").is_file()


def test_default_encoder_embeds_similar_molecules_closer():
    enc = Encoder.load(device="cpu")
    assert enc.modalities == ("graph", "image", "geometry")
    res = enc.embed(["CC(=O)Nc1ccc(O)cc1", "CC(=O)Nc1ccc(OC)cc1", "CCCCCCCCCCCCCCCC(=O)O"])
    assert res.ok.all()
    sim = res.vectors @ res.vectors.T
    assert sim[0, 1] > sim[0, 2]  # paracetamol is closer to its methyl ether than to a fatty acid
    np.testing.assert_allclose(res.slot_weights.sum(1), 1, atol=1e-5)
