"""SVG depictions (RDKit rdMolDraw2D) with highlighted motifs, aligned to a query.

Returns plain SVG text as RDKit writes it; nothing is escaped here, so callers embedding it
in HTML escape any legend they pass (or pass none) and insert the SVG as markup.
"""

from __future__ import annotations

from collections.abc import Sequence

from rdkit import Chem
from rdkit.Chem import rdDepictor
from rdkit.Chem.Draw import rdMolDraw2D
from rdkit.Geometry import Point2D
from rdkit.rdBase import BlockLogs

from mmsa.chem.motifs import match_atoms, match_bonds, mcs, pattern_mol
from mmsa.chem.standardize import parse_smiles

__all__ = ["mol_svg", "layout", "align_to_reference", "highlight_atoms_bonds"]


def _mol(smiles_or_mol) -> Chem.Mol:
    if isinstance(smiles_or_mol, Chem.Mol):
        return Chem.Mol(smiles_or_mol)
    return parse_smiles(smiles_or_mol)


def layout(smiles_or_mol) -> Chem.Mol:
    """A copy with RDKit 2D coordinates (canonical orientation); deterministic for a SMILES."""
    mol = _mol(smiles_or_mol)
    rdDepictor.Compute2DCoords(mol, canonOrient=True)
    return mol


def align_to_reference(smiles_or_mol, reference, timeout: float = 1) -> tuple[Chem.Mol, int]:
    """Lay out a molecule so the part it shares with ``reference`` sits where it does there.

    The shared part is the reference itself when it is a substructure, else their MCS.
    ``reference`` is laid out with :func:`layout` unless it already has coordinates.

    Returns:
        ``(molecule with 2D coordinates, number of atoms placed like the reference)``; 0
        means nothing was shared and the layout is RDKit's usual one.
    """
    mol = _mol(smiles_or_mol)
    ref = _mol(reference)
    if ref.GetNumConformers() == 0:
        rdDepictor.Compute2DCoords(ref, canonOrient=True)
    pairs = _shared_atoms(mol, ref, timeout)
    if not pairs:
        rdDepictor.Compute2DCoords(mol, canonOrient=True)
        return mol, 0
    conf = ref.GetConformer()
    coord_map = {m: Point2D(conf.GetAtomPosition(r).x, conf.GetAtomPosition(r).y)
                 for r, m in pairs}
    rdDepictor.Compute2DCoords(mol, coordMap=coord_map)
    return mol, len(coord_map)


def _shared_atoms(mol: Chem.Mol, ref: Chem.Mol, timeout: float) -> list[tuple[int, int]]:
    """(reference atom, molecule atom) pairs of the common part."""
    with BlockLogs():
        match = mol.GetSubstructMatch(ref)
    if match:
        return list(enumerate(match))
    common = mcs([ref, mol], timeout=timeout)
    if common.num_atoms < 2:
        return []
    query = pattern_mol(common.smarts)
    ref_match = ref.GetSubstructMatch(query)
    mol_match = mol.GetSubstructMatch(query)
    if not ref_match or not mol_match:
        return []
    return list(zip(ref_match, mol_match))


def highlight_atoms_bonds(mol: Chem.Mol, pattern) -> tuple[list[int], list[int]]:
    """Atom and bond indices of every match of ``pattern`` (SMARTS/SMILES/Mol) in ``mol``."""
    atoms: set[int] = set()
    bonds: set[int] = set()
    for match in match_atoms(pattern, mol):
        atoms.update(match)
        bonds.update(match_bonds(pattern, mol, match))
    return sorted(atoms), sorted(bonds)


def mol_svg(smiles_or_mol, width: int = 300, height: int = 220, *, highlight=None,
            atoms: Sequence[int] | None = None, bonds: Sequence[int] | None = None,
            align_to=None, legend: str = "", timeout: float = 1) -> str:
    """SVG text of one molecule.

    Args:
        smiles_or_mol: the molecule.
        width, height: size in pixels.
        highlight: a SMARTS/SMILES pattern (or Mol); all its matches are highlighted.
        atoms, bonds: atom/bond indices to highlight as well (bonds between highlighted
            atoms are added when only atoms are given).
        align_to: a reference (query) molecule: the shared part is drawn as it is there.
        legend: text under the drawing (not escaped).
        timeout: MCS seconds when aligning.

    Raises:
        InputError: invalid SMILES or pattern.
    """
    if align_to is not None:
        mol, _ = align_to_reference(smiles_or_mol, align_to, timeout=timeout)
    else:
        mol = layout(smiles_or_mol)
    hi_atoms = set(atoms or [])
    hi_bonds = set(bonds or [])
    if highlight is not None:
        a, b = highlight_atoms_bonds(mol, highlight)
        hi_atoms.update(a)
        hi_bonds.update(b)
    if hi_atoms and bonds is None and highlight is None:
        hi_bonds.update(b.GetIdx() for b in mol.GetBonds()
                        if b.GetBeginAtomIdx() in hi_atoms and b.GetEndAtomIdx() in hi_atoms)
    drawer = rdMolDraw2D.MolDraw2DSVG(int(width), int(height))
    drawer.drawOptions().clearBackground = True
    with BlockLogs():
        rdMolDraw2D.PrepareAndDrawMolecule(drawer, mol, legend=legend,
                                           highlightAtoms=sorted(hi_atoms),
                                           highlightBonds=sorted(hi_bonds))
    drawer.FinishDrawing()
    return drawer.GetDrawingText()
