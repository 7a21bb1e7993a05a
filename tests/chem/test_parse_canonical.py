"""parse_canonical (the build's re-parse of standardised SMILES, partial sanitisation) gives
the molecule parse_smiles gives, for everything the library computes from it (issue 13).
benchmarks/parse_canonical.py runs the same comparison on every molecule of the real data
sets."""

from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem

from mmsa.chem import standardize
from mmsa.chem.graph import GraphFeaturizer
from mmsa.chem.standardize import parse_canonical, parse_smiles, standardize_or_reason
from mmsa.library.embed import fingerprints_packed
from mmsa.types import InputError

#: stereo (centres, E/Z), charges, isotopes, explicit H, a dative bond, radicals, metals,
#: aromatic heterocycles with [nH], a triple bond inside an aromatic ring (ChEMBL has one),
#: a macrocycle, fused and spiro rings, a lone atom
SPECIAL = ["C[C@H](N)O", "C[C@@H](N)C(=O)O", "F/C=C/F", r"F/C=C\F", "CC/C=N/O",
           "c1ccccc1[N+](=O)[O-]", "C[N+](C)(C)C", "[2H]C([2H])([2H])O", "[13CH4]", "[H]C#N",
           "[NH3]->[Cu+2]", "[CH2]C", "[Fe]", "[Na+]", "c1cc[nH]c1", "Cn1cnc2c1c(=O)n(C)c(=O)n2C",
           "CCc1nc#cn1CC1CC(c2ccccc2)(c2ccccc2)C(=O)O1", "C1CCCCCCCCCCCCCCC1",
           "c1ccc2cc3ccccc3cc2c1", "C1CCC2(CC1)CCCC2", "O=c1cc[nH]cc1", "[O-][n+]1ccccc1",
           "B(O)(O)c1ccccc1", "S(=O)(=O)(N)c1ccc(cc1)C(=O)O", "P(=O)(O)(O)OCC", "C", "O"]


def _canonical(smiles_list):
    out = []
    for s in smiles_list:
        std, _ = standardize_or_reason(s)
        if std:
            out.append(std)
        out.append(Chem.MolToSmiles(parse_smiles(s)))  # unstandardised, RDKit-written too
    return out


def _same(a, b, smiles):
    feat = GraphFeaturizer()
    [ga], [gb] = feat.batch_mols([a], [smiles]), feat.batch_mols([b], [smiles])
    assert np.array_equal(ga.x, gb.x), smiles
    assert np.array_equal(ga.edge_index, gb.edge_index), smiles
    assert np.array_equal(ga.edge_attr, gb.edge_attr), smiles
    (ma, pa), (mb, pb) = fingerprints_packed([a]), fingerprints_packed([b])
    assert np.array_equal(ma, mb), smiles
    assert np.array_equal(pa, pb), smiles
    assert Chem.MolToSmiles(a) == Chem.MolToSmiles(b) == smiles, smiles


def test_same_molecule_as_parse_smiles(smiles_100):
    for smiles in _canonical(smiles_100 + SPECIAL):
        _same(parse_smiles(smiles), parse_canonical(smiles), smiles)


def test_skips_the_full_parse_only_where_that_is_safe(monkeypatch):
    calls: list[str] = []
    full = standardize.parse_smiles

    def counting(smiles):
        calls.append(smiles)
        return full(smiles)

    monkeypatch.setattr(standardize, "parse_smiles", counting)
    for smiles in ("CCO", "c1ccccc1O", "C[C@H](N)O", "CC(=O)[O-]", "Cn1cnc2c1c(=O)n(C)c(=O)n2C"):
        parse_canonical(smiles)
    assert calls == []  # the partial sanitisation was enough
    fallback = ["F/C=C/F", r"F/C=C\F", "[2H]C", "[H]C#N", "CCc1nc#cn1C", "C1CC", "xyz", ""]
    for smiles in fallback:
        try:
            parse_canonical(smiles)
        except InputError:
            pass
    assert calls == fallback


@pytest.mark.parametrize("bad", ["C1CC", "not_a_smiles", "C(C)(C)(C)(C)C", "", "   ", "[Xx]"])
def test_invalid_smiles_give_parse_smiles_error(bad):
    with pytest.raises(InputError) as full:
        parse_smiles(bad)
    with pytest.raises(InputError) as fast:
        parse_canonical(bad)
    assert str(fast.value) == str(full.value)
