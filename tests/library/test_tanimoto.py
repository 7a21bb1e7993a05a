"""Popcount-pruned Tanimoto search (mmsa.library.tanimoto) against RDKit brute force.

~2,000 real molecules (RDKit's NCI sample) plus empty fingerprints and duplicated rows (ties);
outside queries, a library member, and an empty query. Results must be *identical* to
``BulkTanimotoSimilarity``: the same float64 scores, the same rows, ties by row.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from rdkit import Chem, DataStructs, RDConfig
from rdkit.Chem import rdFingerprintGenerator

from mmsa.chem.fingerprints import morgan_fingerprint
from mmsa.library import open_library
from mmsa.library import tanimoto as T

N_LIBRARY = 2000
N_QUERIES = 25
EMPTY_AT = (0, 17, 999, 1500)  # rows given an empty fingerprint (popcount 0)
DUPLICATE_OF = {1200: 3, 1201: 3, 1800: 1201}  # row -> row whose fingerprint it copies


def _nci_mols(n: int, skip: int = 0) -> list[Chem.Mol]:
    out = []
    with open(os.path.join(RDConfig.RDDataDir, "NCI", "first_5K.smi")) as fh:
        for i, line in enumerate(fh):
            if i < skip:
                continue
            mol = Chem.MolFromSmiles(line.split()[0])
            if mol is not None:
                out.append(mol)
            if len(out) == n:
                break
    return out


@pytest.fixture(scope="module")
def data():
    """(packed uint8 [n, 256], RDKit bit vectors [n], query (packed, bitvect) pairs)."""
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    mols = _nci_mols(N_LIBRARY)
    bvs = [gen.GetFingerprint(m) for m in mols]
    packed = np.stack([morgan_fingerprint(m) for m in mols])
    for r in EMPTY_AT:
        bvs[r] = DataStructs.ExplicitBitVect(2048)
        packed[r] = 0
    for r, src in DUPLICATE_OF.items():
        bvs[r] = DataStructs.ExplicitBitVect(bvs[src].ToBinary())
        packed[r] = packed[src]
    queries = [(morgan_fingerprint(m), gen.GetFingerprint(m))
               for m in _nci_mols(N_QUERIES, skip=4000)]
    queries.append((packed[3].copy(), bvs[3]))  # a library member with two duplicates
    queries.append((np.zeros(256, np.uint8), DataStructs.ExplicitBitVect(2048)))  # empty
    return packed, bvs, queries


@pytest.fixture(scope="module")
def index(data):
    return T.TanimotoIndex.from_packed(data[0])


def _expected(qbv, bvs):
    scores = np.array(DataStructs.BulkTanimotoSimilarity(qbv, bvs))
    return np.lexsort((np.arange(len(scores)), -scores)), scores


def test_index_is_a_stable_popcount_sort(data, index):
    packed = data[0]
    counts = np.bitwise_count(packed).sum(axis=1)
    np.testing.assert_array_equal(index.order, np.argsort(counts, kind="stable"))
    np.testing.assert_array_equal(index.fps.view(np.uint8), packed[index.order])
    for c in (0, int(np.median(counts))):
        rows = index.order[index.starts[c]:index.starts[c + 1]]
        np.testing.assert_array_equal(rows, np.flatnonzero(counts == c))


@pytest.mark.parametrize("k", [1, 10, 100, N_LIBRARY, N_LIBRARY + 50])
def test_top_k_identical_to_rdkit(data, index, k):
    _, bvs, queries = data
    for qfp, qbv in queries:
        order, scores = _expected(qbv, bvs)
        rows, got = index.top_k(qfp, k)
        assert len(rows) == min(k, N_LIBRARY)
        np.testing.assert_array_equal(rows, order[:k])
        np.testing.assert_array_equal(got, scores[order[:k]])  # exact, not close
        assert got.dtype == np.float64


@pytest.mark.parametrize("threshold", [0.0, 0.25, 0.5, 0.7, 1.0])
def test_threshold_identical_to_rdkit(data, index, threshold):
    _, bvs, queries = data
    for qfp, qbv in queries:
        order, scores = _expected(qbv, bvs)
        want = order[scores[order] >= threshold]
        rows, got = index.threshold(qfp, threshold)
        np.testing.assert_array_equal(rows, want)
        np.testing.assert_array_equal(got, scores[want])
        # top-k under a threshold: the first k of the same list
        rows_k, got_k = index.top_k(qfp, 7, threshold=threshold)
        np.testing.assert_array_equal(rows_k, want[:7])
        np.testing.assert_array_equal(got_k, scores[want[:7]])


def test_edge_cases(data, index):
    packed, bvs, queries = data
    member, empty = queries[-2][0], queries[-1][0]
    # threshold 0 returns every row (empty fingerprints score 0.0, as in RDKit)
    assert len(index.threshold(empty, 0.0)[0]) == N_LIBRARY
    assert not index.threshold(empty, 1e-9)[0].size
    # threshold 1: exactly the identical fingerprints, ties by row
    rows, scores = index.threshold(member, 1.0)
    assert rows.tolist() == [3, 1200, 1201, 1800] and scores.tolist() == [1.0] * 4
    # an empty query's top-k: all scores 0, rows 0.. in order
    rows, scores = index.top_k(empty, 5)
    assert rows.tolist() == [0, 1, 2, 3, 4] and not scores.any()
    # a threshold above 1 finds nothing and scans nothing
    assert not index.threshold(member, 1.01)[0].size and index.last_scanned == 0
    # an empty library
    none = T.TanimotoIndex.from_packed(np.zeros((0, 256), np.uint8))
    assert none.top_k(member, 10)[0].size == 0 and none.threshold(member, 0.0)[0].size == 0
    with pytest.raises(ValueError):
        index.top_k(member[:128], 10)


def test_pruning_scans_fewer_rows(data, index):
    """The bound prunes: threshold 0.7 scans only popcounts in [0.7 a, a / 0.7]; a top-k whose
    k-th score is 1.0 scans only the query's own popcount block."""
    packed, _, queries = data
    counts = np.bitwise_count(packed).sum(axis=1)
    scanned = []
    for qfp, _ in queries[:N_QUERIES]:
        a = int(np.bitwise_count(qfp).sum())
        index.threshold(qfp, 0.7)
        window = (10 * counts >= 7 * a) & (7 * counts <= 10 * a)  # exact: 0.7 <= b/a <= 1/0.7
        assert index.last_scanned == int(window.sum()) < N_LIBRARY
        scanned.append(index.last_scanned)
    assert np.median(scanned) < 0.75 * N_LIBRARY
    member = queries[-2][0]
    rows, _ = index.top_k(member, 4)  # four identical fingerprints: the k-th score is 1.0
    assert rows.tolist() == [3, 1200, 1201, 1800]
    assert index.last_scanned == int((counts == counts[3]).sum())


