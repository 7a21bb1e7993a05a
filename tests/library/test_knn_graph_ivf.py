"""The hyperedge kNN graph of IVF indexes computed list by list (ann.knn_graph_ivf) against
brute force: recall, exact scores, layout (issue 13: hyperedges cost less)."""

from __future__ import annotations

import numpy as np
import pytest

from mmsa.library import ann


def _clustered(n: int, d: int = 32, centres: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, d)).astype(np.float32)
    v = c[rng.integers(0, centres, n)] + 0.35 * rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _exact_graph(v: np.ndarray, k: int) -> np.ndarray:
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def _check_layout(v, rows, scores, k):
    n = len(v)
    assert rows.shape == scores.shape == (n, k + 1)
    assert rows.dtype == np.int32 and scores.dtype == np.float32
    assert np.array_equal(rows[:, 0], np.arange(n))
    nb = rows[:, 1:]
    assert (nb >= 0).all() and (nb != np.arange(n)[:, None]).all()
    assert all(len(set(r)) == k for r in nb.tolist())  # no duplicate neighbour
    exact = np.einsum("ij,ij->i", v[np.repeat(np.arange(n), k)], v[nb.ravel()]).reshape(n, k)
    np.testing.assert_allclose(scores[:, 1:], exact, atol=1e-5)  # exact inner products
    assert (np.diff(scores[:, 1:], axis=1) <= 1e-6).all()  # best first


@pytest.mark.parametrize("kind", ["ivf", "ivfpq", "ivfopq"])
def test_list_blocked_graph_matches_brute_force(kind):
    v = _clustered(12000 if kind == "ivfopq" else 6000)
    k = 8
    index, info = ann.build_index(v, kind, seed=0)
    stats: dict = {}
    rows, scores = ann.knn_graph(index, v, k, info=info, stats=stats)
    assert stats["method"] == "list-blocked"
    _check_layout(v, rows, scores, k)
    recall = ann.recall_at_k(rows[:, 1:].astype(np.int64), _exact_graph(v, k), k)
    assert recall >= ann.MIN_RECALL


def test_same_neighbours_as_the_ivf_search_in_small_blocks():
    """The candidates are the IVF search's own: the same neighbours as index.search at the
    index's nprobe, whatever the query block size."""
    v = _clustered(5000)
    index, info = ann.build_index(v, "ivf", seed=0)
    k = 6
    rows, scores, how = ann.knn_graph_ivf(index, v, k, info=info, block=777)
    assert how["nprobe"] == info["params"]["nprobe"]
    d, i = index.search(v, k + 1)
    for r in range(len(v)):
        want = [x for x in i[r] if x != r][:k]
        assert set(rows[r, 1:].tolist()) == set(want) or np.allclose(
            np.sort(scores[r, 1:]), np.sort(v[want] @ v[r]), atol=1e-6)  # exact ties only


def test_probing_every_list_is_exact():
    v = _clustered(3000, centres=10)
    index, info = ann.build_index(v, "ivf", seed=0)
    nlist = ann.ivf_of(index).nlist
    info = {**info, "params": {**info["params"], "nprobe": nlist}}
    rows, scores, how = ann.knn_graph_ivf(index, v, 5, info=info)
    assert how["nprobe"] == nlist
    exact = _exact_graph(v, 5)
    sims = v @ v.T
    got = np.take_along_axis(sims, rows[:, 1:].astype(np.int64), axis=1)
    want = np.take_along_axis(sims, exact, axis=1)
    np.testing.assert_allclose(got, want, atol=1e-6)  # same neighbours up to exact ties


def test_same_graph_through_a_memmap(tmp_path):
    v = _clustered(4000)
    path = tmp_path / "v.f32"
    v.tofile(path)
    mm = np.memmap(path, dtype=np.float32, mode="r", shape=v.shape)
    index, info = ann.build_index(v, "ivfpq", seed=0)
    a = ann.knn_graph(index, v, 6, info=info)
    b = ann.knn_graph(index, mm, 6, info=info)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1], equal_nan=True)
