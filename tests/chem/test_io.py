import gzip
import shutil

import pandas as pd
import pytest

from mmsa.chem.io import RECORD_COLUMNS, detect_format, iter_library, read_library
from mmsa.chem.standardize import standardize_smiles
from mmsa.types import Failure, InputError


def _by_row(failures):
    return {f.row: f for f in failures}


def test_csv_100_molecules(molecules_csv, smiles_100):
    records, failures = read_library(molecules_csv)
    assert failures == []
    assert list(records.columns) == [*RECORD_COLUMNS, "MolWt"]
    assert len(records) == 100
    assert records["row"].tolist() == list(range(100))
    assert records["id"].iloc[0].startswith("NCI-") and records["id"].iloc[-1] == "tetramethylammonium"
    assert records["input_smiles"].tolist() == smiles_100
    assert records["smiles"].tolist() == [standardize_smiles(s) for s in smiles_100]
    assert records.loc[records["id"] == "salt-acetate", "smiles"].item() == "CC(=O)O"
    assert records["MolWt"].dtype.kind == "f"


def test_csv_chunks_stream_and_agree(molecules_csv):
    chunks = list(iter_library(molecules_csv, chunk_size=30))
    assert [len(c.records) for c in chunks] == [30, 30, 30, 10]
    assert [(c.start_row, c.end_row) for c in chunks] == [(0, 30), (30, 60), (60, 90), (90, 100)]
    whole, _ = read_library(molecules_csv)
    pd.testing.assert_frame_equal(pd.concat([c.records for c in chunks], ignore_index=True), whole)


def test_csv_malformed_rows_are_failures(data_dir):
    records, failures = read_library(data_dir / "malformed.csv", chunk_size=2)
    assert records["row"].tolist() == [0, 4, 5]
    assert records["id"].tolist() == ["m1", "m5", "m6"]
    assert records["activity"].tolist() == [1.5, 5.5, 6.5]
    bad = _by_row(failures)
    assert sorted(bad) == [1, 2, 3, 6]  # every row accounted for, in order
    assert "malformed line 3" in bad[1].reason and "saw 4" in bad[1].reason
    assert bad[2].reason == "empty SMILES"
    assert bad[3].input == "C1CC" and "syntax" in bad[3].reason
    assert "malformed line 8" in bad[6].reason
    assert all(isinstance(f, Failure) for f in failures)


def test_tsv_columns_found_case_insensitively(data_dir):
    records, failures = read_library(data_dir / "library.tsv")
    assert records["id"].tolist() == ["aspirin", "caffeine", "paracetamol"]
    assert list(records.columns) == [*RECORD_COLUMNS, "pIC50"]
    assert pd.isna(records["pIC50"].iloc[2])
    assert [f.row for f in failures] == [2] and "kekulize" in failures[0].reason.lower()


def test_columns_given_explicitly(data_dir, molecules_csv):
    records, _ = read_library(data_dir / "library.tsv", smiles_col="canonical_smiles",
                              id_col="PIC50")
    assert records["id"].tolist() == ["5.1", "4.2", "3"]  # NaN id -> row number
    assert "Name" in records.columns
    with pytest.raises(InputError, match="no SMILES column 'structure'"):
        read_library(molecules_csv, smiles_col="structure")
    with pytest.raises(InputError, match="no id column"):
        read_library(molecules_csv, id_col="nope")


def test_smi_file(data_dir):
    records, failures = read_library(data_dir / "library.smi")
    assert records["row"].tolist() == [1, 2, 5, 7]  # line numbers; comment and blank skipped
    assert records["id"].tolist() == ["ethanol", "phenol", "sodium acetate", "7"]
    assert records["smiles"].tolist() == ["CCO", "Oc1ccccc1", "CC(=O)O", "CCN"]
    assert [(f.row, f.input) for f in failures] == [(3, "C1CC"), (6, "C(C)(C)(C)(C)C")]
    assert "valence" in failures[1].reason


def test_smi_header_line_and_gzip(tmp_path):
    path = tmp_path / "lib.smi.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("SMILES Name\nCCO ethanol\nc1ccccc1 benzene\n")
    records, failures = read_library(path)
    assert records["id"].tolist() == ["ethanol", "benzene"] and failures == []


@pytest.mark.parametrize("name", ["library.sdf", "library.sdf.gz"])
def test_sdf_keeps_fields_titles_and_reports_bad_records(data_dir, name):
    records, failures = read_library(data_dir / name, chunk_size=2)
    assert records["row"].tolist() == [0, 1, 2, 5]
    assert records["id"].tolist() == ["aspirin", "caffeine", "2", "ibuprofen"]  # no title: row
    assert records["CHEMBL_ID"].tolist() == ["CHEMBL25", "CHEMBL113", "CHEMBL1354", "CHEMBL521"]
    assert records["logP"].tolist() == [1.31, -0.07, 0.09, 3.97]
    assert records.loc[2, "smiles"] == "CC(=O)O" and "[Na+]" in records.loc[2, "input_smiles"]
    bad = _by_row(failures)
    assert sorted(bad) == [3, 4]
    assert bad[3].input == "pentavalent" and "valence" in bad[3].reason
    assert "unreadable" in bad[4].reason


def test_sdf_id_from_data_field(data_dir):
    records, _ = read_library(data_dir / "library.sdf", id_col="CHEMBL_ID")
    assert records["id"].tolist() == ["CHEMBL25", "CHEMBL113", "CHEMBL1354", "CHEMBL521"]


def test_property_named_like_a_record_column_is_kept(tmp_path):
    path = tmp_path / "lib.csv"
    path.write_text("SMILES,row,name\nCCO,7,ethanol\n")
    records, _ = read_library(path)
    assert records["row"].tolist() == [0] and records["row_input"].tolist() == [7]


@pytest.mark.parametrize(
    "name, message",
    [
        ("empty.csv", "empty"),
        ("header_only.csv", "no molecules"),
        ("no_smiles.csv", "no SMILES column"),
        ("all_invalid.smi", "none of the 3 molecules is valid"),
    ],
)
def test_bad_files_raise(data_dir, name, message):
    with pytest.raises(InputError, match=message) as err:
        read_library(data_dir / name)
    assert name in str(err.value)


def test_all_invalid_raises_before_yielding(data_dir):
    chunks = iter_library(data_dir / "all_invalid.smi", chunk_size=1)
    with pytest.raises(InputError):
        next(chunks)


def test_unknown_and_missing_files(tmp_path):
    with pytest.raises(InputError, match="unknown file type"):
        read_library(tmp_path / "lib.xlsx")
    with pytest.raises(InputError, match="no such file"):
        read_library(tmp_path / "missing.csv")
    (tmp_path / "blank.smi").write_text("\n\n# nothing\n")
    with pytest.raises(InputError, match="no molecules"):
        read_library(tmp_path / "blank.smi")


def test_detect_format():
    assert detect_format("a/B.SDF.GZ") == ("sdf", True)
    assert detect_format("x.tab") == ("tsv", False)
    assert detect_format("x.smi") == ("smi", False)


def test_gzipped_csv(tmp_path, molecules_csv):
    path = tmp_path / "m.csv.gz"
    with open(molecules_csv, "rb") as a, gzip.open(path, "wb") as b:
        shutil.copyfileobj(a, b)
    records, _ = read_library(path)
    assert len(records) == 100
