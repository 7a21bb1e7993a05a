"""Why is this a hit: per-modality cosine, shared memory slots, Morgan Tanimoto and MCS of a
query and a library molecule (mmsa.library.explain), on the tiny library."""

from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator

from mmsa.library import open_library
from mmsa.library.explain import explain_hit, modality_cosines, shared_slots

QUERY = "CN1CCC[C@H]1c1cccnc1"  # nicotine


@pytest.fixture(scope="module")
def lib(built, encoder):
    root, _ = built
    lib = open_library("tiny", root=root)
    lib.set_encoder(encoder)
    return lib


def test_modality_vectors_are_unit_codes_in_model_order(encoder):
    vecs = encoder.modality_vectors([QUERY, "c1ccccc1O", "not a smiles"])
    assert tuple(vecs) == encoder.modalities == ("graph", "image", "geometry")
    for name, v in vecs.items():
        assert v.shape == (3, encoder.dim) and v.dtype == np.float32
        assert np.allclose(np.linalg.norm(v[:2], axis=1), 1.0, atol=1e-5), name
        assert np.isnan(v[2]).all(), name  # a failed molecule has no code in any modality


def test_modality_cosines_of_a_molecule_with_itself_are_one(encoder):
    same = modality_cosines(encoder, QUERY, QUERY)
    assert list(same) == ["graph", "image", "geometry"]
    assert all(c == pytest.approx(1.0, abs=1e-5) for c in same.values())
    other = modality_cosines(encoder, QUERY, "CCCCCCCCCCCCCCCC(=O)O")
    assert all(-1.0 <= c <= 1.0 for c in other.values())
    assert other != same  # the modalities see a different molecule


def test_a_modality_a_molecule_lacks_is_left_out(encoder, monkeypatch):
    real = encoder.modality_vectors

    def no_3d(smiles):
        vecs = real(smiles)
        vecs["geometry"][1] = np.nan  # as when the hit's conformer fails
        return vecs

    monkeypatch.setattr(encoder, "modality_vectors", no_3d)
    assert list(modality_cosines(encoder, QUERY, QUERY)) == ["graph", "image"]


def test_explain_hit_matches_the_pieces_computed_directly(lib, encoder):
    row = int(lib.search(QUERY, k=3)["row"].iloc[1])
    why = explain_hit(lib, QUERY, row)
    hit = str(lib.metadata["smiles"].iloc[row])
    # embedding cosine = the stored vector against the query's
    vec = encoder.embed([QUERY]).vectors[0]
    assert why.cosine == pytest.approx(float(lib.vectors[row] @ vec), abs=1e-5)
    # per-modality cosines, computed for the pair
    direct = modality_cosines(encoder, QUERY, hit)
    assert why.modalities == pytest.approx(direct) and set(direct) == {"graph", "image",
                                                                       "geometry"}
    # Tanimoto as RDKit computes it (Morgan r=2, 2048 bits)
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    fps = [gen.GetFingerprint(Chem.MolFromSmiles(s)) for s in (QUERY, hit)]
    assert why.tanimoto == pytest.approx(DataStructs.TanimotoSimilarity(*fps))
    # slots: among the hit's stored top slots, and the query's
    ids, weights = lib.slot_topk
    assert set(why.slots["slot"]) <= set(np.asarray(ids[row]).tolist())
    assert "Per-modality cosines" in why.note


def test_shared_slots_keeps_slots_of_both_strongest_first():
    q = np.array([0.5, 0.3, 0.0, 0.2])
    frame = shared_slots(q, np.array([1, 2, 0]), np.array([0.6, 0.3, 0.1]), top=3)
    assert frame["slot"].tolist() == [1, 0]  # slot 2 has no query weight
    assert frame["shared"].tolist() == pytest.approx([0.3, 0.1])
