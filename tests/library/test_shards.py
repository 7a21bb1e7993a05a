"""Sharded libraries: a library built in one shard plus two added shards answers like brute
force over all its vectors, a shard add leaves the earlier shards' files untouched, a damaged
shard file is a clear error, approximate shards reach the recall target when merged."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from mmsa.library import add_to_library, ann, build_library, open_library
from mmsa.library import build as B
from mmsa.types import LibraryError

from .fake_encoder import FakeEncoder
from .test_ann_ivfpq import D, _mixture


def _csv(path, smiles):
    path.write_text("smiles,id\n" + "".join(f"{s},m{i}\n" for i, s in enumerate(smiles)))
    return path


@pytest.fixture(scope="module")
def parts(tmp_path_factory, smiles_100):
    d = tmp_path_factory.mktemp("shards-src")
    return (_csv(d / "a.csv", smiles_100[:40]), _csv(d / "b.csv", smiles_100[40:70]),
            _csv(d / "c.csv", smiles_100[70:]), _csv(d / "all.csv", smiles_100))


def _state(folder):
    """(inode, mtime_ns, sha256) of every file under ``folder``."""
    out = {}
    for p in sorted(folder.iterdir()):
        st = p.stat()
        out[p.name] = (st.st_ino, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


@pytest.fixture(scope="module")
def sharded(tmp_path_factory, parts):
    """root with "s" (a.csv built flat, then b.csv and c.csv added as shards), "whole" (all
    100 built at once, unsharded), and the file states seen between the adds."""
    a, b, c, whole = parts
    root = tmp_path_factory.mktemp("shards")
    enc = FakeEncoder()
    build_library(a, "s", root=root, encoder=enc, hyperedge_k=3, chunk_size=8)
    before = {"vectors.f32": os.stat(root / "s" / "vectors.f32"),
              "index.faiss": os.stat(root / "s" / "index.faiss")}
    r1 = add_to_library("s", b, root=root, encoder=enc, chunk_size=8, shard=True)
    after_first = _state(root / "s" / "shard-0000")
    shard1 = _state(root / "s" / "shard-0001")
    r2 = add_to_library("s", c, root=root, encoder=enc, chunk_size=8)  # sharded: a shard
    build_library(whole, "whole", root=root, encoder=enc, hyperedge_k=3, chunk_size=8)
    return {"root": root, "before": before, "after_first": after_first, "shard1": shard1,
            "reports": (r1, r2)}


def test_manifest_lists_the_shards(sharded):
    lib = open_library("s", root=sharded["root"], verify="full")
    m = lib.manifest
    assert len(lib) == 100
    assert [(s["name"], s["start"], s["count"]) for s in m["shards"]] == [
        ("shard-0000", 0, 40), ("shard-0001", 40, 30), ("shard-0002", 70, 30)]
    assert m["index"]["type"] == "sharded" and m["index"]["params"]["shards"] == 3
    assert "vectors.f32" not in m["files"] and "index.faiss" not in m["files"]
    for s in m["shards"]:
        assert s["index"]["type"] == "flat"
        for f in ("vectors.f32", "index.faiss"):
            entry = m["files"][f"{s['name']}/{f}"]
            path = lib.path / s["name"] / f
            assert entry["size"] == path.stat().st_size
            assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert m["files"]["morgan.u8"]["shape"] == [100, 256]
    assert sharded["reports"][1].n_total == 100


def test_flat_shards_equal_brute_force(sharded):
    root = sharded["root"]
    lib = open_library("s", root=root)
    whole = open_library("whole", root=root)
    vectors = np.asarray(lib.vectors)
    assert vectors.shape == (100, FakeEncoder.dim)
    np.testing.assert_array_equal(vectors, np.asarray(whole.vectors))  # same rows, in order
    rng = np.random.default_rng(0)
    q = vectors[rng.choice(100, 12, replace=False)] + 0.05 * rng.standard_normal((12, 16))
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    for k in (1, 10, 45, 100):
        scores, rows = lib.search_vectors(q, k)
        e_scores, e_rows = ann.exact_search(vectors, q, k)
        np.testing.assert_array_equal(rows, e_rows)
        np.testing.assert_allclose(scores, e_scores, atol=1e-6)
    # every row, wherever its shard, finds itself first: global row = shard start + local
    scores, rows = lib.search_vectors(vectors, 1)
    np.testing.assert_array_equal(rows[:, 0], np.arange(100))
    # row views across shard boundaries
    pick = np.array([99, 0, 41, 39, 70, 40])
    np.testing.assert_array_equal(lib.vectors[pick], vectors[pick])
    np.testing.assert_array_equal(lib.vectors[35:75], vectors[35:75])
    np.testing.assert_array_equal(lib.vectors[71], vectors[71])


def test_other_modes_cover_every_shard(sharded):
    root = sharded["root"]
    lib, whole = open_library("s", root=root), open_library("whole", root=root)
    for row in (3, 55, 90):
        smi = lib.metadata["smiles"][row]
        hits = lib.search(smi, k=5, mode="tanimoto")
        assert hits["row"].iloc[0] == row or hits["score"].iloc[0] == 1.0
        assert hits["row"].tolist() == whole.search(smi, k=5, mode="tanimoto")["row"].tolist()
        sub = lib.search(smi, k=None, mode="substructure")
        assert row in sub["row"].tolist()
        assert lib.search(smi, k=None, mode="exact")["row"].tolist() == \
            whole.search(smi, k=None, mode="exact")["row"].tolist()
    n = lib.neighbors(85, k=5)
    w = whole.neighbors(85, k=5)
    assert n["row"].tolist() == w["row"].tolist()
    lib.set_encoder(FakeEncoder())
    whole.set_encoder(FakeEncoder())
    smi = lib.metadata["smiles"][77]
    for mode in ("embedding", "hybrid"):
        a, b = lib.search(smi, k=8, mode=mode), whole.search(smi, k=8, mode=mode)
        assert a["row"].tolist() == b["row"].tolist()
        np.testing.assert_allclose(a["score"], b["score"], atol=1e-6)
    np.testing.assert_array_equal(lib.vectors[[3, 80], 2:5], np.asarray(whole.vectors)[[3, 80], 2:5])


def test_hyperedges_of_new_rows_are_over_every_shard(sharded):
    root = sharded["root"]
    lib, whole = open_library("s", root=root), open_library("whole", root=root)
    first = open_library("s", root=root).hyperedges
    assert first.shape == (100, 4)
    # rows of the last shard: their 3 nearest among all 100 (exact shards), as "whole"
    np.testing.assert_array_equal(lib.hyperedges[70:], whole.hyperedges[70:])
    np.testing.assert_allclose(lib.hyperedge_scores[70:], whole.hyperedge_scores[70:],
                               atol=1e-6)
    # rows of shard-0001: their 3 nearest among the 70 rows there were when it was added
    vectors = np.asarray(lib.vectors)
    _, nn = ann.exact_search(vectors[:70], vectors[40:70], 4)
    for r, row in enumerate(range(40, 70)):
        want = [x for x in nn[r] if x != row][:3]
        assert lib.hyperedges[row].tolist() == [row, *want]
    assert not np.array_equal(lib.hyperedges[40:70], whole.hyperedges[40:70])
    # rows of shard-0000 keep the hyperedges of the 40-molecule build (neighbours < 40)
    assert (lib.hyperedges[:40] < 40).all()
    assert "earlier shards keep" in lib.manifest["hyperedges"]["method"]


def test_a_shard_add_leaves_earlier_shards_untouched(sharded):
    root = sharded["root"] / "s"
    # the unsharded version's files became shard-0000 by hard link: same inodes, same mtimes
    for f, st in sharded["before"].items():
        now = os.stat(root / "shard-0000" / f)
        assert (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns)
    # and the second shard add changed none of shard-0000's or shard-0001's files
    assert _state(root / "shard-0000") == sharded["after_first"]
    assert _state(root / "shard-0001") == sharded["shard1"]


def test_a_failed_shard_add_keeps_the_library(sharded, parts, tmp_path):
    import shutil

    root = tmp_path / "ix"
    root.mkdir()
    shutil.copytree(sharded["root"] / "s", root / "s")
    manifest = (root / "s" / "manifest.json").read_text()

    def boom(point):
        if point == "index-written":
            raise OSError(28, "No space left on device")

    B.fault_hook = boom
    try:
        with pytest.raises(LibraryError, match="no space left"):
            add_to_library("s", parts[0], root=root, encoder=FakeEncoder(), shard=True)
    finally:
        B.fault_hook = None
    assert (root / "s" / "manifest.json").read_text() == manifest
    assert not (root / "s" / "shard-0003").exists()
    assert len(open_library("s", root=root, verify="full")) == 100
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("fname", ["shard-0001/vectors.f32", "shard-0002/index.faiss"])
def test_a_damaged_shard_file_is_a_clear_error(sharded, tmp_path, fname):
    import shutil

    root = tmp_path / "ix"
    root.mkdir()
    shutil.copytree(sharded["root"] / "s", root / "s")
    path = root / "s" / fname
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(LibraryError, match=f"damaged: {fname} does not match the checksum"):
        open_library("s", root=root, verify="full")
    lib = open_library("s", root=root, verify="size")  # hashed on first use instead
    with pytest.raises(LibraryError, match=fname):
        lib.search_vectors(np.ones((1, 16), np.float32), 5)
    path.write_bytes(bytes(data[:-4]))
    with pytest.raises(LibraryError, match=f"{fname} is truncated"):
        open_library("s", root=root, verify="size")


def test_malformed_shard_entries_are_refused(sharded, tmp_path):
    import shutil

    root = tmp_path / "ix"
    root.mkdir()
    shutil.copytree(sharded["root"] / "s", root / "s")
    mpath = root / "s" / "manifest.json"
    good = json.loads(mpath.read_text())
    cases = [
        (lambda m: m["shards"][1].update(start=41), "shard shard-0001 starts at row 41"),
        (lambda m: m["shards"][2].update(name="../x"), r"shards\[2\].name"),
        (lambda m: m["shards"][2].update(count=29), "shards hold 99 molecules"),
        (lambda m: m["files"].pop("shard-0002/index.faiss"), "shard-0002/index.faiss"),
    ]
    for change, message in cases:
        m = json.loads(json.dumps(good))
        change(m)
        mpath.write_text(json.dumps(m))
        with pytest.raises(LibraryError, match=message):
            open_library("s", root=root)
    mpath.write_text(json.dumps(good))
    shutil.rmtree(root / "s" / "shard-0001")
    (root / "s" / "shard-0001").symlink_to(sharded["root"] / "s" / "shard-0001")
    with pytest.raises(LibraryError, match="shard-0001 is not a folder"):
        open_library("s", root=root)


def test_approximate_shards_reach_the_recall_target():
    """Three shards of different approximate types, merged: recall@10 against exact search
    over all their vectors on outside queries >= the target; scores exact where re-ranked."""
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((64, D))
    bases = 0.35 * rng.standard_normal((64, 24, D))
    data = _mixture(18_000, 1, centers, bases)
    queries = _mixture(200, 2, centers, bases)
    bounds = [(0, 8000, "ivfpq"), (8000, 14_000, "ivf"), (14_000, 18_000, "hnsw")]
    parts = []
    for a, b, kind in bounds:
        index, info = ann.build_index(data[a:b], kind, seed=0, sample=300)
        assert info["type"] == kind
        parts.append((index, info, data[a:b], a))
    scores, rows = ann.search_shards(parts, queries, 10)
    _, exact = ann.exact_search(data, queries, 10)
    assert ann.recall_at_k(rows, exact, 10) >= ann.MIN_RECALL
    assert {int(r) // 1 for r in rows.ravel()} & set(range(14_000, 18_000))  # all shards hit
    np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", queries, data[rows]),
                               atol=1e-5)
    assert (np.diff(scores, axis=1) <= 0).all()


def test_cli_add_shard(tmp_path, parts, tiny_checkpoint):
    from mmsa.cli import main

    a, b = parts[0], parts[1]
    common = ["--indexes", str(tmp_path), "--checkpoint", str(tiny_checkpoint),
              "--no-progress", "--no-map"]
    assert main(["index", "build", str(a), "--name", "c", "--index", "hnsw",
                 "--hyperedge-k", "3", *common]) == 0
    assert main(["index", "add", "c", str(b), "--shard", *common]) == 0
    lib = open_library("c", root=tmp_path, verify="full")
    assert [s["count"] for s in lib.manifest["shards"]] == [40, 30]
    assert [s["index"]["type"] for s in lib.manifest["shards"]] == ["hnsw", "hnsw"]
    vectors = np.asarray(lib.vectors)
    _, exact = ann.exact_search(vectors, vectors[::7], 10)
    _, rows = lib.search_vectors(vectors[::7], 10)
    assert ann.recall_at_k(rows, exact, 10) >= ann.MIN_RECALL
