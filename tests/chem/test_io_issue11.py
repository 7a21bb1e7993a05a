"""Issue 11, reader defects 4, 8, 10 and 11: each test failed before the fix."""

import gzip
import tracemalloc

import numpy as np
import pytest
from rdkit import Chem

from mmsa.chem.io import (
    MAX_ECHO_CHARS,
    RECORD_COLUMNS,
    detect_format,
    inspect_library,
    iter_library,
    read_library,
    sniff_table,
)
from mmsa.cli import main
from mmsa.types import InputError


def _block(smiles: str, name: str) -> str:
    mol = Chem.MolFromSmiles(smiles)
    mol.SetProp("_Name", name)
    mol.SetProp("tag", name.lower())
    return Chem.MolToMolBlock(mol) + "> <tag>\n" + name.lower() + "\n\n$$$$\n"


@pytest.fixture
def swallow_sdf(tmp_path):
    """Records A, `junk`, B, C, D (the issue's example)."""
    path = tmp_path / "swallow.sdf"
    path.write_text(_block("CCO", "A") + "junk\n$$$$\n" + _block("CCN", "B")
                    + _block("CCC", "C") + _block("c1ccccc1", "D"))
    return path


# ---------------------------------------------------------------- 4: SDF records


def test_malformed_sdf_record_does_not_swallow_the_next(swallow_sdf):
    records, failures = read_library(swallow_sdf)
    assert records["id"].tolist() == ["A", "B", "C", "D"]
    assert records["row"].tolist() == [0, 2, 3, 4]
    assert records["smiles"].tolist() == ["CCO", "CCN", "CCC", "c1ccccc1"]
    assert records["tag"].tolist() == ["a", "b", "c", "d"]
    assert [f.row for f in failures] == [1]
    assert "junk" in failures[0].input


def test_sdf_damage_inside_a_record_fails_only_that_record(tmp_path):
    good = [_block(s, n) for s, n in [("CCO", "A"), ("CCN", "B"), ("CCC", "C")]]
    broken = good[1].replace("M  END", "M  EN").split("\n")
    del broken[4]  # an atom line short: counts line disagrees
    path = tmp_path / "d.sdf.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(good[0] + "\n".join(broken) + good[2].rstrip("\n"))  # last $$$$ kept
    records, failures = read_library(path)
    assert records["id"].tolist() == ["A", "C"] and records["row"].tolist() == [0, 2]
    assert [f.row for f in failures] == [1]


def test_embed_writes_one_row_per_sdf_record(swallow_sdf, tmp_path, tiny_checkpoint, capsys):
    out = tmp_path / "e.npy"
    assert main(["embed", str(swallow_sdf), "--out", str(out),
                 "--checkpoint", str(tiny_checkpoint), "--device", "cpu"]) == 0
    vectors = np.load(out)
    assert vectors.shape[0] == 5
    assert np.isnan(vectors[1]).all()
    assert np.isfinite(vectors[[0, 2, 3, 4]]).all()
    err = capsys.readouterr().err
    assert "embedded 4 of 5 rows (1 failed)" in err


# ---------------------------------------------------------------- 8: unbounded inputs


