"""Search modes against brute force / RDKit, the approximate-index recall check, hyperedges."""

from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator

from mmsa.library import ann, build_library, open_library
from mmsa.library import search as S
from mmsa.types import InputError

QUERIES = ["CN1CCC[C@H]1c1cccnc1", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "OCC1=C(O)C=CC=C1"]


@pytest.fixture(scope="module")
def lib(built, encoder):
    root, _ = built
    return open_library("tiny", root=root, encoder=encoder)


def _bulk_tanimoto(query: str, smiles: list[str]) -> np.ndarray:
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    q = gen.GetFingerprint(Chem.MolFromSmiles(query))
    fps = [gen.GetFingerprint(Chem.MolFromSmiles(s)) for s in smiles]
    return np.array(DataStructs.BulkTanimotoSimilarity(q, fps))


@pytest.mark.parametrize("query", QUERIES)
def test_tanimoto_matches_rdkit(lib, query):
    smiles = lib.metadata["smiles"].tolist()
    std = Chem.MolToSmiles(lib._standard_query(query))
    expected = _bulk_tanimoto(std, smiles)
    hits = lib.search(query, k=None, mode="tanimoto")
    assert len(hits) == len(lib)
    np.testing.assert_allclose(hits.sort_values("row")["score"].to_numpy(), expected, atol=1e-6)
    top = lib.search(query, k=5, mode="tanimoto")
    np.testing.assert_allclose(top["score"], np.sort(expected)[::-1][:5], atol=1e-6)
    assert top["rank"].tolist() == [1, 2, 3, 4, 5]
    thr = lib.search(query, k=None, mode="tanimoto", threshold=0.2)
    assert len(thr) == int((expected >= 0.2 - 1e-7).sum())


@pytest.mark.parametrize("query", QUERIES)
def test_embedding_search(lib, encoder, query):
    hits = lib.search(query, k=7)
    assert list(hits.columns[:7]) == ["rank", "row", "id", "smiles", "score", "tanimoto",
                                      "cosine"]
    assert "mw" in hits.columns
    std = Chem.MolToSmiles(lib._standard_query(query))
    q = encoder.embed([std]).vectors[0]
    sims = np.asarray(lib.vectors) @ q
    np.testing.assert_allclose(hits["score"], np.sort(sims)[::-1][:7], atol=1e-5)
    np.testing.assert_allclose(hits["cosine"], hits["score"])
    expected_t = _bulk_tanimoto(std, hits["smiles"].tolist())
    np.testing.assert_allclose(hits["tanimoto"], expected_t, atol=1e-6)
    assert hits["score"].is_monotonic_decreasing


def test_member_finds_itself(lib):
    smi = lib.metadata["smiles"][11]
    hits = lib.search(smi, k=3)
    assert hits["row"][0] == 11 or hits["score"][0] == pytest.approx(1.0, abs=1e-5)
    assert hits["score"][0] == pytest.approx(1.0, abs=1e-5)
    nb = lib.neighbors(11, k=4)
    assert 11 not in nb["row"].tolist() and len(nb) == 4
    np.testing.assert_array_equal(nb["row"], lib.hyperedge(11)[1:5])


def test_embedding_threshold(lib):
    hits = lib.search(QUERIES[0], k=20, threshold=0.9)
    assert (hits["score"] >= 0.9).all()


@pytest.mark.parametrize("query", QUERIES + ["C1CCCCC1"])
def test_exact_search_matches_brute_force(lib, query):
    std = Chem.MolToSmiles(lib._standard_query(query))
    expected = [i for i, s in enumerate(lib.metadata["smiles"]) if s == std]
    hits = lib.search(query, mode="exact")
    assert hits["row"].tolist() == expected
    assert (hits["score"] == 1.0).all()


def test_exact_finds_members_written_differently(lib):
    # a member given as a non-canonical, charged salt form is found after standardisation
    smi = lib.metadata["smiles"][0]
    mol = Chem.MolFromSmiles(smi)
    alt = Chem.MolToSmiles(mol, doRandom=True, canonical=False) + ".[Na+].[Cl-]"
    assert 0 in lib.search(alt, mode="exact")["row"].tolist()


