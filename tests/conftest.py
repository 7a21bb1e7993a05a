"""Session fixtures shared by the whole suite: the tiny molecule files in tests/data."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Folder of the tiny fixture files (molecules.csv, .smi, .sdf, .sdf.gz, bad files)."""
    return DATA_DIR


@pytest.fixture(scope="session")
def molecules_csv() -> Path:
    """100 real molecules (96 from RDKit's NCI sample + a salt, a chiral, an E/Z, a cation):
    columns ``Compound ID``, ``SMILES``, ``MolWt`` (RDKit MolWt of the SMILES as given)."""
    return DATA_DIR / "molecules.csv"


@pytest.fixture(scope="session")
def smiles_100(molecules_csv) -> list[str]:
    """The 100 SMILES of molecules.csv, in file order (all valid)."""
    with open(molecules_csv, newline="") as fh:
        return [row["SMILES"] for row in csv.DictReader(fh)]


def save_tiny_checkpoint(path: Path, seed: int) -> Path:
    """Save a tiny MMSA model with seeded random weights as a checkpoint at ``path``."""
    import torch

    from mmsa.model import MMSA, MMSAConfig, save_checkpoint

    torch.manual_seed(seed)
    save_checkpoint(MMSA(MMSAConfig.tiny()), path)
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny MMSA model with random weights (seed 0), saved as a checkpoint."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", seed=0)


@pytest.fixture(scope="session")
def other_checkpoint(tmp_path_factory) -> Path:
    """A second tiny model (different weights, so a different checkpoint hash)."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt2") / "other.pt", seed=1)
