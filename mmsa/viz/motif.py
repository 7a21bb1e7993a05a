"""Readable text for a motif: the SMARTS that RDKit's MCS writes, shown as SMILES."""

from __future__ import annotations


def motif_smiles(smarts: str) -> str:
    """SMILES-like text of an MCS SMARTS (element and bond orders kept, ring/chain qualifiers
    dropped): ``[#6]1:&@[#6]...-&!@[#7&!R]`` -> ``CC(=O)Nc1ccccc1``. The SMARTS itself when
    it cannot be read; "" for "".
    """
    if not smarts:
        return ""
    from rdkit import Chem
    from rdkit.rdBase import BlockLogs

    with BlockLogs():
        query = Chem.MolFromSmarts(smarts)
    if query is None or query.GetNumAtoms() == 0:
        return smarts
    mol = Chem.RWMol()
    for atom in query.GetAtoms():
        new = Chem.Atom(atom.GetAtomicNum())
        new.SetIsAromatic(any(b.GetBondType() == Chem.BondType.AROMATIC for b in atom.GetBonds()))
        new.SetNoImplicit(True)
        mol.AddAtom(new)
    for bond in query.GetBonds():
        kind = bond.GetBondType()
        if kind == Chem.BondType.UNSPECIFIED:
            kind = Chem.BondType.SINGLE
        mol.AddBond(bond.GetBeginAtomIdx(), bond.GetEndAtomIdx(), kind)
        if kind == Chem.BondType.AROMATIC:
            mol.GetBondWithIdx(mol.GetNumBonds() - 1).SetIsAromatic(True)
    out = mol.GetMol()
    try:
        out.UpdatePropertyCache(False)
        return Chem.MolToSmiles(out)
    except Exception:  # RDKit raises various errors for odd queries; the SMARTS still reads
        return smarts
