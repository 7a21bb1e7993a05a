import pickle

import numpy as np
import pytest
from rdkit import Chem

from mmsa.chem.graph import ATOM_FEATURES, BOND_FEATURES, GraphFeatures, GraphFeaturizer
from mmsa.types import InputError


@pytest.fixture(scope="module")
def featurizer():
    return GraphFeaturizer()


def _columns(blocks, name):
    start = 0
    for block, width in blocks:
        if block == name:
            return slice(start, start + width)
        start += width
    raise KeyError(name)


def test_sizes_come_from_the_blocks(featurizer):
    assert featurizer.atom_dim == sum(w for _, w in ATOM_FEATURES)
    assert featurizer.bond_dim == sum(w for _, w in BOND_FEATURES)
    assert featurizer.config()["atom_dim"] == featurizer.atom_dim


def test_shapes_and_dtypes(featurizer, smiles_100):
    for smi in smiles_100:
        mol = Chem.MolFromSmiles(smi)
        g = featurizer(smi)
        assert isinstance(g, GraphFeatures)
        assert g.x.shape == (mol.GetNumAtoms(), featurizer.atom_dim) and g.x.dtype == np.float32
        assert g.edge_index.shape == (2, 2 * mol.GetNumBonds()) and g.edge_index.dtype == np.int64
        assert g.edge_attr.shape == (2 * mol.GetNumBonds(), featurizer.bond_dim)
        assert g.edge_attr.dtype == np.float32
        # exactly one hot column per one-hot block (two 1-column flags may be 0)
        assert np.all((g.x.sum(1) >= 6) & (g.x.sum(1) <= 8))
        assert np.all((g.edge_attr.sum(1) >= 2) & (g.edge_attr.sum(1) <= 4))
        # both directions of each bond, consecutively
        assert np.array_equal(g.edge_index[0, 0::2], g.edge_index[1, 1::2])


def test_ethanol_values(featurizer):
    g = featurizer("CCO")
    el = _columns(ATOM_FEATURES, "element")
    # element columns: H B C N O ...
    assert g.x[:, el].argmax(1).tolist() == [2, 2, 4]
    deg = _columns(ATOM_FEATURES, "degree")
    assert g.x[:, deg].argmax(1).tolist() == [1, 2, 1]
    hs = _columns(ATOM_FEATURES, "total_h")
    assert g.x[:, hs].argmax(1).tolist() == [3, 2, 1]
    assert g.edge_index.tolist() == [[0, 1, 1, 2], [1, 0, 2, 1]]
    bt = _columns(BOND_FEATURES, "bond_type")
    assert (g.edge_attr[:, bt].argmax(1) == 0).all()  # single


