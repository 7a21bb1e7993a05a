import multiprocessing

import numpy as np
import pytest

from mmsa.chem.conformer import Conformer, ConformerFeaturizer
from mmsa.chem.graph import GraphFeatures, GraphFeaturizer
from mmsa.chem.image import ImageFeaturizer
from mmsa.chem.parallel import cache_file, featurize_many

BAD = ["C1CC", "", "C(C)(C)(C)(C)C"]


def _same(a, b):
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b)
    return all(getattr(a, k).dtype == getattr(b, k).dtype
               and np.array_equal(getattr(a, k), getattr(b, k)) for k in vars(a))


@pytest.fixture(scope="module")
def mixed(smiles_100):
    # valid molecules with invalid ones at known positions
    out = list(smiles_100[:40])
    for pos, bad in zip((0, 17, 39), BAD):
        out.insert(pos, bad)
    return out


def test_serial_results_aligned_with_failures(mixed):
    results, failures = featurize_many(GraphFeaturizer(), mixed)
    assert len(results) == len(mixed)
    assert [f.row for f in failures] == [0, 17, 39]
    assert [f.input for f in failures] == BAD
    assert "syntax" in failures[0].reason and "empty" in failures[1].reason
    for i, r in enumerate(results):
        assert (r is None) == (i in (0, 17, 39))
        if r is not None:
            assert _same(r, GraphFeaturizer()(mixed[i]))


@pytest.mark.parametrize("featurizer", [GraphFeaturizer(), ImageFeaturizer(size=32)],
                         ids=["graph", "image"])
def test_parallel_equals_serial(featurizer, mixed):
    serial = featurize_many(featurizer, mixed, n_jobs=1)
    parallel = featurize_many(featurizer, mixed, n_jobs=2, chunksize=7)
    assert parallel[1] == serial[1]
    assert all(_same(a, b) for a, b in zip(parallel[0], serial[0]))


def test_spawned_workers(mixed, monkeypatch):
    # what happens when torch is loaded in the parent: workers are spawned, not forked
    monkeypatch.setattr("mmsa.chem.parallel._context",
                        lambda: multiprocessing.get_context("spawn"))
    serial = featurize_many(GraphFeaturizer(), mixed, n_jobs=1)
    spawned = featurize_many(GraphFeaturizer(), mixed, n_jobs=2, chunksize=11)
    assert spawned[1] == serial[1]
    assert all(_same(a, b) for a, b in zip(spawned[0], serial[0]))


def test_conformer_failures_are_failures():
    smiles = ["CCO", "N[Cr](N)(SC#N)(SC#N)(SC#N)SC#N"]
    results, failures = featurize_many(ConformerFeaturizer(max_attempts=2), smiles)
    assert isinstance(results[0], Conformer) and results[1] is None
    assert [f.row for f in failures] == [1] and "no conformer" in failures[0].reason


@pytest.mark.parametrize("featurizer", [GraphFeaturizer(), ImageFeaturizer(size=24),
                                        ConformerFeaturizer()], ids=["graph", "image", "conf"])
def test_cache_round_trip_and_hit(tmp_path, mixed, featurizer, monkeypatch):
    smiles = mixed[:12]
    first = featurize_many(featurizer, smiles, cache=tmp_path)
    path = cache_file(featurizer, smiles, tmp_path)
    assert path.is_file() and path.suffix == ".npz"
    # a hit must not featurise again
    monkeypatch.setattr("mmsa.chem.parallel._featurize_chunk",
                        lambda *a: pytest.fail("cache miss"))
    second = featurize_many(featurizer, smiles, cache=tmp_path)
    assert second[1] == first[1]
    assert all(_same(a, b) for a, b in zip(first[0], second[0]))
    kinds = {type(r) for r in second[0] if r is not None}
    assert kinds <= {GraphFeatures, Conformer, np.ndarray}
    with np.load(path, allow_pickle=False) as data:  # plain numpy, no pickles inside
        assert int(data["format"]) == 1


def test_cache_key_depends_on_config_and_smiles(tmp_path):
    a = cache_file(ImageFeaturizer(size=32), ["CCO"], tmp_path)
    assert a != cache_file(ImageFeaturizer(size=48), ["CCO"], tmp_path)
    assert a != cache_file(ImageFeaturizer(size=32), ["CCN"], tmp_path)
    assert a != cache_file(ImageFeaturizer(size=32), ["CCO", "CCO"], tmp_path)
    assert a == cache_file(ImageFeaturizer(size=32), ["CCO"], tmp_path)


def test_cache_env_default(tmp_path, monkeypatch):
    monkeypatch.setenv("MMSA_CACHE", str(tmp_path))
    featurize_many(GraphFeaturizer(), ["CCO"], cache=True)
    assert list((tmp_path / "features").glob("graph-*.npz"))


def test_corrupt_cache_is_ignored(tmp_path):
    path = cache_file(GraphFeaturizer(), ["CCO"], tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a zip")
    results, failures = featurize_many(GraphFeaturizer(), ["CCO"], cache=tmp_path)
    assert results[0].num_nodes == 3 and failures == []


def test_progress_bar(capsys):
    featurize_many(GraphFeaturizer(), ["CCO", "CCN"], progress=True)
    assert "featurising (graph)" in capsys.readouterr().err
