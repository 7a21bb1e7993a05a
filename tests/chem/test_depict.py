import numpy as np
import pytest

from mmsa.chem.depict import align_to_reference, highlight_atoms_bonds, layout, mol_svg
from mmsa.types import InputError


def test_svg_text():
    svg = mol_svg("CC(=O)Nc1ccc(O)cc1", width=250, height=180)
    assert svg.lstrip().startswith("<?xml") and svg.rstrip().endswith("</svg>")
    assert "width='250px'" in svg and "height='180px'" in svg
    assert mol_svg("CC(=O)Nc1ccc(O)cc1", width=250, height=180) == svg  # deterministic


def test_highlight_pattern_colours_the_match():
    plain = mol_svg("CC(=O)Nc1ccc(O)cc1")
    hit = mol_svg("CC(=O)Nc1ccc(O)cc1", highlight="c1ccccc1")
    assert "#FF7F7F" not in plain.upper() and "#FF7F7F" in hit.upper()
    atoms = mol_svg("CC(=O)Nc1ccc(O)cc1", atoms=[0, 1])
    assert "#FF7F7F" in atoms.upper()


def test_highlight_atoms_bonds():
    mol = layout("Oc1ccc(O)cc1")
    atoms, bonds = highlight_atoms_bonds(mol, "cO")
    assert atoms == [0, 1, 4, 5] and len(bonds) == 2


def test_alignment_places_shared_core_like_the_query():
    query = "CC(=O)Nc1ccccc1"
    ref = layout(query).GetConformer().GetPositions()
    # substructure case
    mol, n = align_to_reference("CC(=O)Nc1ccc(OCC)cc1", query)
    assert n == 10
    pos = mol.GetConformer().GetPositions()
    assert np.allclose(pos[:4], ref[:4], atol=1e-3)
    # MCS case: the query is not a substructure (its ring is benzene, here pyridine)
    mol, n = align_to_reference("CC(=O)Nc1ccncc1C", query)
    assert 4 <= n < 10
    # nothing shared: usual layout
    _, n = align_to_reference("O", "CC")
    assert n == 0


def test_aligned_svg_and_errors():
    svg = mol_svg("CC(=O)Nc1ccc(OCC)cc1", align_to="CC(=O)Nc1ccccc1", highlight="CC(=O)N",
                  legend="hit <1>")
    assert "</svg>" in svg
    with pytest.raises(InputError):
        mol_svg("C1CC")
    with pytest.raises(InputError):
        mol_svg("CCO", highlight="((")