def test_a_huge_line_fails_its_row_in_bounded_memory(tmp_path):
    path = tmp_path / "big.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("smiles,id\nCCO,a\n")
        fh.write("C" * 20_000_000 + ",b\n")
        fh.write("CCN,c\n")
    tracemalloc.start()
    try:
        records, failures = read_library(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 30_000_000  # the line alone is 20 MB of text; never held whole
    assert records["id"].tolist() == ["a", "c"] and records["row"].tolist() == [0, 2]
    assert [f.row for f in failures] == [1]
    assert "longer than" in failures[0].reason and "20000002" in failures[0].reason
    assert len(failures[0].input) <= MAX_ECHO_CHARS + 40


def test_a_huge_smiles_field_is_clipped_in_the_failure(tmp_path):
    path = tmp_path / "big.smi"
    path.write_text("CCO a\n" + "X" * 50_000 + " b\n")
    records, failures = read_library(path)
    assert len(records) == 1 and [f.row for f in failures] == [1]
    assert len(failures[0].input) <= MAX_ECHO_CHARS + 40
    assert "50000 characters" in failures[0].input


def test_property_columns_clashing_with_our_names_are_renamed(tmp_path):
    path = tmp_path / "clash.csv"
    path.write_text("smiles,row,row_input,id,input_smiles,a,a\nCCO,7,8,x,y,1,2\n")
    records, failures = read_library(path)
    assert failures == []
    cols = list(records.columns)
    assert cols[:4] == list(RECORD_COLUMNS) and len(set(cols)) == len(cols)
    assert records["row"].tolist() == [0] and records["id"].tolist() == ["x"]
    assert records["row_input"].tolist() == [8]  # the user's row_input keeps its name
    assert sorted(records.iloc[0, 4:].tolist(), key=str) == sorted([7, 8, "y", 1, 2], key=str)
    info = inspect_library(path)
    assert info.renamed["row"] not in ("row", "row_input")


def test_control_characters_never_reach_column_names(tmp_path):
    path = tmp_path / "ansi.csv"
    path.write_text("smiles,id,\x1b[31mred\x1b[0m,\x07bell\n"
                    "CCO,a,1,2\nCCN,b,2,3\n")
    records, _ = read_library(path)
    assert list(records.columns)[4:] == ["red", "bell"]
    assert all(c.isprintable() for c in records.columns)
    with pytest.raises(InputError) as err:
        read_library(path, smiles_col="\x1b[2Jnope")
    assert "\x1b" not in str(err.value)


def test_empty_and_blank_files_give_clear_errors(tmp_path):
    gz = tmp_path / "e.csv.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write("")
    with pytest.raises(InputError, match="empty"):
        read_library(gz)
    blank = tmp_path / "b.tsv"
    blank.write_text("\n\n  \n")
    with pytest.raises(InputError, match="empty"):
        read_library(blank)


# ---------------------------------------------------------------- 10: comments, BOM


def test_bom_before_a_smi_header_is_not_a_row(tmp_path):
    path = tmp_path / "bom.smi"
    path.write_bytes("SMILES Name\nCCO ethanol\n".encode("utf-8-sig"))
    records, failures = read_library(path)
    assert failures == [] and records["id"].tolist() == ["ethanol"]
    csv = tmp_path / "bom.csv"
    csv.write_bytes("smiles,id\nCCO,a\n".encode("utf-8-sig"))
    records, failures = read_library(csv)
    assert failures == [] and records["id"].tolist() == ["a"]


def test_skipped_lines_are_counted_apart(tmp_path):
    path = tmp_path / "c.smi"
    path.write_text("# c\nCCO a\n\n# d\nC1CC b\n")
    chunks = list(iter_library(path))
    assert sum(len(c.records) for c in chunks) == 1
    assert [f.row for c in chunks for f in c.failures] == [4]
    assert sum(c.skipped for c in chunks) == 3


def test_embed_does_not_count_comment_and_blank_lines(tmp_path, tiny_checkpoint, capsys):
    path = tmp_path / "c.smi"
    path.write_text("# c\nCCO a\n\n# d\nCCN b\n")
    out = tmp_path / "e.npy"
    assert main(["embed", str(path), "--out", str(out),
                 "--checkpoint", str(tiny_checkpoint), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "embedded 2 of 2 rows (0 failed)" in err
    assert "3 blank/comment/header lines" in err
    vectors = np.load(out)
    assert vectors.shape[0] == 5  # row i is line i of the file
    assert np.isfinite(vectors[[1, 4]]).all() and np.isnan(vectors[[0, 2, 3]]).all()


# ---------------------------------------------------------------- 11: other tools' files


def test_semicolon_csv_with_decimal_commas(tmp_path):
    path = tmp_path / "euro.csv"
    path.write_text("id;smiles;pIC50;name\nm1;CCO;5,1;a, b\nm2;c1ccccc1;6,25;c\n"
                    "m3;CCN;7;d\n")
    records, failures = read_library(path)
    assert failures == []
    assert records["id"].tolist() == ["m1", "m2", "m3"]
    assert records["pIC50"].tolist() == [5.1, 6.25, 7.0]
    assert records["name"].tolist() == ["a, b", "c", "d"]
    info = inspect_library(path)
    assert info.delimiter == ";" and info.smiles_column == "smiles"
    assert info.decimal_comma == ["pIC50"]
    assert "';'" in info.describe() and "smiles" in info.describe()


def test_smi_with_id_first(tmp_path):
    path = tmp_path / "idfirst.smi"
    path.write_text("m1 CCO\nm2\tc1ccccc1\nsodium acetate CC(=O)[O-].[Na+]\n")
    records, failures = read_library(path)
    assert failures == []
    assert records["id"].tolist() == ["m1", "m2", "sodium acetate"]
    assert records["smiles"].tolist() == ["CCO", "c1ccccc1", "CC(=O)O"]
    assert inspect_library(path).smiles_column == 1


def test_smiles_column_found_by_content(tmp_path):
    path = tmp_path / "anon.csv"
    path.write_text("code,structure_text,value\nA1,CCO,1\nA2,c1ccccc1,2\nA3,CCN,3\n")
    records, failures = read_library(path)
    assert records["input_smiles"].tolist() == ["CCO", "c1ccccc1", "CCN"]
    info = inspect_library(path)
    assert info.smiles_column == "structure_text" and info.smiles_found_by == "content"


def test_sniff_table():
    assert sniff_table("id;smiles\nm1;CCO\nm2;CCN\n") == (";", "smiles", "id")
    assert sniff_table("Name|x|y\nm1|1,5|CCO\nm2|2|CCN\n") == ("|", "y", "Name")
    assert sniff_table("a\tb\n1\tCCO\n") == ("\t", "b", None)
    assert sniff_table("CCO m1\nCCN m2\n", fmt="smi") == (None, 0, 1)
    assert sniff_table("m1 CCO\nm2 CCN\n", fmt="smi") == (None, 1, 0)


def test_cli_embed_says_which_column_and_delimiter(tmp_path, tiny_checkpoint, capsys):
    path = tmp_path / "euro.csv"
    path.write_text("id;smiles;pIC50\nm1;CCO;5,1\nm2;CCN;6\n")
    assert main(["embed", str(path), "--out", str(tmp_path / "e.npy"),
                 "--checkpoint", str(tiny_checkpoint), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "delimiter ';'" in err and "SMILES column 'smiles'" in err


@pytest.mark.parametrize("name, expected", [
    ("x.tab", ("tsv", False)), ("x.sd", ("sdf", False)), ("x.ism", ("smi", False)),
    ("X.SD.GZ", ("sdf", True)), ("dir/x.smiles.gz", ("smi", True)), ("x.can", ("smi", False)),
])
def test_detect_format_extensions(name, expected):
    assert detect_format(name) == expected


def test_reading_bad_records_writes_nothing_to_stderr(data_dir, swallow_sdf, capfd):
    for path in (data_dir / "library.sdf", swallow_sdf, data_dir / "library.smi",
                 data_dir / "malformed.csv"):
        read_library(path)
    out = capfd.readouterr()
    assert out.err == "" and out.out == ""
