"""IVF-PQ with exact re-ranking (mmsa.library.ann): recall@10 against exact search on outside
queries, exact scores, RAM per molecule, the auto threshold, a disk round trip, a library."""

from __future__ import annotations

import numpy as np
import pytest

from mmsa.library import ann, build_library, open_library

D = 256
N = 20_000


def _mixture(n: int, seed: int, centers: np.ndarray, bases: np.ndarray) -> np.ndarray:
    """Points of a mixture of anisotropic Gaussians (a 24-dim subspace per component, as
    embeddings concentrate on a few directions per chemical family), L2-normalised."""
    rng = np.random.default_rng(seed)
    comp = rng.integers(0, len(centers), n)
    x = centers[comp] + np.einsum("nr,nrd->nd", rng.standard_normal((n, bases.shape[1])),
                                  bases[comp]) + 0.05 * rng.standard_normal((n, D))
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((64, D))
    bases = 0.35 * rng.standard_normal((64, 24, D))
    library = _mixture(N, 1, centers, bases)
    queries = _mixture(200, 2, centers, bases)  # outside queries: not library rows
    return library, queries


@pytest.fixture(scope="module")
def built(data):
    return ann.build_index(data[0], "ivfpq", seed=0)


def test_ivfpq_recall_and_exact_scores(data, built):
    library, queries = data
    index, info = built
    assert info["type"] == "ivfpq"
    assert info["params"]["m"] == D // 8 and info["params"]["nbits"] == 8
    assert info["recall_at_10"] >= ann.MIN_RECALL
    _, exact = ann.exact_search(library, queries, 10)
    scores, rows = ann.search(index, info, library, queries, 10)
    assert ann.recall_at_k(rows, exact, 10) >= ann.MIN_RECALL
    # re-ranked scores are the exact cosines of the rows returned, best first
    want = np.einsum("qd,qkd->qk", queries, library[rows])
    np.testing.assert_allclose(scores, want, atol=1e-6)
    assert (np.diff(scores, axis=1) <= 0).all()


def test_reranking_is_what_reaches_recall(data, built):
    """The PQ scores alone rank worse than the re-ranked candidates."""
    library, queries = data
    index, info = built
    _, exact = ann.exact_search(library, queries, 10)
    _, raw = index.search(queries, 10)
    _, reranked = ann.search(index, info, library, queries, 10)
    assert ann.recall_at_k(raw, exact, 10) < ann.recall_at_k(reranked, exact, 10)


def test_ram_per_molecule(data, built):
    index, info = built
    # 32 bytes of code + an 8-byte id a vector, centroids and codebooks amortised
    assert 40 <= info["ram_bytes_per_molecule"] < 0.1 * 4 * D
    _, flat = ann.build_index(data[0][:1000], "flat")
    assert flat["ram_bytes_per_molecule"] == 4 * D


def test_auto_picks_ivfpq_above_its_threshold(data):
    small = data[0][:4000]
    _, info = ann.build_index(small, "auto", approx_threshold=100, ivf_threshold=200,
                              ivfpq_threshold=1000, sample=200)
    assert info["type"] == "ivfpq"
    _, info = ann.build_index(small, "auto", approx_threshold=100, ivf_threshold=200,
                              ivfpq_threshold=10_000, sample=200)
    assert info["type"] == "ivf"


def test_round_trip_keeps_search_params(tmp_path, data, built):
    library, queries = data
    index, info = built
    ann.write_index(index, tmp_path / "i.faiss")
    back = ann.read_index(tmp_path / "i.faiss", info)
    assert back.nprobe == info["params"]["nprobe"]
    a = ann.search(index, info, library, queries[:20], 10)
    b = ann.search(back, info, library, queries[:20], 10)
    np.testing.assert_array_equal(a[1], b[1])


def test_library_with_ivfpq_index(tmp_path, tiny_csv, tiny_checkpoint, encoder):
    build_library(tiny_csv, "pq", root=tmp_path, encoder=tiny_checkpoint, index="ivfpq",
                  hyperedge_k=4)
    lib = open_library("pq", root=tmp_path, encoder=encoder)
    assert lib.manifest["index"]["type"] == "ivfpq"
    assert lib.manifest["index"]["ram_bytes_per_molecule"] > 0
    vectors = np.asarray(lib.vectors)
    q = vectors[:5] + 0.01
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    scores, rows = lib.search_vectors(q, 5)
    e_scores, e_rows = ann.exact_search(vectors, q, 5)
    np.testing.assert_array_equal(rows, e_rows)  # tiny: every row is a re-rank candidate
    np.testing.assert_allclose(scores, e_scores, atol=1e-6)
    hits = lib.neighbors(0, k=3)
    assert 0 not in hits["row"].tolist() and len(hits) == 3
