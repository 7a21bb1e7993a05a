"""ann.release_pages: a read-only memmap's pages leave the process RSS, its data stay."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mmsa.library import ann


def _mapped_rss_kb(path) -> int:
    """Resident kB of the mappings of ``path`` in this process (/proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as fh:
        for line in fh:
            head = line.split()
            if "-" in head[0] and len(head) >= 5:  # a mapping header line
                inside = line.rstrip().endswith(str(path))
            elif inside and head[0] == "Rss:":
                total += int(head[1])
    return total


def test_release_pages_keeps_the_data(tmp_path):
    data = np.random.default_rng(0).standard_normal((4096, 64)).astype(np.float32)
    path = tmp_path / "v.f32"
    data.tofile(path)
    mm = np.memmap(path, dtype=np.float32, mode="r", shape=data.shape)
    assert float(mm.sum()) == pytest.approx(float(data.sum()), rel=1e-5)
    ann.release_pages(mm)
    assert np.array_equal(np.asarray(mm), data)
    ann.release_pages(data)  # plain arrays: left alone
    writable = np.memmap(path, dtype=np.float32, mode="r+", shape=data.shape)
    writable[0, 0] = 7.0
    ann.release_pages(writable)  # writable maps: left alone (no data may be lost)
    assert writable[0, 0] == 7.0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
def test_release_pages_lowers_rss(tmp_path):
    path = tmp_path / "big.f32"
    np.ones((8192, 256), np.float32).tofile(path)  # 8 MB
    mm = np.memmap(path, dtype=np.float32, mode="r", shape=(8192, 256))
    float(mm.sum())
    before = _mapped_rss_kb(path)
    ann.release_pages(mm)
    after = _mapped_rss_kb(path)
    assert before >= 4096 and after < before / 4
    assert float(mm[-1].sum()) == 256.0


def test_knn_graph_and_index_same_through_a_memmap(tmp_path):
    v = np.random.default_rng(1).standard_normal((3000, 16)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    path = tmp_path / "v.f32"
    v.tofile(path)
    mm = np.memmap(path, dtype=np.float32, mode="r", shape=v.shape)
    idx, info = ann.build_index(v, "ivf", seed=0)
    idx_m, info_m = ann.build_index(mm, "ivf", seed=0)
    assert info["params"] == info_m["params"]
    a = ann.knn_graph(idx, v, 5, info=info, block=1000)
    b = ann.knn_graph(idx_m, mm, 5, info=info_m, block=1000)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1], equal_nan=True)
