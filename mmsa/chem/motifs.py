"""Shared motifs: maximum common substructure (MCS) of a set of molecules, pattern matching.

Patterns are SMARTS (what :func:`mcs` returns) or SMILES; :func:`pattern_mol` reads either.
MCS settings follow what medicinal chemists expect from a "shared core": elements and bond
orders must match exactly (aromatic only matches aromatic), ring bonds only match ring bonds
and partial rings are not allowed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rdkit import Chem
from rdkit.Chem import rdFMCS
from rdkit.rdBase import BlockLogs

from mmsa.chem.standardize import parse_smiles
from mmsa.types import InputError

__all__ = ["MCSResult", "mcs", "pattern_mol", "match_atoms", "match_bonds"]


@dataclass(frozen=True)
class MCSResult:
    """The MCS of a set of molecules.

    Attributes:
        smarts: SMARTS of the common substructure ("" when there is none).
        num_atoms, num_bonds: its size.
        timed_out: the search hit its timeout; the result is then the best found so far.
        num_molecules: how many molecules it was computed over.
    """

    smarts: str
    num_atoms: int
    num_bonds: int
    timed_out: bool
    num_molecules: int

    def __bool__(self) -> bool:
        return self.num_atoms > 0


def mcs(smiles: Sequence[str | Chem.Mol], timeout: float = 2, *, complete_rings: bool = True,
        ring_matches_ring: bool = True, match_valences: bool = False,
        threshold: float = 1.0) -> MCSResult:
    """Maximum common substructure of molecules (SMILES strings or RDKit molecules).

    Args:
        smiles: two or more molecules (one gives the molecule itself).
        timeout: seconds before RDKit stops and returns the best so far (``timed_out``).
        complete_rings: partial rings do not count as common.
        ring_matches_ring: ring bonds only match ring bonds.
        match_valences: atoms must also have equal valence.
        threshold: fraction of the molecules that must contain the MCS (1.0 = all).

    Raises:
        InputError: no molecule given, or an invalid SMILES.
    """
    mols = [m if isinstance(m, Chem.Mol) else parse_smiles(m) for m in smiles]
    if not mols:
        raise InputError("MCS needs at least one molecule")
    if len(mols) == 1:
        return MCSResult(smarts=Chem.MolToSmarts(mols[0]), num_atoms=mols[0].GetNumAtoms(),
                         num_bonds=mols[0].GetNumBonds(), timed_out=False, num_molecules=1)
    params = rdFMCS.MCSParameters()
    params.Timeout = max(1, int(round(timeout)))
    params.Threshold = float(threshold)
    params.AtomTyper = rdFMCS.AtomCompare.CompareElements
    params.BondTyper = rdFMCS.BondCompare.CompareOrderExact
    params.AtomCompareParameters.MatchValences = match_valences
    params.AtomCompareParameters.RingMatchesRingOnly = ring_matches_ring
    params.AtomCompareParameters.CompleteRingsOnly = complete_rings
    params.BondCompareParameters.RingMatchesRingOnly = ring_matches_ring
    params.BondCompareParameters.CompleteRingsOnly = complete_rings
    with BlockLogs():
        res = rdFMCS.FindMCS(mols, params)
    return MCSResult(smarts=res.smartsString or "", num_atoms=int(res.numAtoms),
                     num_bonds=int(res.numBonds), timed_out=bool(res.canceled),
                     num_molecules=len(mols))


def pattern_mol(pattern: str | Chem.Mol) -> Chem.Mol:
    """A query molecule from SMARTS (tried first) or SMILES.

    Raises:
        InputError: neither reads it.
    """
    if isinstance(pattern, Chem.Mol):
        return pattern
    text = str(pattern).strip()
    if not text:
        raise InputError("empty pattern")
    with BlockLogs():
        query = Chem.MolFromSmarts(text)
        if query is None:
            query = Chem.MolFromSmiles(text)
    if query is None or query.GetNumAtoms() == 0:
        raise InputError(f"not a SMARTS or SMILES pattern: {text!r}")
    return query


def match_atoms(pattern: str | Chem.Mol, smiles_or_mol: str | Chem.Mol,
                max_matches: int = 1000) -> list[tuple[int, ...]]:
    """Every match of ``pattern`` in the molecule: tuples of molecule atom indices, one per
    pattern atom, in pattern atom order; ``[]`` when it does not occur.

    Raises:
        InputError: invalid pattern or SMILES.
    """
    query = pattern_mol(pattern)
    mol = smiles_or_mol if isinstance(smiles_or_mol, Chem.Mol) else parse_smiles(smiles_or_mol)
    return [tuple(m) for m in mol.GetSubstructMatches(query, uniquify=True,
                                                       maxMatches=max_matches)]


def match_bonds(pattern: str | Chem.Mol, mol: Chem.Mol, atoms: Sequence[int]) -> list[int]:
    """Molecule bond indices of the pattern's bonds for one match ``atoms`` (from
    :func:`match_atoms`)."""
    query = pattern_mol(pattern)
    out = []
    for bond in query.GetBonds():
        b = mol.GetBondBetweenAtoms(atoms[bond.GetBeginAtomIdx()], atoms[bond.GetEndAtomIdx()])
        if b is not None:
            out.append(b.GetIdx())
    return out
