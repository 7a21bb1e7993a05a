"""The build's fast path (each SMILES parsed once: embed.embed_chunk_mols) against the
reference path (Encoder.embed, then every molecule parsed again for its fingerprints):
same vectors, slots, fingerprints, failures, and the same library on disk (issue 13)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmsa.chem.standardize import parse_smiles, standardize_or_reason
from mmsa.library import embed

#: beside the fixture's molecules: bad syntax, a valence error, empty, charges, stereo, E/Z,
#: explicit hydrogens, a dative bond, an isotope, a salt left unstandardised, an aromatic
#: heterocycle, a lone metal
TRICKY = ["C1CC", "not_a_smiles", "C(C)(C)(C)(C)C", "", "   ", "[H][H]", "[Na+].[Cl-]",
          "c1ccccc1[N+](=O)[O-]", "F/C=C/F", r"F/C=C\F", "C[C@H](N)O", "C[C@@H](N)O",
          "[2H]C([2H])([2H])O", "[NH3]->[Cu+2]", "[13CH4]", "CC(=O)[O-].[Na+]", "c1cc[nH]c1",
          "[Fe]", "C1=CC=CC=C1", "N#N", "xyz"]


def _inputs(smiles_100) -> list[str]:
    std = [standardize_or_reason(s)[0] for s in smiles_100]
    mixed = [s for s in std if s] + TRICKY
    order = np.random.default_rng(0).permutation(len(mixed))  # failures spread over batches
    return [mixed[i] for i in order]


def _assert_same(a: embed.ChunkResult, b: embed.ChunkResult) -> None:
    assert np.array_equal(a.ok, b.ok)
    assert a.vectors.shape == b.vectors.shape
    np.testing.assert_allclose(a.vectors, b.vectors, rtol=0, atol=1e-6)
    assert np.array_equal(a.slot_ids, b.slot_ids)
    np.testing.assert_allclose(a.slot_weights, b.slot_weights, rtol=0, atol=1e-6)
    assert a.morgan.dtype == b.morgan.dtype == np.uint8
    assert a.morgan.tobytes() == b.morgan.tobytes()
    assert a.pattern.tobytes() == b.pattern.tobytes()
    assert a.failures == b.failures


@pytest.mark.parametrize("batch_size", [1024, 7])
def test_embed_chunk_equals_reference(encoder, smiles_100, batch_size):
    smiles = _inputs(smiles_100)
    new = embed.embed_chunk(smiles, encoder, batch_size=batch_size)
    ref = embed.embed_chunk_reference(smiles, encoder, batch_size=batch_size)
    _assert_same(new, ref)
    assert new.ok.sum() == len(new.vectors) > 100
    failed = {f.row for f in new.failures}
    assert failed == set(np.flatnonzero(~new.ok))
    assert {smiles[r] for r in failed} >= {"C1CC", "not_a_smiles", "C(C)(C)(C)(C)C", "", "xyz"}


def test_embed_chunk_edge_cases(encoder):
    for smiles in ([], ["C1CC"], ["", "xyz"], ["CCO"]):
        _assert_same(embed.embed_chunk(smiles, encoder),
                     embed.embed_chunk_reference(smiles, encoder))
    res = embed.embed_chunk([], encoder)
    assert res.vectors.shape == (0, encoder.dim) and res.morgan.shape == (0, embed.FP_BYTES)


def test_full_mode_takes_the_reference_path(encoder, smiles_100):
    smiles = smiles_100[:5]
    _assert_same(embed.embed_chunk(smiles, encoder, mode="full"),
                 embed.embed_chunk_reference(smiles, encoder, mode="full"))


def test_fingerprints_packed_equal_the_single_molecule_functions(smiles_100):
    mols = [parse_smiles(s) for s in smiles_100 + ["[13CH4]", "F/C=C/F", "[Fe]"]]
    morgan, pattern = embed.fingerprints_packed(mols)
    assert morgan.shape == pattern.shape == (len(mols), embed.FP_BYTES)
    assert morgan.tobytes() == np.stack([embed.morgan_packed(m) for m in mols]).tobytes()
    assert pattern.tobytes() == np.stack([embed.pattern_packed(m) for m in mols]).tobytes()
    empty = embed.fingerprints_packed([])
    assert empty[0].shape == empty[1].shape == (0, embed.FP_BYTES)


def _files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if p.is_file() and p.suffix in (".f32", ".i32", ".u8")}


def test_library_built_by_the_fast_path_equals_the_reference(tmp_path, tiny_csv,
                                                            tiny_checkpoint, monkeypatch):
    import json

    from mmsa.library import build_library

    csv = tmp_path / "mixed.csv"
    frame = pd.read_csv(tiny_csv, dtype=str, keep_default_na=False)
    extra = pd.DataFrame({"smiles": ["[Na+].[Cl-]", "", "C(C)(C)(C)(C)C", "F/C=C/F",
                                     "CC(=O)[O-].[Na+]", "C[C@H](N)O"],
                          "id": [f"x{i}" for i in range(6)], "mw": "1"})
    pd.concat([frame, extra], ignore_index=True).to_csv(csv, index=False)
    root_new, root_ref = tmp_path / "new", tmp_path / "ref"
    build_library(csv, "lib", root=root_new, encoder=tiny_checkpoint, hyperedge_k=4,
                  chunk_size=16)
    monkeypatch.setattr(embed, "embed_chunk", embed.embed_chunk_reference)
    build_library(csv, "lib", root=root_ref, encoder=tiny_checkpoint, hyperedge_k=4,
                  chunk_size=16)
    new, ref = root_new / "lib", root_ref / "lib"
    a, b = _files(new), _files(ref)
    assert a.keys() == b.keys() and "hyperedges.i32" in a and "pattern.u8" in a
    va, vb = (np.frombuffer(x["vectors.f32"], np.float32) for x in (a, b))
    np.testing.assert_allclose(va, vb, rtol=0, atol=1e-6)
    for name in a:
        if name not in ("vectors.f32", "hyperedge_scores.f32", "slot_weights.f32"):
            assert a[name] == b[name], name
    for name in ("hyperedge_scores.f32", "slot_weights.f32"):
        np.testing.assert_allclose(np.frombuffer(a[name], np.float32),
                                   np.frombuffer(b[name], np.float32), rtol=0, atol=1e-6)
    pd.testing.assert_frame_equal(pd.read_parquet(new / "metadata.parquet"),
                                  pd.read_parquet(ref / "metadata.parquet"))
    fa = pd.read_parquet(new / "failures.parquet")
    pd.testing.assert_frame_equal(fa, pd.read_parquet(ref / "failures.parquet"))
    assert len(fa) >= 4  # the fixture's 2 bad rows + the empty and the valence error
    ma, mb = (json.loads((x / "manifest.json").read_text()) for x in (new, ref))
    assert ma["failures"] == mb["failures"] and ma["count"] == mb["count"]
    assert ma["index"]["type"] == mb["index"]["type"]


@pytest.mark.parametrize("batch_size", [1024, 7])
def test_embed_chunk_of_canonical_smiles_equals_reference(encoder, smiles_100, batch_size):
    """What the build engines pass: the readers' standardised SMILES (``canonical=True``:
    parse_canonical's partial sanitisation), with unparsable rows among them."""
    from rdkit import Chem

    valid = [parse_smiles(s) for s in TRICKY if standardize_or_reason(s)[0]]
    smiles = _inputs(smiles_100) + [Chem.MolToSmiles(m) for m in valid]
    smiles = [s for s in smiles if standardize_or_reason(s)[0] is None
              or s == Chem.MolToSmiles(parse_smiles(s))]  # RDKit-written or invalid
    new = embed.embed_chunk(smiles, encoder, batch_size=batch_size, canonical=True)
    _assert_same(new, embed.embed_chunk_reference(smiles, encoder, batch_size=batch_size))
    assert new.ok.sum() > 100 and len(new.failures) >= 5
