import pytest
from rdkit import Chem

from mmsa.chem.standardize import parse_smiles, smiles_error, standardize_mol, standardize_smiles
from mmsa.types import InputError


@pytest.mark.parametrize(
    "smiles, expected",
    [
        ("CC(=O)[O-].[Na+]", "CC(=O)O"),  # salt: largest organic fragment, neutralised
        ("C[NH3+].[Cl-]", "CN"),
        ("OC(=O)c1ccccc1", "O=C(O)c1ccccc1"),  # canonical
        ("c1ccccc1O.O.O", "Oc1ccccc1"),  # hydrates dropped
        ("C[N+](C)(C)C", "C[N+](C)(C)C"),  # a quaternary ammonium cannot be neutralised
        ("[H]OC([H])([H])[H]", "CO"),  # explicit hydrogens removed
    ],
)
def test_standardize_smiles(smiles, expected):
    assert standardize_smiles(smiles) == expected


def test_standardize_is_idempotent(smiles_100):
    for smi in smiles_100:
        once = standardize_smiles(smi)
        assert standardize_smiles(once) == once


def test_standardize_mol_does_not_modify_input():
    mol = Chem.MolFromSmiles("CC(=O)[O-].[Na+]")
    out = standardize_mol(mol)
    assert mol.GetNumAtoms() == 5 and out.GetNumAtoms() == 4


@pytest.mark.parametrize(
    "smiles, reason",
    [
        ("", "empty SMILES"),
        ("   ", "empty SMILES"),
        ("C1CC", "invalid SMILES syntax"),
        ("not a smiles", "invalid SMILES syntax"),
        ("C(C)(C)(C)(C)C", "valence"),
        ("c1cccc1", "kekulize"),
        (None, "not text"),
    ],
)
def test_invalid_smiles_give_reasons(smiles, reason):
    assert reason.lower() in smiles_error(smiles).lower()
    with pytest.raises(InputError, match="(?i)" + reason):
        standardize_smiles(smiles)
    with pytest.raises(InputError):
        parse_smiles(smiles)


def test_valid_smiles_have_no_error():
    assert smiles_error("CCO") is None


@pytest.mark.parametrize("smiles", ["[H]C([H])([H])O", "[2H]C", "C[Hg]C", "[H][H]", "[NH4+]",
                                    "F[C@H](Cl)Br"])
def test_parse_matches_rdkit(smiles):
    assert Chem.MolToSmiles(parse_smiles(smiles)) == Chem.MolToSmiles(Chem.MolFromSmiles(smiles))
