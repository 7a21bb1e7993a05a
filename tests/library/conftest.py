"""Fixtures for the library store tests: a tiny random-weights encoder, a tiny CSV, and one
library built from them (session-scoped; tests that damage a library work on a copy)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

BAD_ROWS = {5: "not_a_smiles", 17: "C1CC"}  # 0-based data rows that must fail


@pytest.fixture(scope="session")
def encoder(tiny_checkpoint):
    from mmsa.model.encoder import Encoder

    return Encoder.load(tiny_checkpoint, device="cpu")


def _molecules(molecules_csv: Path) -> list[tuple[str, str, str]]:
    with open(molecules_csv, newline="") as fh:
        return [(r["SMILES"], r["Compound ID"], r["MolWt"]) for r in csv.DictReader(fh)]


def write_csv(path: Path, rows: list[tuple[str, str, str]], bad: dict[int, str] | None = None):
    rows = list(rows)
    for pos, smi in sorted((bad or {}).items()):
        rows.insert(pos, (smi, f"bad-{pos}", "0"))
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["smiles", "id", "mw"])
        w.writerows(rows)
    return path


@pytest.fixture(scope="session")
def tiny_csv(tmp_path_factory, molecules_csv) -> Path:
    """70 valid molecules + 2 invalid rows (at data rows 5 and 17): smiles,id,mw."""
    mols = _molecules(molecules_csv)[:70]
    return write_csv(tmp_path_factory.mktemp("csv") / "tiny.csv", mols, BAD_ROWS)


@pytest.fixture(scope="session")
def extra_csv(tmp_path_factory, molecules_csv) -> Path:
    """The other 30 molecules of molecules.csv (for append)."""
    mols = _molecules(molecules_csv)[70:]
    return write_csv(tmp_path_factory.mktemp("csv2") / "extra.csv", mols)


@pytest.fixture(scope="session")
def built(tmp_path_factory, tiny_csv, tiny_checkpoint):
    """(root, report) of library "tiny" built from tiny_csv (flat index, k=4 hyperedges)."""
    from mmsa.library import build_library

    root = tmp_path_factory.mktemp("indexes")
    report = build_library(tiny_csv, "tiny", root=root, encoder=tiny_checkpoint,
                           hyperedge_k=4, chunk_size=16)
    return root, report


@pytest.fixture()
def lib_copy(built, tmp_path):
    """A private copy of the built library: (root, name)."""
    root, report = built
    dst = tmp_path / "indexes"
    dst.mkdir()
    shutil.copytree(root / "tiny", dst / "tiny")
    return dst, "tiny"
