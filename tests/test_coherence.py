"""Hyperedge / slot coherence (mmsa.evaluate.coherence): groups, MCS sizes, the suite."""

import numpy as np
import pytest

from mmsa.evaluate import ecfp4
from mmsa.evaluate.coherence import (
    coherence_suite,
    knn_groups,
    mcs_scores,
    random_groups,
    slot_groups,
    unique_molecules,
)
from mmsa.evaluate.neighbours import Space

BENZODIAZEPINES = [
    "CN1C(=O)CN=C(c2ccccc2)c2cc(Cl)ccc21",  # diazepam
    "O=C1CN=C(c2ccccc2)c2cc(Cl)ccc2N1",  # nordazepam
    "O=C1Nc2ccc(Cl)cc2C(c2ccccc2)=NC1O",  # oxazepam
    "CN1C(=O)C(O)N=C(c2ccccc2)c2cc(Cl)ccc21",  # temazepam
    "O=C1CN=C(c2ccccc2F)c2cc([N+](=O)[O-])ccc2N1",  # flunitrazepam's N-desmethyl
]
STEROIDS = [
    "CC12CCC3c4ccc(O)cc4CCC3C1CCC2O",  # estradiol
    "CC12CCC3c4ccc(O)cc4CCC3C1CCC2=O",  # estrone
    "CC12CCC(=O)C=C1CCC1C2CCC2(C)C(O)CCC12",  # testosterone
    "CC(=O)C1CCC2C3CCC4=CC(=O)CCC4(C)C3CCC12C",  # progesterone
    "CC12CCC3c4ccc(O)cc4CCC3C1CC(O)C2O",  # estriol
]
MIXED = ["CCO", "c1ccncc1", "CC(=O)Oc1ccccc1C(=O)O", "NCCc1ccc(O)c(O)c1", "OC(=O)CCCC(=O)O"]


def test_unique_molecules_drops_repeats_and_unparsable():
    smiles, rows = unique_molecules(["CCO", "OCC", "not a smiles", "c1ccccc1", "C1=CC=CC=C1"])
    assert smiles == ["CCO", "c1ccccc1"]
    assert rows.tolist() == [0, 3]


def test_knn_groups_match_brute_force():
    rng = np.random.default_rng(0)
    space = Space("cosine", vectors=rng.normal(size=(60, 8)))
    centres = np.array([0, 7, 59])
    groups = knn_groups(space, centres, k=4, block=2)
    sim = space.vectors @ space.vectors.T
    for g, c in zip(groups, centres):
        assert g[0] == c and c not in g[1:]
        expected = [j for j in np.argsort(-sim[c], kind="stable") if j != c][:4]
        assert g[1:].tolist() == expected


def test_slot_groups_heaviest_members_and_min_size():
    w = np.array([[0.9, 0.1, 0.0],   # slot 0
                  [0.6, 0.4, 0.0],   # slot 0
                  [0.95, 0.05, 0.0],  # slot 0 (heaviest)
                  [0.2, 0.8, 0.0],   # slot 1 alone: skipped
                  [0.1, 0.1, 0.8],   # slot 2
                  [0.0, 0.3, 0.7]], dtype=np.float32)  # slot 2
    groups = slot_groups(w, top=2)
    assert [g.tolist() for g in groups] == [[2, 0], [4, 5]]
    assert slot_groups(np.zeros((6, 0), dtype=np.float32)) == []  # no memory, no slots


def test_mcs_scores_see_a_shared_core():
    smiles = BENZODIAZEPINES + MIXED + ["CCO"]
    series = mcs_scores(smiles, [np.arange(5)])
    mixed = mcs_scores(smiles, [np.arange(5, 10)])
    same = mcs_scores(smiles, [np.array([5, 10])])  # ethanol twice
    assert series["mcs_atoms"] >= 16  # the 5-phenyl-1,4-benzodiazepin-2-one core
    assert mixed["mcs_atoms"] <= 2
    assert same["mcs_share"] == pytest.approx(1.0)
    assert series["groups"] == 1 and series["timeouts"] == 0


def test_suite_ranks_a_chemical_space_above_noise():
    smiles = BENZODIAZEPINES + STEROIDS + MIXED
    bits, _ = ecfp4(smiles)
    rng = np.random.default_rng(1)
    slots = np.eye(3, dtype=np.float32)[[0] * 5 + [1] * 5 + [2] * 5]
    out = coherence_suite({"ecfp": Space("tanimoto", bits=bits),
                           "noise": Space("cosine", vectors=rng.normal(size=(15, 16)))},
                          smiles, {"ecfp": slots, "noise": np.zeros((15, 0))},
                          n_centres=10, seed=0)
    assert set(out) == {"ecfp", "noise", "chance (random groups)"}
    assert out["ecfp"]["hyperedge_mcs_atoms"] > out["noise"]["hyperedge_mcs_atoms"]
    assert out["ecfp"]["slot_groups"] == 3
    assert "slot_mcs_atoms" not in out["noise"]
    # same seeded centres for every representation: the chance groups are reproducible
    again = mcs_scores(smiles, random_groups(15, 5, 10, seed=0))
    assert again["mcs_atoms"] == pytest.approx(out["chance (random groups)"]["hyperedge_mcs_atoms"])


def test_suite_needs_enough_molecules():
    with pytest.raises(ValueError, match="at least 5"):
        coherence_suite({}, ["CCO", "CCN"])


def test_coherence_table_marks_missing_slots():
    from mmsa.evaluate import EvaluationResult, coherence_table

    result = EvaluationResult(records=[], methods=[], tasks=[], seeds=[0])
    assert coherence_table(result) == ""
    result.coherence = {"ECFP4": {"hyperedge_mcs_atoms": 9.5, "hyperedge_mcs_share": 0.4},
                        "MMSA": {"hyperedge_mcs_atoms": 8.0, "hyperedge_mcs_share": 0.35,
                                 "slot_mcs_atoms": 6.25, "slot_mcs_share": 0.3}}
    lines = coherence_table(result).splitlines()
    assert lines[2] == "| ECFP4 | 9.50 | 0.40 | — | — |"
    assert lines[3] == "| MMSA | 8.00 | 0.35 | 6.25 | 0.30 |"
