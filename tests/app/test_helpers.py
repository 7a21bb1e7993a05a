"""The pages' pure helpers (no Streamlit run needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from explorer.libraries import (
    check_upload,
    default_name,
    estimate_rows,
    file_format,
    guess_id_column,
    guess_smiles_column,
    upload_columns,
)
from explorer.map_page import colour_options, selected_rows

from mmsa.types import InputError


def test_selected_rows_reads_customdata_of_any_trace():
    event = {"selection": {"points": [{"customdata": 7, "curve_number": 1},
                                      {"customdata": [3], "curve_number": 0},
                                      {"curve_number": 2},  # the query star: no row
                                      {"customdata": 7}],
                           "point_indices": [0, 1], "box": [], "lasso": []}}
    assert selected_rows(event) == [3, 7]
    assert selected_rows(None) == [] and selected_rows({"selection": {"points": []}}) == []


def test_colour_options():
    meta = pd.DataFrame({"row": [0, 1], "id": ["a", "b"], "input_smiles": ["C", "CC"],
                         "smiles": ["C", "CC"], "MolWt": [16.0, 30.0], "class": ["x", "y"],
                         "note": [f"free text {i}" for i in range(2)]})
    opts = colour_options(meta)
    assert opts[:3] == ["(none)", "memory slot", "cluster"]
    assert "MolWt" in opts and "class" in opts and "smiles" not in opts and "id" not in opts


@pytest.mark.parametrize("name,fmt", [("a.smi", "smi"), ("A.CSV", "csv"), ("b.tsv", "tsv"),
                                      ("c.sdf", "sdf"), ("d.SDF.gz", "sdf.gz"), ("e.txt", "smi")])
def test_file_format(name, fmt):
    assert file_format(name) == fmt


def test_unknown_format_and_size_limit(monkeypatch):
    with pytest.raises(InputError, match="not a format we read"):
        file_format("mols.xlsx")
    monkeypatch.setenv("MMSA_MAX_UPLOAD_MB", "1")
    assert check_upload("a.csv", 1024) == "csv"
    with pytest.raises(InputError, match="the limit is 1 MB"):
        check_upload("a.csv", 2 * 2**20)
    with pytest.raises(InputError, match="is empty"):
        check_upload("a.csv", 0)
    monkeypatch.setenv("MMSA_MAX_UPLOAD_MB", "not a number")  # falls back to 200
    assert check_upload("a.csv", 150 * 2**20) == "csv"


def test_columns_names_and_row_estimates():
    data = b"Compound ID,SMILES,MolWt\nx,CCO,46\ny,CC,30\n"
    cols = upload_columns("m.csv", data)
    assert cols == ["Compound ID", "SMILES", "MolWt"]
    assert guess_smiles_column(cols) == "SMILES"
    assert guess_id_column(cols) == "Compound ID"
    assert guess_smiles_column(["canonical_smiles_x"]) == "canonical_smiles_x"
    assert guess_id_column(["foo"]) is None
    assert upload_columns("m.smi", b"CCO x\n") == []
    assert estimate_rows("m.csv", data) == 2
    assert estimate_rows("m.smi", b"CCO a\nCC b") == 2
    assert estimate_rows("m.sdf", b"...$$$$\n...$$$$\n") == 2
    assert estimate_rows("m.sdf.gz", b"\x1f\x8b") is None
    assert default_name("My drugs (v2).sdf.gz") == "My_drugs_v2"
    assert default_name("../../etc/passwd.csv") == "passwd"
    assert default_name(".csv") == "library"
    assert np.isscalar(estimate_rows("m.tsv", b"a\tb\n1\t2\n"))
