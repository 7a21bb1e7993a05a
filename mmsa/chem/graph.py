"""2D molecular graph featurizer: one-hot atom and bond features, numpy out (no torch).

Atom features (``GraphFeaturizer.atom_dim`` columns), each a one-hot block with an "other"
slot where the value set is open:

=================  ===========================================================
element            H B C N O F Si P S Cl Se Br I, other
degree             heavy-atom neighbours 0..5, other
formal charge      -2 -1 0 +1 +2, other
chirality          unspecified, CW, CCW, other
hybridisation      S SP SP2 SP3 SP3D SP3D2, other
aromatic           1 column
total H            0..4, other
in ring            1 column
=================  ===========================================================

Bond features (``bond_dim`` columns): type (single, double, triple, aromatic, other),
conjugated, in ring, stereo (none, any, Z/cis, E/trans).

Atoms are the atoms of the RDKit molecule parsed from the SMILES (hydrogens implicit), in
RDKit atom order; every bond appears in both directions, so ``edge_index`` is
``[[u0, v0, u1, v1, ...], [v0, u0, v1, u1, ...]]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rdkit import Chem

from mmsa.chem.standardize import parse_smiles

__all__ = ["GraphFeatures", "GraphFeaturizer", "ATOM_FEATURES", "BOND_FEATURES"]

_HYB = Chem.rdchem.HybridizationType
_CHI = Chem.rdchem.ChiralType
_BT = Chem.rdchem.BondType
_ST = Chem.rdchem.BondStereo

ELEMENTS = (1, 5, 6, 7, 8, 9, 14, 15, 16, 17, 34, 35, 53)
DEGREES = (0, 1, 2, 3, 4, 5)
CHARGES = (-2, -1, 0, 1, 2)
CHIRALITIES = (_CHI.CHI_UNSPECIFIED, _CHI.CHI_TETRAHEDRAL_CW, _CHI.CHI_TETRAHEDRAL_CCW)
HYBRIDISATIONS = (_HYB.S, _HYB.SP, _HYB.SP2, _HYB.SP3, _HYB.SP3D, _HYB.SP3D2)
NUM_HS = (0, 1, 2, 3, 4)
BOND_TYPES = (_BT.SINGLE, _BT.DOUBLE, _BT.TRIPLE, _BT.AROMATIC)

#: (name, width) of each atom feature block, in column order.
ATOM_FEATURES: tuple[tuple[str, int], ...] = (
    ("element", len(ELEMENTS) + 1),
    ("degree", len(DEGREES) + 1),
    ("formal_charge", len(CHARGES) + 1),
    ("chirality", len(CHIRALITIES) + 1),
    ("hybridisation", len(HYBRIDISATIONS) + 1),
    ("aromatic", 1),
    ("total_h", len(NUM_HS) + 1),
    ("in_ring", 1),
)
#: (name, width) of each bond feature block, in column order.
BOND_FEATURES: tuple[tuple[str, int], ...] = (
    ("bond_type", len(BOND_TYPES) + 1),
    ("conjugated", 1),
    ("in_ring", 1),
    ("stereo", 4),
)


def _offsets(blocks) -> list[int]:
    out, total = [], 0
    for _, width in blocks:
        out.append(total)
        total += width
    return out


_A_OFF = _offsets(ATOM_FEATURES)
_B_OFF = _offsets(BOND_FEATURES)
ATOM_DIM = sum(w for _, w in ATOM_FEATURES)
BOND_DIM = sum(w for _, w in BOND_FEATURES)

# Column lookups, built once. ``.get(value, other)`` gives the column of an atom property.
_ELEMENT = {v: _A_OFF[0] + i for i, v in enumerate(ELEMENTS)}
_ELEMENT_OTHER = _A_OFF[0] + len(ELEMENTS)
_DEGREE = {v: _A_OFF[1] + i for i, v in enumerate(DEGREES)}
_DEGREE_OTHER = _A_OFF[1] + len(DEGREES)
_CHARGE = {v: _A_OFF[2] + i for i, v in enumerate(CHARGES)}
_CHARGE_OTHER = _A_OFF[2] + len(CHARGES)
_CHIRAL = {v: _A_OFF[3] + i for i, v in enumerate(CHIRALITIES)}
_CHIRAL_OTHER = _A_OFF[3] + len(CHIRALITIES)
_HYBRID = {v: _A_OFF[4] + i for i, v in enumerate(HYBRIDISATIONS)}
_HYBRID_OTHER = _A_OFF[4] + len(HYBRIDISATIONS)
_AROMATIC = _A_OFF[5]
_NUMH = {v: _A_OFF[6] + i for i, v in enumerate(NUM_HS)}
_NUMH_OTHER = _A_OFF[6] + len(NUM_HS)
_ATOM_RING = _A_OFF[7]

_BTYPE = {v: _B_OFF[0] + i for i, v in enumerate(BOND_TYPES)}
_BTYPE_OTHER = _B_OFF[0] + len(BOND_TYPES)
_CONJ = _B_OFF[1]
_BOND_RING = _B_OFF[2]
_STEREO = {
    _ST.STEREONONE: _B_OFF[3], _ST.STEREOANY: _B_OFF[3] + 1,
    _ST.STEREOZ: _B_OFF[3] + 2, _ST.STEREOCIS: _B_OFF[3] + 2,
    _ST.STEREOE: _B_OFF[3] + 3, _ST.STEREOTRANS: _B_OFF[3] + 3,
}
_STEREO_DEFAULT = _B_OFF[3]


@dataclass(frozen=True, eq=False)
class GraphFeatures:
    """One molecule's graph.

    Attributes:
        x: float32 ``[N, atom_dim]`` atom features, RDKit atom order.
        edge_index: int64 ``[2, 2B]`` directed edges (each bond both ways, consecutively).
        edge_attr: float32 ``[2B, bond_dim]`` bond features of each directed edge.
    """

    x: np.ndarray
    edge_index: np.ndarray
    edge_attr: np.ndarray

    @property
    def num_nodes(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])


class GraphFeaturizer:
    """SMILES -> :class:`GraphFeatures`. Picklable, stateless apart from its config.

    >>> f = GraphFeaturizer()
    >>> g = f("CCO")
    >>> g.x.shape == (3, f.atom_dim), g.edge_index.shape, g.edge_attr.shape == (4, f.bond_dim)
    (True, (2, 4), True)

    Raises :class:`mmsa.types.InputError` on an invalid SMILES.
    """

    name = "graph"
    version = 1
    atom_dim: int = ATOM_DIM
    bond_dim: int = BOND_DIM

    def config(self) -> dict:
        """What determines the output (used in cache keys and checkpoints)."""
        return {"name": self.name, "version": self.version, "atom_dim": self.atom_dim,
                "bond_dim": self.bond_dim}

    def __repr__(self) -> str:
        return f"GraphFeaturizer(atom_dim={self.atom_dim}, bond_dim={self.bond_dim})"

    def __call__(self, smiles: str) -> GraphFeatures:
        mol = parse_smiles(smiles)
        # Properties that a SMILES can only set with certain characters are read per atom or
        # bond only when those characters occur (a speed-up; the result is the same).
        return self.featurize_mol(
            mol,
            charges="+" in smiles or "-" in smiles,
            chirality="@" in smiles,
            bond_stereo="/" in smiles or "\\" in smiles,
            dative=">" in smiles or "<" in smiles,
        )

    def featurize_mol(self, mol: Chem.Mol, *, charges: bool = True, chirality: bool = True,
                      bond_stereo: bool = True, dative: bool = True) -> GraphFeatures:
        """Features of an already-parsed molecule (its atoms, in its order).

        The keyword flags may be set False only when the molecule cannot have that property
        (no formal charges, chiral tags, bond stereo or dative/unusual bonds): they skip
        reading it atom by atom.
        """
        n = mol.GetNumAtoms()
        nb = mol.GetNumBonds()
        atom = mol.GetAtomWithIdx
        bond = mol.GetBondWithIdx

        # Bonds first: their ends give the degrees.
        if nb:
            ends = np.fromiter(
                (v for j in range(nb) for b in (bond(j),)
                 for v in (b.GetBeginAtomIdx(), b.GetEndAtomIdx(),
                           _CONJ if b.GetIsConjugated() else -1,
                           _BOND_RING if b.IsInRing() else -1)),
                dtype=np.int64, count=4 * nb,
            ).reshape(nb, 4)
            src, dst = ends[:, 0], ends[:, 1]
            if dative:
                btype = np.fromiter((_BTYPE.get(bond(j).GetBondType(), _BTYPE_OTHER)
                                     for j in range(nb)), dtype=np.int64, count=nb)
            else:
                order = Chem.GetAdjacencyMatrix(mol, useBO=True)[src, dst]
                btype = _bond_order_columns(order)
            if bond_stereo:
                stereo = np.fromiter((_STEREO.get(bond(j).GetStereo(), _STEREO_DEFAULT)
                                      for j in range(nb)), dtype=np.int64, count=nb)
            else:
                stereo = np.full(nb, _STEREO_DEFAULT, dtype=np.int64)
            degree = np.bincount(ends[:, :2].ravel(), minlength=n)
        else:
            degree = np.zeros(n, dtype=np.int64)

        props = np.fromiter(
            (v for i in range(n) for a in (atom(i),)
             for v in (_ELEMENT.get(a.GetAtomicNum(), _ELEMENT_OTHER),
                       _HYBRID.get(a.GetHybridization(), _HYBRID_OTHER),
                       _AROMATIC if a.GetIsAromatic() else -1,
                       _NUMH.get(a.GetTotalNumHs(), _NUMH_OTHER),
                       _ATOM_RING if a.IsInRing() else -1)),
            dtype=np.int64, count=5 * n,
        ).reshape(n, 5)
        if charges:
            charge = np.fromiter((_CHARGE.get(atom(i).GetFormalCharge(), _CHARGE_OTHER)
                                  for i in range(n)), dtype=np.int64, count=n)
        else:
            charge = np.full(n, _CHARGE[0], dtype=np.int64)
        if chirality:
            chiral = np.fromiter((_CHIRAL.get(atom(i).GetChiralTag(), _CHIRAL_OTHER)
                                  for i in range(n)), dtype=np.int64, count=n)
        else:
            chiral = np.full(n, _CHIRAL[_CHI.CHI_UNSPECIFIED], dtype=np.int64)
        deg = np.where(degree < len(DEGREES), _A_OFF[1] + degree, _DEGREE_OTHER)

        cols = np.column_stack([props, charge, chiral, deg])
        x = np.zeros((n, ATOM_DIM + 1), dtype=np.float32)  # last column absorbs the -1s
        x[np.arange(n)[:, None], cols] = 1.0
        x = np.ascontiguousarray(x[:, :ATOM_DIM])

        if nb == 0:
            return GraphFeatures(x, np.zeros((2, 0), dtype=np.int64),
                                 np.zeros((0, BOND_DIM), dtype=np.float32))
        bcols = np.column_stack([btype, ends[:, 2], ends[:, 3], stereo])
        battr = np.zeros((nb, BOND_DIM + 1), dtype=np.float32)
        battr[np.arange(nb)[:, None], bcols] = 1.0
        edge_attr = np.repeat(battr[:, :BOND_DIM], 2, axis=0)
        edge_index = np.empty((2, 2 * nb), dtype=np.int64)
        edge_index[0, 0::2], edge_index[0, 1::2] = src, dst
        edge_index[1, 0::2], edge_index[1, 1::2] = dst, src
        return GraphFeatures(x, edge_index, edge_attr)


def _bond_order_columns(order: np.ndarray) -> np.ndarray:
    """Bond-type columns from RDKit bond orders (1, 2, 3, 1.5 aromatic; anything else other)."""
    out = np.full(order.shape, _BTYPE_OTHER, dtype=np.int64)
    out[order == 1.0] = _BTYPE[_BT.SINGLE]
    out[order == 2.0] = _BTYPE[_BT.DOUBLE]
    out[order == 3.0] = _BTYPE[_BT.TRIPLE]
    out[order == 1.5] = _BTYPE[_BT.AROMATIC]
    return out
