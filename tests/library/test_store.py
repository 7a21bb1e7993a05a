"""Build/load round trips, append, and every failure case of the store (issue 4 item 5)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from mmsa.library import (
    add_to_library,
    build_library,
    check_name,
    delete_library,
    list_libraries,
    open_library,
)
from mmsa.types import InputError, LibraryError

from .conftest import BAD_ROWS


def test_round_trip(built, encoder, tiny_csv):
    root, report = built
    assert report.n_ok == 70 and report.n_failed == 2 and report.n_total == 70
    assert sorted(f.row for f in report.failures) == sorted(BAD_ROWS)
    lib = open_library("tiny", root=root, encoder=encoder, verify="full")
    assert len(lib) == 70
    meta = lib.metadata
    assert list(meta.columns[:4]) == ["row", "id", "input_smiles", "smiles"]
    assert "mw" in meta.columns and lib.property_columns == ["mw"]
    assert meta["row"].tolist() == list(range(70))
    src = pd.read_csv(tiny_csv)
    good = src[~src["id"].str.startswith("bad-")]
    assert meta["id"].tolist() == good["id"].tolist()  # the user's ids, in input order
    # stored vectors are exactly what the encoder gives for the stored SMILES
    res = encoder.embed(meta["smiles"].tolist())
    np.testing.assert_allclose(np.asarray(lib.vectors), res.vectors, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(lib.vectors, axis=1), 1.0, atol=1e-5)
    ids, w = lib.slot_topk
    t = min(8, encoder.num_slots)
    assert ids.shape == (70, t) and w.shape == (70, t)
    assert np.all(np.diff(w, axis=1) <= 1e-7)  # descending
    top = np.argmax(res.slot_weights, axis=1)
    assert np.array_equal(ids[:, 0], top)
    np.testing.assert_allclose(w[:, 0], res.slot_weights.max(axis=1), atol=1e-6)
    m = lib.manifest
    assert m["checkpoint"]["sha256"] == encoder.checkpoint_hash
    assert m["embedding"] == {"dim": encoder.dim, "dtype": "float32",
                              "metric": "inner_product", "normalization": "l2"}
    assert m["index"]["type"] == "flat" and m["count"] == 70 and m["n_failed"] == 2
    assert {f["row"] for f in m["failures"]} == set(BAD_ROWS)
    assert {f.row for f in lib.failures} == set(BAD_ROWS)
    assert all(f.reason for f in lib.failures)
    assert m["sources"][0]["n_ok"] == 70
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no temp/lock left
    infos = list_libraries(root)
    assert [(i.name, i.count, i.index_type) for i in infos] == [("tiny", 70, "flat")]


def test_hyperedges_are_exact_knn(built):
    root, _ = built
    lib = open_library("tiny", root=root)
    h = np.asarray(lib.hyperedges)
    assert h.shape == (70, 5) and np.array_equal(h[:, 0], np.arange(70))
    v = np.asarray(lib.vectors)
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    for i in range(70):
        best = np.sort(sims[i])[::-1][:4]
        np.testing.assert_allclose(sims[i, h[i, 1:]], best, atol=1e-5)
        np.testing.assert_allclose(lib.hyperedge_scores[i, 1:], best, atol=1e-5)
        assert lib.hyperedge(i)[0] == i


def test_append(tmp_path, tiny_csv, extra_csv, tiny_checkpoint, encoder):
    root = tmp_path / "idx"
    build_library(tiny_csv, "lib", root=root, encoder=tiny_checkpoint, hyperedge_k=3)
    lib0 = open_library("lib", root=root)
    (lib0.cache_dir / "stale.json").write_text("{}")
    vec0 = np.array(lib0.vectors)
    rep = add_to_library("lib", extra_csv, root=root, encoder=encoder)
    assert rep.n_ok == 30 and rep.n_total == 100
    lib = open_library("lib", root=root, encoder=encoder, verify="full")
    assert len(lib) == 100 and lib.metadata["row"].tolist() == list(range(100))
    np.testing.assert_array_equal(np.asarray(lib.vectors[:70]), vec0)
    new = pd.read_csv(extra_csv)
    assert lib.metadata["id"].tolist()[70:] == new["id"].tolist()
    np.testing.assert_allclose(
        np.asarray(lib.vectors[70:]), encoder.embed(lib.metadata["smiles"][70:].tolist()).vectors,
        atol=1e-5)
    assert lib.hyperedges.shape == (100, 4) and int(np.asarray(lib.hyperedges).max()) >= 70
    assert len(lib.manifest["sources"]) == 2 and lib.manifest["n_failed"] == 2
    assert not (lib.path / "cache" / "stale.json").exists()  # derived caches dropped
    hits = lib.search(new["smiles"][3], k=1, mode="exact")
    assert hits["row"].tolist() == [73]


def test_append_refuses_other_checkpoint(lib_copy, extra_csv, other_checkpoint):
    root, name = lib_copy
    with pytest.raises(LibraryError, match="checkpoint"):
        add_to_library(name, extra_csv, root=root, encoder=other_checkpoint)
    assert len(open_library(name, root=root)) == 70


@pytest.mark.parametrize("bad", ["../x", "..", ".", "a/b", "/abs", ".hidden", "", "x" * 65,
                                 "a\\b", "name.", "sp ace", "é"])
def test_bad_names(bad, tmp_path):
    with pytest.raises(InputError, match="invalid library name"):
        check_name(bad)
    with pytest.raises(InputError, match="invalid library name"):
        open_library(bad, root=tmp_path)
    assert check_name("ok_name-1.v2") == "ok_name-1.v2"


def test_build_bad_name_and_missing_input(tmp_path, tiny_csv, tiny_checkpoint):
    with pytest.raises(InputError, match="invalid library name"):
        build_library(tiny_csv, "../escape", root=tmp_path / "idx", encoder=tiny_checkpoint)
    with pytest.raises(InputError, match="not found"):
        build_library(tmp_path / "nope.csv", "x", root=tmp_path / "idx", encoder=tiny_checkpoint)
    assert not (tmp_path / "escape").exists()


def test_exists_without_overwrite(lib_copy, tiny_csv, tiny_checkpoint):
    root, name = lib_copy
    with pytest.raises(LibraryError, match="already exists"):
        build_library(tiny_csv, name, root=root, encoder=tiny_checkpoint)


def test_missing_library(tmp_path):
    with pytest.raises(LibraryError, match="no library named 'nope'"):
        open_library("nope", root=tmp_path)


def test_missing_file(lib_copy):
    root, name = lib_copy
    (root / name / "morgan.u8").unlink()
    with pytest.raises(LibraryError, match=r"morgan\.u8 is missing"):
        open_library(name, root=root)


def test_missing_manifest(lib_copy):
    root, name = lib_copy
    (root / name / "manifest.json").unlink()
    with pytest.raises(LibraryError, match="manifest.json is missing"):
        open_library(name, root=root)
    assert not list_libraries(root)[0].ok


def test_truncated_vectors(lib_copy):
    root, name = lib_copy
    path = root / name / "vectors.f32"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 64])
    with pytest.raises(LibraryError, match=r"vectors\.f32 is truncated"):
        open_library(name, root=root, verify="size")


def test_corrupted_bytes_detected_by_checksum(lib_copy):
    root, name = lib_copy
    path = root / name / "vectors.f32"
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    open_library(name, root=root, verify="size")  # same size: only the checksum can tell
    with pytest.raises(LibraryError, match="checksum"):
        open_library(name, root=root, verify="full")


def test_manifest_mismatch(lib_copy):
    root, name = lib_copy
    mpath = root / name / "manifest.json"
    m = json.loads(mpath.read_text())
    m["count"] = 71
    mpath.write_text(json.dumps(m))
    with pytest.raises(LibraryError, match="rows, the manifest count is 71"):
        open_library(name, root=root)
    m["count"] = 70
    m["format_version"] = 99
    mpath.write_text(json.dumps(m))
    with pytest.raises(LibraryError, match="format version"):
        open_library(name, root=root)
    mpath.write_text("{not json")
    with pytest.raises(LibraryError, match="cannot read"):
        open_library(name, root=root)


def test_checkpoint_mismatch(lib_copy, other_checkpoint):
    root, name = lib_copy
    with pytest.raises(LibraryError, match="was built with checkpoint .* rebuild"):
        open_library(name, root=root, encoder=other_checkpoint)
    lib = open_library(name, root=root)  # still readable without the model
    with pytest.raises(LibraryError, match="checkpoint"):
        lib.set_encoder(__import__("mmsa.model.encoder").model.encoder.Encoder.load(other_checkpoint))


def test_concurrent_build_refused(lib_copy, tiny_csv, tiny_checkpoint):
    root, name = lib_copy
    lock = root / f".{name}.lock"
    lock.write_text(str(os.getpid()))  # a live process holds the lock
    with pytest.raises(LibraryError, match=r"being built by another process \(pid"):
        build_library(tiny_csv, name, root=root, encoder=tiny_checkpoint, overwrite=True)
    with pytest.raises(LibraryError, match="being built"):
        delete_library(name, root=root)
    assert lock.exists()
    lock.unlink()


def test_stale_lock_is_removed(lib_copy, tiny_csv, tiny_checkpoint):
    import subprocess
    import sys

    root, name = lib_copy
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (root / f".{name}.lock").write_text(str(dead.pid))
    rep = build_library(tiny_csv, name, root=root, encoder=tiny_checkpoint, overwrite=True)
    assert rep.n_total == 70 and not (root / f".{name}.lock").exists()


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_interrupted_build_keeps_previous_version(lib_copy, extra_csv, tiny_checkpoint,
                                                  monkeypatch, exc):
    from mmsa.library import ann

    root, name = lib_copy
    before = {p.name: p.read_bytes() for p in (root / name).iterdir() if p.is_file()}

    def fail(*a, **k):
        raise exc

    monkeypatch.setattr(ann, "knn_graph", fail)  # dies after vectors and index are written
    with pytest.raises(type(exc)):
        build_library(extra_csv, name, root=root, encoder=tiny_checkpoint, overwrite=True)
    with pytest.raises(type(exc)):
        add_to_library(name, extra_csv, root=root, encoder=tiny_checkpoint)
    after = {p.name: p.read_bytes() for p in (root / name).iterdir() if p.is_file()}
    assert after == before
    assert len(open_library(name, root=root, verify="full")) == 70
    assert sorted(p.name for p in root.iterdir()) == [name]  # no temp folder, no lock


def test_leftover_temp_folder_is_cleaned(lib_copy, tiny_csv, tiny_checkpoint):
    root, name = lib_copy
    junk = root / f".{name}.tmp-deadbeef"
    junk.mkdir()
    (junk / "vectors.f32").write_bytes(b"x" * 10)
    assert [i.name for i in list_libraries(root)] == [name]  # hidden from listings
    build_library(tiny_csv, name, root=root, encoder=tiny_checkpoint, overwrite=True)
    assert not junk.exists()


def test_all_invalid_input(tmp_path, tiny_checkpoint):
    path = tmp_path / "bad.csv"
    path.write_text("smiles,id\nnot_smiles,a\nC1CC,b\n")
    with pytest.raises(InputError):
        build_library(path, "bad", root=tmp_path / "idx", encoder=tiny_checkpoint)
    assert not (tmp_path / "idx" / "bad").exists()


def test_delete(lib_copy):
    root, name = lib_copy
    delete_library(name, root=root)
    assert list_libraries(root) == []
    with pytest.raises(LibraryError, match="no library"):
        delete_library(name, root=root)


def test_ensure_default_skips_when_a_library_exists(lib_copy, monkeypatch):
    from mmsa.library import ensure_default_library

    root, _ = lib_copy

    def no_fetch(*a, **k):  # must not be reached
        raise AssertionError("fetch called")

    monkeypatch.setattr("mmsa.data.fetch", no_fetch)
    assert ensure_default_library(root=root) is None


def test_ensure_default_rebuilds_for_another_checkpoint(tmp_path, monkeypatch, tiny_csv,
                                                      tiny_checkpoint, other_checkpoint):
    from mmsa.library import ensure_default_library

    root = tmp_path / "idx"
    build_library(tiny_csv, "approved-drugs", root=root, encoder=tiny_checkpoint)
    monkeypatch.setattr("mmsa.data.fetch", lambda name, **k: tiny_csv)
    assert ensure_default_library(root=root, encoder=tiny_checkpoint) is None  # up to date
    assert ensure_default_library(root=root, encoder=other_checkpoint) == "approved-drugs"
    open_library("approved-drugs", root=root, encoder=other_checkpoint)  # matches now


def test_ensure_default_builds(tmp_path, monkeypatch, molecules_csv, tiny_checkpoint):
    from mmsa.library import ensure_default_library

    src = tmp_path / "drugs.csv"
    shutil.copy(molecules_csv, src)
    df = pd.read_csv(src).rename(columns={"SMILES": "smiles", "Compound ID": "id"})
    df.head(20).to_csv(src, index=False)
    monkeypatch.setattr("mmsa.data.fetch", lambda name, **k: src)
    seen = []
    name = ensure_default_library(root=tmp_path / "idx", encoder=tiny_checkpoint,
                                  progress=lambda d, t: seen.append((d, t)))
    assert name == "approved-drugs" and seen and seen[-1][0] == 20
    assert len(open_library(name, root=tmp_path / "idx")) == 20


@pytest.mark.slow
def test_parallel_build_equals_serial(built, tmp_path, tiny_csv, tiny_checkpoint):
    """n_jobs=2 runs embed_chunk in spawned workers: same library, same order."""
    root, _ = built
    rep = build_library(tiny_csv, "par", root=tmp_path / "idx", encoder=tiny_checkpoint,
                        hyperedge_k=4, chunk_size=16, n_jobs=2)
    assert rep.n_ok == 70 and sorted(f.row for f in rep.failures) == sorted(BAD_ROWS)
    a = open_library("tiny", root=root)
    b = open_library("par", root=tmp_path / "idx")
    np.testing.assert_allclose(np.asarray(a.vectors), np.asarray(b.vectors), atol=1e-5)
    np.testing.assert_array_equal(np.asarray(a.morgan), np.asarray(b.morgan))
    np.testing.assert_array_equal(np.asarray(a.pattern), np.asarray(b.pattern))
    np.testing.assert_array_equal(np.asarray(a.slot_topk[0]), np.asarray(b.slot_topk[0]))
    assert a.metadata.equals(b.metadata)