def test_rich_features(featurizer):
    # charge, chirality, aromaticity, ring, E/Z stereo, triple bond, an unlisted element
    g = featurizer("C[C@H](N)c1ccc(/C=C/[N+](=O)[O-])cc1C#C[Sn](C)(C)C")
    mol = Chem.MolFromSmiles("C[C@H](N)c1ccc(/C=C/[N+](=O)[O-])cc1C#C[Sn](C)(C)C")
    charge = g.x[:, _columns(ATOM_FEATURES, "formal_charge")].argmax(1)
    assert sorted(charge.tolist()) == sorted([a.GetFormalCharge() + 2 for a in mol.GetAtoms()])
    chir = g.x[:, _columns(ATOM_FEATURES, "chirality")].argmax(1)
    assert chir[1] in (1, 2) and (np.delete(chir, 1) == 0).all()
    arom = g.x[:, _columns(ATOM_FEATURES, "aromatic")].ravel()
    assert arom.tolist() == [float(a.GetIsAromatic()) for a in mol.GetAtoms()]
    ring = g.x[:, _columns(ATOM_FEATURES, "in_ring")].ravel()
    assert ring.tolist() == [float(a.IsInRing()) for a in mol.GetAtoms()]
    tin = [a.GetIdx() for a in mol.GetAtoms() if a.GetSymbol() == "Sn"][0]
    assert g.x[tin, _columns(ATOM_FEATURES, "element")][-1] == 1  # "other"
    bt = g.edge_attr[:, _columns(BOND_FEATURES, "bond_type")].argmax(1)
    assert {0, 1, 2, 3} <= set(bt.tolist())  # single, double, triple, aromatic
    stereo = g.edge_attr[:, _columns(BOND_FEATURES, "stereo")].argmax(1)
    assert (stereo == 3).sum() == 2  # the E double bond, both directions
    conj = g.edge_attr[:, _columns(BOND_FEATURES, "conjugated")].ravel()
    assert conj.tolist() == [float(mol.GetBondWithIdx(j // 2).GetIsConjugated())
                             for j in range(2 * mol.GetNumBonds())]


def test_fast_path_equals_full_reading(featurizer, smiles_100):
    extra = ["F/C=C/F", "C[N+](C)(C)C", "c1ccccc1-c1ccccc1", "[NH3+]->[Cu]", "CC(=O)[O-].[Na+]"]
    for smi in smiles_100 + extra:
        a = featurizer(smi)
        b = featurizer.featurize_mol(Chem.MolFromSmiles(smi))
        assert np.array_equal(a.x, b.x) and np.array_equal(a.edge_index, b.edge_index)
        assert np.array_equal(a.edge_attr, b.edge_attr)


def test_batch_equals_one_by_one(featurizer, smiles_100):
    smiles = smiles_100[:30] + ["C1CC", "F/C=C/F", "[NH3+]->[Cu]", "[Na+]", "C[C@H](N)C(=O)O"]
    results, errors = featurizer.batch(smiles)
    assert len(results) == len(smiles)
    assert errors == [(30, "invalid SMILES syntax: 'C1CC'")] and results[30] is None
    for smi, g in zip(smiles, results):
        if g is None:
            continue
        one = featurizer(smi)
        assert np.array_equal(one.x, g.x) and np.array_equal(one.edge_index, g.edge_index)
        assert np.array_equal(one.edge_attr, g.edge_attr)
        assert g.edge_index.flags.c_contiguous and g.x.dtype == np.float32
    assert featurizer.batch([]) == ([], [])


def test_deterministic_bytes(featurizer, smiles_100):
    for smi in smiles_100[:20]:
        a, b = featurizer(smi), GraphFeaturizer()(smi)
        assert a.x.tobytes() == b.x.tobytes()
        assert a.edge_index.tobytes() == b.edge_index.tobytes()
        assert a.edge_attr.tobytes() == b.edge_attr.tobytes()


def _multisets(g):
    nodes = sorted(map(bytes, g.x.astype(np.uint8)))
    src, dst = g.edge_index
    edges = sorted(bytes(np.concatenate([g.x[s], g.x[d], g.edge_attr[k]]).astype(np.uint8))
                   for k, (s, d) in enumerate(zip(src, dst)))
    return nodes, edges


def test_atom_order_invariance(featurizer, smiles_100):
    rng = np.random.default_rng(0)
    for smi in smiles_100[:30] + ["C[C@H](N)C(=O)O", "F/C=C/F"]:
        mol = Chem.MolFromSmiles(smi)
        perm = rng.permutation(mol.GetNumAtoms()).tolist()
        shuffled = Chem.MolToSmiles(Chem.RenumberAtoms(mol, perm), canonical=False)
        assert shuffled != smi or mol.GetNumAtoms() < 3
        assert _multisets(featurizer(smi)) == _multisets(featurizer(shuffled))


def test_single_atom_has_no_edges(featurizer):
    g = featurizer("[Na+]")
    assert g.x.shape == (1, featurizer.atom_dim)
    assert g.edge_index.shape == (2, 0) and g.edge_attr.shape == (0, featurizer.bond_dim)


@pytest.mark.parametrize("bad", ["", "C1CC", "C(C)(C)(C)(C)C"])
def test_invalid_smiles_raise(featurizer, bad):
    with pytest.raises(InputError):
        featurizer(bad)


def test_picklable(featurizer):
    clone = pickle.loads(pickle.dumps(featurizer))  # noqa: S301 (our own bytes: the worker-pool path)
    assert clone.config() == featurizer.config()
    assert np.array_equal(clone("CCO").x, featurizer("CCO").x)


def test_batch_mols_equals_batch(featurizer, smiles_100):
    """Parsed molecules featurise as their SMILES do, with or without the SMILES' hints."""
    from mmsa.chem.standardize import parse_smiles

    smiles = smiles_100 + ["F/C=C/F", "C[C@H](N)O", "[NH3+]->[Cu]", "[13CH4]", "[Fe]"]
    mols = [parse_smiles(s) for s in smiles]
    expect, errors = featurizer.batch(smiles)
    assert not errors
    for got in (featurizer.batch_mols(mols, smiles), featurizer.batch_mols(mols)):
        assert len(got) == len(smiles)
        for g, e in zip(got, expect):
            assert np.array_equal(g.x, e.x)
            assert np.array_equal(g.edge_index, e.edge_index)
            assert np.array_equal(g.edge_attr, e.edge_attr)
    assert featurizer.batch_mols([]) == []
