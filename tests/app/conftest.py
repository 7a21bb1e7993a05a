"""Fixtures for the app tests: a tiny random-weights encoder and a tiny library built from it in
a temporary indexes folder, exposed to the app through MMSA_INDEXES / MMSA_CHECKPOINT."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
APP_MAIN = REPO / "app" / "main.py"
if str(APP_MAIN.parent) not in sys.path:  # the app's page logic: `import explorer`
    sys.path.insert(0, str(APP_MAIN.parent))

#: a hostile id: must reach the browser escaped
EVIL_ID = "<img src=x onerror=alert(1)>"
N_MOLECULES = 40


def tiny_rows(molecules_csv: Path, n: int = N_MOLECULES) -> list[dict]:
    with open(molecules_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))[:n]
    out = [{"smiles": r["SMILES"], "name": r["Compound ID"], "MolWt": r["MolWt"]} for r in rows]
    out[3]["name"] = EVIL_ID
    return out


def write_rows(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture(scope="session")
def app_checkpoint(tiny_checkpoint) -> Path:
    """The tiny random-weights checkpoint of tests/conftest.py."""
    return tiny_checkpoint


@pytest.fixture(scope="session")
def app_library(tmp_path_factory, molecules_csv, app_checkpoint):
    """(root, name, rows) of library "tiny" (40 molecules: smiles, name (id), MolWt)."""
    from mmsa.library import build_library

    src = write_rows(tmp_path_factory.mktemp("app-src") / "tiny.csv", tiny_rows(molecules_csv))
    root = tmp_path_factory.mktemp("app-indexes")
    build_library(src, "tiny", root=root, encoder=app_checkpoint, id_col="name",
                  hyperedge_k=4, chunk_size=16)
    return root, "tiny", tiny_rows(molecules_csv)


@pytest.fixture()
def app_env(app_library, app_checkpoint, tmp_path, monkeypatch):
    """A private copy of the tiny library root, and the environment the app reads."""
    import shutil

    root, name, rows = app_library
    private = tmp_path / "indexes"
    shutil.copytree(root, private)
    monkeypatch.setenv("MMSA_INDEXES", str(private))
    monkeypatch.setenv("MMSA_CHECKPOINT", str(app_checkpoint))
    monkeypatch.setenv("MMSA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MMSA_MAX_UPLOAD_MB", raising=False)
    return private, name, rows


@pytest.fixture()
def app(app_env):
    """A fresh AppTest of app/main.py (not yet run)."""
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(APP_MAIN), default_timeout=300)  # generous: CI machines are shared


#: the "odd" library: column names that are not Python identifiers (as in B3DB's TSV and
#: RDKit's egfr.sdf), an indole with and without its N-H, and a drug with its salt form
IMATINIB = "Cc1ccc(NC(=O)c2ccc(CN3CCN(C)CC3)cc2)cc1Nc1nccc(-c2cccnc2)n1"
ODD_ROWS = [
    ("1", "IMATINIB", IMATINIB, "BBB-", "chembl"),
    ("2", "IMATINIB MESYLATE", IMATINIB + ".CS(=O)(=O)O", "BBB-", "chembl"),
    ("3", "indole", "c1ccc2[nH]ccc2c1", "BBB+", "zinc"),
    ("4", "N-methylindole", "Cn1ccc2ccccc21", "BBB+", "zinc"),
    ("5", "tryptamine", "NCCc1c[nH]c2ccccc12", "BBB+", "zinc"),
    ("6", "alosetron", "Cc1[nH]cnc1CN1CCc2c(c3ccccc3n2C)C1=O", "BBB-", "drugbank"),
    ("7", "aspirin", "CC(=O)Oc1ccccc1C(=O)O", "BBB-", "drugbank"),
    ("8", "caffeine", "Cn1cnc2c1c(=O)n(C)c(=O)n2C", "BBB+", "drugbank"),
    ("9", "nicotine", "CN1CCC[C@H]1c1cccnc1", "BBB+", "drugbank"),
    ("10", "benzene", "c1ccccc1", "BBB+", "zinc"),
    ("11", "phenol", "Oc1ccccc1", "BBB+", "zinc"),
    ("12", "toluene", "Cc1ccccc1", "BBB+", "zinc"),
]
ODD_HEADER = ("NO.", "compound_name", "SMILES", "BBB+/BBB-", "MODEL.SOURCE")


def write_odd_tsv(path: Path) -> Path:
    path.write_text("\t".join(ODD_HEADER) + "\n" + "".join("\t".join(r) + "\n" for r in ODD_ROWS))
    return path


@pytest.fixture(scope="session")
def odd_library(tmp_path_factory, app_checkpoint):
    """(root, name) of library "odd" (ODD_ROWS, ids from compound_name)."""
    from mmsa.library import build_library

    src = write_odd_tsv(tmp_path_factory.mktemp("odd-src") / "odd.tsv")
    root = tmp_path_factory.mktemp("odd-indexes")
    build_library(src, "odd", root=root, encoder=app_checkpoint, id_col="compound_name",
                  hyperedge_k=4, chunk_size=16)
    return root, "odd"


@pytest.fixture()
def odd_env(app_env, odd_library):
    """app_env with library "odd" beside "tiny"."""
    import shutil

    private, name, rows = app_env
    shutil.copytree(odd_library[0] / "odd", private / "odd")
    return private, name, rows


@pytest.fixture()
def odd_tsv(tmp_path) -> Path:
    """The "odd" library's source file (a TSV with B3DB-like columns) in tmp_path."""
    return write_odd_tsv(tmp_path / "odd.tsv")
