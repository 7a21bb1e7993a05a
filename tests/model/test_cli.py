"""`mmsa embed` and `mmsa pretrain` end to end (tiny checkpoint, tiny files)."""

import numpy as np
import pytest
import torch

from mmsa.cli import main
from mmsa.model import MMSA, MMSAConfig, save_checkpoint


def _tiny_checkpoint(path):
    torch.manual_seed(0)
    return save_checkpoint(MMSA(MMSAConfig.tiny()).eval(), path)


def test_embed_writes_one_row_per_input_row(tmp_path, capsys):
    ckpt = _tiny_checkpoint(tmp_path / "tiny.pt")
    csv = tmp_path / "lib.csv"
    csv.write_text("name,SMILES,logp\na,CCO,0.1\nb,not_a_smiles,0.2\nc,c1ccccc1O,0.3\n"
                   "d,CC(=O)Nc1ccc(O)cc1,0.4\n")
    out = tmp_path / "vec.npy"
    assert main(["embed", str(csv), "--out", str(out), "--checkpoint", str(ckpt)]) == 0
    vectors = np.load(out)
    slots = np.load(tmp_path / "vec.slots.npy")
    cfg = MMSAConfig.tiny()
    assert vectors.shape == (4, cfg.dim) and vectors.dtype == np.float32
    assert slots.shape == (4, cfg.num_slots)
    assert np.isnan(vectors[1]).all() and not np.isnan(vectors[[0, 2, 3]]).any()
    np.testing.assert_allclose(np.linalg.norm(vectors[[0, 2, 3]], axis=1), 1, atol=1e-5)
    err = capsys.readouterr().err
    assert "row 1" in err and "not_a_smiles" in err
    # same vectors as the Python API, in input order
    from mmsa.model.encoder import Encoder

    ref = Encoder.load(ckpt, device="cpu").embed(["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"])
    np.testing.assert_allclose(vectors[[0, 2, 3]], ref.vectors, atol=1e-6)


def test_embed_missing_checkpoint_is_an_error(tmp_path, capsys):
    smi = tmp_path / "a.smi"
    smi.write_text("CCO ethanol\n")
    assert main(["embed", str(smi), "--out", str(tmp_path / "o.npy"),
                 "--checkpoint", str(tmp_path / "missing.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


@pytest.mark.slow
def test_pretrain_cli_tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("MMSA_CACHE", str(tmp_path / "cache"))
    smi = tmp_path / "train.smi"
    smi.write_text("\n".join(["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "C1CCNCC1",
                              "Clc1ccc(Cl)cc1", "CCN(CC)CC"]) + "\n")
    out = tmp_path / "run"
    code = main(["pretrain", "--preset", "tiny", "--input", str(smi), "--out", str(out),
                 "--steps", "3", "--batch-size", "4", "--n-jobs", "1", "--no-hypergraph",
                 "--export", str(tmp_path / "final.pt")])
    assert code == 0
    for name in ("config.json", "log.csv", "last.pt", "model.pt", "loss_curves.png"):
        assert (out / name).is_file(), name
    ckpt = torch.load(tmp_path / "final.pt", weights_only=True)
    assert ckpt["hyper_parameters"]["use_hypergraph"] is False
    assert "optimizer" not in ckpt["extra"]
