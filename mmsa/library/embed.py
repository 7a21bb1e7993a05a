"""The per-chunk work of a library build: a pure function of a SMILES batch and a checkpoint.

:func:`embed_chunk` featurises and embeds a batch (via :func:`mmsa.model.encoder.embed_batch`) and
computes the fingerprints the store keeps beside the vectors. It has no side effects and no
state besides the encoder; :class:`ChunkEmbedder` holds a worker's encoder (loaded once) and
applies it chunk after chunk. Both build engines (:mod:`mmsa.library.engines`: local worker
processes, Ray Data actors) run exactly this code.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmsa.types import Failure

log = logging.getLogger(__name__)

#: Morgan fingerprint settings (the fingerprint baseline users expect; mmsa.chem.fingerprints)
MORGAN_RADIUS = 2
FP_BITS = 2048
FP_BYTES = FP_BITS // 8
#: number of memory slots kept per molecule
SLOT_TOP = 8


@dataclass
class ChunkResult:
    """Arrays for the ``ok`` molecules of a batch of m SMILES, in batch order.

    vectors float32 [n_ok, dim] (L2-normalised); slot_ids int32 [n_ok, t] and slot_weights
    float32 [n_ok, t] (top-t slots, descending weight); morgan uint8 [n_ok, 256] and pattern
    uint8 [n_ok, 256] (packed 2048-bit fingerprints); ok bool [m]; failures: Failure records
    whose ``row`` is the position in the batch.
    """

    vectors: np.ndarray
    slot_ids: np.ndarray
    slot_weights: np.ndarray
    morgan: np.ndarray
    pattern: np.ndarray
    ok: np.ndarray
    failures: list[Failure] = field(default_factory=list)


def morgan_generator():
    """The shared Morgan r=2, 2048-bit generator (:mod:`mmsa.chem.fingerprints`' own)."""
    from mmsa.chem.fingerprints import _generator

    return _generator(MORGAN_RADIUS, FP_BITS)


def parse_smiles(smiles: str):
    """RDKit Mol of ``smiles`` (:func:`mmsa.chem.standardize.parse_smiles`) or None."""
    from mmsa.chem.standardize import parse_smiles as _parse
    from mmsa.types import InputError

    try:
        return _parse(smiles)
    except InputError:
        return None


def morgan_packed(mol) -> np.ndarray:
    """Morgan r=2 2048-bit fingerprint of ``mol`` as packed bits: uint8 [256]
    (:func:`mmsa.chem.fingerprints.morgan_fingerprint`)."""
    from mmsa.chem.fingerprints import morgan_fingerprint

    return morgan_fingerprint(mol, MORGAN_RADIUS, FP_BITS)


def pattern_packed(mol) -> np.ndarray:
    """RDKit pattern fingerprint of a molecule: uint8 [256]
    (:func:`mmsa.chem.fingerprints.pattern_fingerprint`, big-endian like Morgan)."""
    from mmsa.chem.fingerprints import pattern_fingerprint

    return pattern_fingerprint(mol, FP_BITS)


def pattern_query_packed(query_mol) -> np.ndarray:
    """Screen fingerprint of a query (a Mol from SMILES or SMARTS): uint8 [256]
    (:func:`mmsa.chem.fingerprints.screen_fingerprint`: safe for SMARTS)."""
    from mmsa.chem.fingerprints import screen_fingerprint

    return screen_fingerprint(query_mol, FP_BITS)


def top_slots(weights: np.ndarray, top: int = SLOT_TOP) -> tuple[np.ndarray, np.ndarray]:
    """Top-``top`` slots of each row of ``weights`` float [n, M] by weight, descending.

    Returns (ids int32 [n, t], weights float32 [n, t]) with t = min(top, M).
    """
    weights = np.asarray(weights, dtype=np.float32)
    n, m = weights.shape
    t = min(top, m)
    if n == 0:
        return np.zeros((0, t), np.int32), np.zeros((0, t), np.float32)
    part = np.argpartition(-weights, t - 1, axis=1)[:, :t] if t < m else np.tile(np.arange(m), (n, 1))
    w = np.take_along_axis(weights, part, axis=1)
    order = np.argsort(-w, axis=1, kind="stable")
    ids = np.take_along_axis(part, order, axis=1).astype(np.int32)
    return ids, np.take_along_axis(w, order, axis=1).astype(np.float32)


def embed_chunk(
    smiles: list[str], encoder, mode: str = "fast", batch_size: int = 1024
) -> ChunkResult:
    """Embed a batch of (standardised) SMILES and fingerprint it.

    ``encoder`` is an :class:`mmsa.model.encoder.Encoder`. A molecule fails (and gets a Failure
    with its batch position) when RDKit cannot parse it or the encoder cannot embed it.
    Pure: the result depends only on ``smiles`` and the encoder's checkpoint.
    """
    smiles = [str(s) for s in smiles]
    m = len(smiles)
    res = encoder.embed(smiles, mode=mode, batch_size=batch_size)
    ok = np.asarray(res.ok, dtype=bool).copy()
    failures = list(res.failures)
    morgan = np.zeros((m, FP_BYTES), np.uint8)
    pattern = np.zeros((m, FP_BYTES), np.uint8)
    for i, s in enumerate(smiles):
        if not ok[i]:
            continue
        mol = parse_smiles(s)
        if mol is None or mol.GetNumAtoms() == 0:
            ok[i] = False
            failures.append(Failure(i, s, "RDKit could not parse the SMILES for fingerprints"))
            continue
        morgan[i] = morgan_packed(mol)
        pattern[i] = pattern_packed(mol)
    vectors = np.asarray(res.vectors, dtype=np.float32)[ok]
    ids, w = top_slots(np.asarray(res.slot_weights, dtype=np.float32)[ok])
    failures.sort(key=lambda f: f.row)
    return ChunkResult(
        vectors=np.ascontiguousarray(vectors),
        slot_ids=ids,
        slot_weights=w,
        morgan=morgan[ok],
        pattern=pattern[ok],
        ok=ok,
        failures=failures,
    )


# -- the per-worker state of a build engine ---------------------------------------------------


def load_encoder(spec, device: str = "auto"):
    """An Encoder from ``spec``: an Encoder (returned as is), a checkpoint path, or None
    (``$MMSA_CHECKPOINT`` when set, else the shipped checkpoint)."""
    if spec is not None and not isinstance(spec, (str, os.PathLike)):
        return spec
    from mmsa.model.encoder import Encoder

    if spec is None:
        spec = os.environ.get("MMSA_CHECKPOINT") or None
    return Encoder.load(Path(spec) if spec is not None else None, device=device)


class ChunkEmbedder:
    """What one build worker holds: an encoder loaded once, applied to chunk after chunk.

    ``ChunkEmbedder(spec, threads=1, mode="fast")(smiles) -> ChunkResult`` is
    :func:`embed_chunk` with the worker's encoder (``spec`` as :func:`load_encoder`, on the
    CPU, torch limited to ``threads`` threads). Both build engines use it: the local engine's
    worker processes and the Ray engine's actors (:mod:`mmsa.library.engines`).
    """

    def __init__(self, spec, threads: int = 1, mode: str = "fast"):
        try:
            import torch

            torch.set_num_threads(max(1, int(threads)))
        except ImportError:  # pragma: no cover (a torch-free fake encoder in tests)
            pass
        self.encoder = load_encoder(spec, device="cpu")
        self.mode = mode

    def __call__(self, smiles: list[str]) -> ChunkResult:
        return embed_chunk(smiles, self.encoder, mode=self.mode)
