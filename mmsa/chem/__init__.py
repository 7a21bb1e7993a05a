"""RDKit side of MMSA Explorer: reading libraries, standardising, featurising (numpy out).

Nothing here imports torch. Names are imported lazily from their modules, e.g.
``from mmsa.chem import GraphFeaturizer`` or ``from mmsa.chem.graph import GraphFeaturizer``.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "parse_smiles": "standardize",
    "smiles_error": "standardize",
    "standardize_mol": "standardize",
    "standardize_smiles": "standardize",
    "GraphFeaturizer": "graph",
    "GraphFeatures": "graph",
    "ImageFeaturizer": "image",
    "ConformerFeaturizer": "conformer",
    "Conformer": "conformer",
    "ConformerFailure": "conformer",
    "Chunk": "io",
    "iter_library": "io",
    "read_library": "io",
    "featurize_many": "parallel",
    "morgan_fingerprint": "fingerprints",
    "morgan_fingerprints": "fingerprints",
    "tanimoto": "fingerprints",
    "mol_svg": "depict",
    "mcs": "motifs",
    "match_atoms": "motifs",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mmsa.chem' has no attribute {name!r}")
    return getattr(importlib.import_module(f"mmsa.chem.{module}"), name)


def __dir__():
    return sorted(set(globals()) | set(__all__))