PATTERNS = ["c1ccccc1", "C1=CC=CC=C1", "C(=O)O", "[#6]~[#8]", "*~*(~*)~*", "[OX2H]", "c1ccncc1", "[#7]", "C=O", "S", "[Cl,Br,I]",
            "c1ccc2ccccc2c1", "[CX4][NX3]"]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_substructure_matches_brute_force(lib, pattern):
    # the documented reading: SMILES unless SMARTS-only syntax (or not valid SMILES)
    smarts_only = any(c in pattern for c in "~*$!;&,") or "[#" in pattern
    patt = None if smarts_only else Chem.MolFromSmiles(pattern)
    patt = patt if patt is not None else Chem.MolFromSmarts(pattern)
    expected = sorted(i for i, s in enumerate(lib.metadata["smiles"])
                      if Chem.MolFromSmiles(s).HasSubstructMatch(patt))
    hits = lib.search(pattern, k=None, mode="substructure")
    assert sorted(hits["row"].tolist()) == expected
    assert (hits["score"] == 1.0).all()
    if len(expected) > 3:
        assert len(lib.search(pattern, k=3, mode="substructure")) == 3


def test_substructure_screen_prunes(lib):
    from mmsa.library.embed import pattern_query_packed

    cand = S.contains_screen(pattern_query_packed(Chem.MolFromSmiles("c1ccc2ccccc2c1")),
                             lib.pattern)
    assert len(cand) < len(lib)


@pytest.mark.parametrize("mode", ["embedding", "tanimoto", "exact", "substructure"])
def test_bad_query(lib, mode):
    with pytest.raises(InputError, match="could not parse"):
        lib.search("C1CC(((", mode=mode)
    with pytest.raises(InputError):
        lib.search("", mode=mode)


def test_bad_mode(lib):
    with pytest.raises(InputError, match="unknown search mode"):
        lib.search("CCO", mode="fuzzy")


def test_tanimoto_all_edge_cases():
    rng = np.random.default_rng(0)
    bits = rng.random((50, 2048)) < 0.05
    bits[3] = False  # an empty fingerprint
    packed = np.packbits(bits, axis=1)
    q = packed[7]
    t = S.tanimoto_all(q, packed, block=16)
    inter = (bits & bits[7]).sum(1)
    union = (bits | bits[7]).sum(1)
    np.testing.assert_allclose(t, inter / union, atol=1e-6)
    assert t[7] == 1.0 and t[3] == 0.0
    assert S.tanimoto_all(packed[3], packed[3:4])[0] == 0.0
    assert S.top_k(np.array([0.5, 0.9, 0.9, 0.1]), 2, None).tolist() == [1, 2]
    assert S.top_k(np.array([0.5, 0.9, 0.9, 0.1]), None, 0.5).tolist() == [1, 2, 0]


def _clustered(n=3000, d=16, seed=0):
    c = np.random.default_rng(0).normal(size=(60, d))  # same clusters for every seed
    rng = np.random.default_rng(seed)
    x = (c[rng.integers(0, 60, n)] + 0.35 * rng.normal(size=(n, d))).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_index_recall(kind):
    x = _clustered()
    index, info = ann.build_index(x, kind, sample=300, seed=0)
    assert info["type"] == kind and info["recall_at_10"] >= ann.MIN_RECALL
    # independent check against numpy brute force on new queries from the same distribution
    q = _clustered(200, seed=5)
    exact = np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :10]
    _, approx = index.search(q, 10)
    assert ann.recall_at_k(approx, exact) >= 0.93
    assert ann.recall_at_k(exact, exact) == 1.0


def test_unreachable_recall_falls_back_to_flat():
    x = _clustered(500)
    index, info = ann.build_index(x, "ivf", min_recall=1.01, sample=50)
    assert info["type"] == "flat" and info["fallback_from"] == "ivf"
    assert index.ntotal == 500


def test_exact_search_blocks_match_numpy():
    x = _clustered(1000)
    q = x[:20] + 0.01
    d, i = ann.exact_search(x, q, 10, block=128)
    ref = np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :10]
    assert ann.recall_at_k(i, ref) == 1.0
    np.testing.assert_allclose(d, np.take_along_axis(q @ x.T, ref, axis=1), atol=1e-5)


def test_library_with_forced_approximate_index(tmp_path, tiny_csv, extra_csv, encoder):
    """'auto' switches to HNSW above the threshold; recall is measured, recorded, >= 0.95,
    and search through the library agrees with exact search."""
    root = tmp_path / "idx"
    rep = build_library(tiny_csv, "approx", root=root, encoder=encoder, approx_threshold=10)
    assert rep.index["type"] == "hnsw" and rep.index["recall_at_10"] >= 0.95
    lib = open_library("approx", root=root, encoder=encoder)
    assert lib.manifest["index"]["recall_sample"] == len(lib)
    v = np.asarray(lib.vectors)
    _, approx = lib.search_vectors(v, 10)
    exact = np.argsort(-(v @ v.T), axis=1, kind="stable")[:, :10]
    assert ann.recall_at_k(approx, exact) >= 0.935
    from mmsa.library import add_to_library

    rep = add_to_library("approx", extra_csv, root=root, encoder=encoder)
    assert rep.index["type"] == "hnsw" and rep.index["recall_at_10"] >= 0.95


