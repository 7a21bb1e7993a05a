from types import SimpleNamespace

import numpy as np
import pytest

from mmsa.library import maps
from mmsa.library.maps import (
    MapParams,
    cluster_labels,
    compute_clusters,
    compute_map,
    ensure_map,
    load_clusters,
    load_map,
    place_points,
    vectors_fingerprint,
)


def _clustered(n=400, dim=16, k=4, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)) * 3
    labels = np.arange(n) % k
    x = centres[labels] + rng.normal(size=(n, dim)) * 0.3
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), labels


def _lib(tmp_path, vectors):
    return SimpleNamespace(name="t", vectors=vectors, cache_dir=tmp_path / "cache", path=tmp_path)


def test_place_points_lands_on_identical_vectors():
    x, _ = _clustered(50)
    coords = np.random.default_rng(1).normal(size=(50, 2)).astype(np.float32)
    placed = place_points(x[[3, 7]], x, coords, k=5)
    # the identical vector dominates the sharpened average
    assert np.allclose(placed, coords[[3, 7]], atol=0.05)
    nan = place_points(np.full((1, x.shape[1]), np.nan), x, coords)
    assert np.isnan(nan).all()


def test_tiny_inputs_get_a_layout():
    x, _ = _clustered(3)
    c = compute_map(x)
    assert c.shape == (3, 2) and np.isfinite(c).all()
    assert compute_map(np.zeros((0, 4), np.float32)).shape == (0, 2)


@pytest.mark.slow
def test_umap_map_is_seeded_cached_and_keeps_clusters(tmp_path, monkeypatch):
    x, labels = _clustered(400)
    params = MapParams(sample_size=200, n_neighbors=10)  # fit on 200, place the other 200
    calls = []
    c1 = compute_map(x, params, progress=lambda d, t: calls.append((d, t)))
    assert c1.shape == (400, 2) and c1.dtype == np.float32 and np.isfinite(c1).all()
    assert calls[-1][0] == calls[-1][1]  # progress reaches its total
    c2 = compute_map(x, params)
    assert np.array_equal(c1, c2)  # seeded
    # clusters of the embedding stay clusters on the map: nearest 2D centroid = own cluster
    cent = np.stack([c1[labels == k].mean(axis=0) for k in range(4)])
    pred = np.argmin(((c1[:, None, :] - cent[None]) ** 2).sum(-1), axis=1)
    assert (pred == labels).mean() > 0.95

    lib = _lib(tmp_path, x)
    assert load_map(lib, params) is None
    m1 = ensure_map(lib, params)
    assert np.array_equal(m1, c1)
    assert (tmp_path / "cache" / "map.npy").is_file() and (tmp_path / "cache" / "map.json").is_file()

    def boom(*a, **k):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(maps, "compute_map", boom)
    assert np.array_equal(ensure_map(lib, params), c1)  # served from the cache
    # other parameters, or other vectors, never reuse a stale map
    assert load_map(lib, MapParams(sample_size=200, n_neighbors=10, seed=1)) is None
    changed = _lib(tmp_path, np.roll(x, 1, axis=0))
    assert load_map(changed, params) is None


def test_fingerprint_sees_changes():
    x, _ = _clustered(100)
    y = x.copy()
    y[0, 0] += 1
    assert vectors_fingerprint(x) == vectors_fingerprint(x.copy())
    assert vectors_fingerprint(x) != vectors_fingerprint(y)
    assert vectors_fingerprint(x) != vectors_fingerprint(x[:99])


def test_cluster_labels_seeded_and_cached(tmp_path):
    x, labels = _clustered(200)
    lib = _lib(tmp_path, x)
    a = cluster_labels(lib, n_clusters=4)
    assert a.shape == (200,) and set(a.tolist()) == {0, 1, 2, 3}
    # recovers the 4 planted clusters (up to relabelling)
    pairs = {(int(p), int(t)) for p, t in zip(a, labels)}
    assert len(pairs) == 4
    assert (tmp_path / "cache" / "clusters-4.npy").is_file()
    assert np.array_equal(cluster_labels(lib, n_clusters=4), a)


def test_cluster_cache_is_reused_only_for_the_same_vectors(tmp_path, monkeypatch):
    x, _ = _clustered(200)
    lib = _lib(tmp_path, x)
    assert load_clusters(lib, n_clusters=4) is None
    a = cluster_labels(lib, n_clusters=4)
    assert np.array_equal(load_clusters(lib, n_clusters=4), a)

    def boom(*args, **kwargs):
        raise AssertionError("clusters recomputed although cached")

    with monkeypatch.context() as m:
        m.setattr(maps, "compute_clusters", boom)
        assert np.array_equal(cluster_labels(lib, n_clusters=4), a)  # from the cache
    # other vectors (an appended or rebuilt library), another seed or k: never the stale ones
    grown = _lib(tmp_path, np.concatenate([x, x[:10]]))
    assert load_clusters(grown, n_clusters=4) is None
    assert load_clusters(_lib(tmp_path, np.roll(x, 1, axis=0)), n_clusters=4) is None
    assert load_clusters(lib, n_clusters=4, seed=1) is None
    assert load_clusters(lib, n_clusters=5) is None
    assert cluster_labels(grown, n_clusters=4).shape == (210,)  # recomputed, then cached
    assert load_clusters(grown, n_clusters=4) is not None
    assert load_clusters(lib, n_clusters=4) is None  # the cache now holds the grown ones
    (tmp_path / "cache" / "clusters-4.npy").write_bytes(b"not an array")
    assert load_clusters(grown, n_clusters=4) is None  # unreadable: recomputed, not a crash
    assert compute_clusters(np.zeros((0, 4), np.float32)).shape == (0,)
