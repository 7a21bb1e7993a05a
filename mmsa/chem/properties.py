"""Drug-like properties of molecules (RDKit descriptors): MW, cLogP, TPSA, HBD, HBA, rotatable
bonds, QED. Pure functions over SMILES; nothing is cached or stored here.

    >>> from mmsa.chem.properties import properties
    >>> round(properties("CC(=O)Oc1ccccc1C(=O)O")["MW"], 1)
    180.2
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from rdkit import Chem
from rdkit.Chem import QED, Crippen, Descriptors, Lipinski, rdMolDescriptors
from rdkit.rdBase import BlockLogs

__all__ = ["PROPERTIES", "PROPERTY_HELP", "properties", "properties_frame"]

#: the property names, in display order
PROPERTIES = ("MW", "cLogP", "TPSA", "HBD", "HBA", "rotatable bonds", "QED")
PROPERTY_HELP = {
    "MW": "molecular weight (g/mol, average)",
    "cLogP": "Crippen's calculated logP",
    "TPSA": "topological polar surface area (Å²)",
    "HBD": "hydrogen-bond donors (Lipinski: N-H and O-H)",
    "HBA": "hydrogen-bond acceptors (Lipinski: N and O)",
    "rotatable bonds": "rotatable bonds (strict definition)",
    "QED": "quantitative estimate of drug-likeness (0..1)",
}
_INTEGER = {"HBD", "HBA", "rotatable bonds"}


def properties(smiles_or_mol) -> dict[str, float]:
    """The :data:`PROPERTIES` of one molecule; NaN for each when it does not parse."""
    mol = smiles_or_mol
    if not isinstance(mol, Chem.Mol):
        with BlockLogs():
            mol = Chem.MolFromSmiles(str(smiles_or_mol)) if smiles_or_mol else None
    if mol is None or mol.GetNumAtoms() == 0:
        return {p: float("nan") for p in PROPERTIES}
    try:
        qed = float(QED.qed(mol))
    except Exception:  # noqa: BLE001 - QED fails on a few exotic molecules; the rest stand
        qed = float("nan")
    return {
        "MW": float(Descriptors.MolWt(mol)),
        "cLogP": float(Crippen.MolLogP(mol)),
        "TPSA": float(rdMolDescriptors.CalcTPSA(mol)),
        "HBD": float(Lipinski.NumHDonors(mol)),
        "HBA": float(Lipinski.NumHAcceptors(mol)),
        "rotatable bonds": float(rdMolDescriptors.CalcNumRotatableBonds(mol)),
        "QED": qed,
    }


def properties_frame(smiles: Iterable[str]) -> pd.DataFrame:
    """One row per SMILES, one column per property (:data:`PROPERTIES`); counts as nullable
    integers, NaN/NA where a SMILES does not parse."""
    rows = [properties(s) for s in smiles]
    frame = pd.DataFrame(rows, columns=list(PROPERTIES))
    if frame.empty:
        return frame.astype({p: "Int64" if p in _INTEGER else "float64" for p in PROPERTIES})
    for p in _INTEGER:
        frame[p] = pd.array(np.where(frame[p].isna(), None, frame[p]), dtype="Int64")
    return frame