def test_coherent_hyperedges_do_not_overlap(lib):
    df = lib.coherent_hyperedges(top=5)
    assert list(df.columns) == ["hyperedge", "id", "smiles", "size", "coherence", "members"]
    assert 1 <= len(df) <= 5
    members = [m for ms in df["members"] for m in ms]
    assert len(members) == len(set(members))
    assert df["coherence"].is_monotonic_decreasing
    for h, ms in zip(df["hyperedge"], df["members"]):
        assert ms == lib.hyperedge(h).tolist()


def test_hyperedge_motif_is_cached(built, encoder, monkeypatch):
    import mmsa.chem.motifs as motifs

    root, _ = built
    lib = open_library("tiny", root=root)
    first = lib.hyperedge_motif(2)
    assert (lib.cache_dir / "motifs.json").exists()
    smarts = first.smarts if hasattr(first, "smarts") else first["smarts"]
    members = lib.metadata["smiles"].to_numpy()[lib.hyperedge(2)].tolist()
    patt = Chem.MolFromSmarts(smarts)
    if patt is not None and patt.GetNumAtoms() > 0:
        assert all(Chem.MolFromSmiles(s).HasSubstructMatch(patt) for s in members)

    def boom(*a, **k):
        raise AssertionError("MCS recomputed instead of read from the cache")

    monkeypatch.setattr(motifs, "mcs", boom)
    again = open_library("tiny", root=root).hyperedge_motif(2)
    assert (again.smarts if hasattr(again, "smarts") else again["smarts"]) == smarts


def test_auto_index_choice():
    x = _clustered(1500)
    assert ann.build_index(x[:80], "auto", approx_threshold=100, ivf_threshold=1000,
                           sample=50)[1]["type"] == "flat"
    assert ann.build_index(x[:600], "auto", approx_threshold=100, ivf_threshold=1000,
                           sample=50)[1]["type"] == "hnsw"
    _, info = ann.build_index(x, "auto", approx_threshold=100, ivf_threshold=1000, sample=200)
    assert info["type"] == "ivf" and info["recall_at_10"] >= 0.95 and "nprobe" in info["params"]


def test_knob_is_tuned_with_a_recall_margin():
    """The search knob is tuned for min_recall + RECALL_MARGIN (new queries recall a little
    less than the build sample), unless the last knob value is needed to pass at all."""
    x = _clustered(2000)
    _, info = ann.build_index(x, "ivf", min_recall=0.9, sample=200)
    assert info["type"] == "ivf"
    nlist = info["params"]["nlist"]
    assert info["recall_at_10"] >= 0.9 + ann.RECALL_MARGIN or info["params"]["nprobe"] == nlist


def test_hybrid_mode_is_the_weighted_sum_over_the_whole_library(lib, encoder):
    """Hybrid = w * cosine + (1 - w) * Tanimoto, checked against brute force."""
    assert lib.manifest["hybrid"]["weight"] == 0.5
    query = "CC(=O)Nc1ccc(O)cc1"
    std = Chem.MolToSmiles(lib._standard_query(query))
    hits = lib.search(query, k=len(lib), mode="hybrid")
    cos = np.asarray(lib.vectors) @ encoder.embed([std]).vectors[0]
    tani = _bulk_tanimoto(std, lib.metadata["smiles"].tolist())
    rows = hits["row"].to_numpy()
    np.testing.assert_allclose(hits["score"], 0.5 * cos[rows] + 0.5 * tani[rows], atol=1e-5)
    np.testing.assert_allclose(hits["tanimoto"], tani[rows], atol=1e-9)
    np.testing.assert_allclose(hits["cosine"], cos[rows], atol=1e-5)
    assert sorted(rows.tolist()) == list(range(len(lib)))
    assert (np.diff(hits["score"].to_numpy()) <= 1e-9).all()
    top = lib.search(query, k=5, mode="hybrid", threshold=0.2)
    assert (top["score"] >= 0.2).all()
    assert list(top["row"]) == list(hits[hits["score"] >= 0.2]["row"][:5])
