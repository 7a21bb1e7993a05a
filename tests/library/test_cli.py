"""The `mmsa index ...` and `mmsa search` commands (parsing only; output formats)."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from mmsa.cli import main


def test_search_csv(built, tiny_checkpoint, capsys):
    root, _ = built
    rc = main(["search", "tiny", "--smiles", "CN1CCC[C@H]1c1cccnc1", "--format", "csv",
               "-k", "5", "--indexes", str(root), "--checkpoint", str(tiny_checkpoint)])
    assert rc == 0
    df = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(df.columns[:4]) == ["rank", "row", "id", "smiles"]
    assert {"score", "tanimoto", "cosine", "mw"} <= set(df.columns)
    assert len(df) == 5 and df["rank"].tolist() == [1, 2, 3, 4, 5]
    assert df["score"].is_monotonic_decreasing and df["tanimoto"].between(0, 1).all()


@pytest.mark.parametrize("mode", ["tanimoto", "substructure", "exact"])
def test_search_modes_without_model(built, capsys, mode, monkeypatch):
    monkeypatch.setenv("MMSA_CHECKPOINT", "/nonexistent.pt")  # these modes never load it
    root, _ = built
    rc = main(["search", "tiny", "--smiles", "c1ccccc1", "--mode", mode, "--format", "csv",
               "--indexes", str(root)])
    assert rc == 0
    out = capsys.readouterr().out
    if out.strip():
        df = pd.read_csv(io.StringIO(out))
        assert list(df.columns[:5]) == ["rank", "row", "id", "smiles", "score"]


def test_search_table_and_errors(built, tiny_checkpoint, capsys):
    root, _ = built
    assert main(["search", "tiny", "--smiles", "CCO", "--mode", "tanimoto", "-k", "3",
                 "--indexes", str(root)]) == 0
    out = capsys.readouterr().out
    assert "rank" in out and "tanimoto" in out and len(out.strip().splitlines()) == 4
    assert main(["search", "tiny", "--smiles", "C1CC(((", "--indexes", str(root),
                 "--checkpoint", str(tiny_checkpoint)]) == 2
    assert "error: could not parse query SMILES" in capsys.readouterr().err
    assert main(["search", "nope", "--smiles", "CCO", "--indexes", str(root)]) == 2
    assert "no library named 'nope'" in capsys.readouterr().err


def test_index_commands(tmp_path, tiny_csv, extra_csv, tiny_checkpoint, capsys):
    root = str(tmp_path / "idx")
    ck = ["--checkpoint", str(tiny_checkpoint)]
    assert main(["index", "build", str(tiny_csv), "--name", "cli", "--indexes", root,
                 "--no-progress", *ck]) == 0
    err = capsys.readouterr().err
    assert "70 molecules" in err and "2 failed" in err and "row 5" in err
    assert main(["index", "build", str(tiny_csv), "--name", "cli", "--indexes", root, *ck]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["index", "add", "cli", str(extra_csv), "--indexes", root, "--no-progress",
                 *ck]) == 0
    capsys.readouterr()
    assert main(["index", "list", "--indexes", root]) == 0
    out = capsys.readouterr().out
    assert "cli" in out and "100" in out and "flat" in out
    assert main(["index", "info", "cli", "--indexes", root, "--verify"]) == 0
    out = capsys.readouterr().out
    assert "molecules" in out and "100" in out and "mw" in out
    assert main(["index", "build", str(tiny_csv), "--name", "../x", "--indexes", root, *ck]) == 2
    assert "invalid library name" in capsys.readouterr().err
    assert main(["index", "delete", "cli", "--indexes", root]) == 0
    capsys.readouterr()
    assert main(["index", "list", "--indexes", root]) == 0
    assert "no libraries" in capsys.readouterr().err
