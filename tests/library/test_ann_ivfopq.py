"""IVF-OPQ (an OPQ rotation in front of IVF-PQ, exact re-ranking): recall@10 against exact
search on outside queries, exact scores, the rotation's RAM, a disk round trip, a library
built with ``index="ivfopq"`` through the CLI's choices."""

from __future__ import annotations

import numpy as np
import pytest

from mmsa.library import ann, build_library, open_library

from .test_ann_ivfpq import D, N, _mixture


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((64, D))
    bases = 0.35 * rng.standard_normal((64, 24, D))
    return _mixture(N, 1, centers, bases), _mixture(200, 2, centers, bases)


@pytest.fixture(scope="module")
def built(data):
    return ann.build_index(data[0], "ivfopq", seed=0)


def test_ivfopq_is_an_opq_rotation_before_ivfpq(built):
    import faiss

    index, info = built
    assert info["type"] == "ivfopq"
    assert isinstance(index, faiss.IndexPreTransform)
    opq = faiss.downcast_VectorTransform(index.chain.at(0))
    assert isinstance(opq, faiss.OPQMatrix) and opq.is_trained
    rot = faiss.vector_to_array(opq.A).reshape(D, D)
    np.testing.assert_allclose(rot @ rot.T, np.eye(D), atol=1e-3)  # a rotation
    assert not np.allclose(rot, np.eye(D), atol=0.1)  # a learned one, not the identity
    assert isinstance(ann.ivf_of(index), faiss.IndexIVFPQ)
    assert info["params"]["m"] == D // 8 and info["params"]["nbits"] == 8


def test_ivfopq_recall_and_exact_scores(data, built):
    library, queries = data
    index, info = built
    assert info["recall_at_10"] >= ann.MIN_RECALL
    _, exact = ann.exact_search(library, queries, 10)
    scores, rows = ann.search(index, info, library, queries, 10)
    assert ann.recall_at_k(rows, exact, 10) >= ann.MIN_RECALL
    want = np.einsum("qd,qkd->qk", queries, library[rows])
    np.testing.assert_allclose(scores, want, atol=1e-6)
    assert (np.diff(scores, axis=1) <= 0).all()
    # the re-ranking is what reaches the target: the OPQ-PQ scores alone rank worse
    _, raw = index.search(queries, 10)
    assert ann.recall_at_k(raw, exact, 10) < ann.recall_at_k(rows, exact, 10)


def test_ivfopq_ram_counts_the_rotation(built):
    index, info = built
    n = index.ntotal
    pq_info = dict(info, type="ivfpq")
    assert ann.ram_bytes(index, info) - ann.ram_bytes(index, pq_info) == 4 * D * D
    assert info["ram_bytes_per_molecule"] == round(ann.ram_bytes(index, info) / n, 2)
    assert 40 <= info["ram_bytes_per_molecule"] < 0.1 * 4 * D


def test_ivfopq_round_trip_keeps_search_params(tmp_path, data, built):
    library, queries = data
    index, info = built
    ann.write_index(index, tmp_path / "i.faiss")
    back = ann.read_index(tmp_path / "i.faiss", info)
    assert ann.ivf_of(back).nprobe == info["params"]["nprobe"]
    a = ann.search(index, info, library, queries[:20], 10)
    b = ann.search(back, info, library, queries[:20], 10)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])


def test_library_with_ivfopq_index(tmp_path, tiny_csv, tiny_checkpoint, encoder):
    from mmsa.cli import main

    assert main(["index", "build", str(tiny_csv), "--name", "opq", "--index", "ivfopq",
                 "--hyperedge-k", "4", "--indexes", str(tmp_path),
                 "--checkpoint", str(tiny_checkpoint), "--no-progress"]) == 0
    lib = open_library("opq", root=tmp_path, encoder=encoder)
    info = lib.manifest["index"]
    assert info["requested"] == "ivfopq"
    # 70 molecules cannot train a rotation of 8-bit sub-quantizers: IVF-PQ, said so
    assert info["type"] == "ivfpq" and info["fallback_from"] == "ivfopq"
    assert str(ann.OPQ_MIN_VECTORS) in info["fallback_reason"]
    vectors = np.asarray(lib.vectors)
    q = vectors[:5] + 0.01
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    scores, rows = lib.search_vectors(q, 5)
    e_scores, e_rows = ann.exact_search(vectors, q, 5)
    np.testing.assert_array_equal(rows, e_rows)
    np.testing.assert_allclose(scores, e_scores, atol=1e-6)


def test_ivfopq_library_api(tmp_path, tiny_csv, tiny_checkpoint):
    report = build_library(tiny_csv, "opq2", root=tmp_path, encoder=tiny_checkpoint,
                           index="ivfopq", hyperedge_k=4)
    assert report.index["requested"] == "ivfopq"
    assert report.index["fallback_from"] == "ivfopq"


def test_ivfopq_at_the_minimum_size_trains_a_rotation(data):
    import faiss

    index, info = ann.build_index(data[0][:ann.OPQ_MIN_VECTORS], "ivfopq", sample=200)
    assert info["type"] == "ivfopq" and "fallback_from" not in info
    assert isinstance(index, faiss.IndexPreTransform)