def test_numpy_fallback_identical(data, index, monkeypatch):
    _, bvs, queries = data
    monkeypatch.setattr(T, "_kernels", lambda: None)
    slow = T.TanimotoIndex.from_packed(data[0])
    np.testing.assert_array_equal(slow.order, index.order)
    for qfp, qbv in queries[::5]:
        order, scores = _expected(qbv, bvs)
        rows, got = slow.top_k(qfp, 10)
        np.testing.assert_array_equal(rows, order[:10])
        np.testing.assert_array_equal(got, scores[order[:10]])
        rows, got = slow.threshold(qfp, 0.3)
        want = order[scores[order] >= 0.3]
        np.testing.assert_array_equal(rows, want)


def test_library_tanimoto_mode_uses_the_index(lib_copy, encoder):
    """Library.search(mode="tanimoto") over a built library: exact RDKit scores and order,
    k beyond the library, threshold + k."""
    root, name = lib_copy  # a copy: the search writes the library's cache/
    lib = open_library(name, root=root, encoder=encoder)
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    bvs = [gen.GetFingerprint(Chem.MolFromSmiles(s)) for s in lib.metadata["smiles"]]
    query = "CC(=O)Nc1ccc(O)cc1"
    std = lib._standard_query(query)
    order, scores = _expected(gen.GetFingerprint(std), bvs)
    hits = lib.search(query, k=len(lib) + 5, mode="tanimoto")
    assert hits["row"].tolist() == order.tolist()
    np.testing.assert_array_equal(hits["score"].to_numpy(), scores[order])
    np.testing.assert_array_equal(hits["tanimoto"].to_numpy(), scores[order])
    hits = lib.search(query, k=3, mode="tanimoto", threshold=0.3)
    want = order[scores[order] >= 0.3][:3]
    assert hits["row"].tolist() == want.tolist()
    assert isinstance(lib._tanimoto_index, T.TanimotoIndex)  # built once, kept


def test_cache_round_trip_and_damage(tmp_path, data, index):
    packed, bvs, queries = data
    index.save(tmp_path, "sha-of-morgan")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [T.CACHE_FPS, T.CACHE_ARRAYS, T.CACHE_META])  # no temporary files left
    back = T.TanimotoIndex.load(tmp_path, "sha-of-morgan", N_LIBRARY, 256)
    assert back is not None
    for qfp, qbv in queries[::4]:
        order, scores = _expected(qbv, bvs)
        rows, got = back.top_k(qfp, 10)
        np.testing.assert_array_equal(rows, order[:10])
        np.testing.assert_array_equal(got, scores[order[:10]])
    # built from other fingerprints, or another size: not used
    assert T.TanimotoIndex.load(tmp_path, "another-sha", N_LIBRARY, 256) is None
    assert T.TanimotoIndex.load(tmp_path, "sha-of-morgan", N_LIBRARY + 1, 256) is None
    # one flipped bit in the sorted fingerprints: refused (checksum), never a wrong answer
    raw = bytearray((tmp_path / T.CACHE_FPS).read_bytes())
    raw[12345] ^= 1
    (tmp_path / T.CACHE_FPS).write_bytes(bytes(raw))
    assert T.TanimotoIndex.load(tmp_path, "sha-of-morgan", N_LIBRARY, 256) is None
    (tmp_path / T.CACHE_META).write_text("{not json")
    assert T.TanimotoIndex.load(tmp_path, "sha-of-morgan", N_LIBRARY, 256) is None


def test_library_reuses_its_cached_index(lib_copy, encoder, monkeypatch):
    """The first Tanimoto search of a library writes the cache; a later open loads it (no
    rebuild) and answers the same."""
    root, name = lib_copy
    first = open_library(name, root=root, encoder=encoder)
    want = first.search("c1ccccc1O", k=None, mode="tanimoto")
    assert (first.cache_dir / T.CACHE_META).exists()

    def no_rebuild(*a, **k):
        raise AssertionError("rebuilt although a valid cache exists")

    monkeypatch.setattr(T.TanimotoIndex, "from_packed", classmethod(no_rebuild))
    again = open_library(name, root=root, encoder=encoder)
    got = again.search("c1ccccc1O", k=None, mode="tanimoto")
    assert got["row"].tolist() == want["row"].tolist()
    np.testing.assert_array_equal(got["score"].to_numpy(), want["score"].to_numpy())
