"""Chemical pre-training targets: what the shared MMSA code is asked to decode.

Pure RDKit -> numpy (no torch), run once per corpus and cached by the trainer.

- :func:`morgan_counts`: folded Morgan *count* environments, radius 0-2 (ECFP4-like), as
  uint8 counts ``[n, n_bits]`` (clipped at 255). Decoding them makes the code carry the local
  substructure content that chemists' similarity is built on; their binary form gives the
  in-batch Tanimoto kernel the similarity-distillation loss matches.
- :func:`descriptors`: a fixed list of fast RDKit 2D descriptors (size, polarity, lipophilicity,
  H-bonding, rings, flexibility, charge state), float32 ``[n, len(DESCRIPTOR_NAMES)]``. They are
  standardised (robust z-scores, clipped) by :func:`standardise_descriptors` with statistics of
  the training corpus, stored in the checkpoint.
- :func:`scaffold_ids`: Bemis-Murcko scaffold group per molecule, used by the trainer to put
  analogues (same scaffold) into the same batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rdkit import Chem
from rdkit.Chem import Crippen, Descriptors, Lipinski, rdMolDescriptors
from rdkit.Chem import rdFingerprintGenerator as rfg
from rdkit.Chem.Scaffolds import MurckoScaffold
from rdkit.rdBase import BlockLogs

__all__ = ["DESCRIPTOR_NAMES", "morgan_counts", "descriptors", "standardise_descriptors",
           "scaffold_ids", "compute_targets"]

TARGET_RADIUS = 2
TARGET_BITS = 1024


def _desc_functions():
    return {
        "heavy_atoms": lambda m: m.GetNumHeavyAtoms(),
        "mol_wt": Descriptors.MolWt,
        "clogp": Crippen.MolLogP,
        "mr": Crippen.MolMR,
        "tpsa": rdMolDescriptors.CalcTPSA,
        "labute_asa": rdMolDescriptors.CalcLabuteASA,
        "hbd": Lipinski.NumHDonors,
        "hba": Lipinski.NumHAcceptors,
        "rot_bonds": rdMolDescriptors.CalcNumRotatableBonds,
        "rings": rdMolDescriptors.CalcNumRings,
        "aromatic_rings": rdMolDescriptors.CalcNumAromaticRings,
        "aliphatic_rings": rdMolDescriptors.CalcNumAliphaticRings,
        "heteroatoms": rdMolDescriptors.CalcNumHeteroatoms,
        "frac_csp3": rdMolDescriptors.CalcFractionCSP3,
        "stereocentres": rdMolDescriptors.CalcNumAtomStereoCenters,
        "amide_bonds": rdMolDescriptors.CalcNumAmideBonds,
        "bridgeheads": rdMolDescriptors.CalcNumBridgeheadAtoms,
        "spiro": rdMolDescriptors.CalcNumSpiroAtoms,
        "max_ring_size": lambda m: max((len(r) for r in m.GetRingInfo().AtomRings()), default=0),
    }


# element counts and total |formal charge|, from one pass over the atoms
_ELEMENT_COLUMNS = ("n_count", "o_count", "s_count", "halogens", "formal_charge")


def _atom_counts(m: Chem.Mol) -> list[float]:
    z = np.fromiter((a.GetAtomicNum() for a in m.GetAtoms()), dtype=np.int64)
    q = sum(abs(a.GetFormalCharge()) for a in m.GetAtoms())
    return [float((z == 7).sum()), float((z == 8).sum()), float((z == 16).sum()),
            float(np.isin(z, (9, 17, 35, 53)).sum()), float(q)]


_DESC = _desc_functions()
DESCRIPTOR_NAMES: tuple[str, ...] = (*_DESC, *_ELEMENT_COLUMNS)


def _mols(smiles: Sequence[str]) -> list[Chem.Mol | None]:
    with BlockLogs():
        return [Chem.MolFromSmiles(s) for s in smiles]


def morgan_counts(mols: Sequence[Chem.Mol | None], radius: int = TARGET_RADIUS,
                  n_bits: int = TARGET_BITS) -> np.ndarray:
    """Folded Morgan count fingerprints ``uint8 [n, n_bits]`` (zeros for ``None``)."""
    gen = rfg.GetMorganGenerator(radius=radius, fpSize=n_bits)
    out = np.zeros((len(mols), n_bits), dtype=np.uint8)
    for i, m in enumerate(mols):
        if m is not None:
            out[i] = np.minimum(gen.GetCountFingerprintAsNumPy(m), 255)
    return out


def descriptors(mols: Sequence[Chem.Mol | None]) -> np.ndarray:
    """Raw descriptor values ``float32 [n, len(DESCRIPTOR_NAMES)]`` (NaN where one fails)."""
    out = np.full((len(mols), len(DESCRIPTOR_NAMES)), np.nan, dtype=np.float32)
    for i, m in enumerate(mols):
        if m is None:
            continue
        for j, f in enumerate(_DESC.values()):
            try:
                out[i, j] = float(f(m))
            except Exception:  # noqa: BLE001 - one descriptor failing leaves a NaN
                pass
        out[i, len(_DESC):] = _atom_counts(m)
    return out


def standardise_descriptors(raw: np.ndarray, centre: np.ndarray | None = None,
                            scale: np.ndarray | None = None, clip: float = 5.0
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Robust z-scores (median / 1.4826 MAD, floor 1e-3), clipped to ``[-clip, clip]``,
    NaN -> 0. Returns ``(standardised, centre, scale)``; pass the training statistics to
    standardise new molecules the same way."""
    raw = np.asarray(raw, dtype=np.float32)
    if centre is None:
        centre = np.nanmedian(raw, axis=0)
    if scale is None:
        mad = np.nanmedian(np.abs(raw - centre), axis=0) * 1.4826
        std = np.nanstd(raw, axis=0)
        scale = np.where(mad > 1e-3, mad, np.maximum(std, 1e-3))
    z = np.clip((raw - centre) / scale, -clip, clip)
    return np.nan_to_num(z, nan=0.0).astype(np.float32), centre.astype(np.float32), \
        scale.astype(np.float32)


def scaffold_ids(keys: Sequence[str]) -> np.ndarray:
    """Integer group per scaffold key (from :func:`compute_targets`); ``-1`` for ``""``
    (acyclic molecules or failures)."""
    ids: dict[str, int] = {}
    out = np.full(len(keys), -1, dtype=np.int64)
    for i, key in enumerate(keys):
        if key:
            out[i] = ids.setdefault(key, len(ids))
    return out


def compute_targets(smiles: Sequence[str], n_bits: int = TARGET_BITS) -> dict[str, np.ndarray]:
    """``{"counts": uint8 [n, n_bits], "descriptors": float32 [n, D] (raw),
    "scaffold": int64 [n]}`` for a list of SMILES (a picklable top-level function, so it
    runs in worker processes)."""
    mols = _mols(smiles)
    return {"counts": morgan_counts(mols, n_bits=n_bits), "descriptors": descriptors(mols),
            "scaffold_key": np.array([_scaffold_key(m) for m in mols], dtype=object)}


def _scaffold_key(m: Chem.Mol | None) -> str:
    if m is None or m.GetRingInfo().NumRings() == 0:
        return ""
    try:
        with BlockLogs():
            return Chem.MolToSmiles(MurckoScaffold.GetScaffoldForMol(m))
    except Exception:  # noqa: BLE001
        return ""
