"""3D conformer featurizer: RDKit ETKDGv3 with a fixed seed (optionally MMFF-relaxed).

The molecule is embedded with its hydrogens (as RDKit recommends; switch off with
``hydrogens=False`` for speed), then only the atoms of the parsed molecule are returned, in
RDKit atom order, i.e. exactly the nodes of :class:`mmsa.chem.graph.GraphFeaturizer`.
Embedding is bounded by an attempt count and a timeout; when ETKDG's usual start fails, one
retry starts from random coordinates (RDKit's advice for hard cases). When no conformer is
found, the featurizer returns :class:`ConformerFailure` with the reason instead of raising,
so callers can keep the molecule for the other modalities.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdDistGeom, rdForceFieldHelpers
from rdkit.rdBase import BlockLogs

from mmsa.chem.standardize import parse_smiles

__all__ = ["Conformer", "ConformerFailure", "ConformerFeaturizer"]

log = logging.getLogger(__name__)

_CAUSES = {int(k): v.name for k, v in rdDistGeom.EmbedFailureCauses.values.items()}


@dataclass(frozen=True, eq=False)
class Conformer:
    """One 3D conformer.

    Attributes:
        z: int64 ``[N]`` atomic numbers, graph atom order.
        pos: float32 ``[N, 3]`` coordinates in Angstrom, centred on their mean.
    """

    z: np.ndarray
    pos: np.ndarray

    @property
    def num_atoms(self) -> int:
        return int(self.z.shape[0])


@dataclass(frozen=True)
class ConformerFailure:
    """No conformer could be made; ``reason`` says why (shown to users as is)."""

    reason: str

    def __bool__(self) -> bool:  # so `if result:` reads as "got a conformer"
        return False


class ConformerFeaturizer:
    """SMILES -> :class:`Conformer` or :class:`ConformerFailure`. Picklable.

    Args:
        seed: ETKDG random seed (fixed by default, so results are reproducible).
        mmff: relax the embedded geometry with MMFF94 (skipped, with a log message, when
            MMFF has no parameters for the molecule).
        mmff_iters: MMFF iteration cap.
        max_attempts: ETKDG attempts per try (RDKit's ``maxIterations``).
        timeout: seconds per embedding try (RDKit's ``timeout``; 0 = none).
        random_coords_retry: retry once from random coordinates when the first try fails.
        hydrogens: embed with explicit hydrogens (then drop them); faster without.

    >>> c = ConformerFeaturizer()("CCO")
    >>> c.z.tolist(), c.pos.shape
    ([6, 6, 8], (3, 3))

    Raises :class:`mmsa.types.InputError` on an invalid SMILES.
    """

    name = "conformer"
    version = 1

    def __init__(self, seed: int = 42, mmff: bool = False, mmff_iters: int = 200,
                 max_attempts: int = 50, timeout: int = 10, random_coords_retry: bool = True,
                 hydrogens: bool = True):
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if timeout < 0:
            raise ValueError(f"timeout must be >= 0 seconds, got {timeout}")
        self.seed = int(seed)
        self.mmff = bool(mmff)
        self.mmff_iters = int(mmff_iters)
        self.max_attempts = int(max_attempts)
        self.timeout = int(timeout)
        self.random_coords_retry = bool(random_coords_retry)
        self.hydrogens = bool(hydrogens)

    def config(self) -> dict:
        """What determines the output (used in cache keys and checkpoints)."""
        return {"name": self.name, "version": self.version, "method": "ETKDGv3",
                "seed": self.seed, "mmff": self.mmff, "mmff_iters": self.mmff_iters,
                "max_attempts": self.max_attempts, "timeout": self.timeout,
                "random_coords_retry": self.random_coords_retry, "hydrogens": self.hydrogens}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items()
                         if k not in ("name", "version", "method"))
        return f"ConformerFeaturizer({args})"

    def __call__(self, smiles: str) -> Conformer | ConformerFailure:
        return self.featurize_mol(parse_smiles(smiles))

    def _params(self, random_coords: bool) -> rdDistGeom.EmbedParameters:
        params = rdDistGeom.ETKDGv3()
        params.randomSeed = self.seed
        params.maxIterations = self.max_attempts
        params.timeout = self.timeout
        params.numThreads = 1
        params.useRandomCoords = random_coords
        params.trackFailures = True
        return params

    def featurize_mol(self, mol: Chem.Mol) -> Conformer | ConformerFailure:
        """Embed a parsed molecule; its atoms keep their order in the result."""
        n = mol.GetNumAtoms()
        work = Chem.AddHs(mol) if self.hydrogens else Chem.Mol(mol)
        tries = [False, True] if self.random_coords_retry else [False]
        reasons = []
        conf_id = -1
        with BlockLogs():
            for random_coords in tries:
                params = self._params(random_coords)
                try:
                    conf_id = rdDistGeom.EmbedMolecule(work, params)
                except RuntimeError as exc:  # e.g. RDKit invariant violations on odd valences
                    detail = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
                    reasons.append("RDKit error: " + "; ".join(detail[:2]))
                    continue
                if conf_id >= 0:
                    break
                reasons.append(_describe_failures(params, random_coords, self.max_attempts))
            if conf_id < 0:
                return ConformerFailure("no conformer: " + "; then ".join(reasons))
            if self.mmff:
                self._relax(work)
        pos = work.GetConformer(conf_id).GetPositions()[:n]
        pos = (pos - pos.mean(0)).astype(np.float32)
        atom = mol.GetAtomWithIdx
        z = np.fromiter((atom(i).GetAtomicNum() for i in range(n)), dtype=np.int64, count=n)
        return Conformer(z=z, pos=pos)

    def _relax(self, mol: Chem.Mol) -> None:
        if not rdForceFieldHelpers.MMFFHasAllMoleculeParams(mol):
            log.debug("MMFF has no parameters for %s; keeping the ETKDG geometry",
                      Chem.MolToSmiles(Chem.RemoveHs(mol)))
            return
        rdForceFieldHelpers.MMFFOptimizeMolecule(mol, maxIters=self.mmff_iters)


def _describe_failures(params: rdDistGeom.EmbedParameters, random_coords: bool,
                       attempts: int) -> str:
    counts = params.GetFailureCounts()
    top = sorted(((c, _CAUSES.get(i, str(i))) for i, c in enumerate(counts) if c), reverse=True)
    start = "random coordinates" if random_coords else "ETKDGv3"
    causes = ", ".join(f"{name.lower()} x{c}" for c, name in top[:3]) or "no cause reported"
    if any(name == "EXCEEDED_TIMEOUT" for _, name in top):
        return f"{start} timed out after {params.timeout} s ({causes})"
    return f"{start} failed within {attempts} attempts ({causes})"
