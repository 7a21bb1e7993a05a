import pytest
from rdkit import Chem

from mmsa.chem.motifs import MCSResult, match_atoms, match_bonds, mcs, pattern_mol
from mmsa.types import InputError

PARACETAMOL_LIKE = ["CC(=O)Nc1ccc(O)cc1", "CC(=O)Nc1ccc(OC)cc1", "CCC(=O)Nc1ccccc1"]


def test_mcs_of_anilides():
    res = mcs(PARACETAMOL_LIKE)
    assert isinstance(res, MCSResult) and res and not res.timed_out
    assert (res.num_atoms, res.num_bonds, res.num_molecules) == (10, 10, 3)
    for smi in PARACETAMOL_LIKE:  # the motif occurs in every member
        assert match_atoms(res.smarts, smi)


def test_rings_and_aromaticity_must_match():
    # an aromatic ring does not match a cyclohexane; ring atoms do not match chain atoms
    assert mcs(["c1ccccc1CCN", "C1CCCCC1CCN"]).num_atoms == 3  # CCN
    loose = mcs(["c1ccccc1CCN", "C1CCCCC1CCN"], complete_rings=False, ring_matches_ring=False)
    assert loose.num_atoms == 4  # CCCN: a ring carbon joins the chain
    # complete rings only: a whole benzene is shared by naphthalene, half a ring never is
    assert mcs(["c1ccccc1", "c1ccc2ccccc2c1"]).num_atoms == 6
    assert mcs(["C1CCCCC1", "C1CCCCCC1"]).num_atoms == 0
    assert mcs(["C1CCCCC1", "C1CCCCCC1"], complete_rings=False).num_atoms == 6


def test_no_common_part_and_single_molecule():
    assert not mcs(["O", "C"])
    one = mcs(["CCO"])
    assert one.num_atoms == 3 and one.num_molecules == 1
    with pytest.raises(InputError):
        mcs([])
    with pytest.raises(InputError):
        mcs(["CCO", "C1CC"])


def test_timeout_is_reported():
    # two branched chains of five cyclohexanes: too many partial matches to finish in 1 s
    big = ["CC(C)CC1CCC(CC1)C(C)CC2CCC(CC2)C(C)CC3CCC(CC3)C(C)CC4CCC(CC4)C(C)CC5CCC(CC5)C",
           "CC(C)CC1CCC(CC1)C(C)CC2CCC(CC2)C(CC)CC3CCC(CC3)C(C)CC4CCCC(C4)C(C)CC5CCCC(C5)C"]
    res = mcs(big, timeout=1, complete_rings=False, ring_matches_ring=False)
    assert res.timed_out and res.num_atoms > 10  # the best found so far


def test_match_atoms_and_bonds():
    matches = match_atoms("c1ccccc1O", "Oc1ccc(O)cc1")
    assert len(matches) == 2 and all(len(m) == 7 for m in matches)
    mol = Chem.MolFromSmiles("Oc1ccc(O)cc1")
    bonds = match_bonds("c1ccccc1O", mol, matches[0])
    assert len(bonds) == 7
    assert match_atoms("N", "CCO") == []


def test_pattern_mol():
    assert pattern_mol("[#6]-[#8]").GetNumAtoms() == 2
    assert pattern_mol("c1ccccc1").GetNumAtoms() == 6
    with pytest.raises(InputError):
        pattern_mol("")
    with pytest.raises(InputError):
        pattern_mol("((")
