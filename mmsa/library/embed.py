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
    smiles: list[str], encoder, mode: str = "fast", batch_size: int = 1024,
    canonical: bool = False,
) -> ChunkResult:
    """Embed a batch of (standardised) SMILES and fingerprint it.

    ``encoder`` is an :class:`mmsa.model.encoder.Encoder`. A molecule fails (and gets a Failure
    with its batch position) when RDKit cannot parse it or the encoder cannot embed it.
    Pure: the result depends only on ``smiles`` and the encoder's checkpoint.

    The fast path of a real encoder parses each SMILES once and featurises, embeds and
    fingerprints that one RDKit molecule (:func:`embed_chunk_mols`); anything else (the
    ``"full"`` mode, an encoder without a graph featurizer) goes through ``encoder.embed``
    and :func:`embed_chunk_reference`. Both give the same result. ``canonical=True`` says
    every SMILES was written by RDKit (the readers' standardised SMILES, as the build engines
    pass them): the fast path then parses with
    :func:`mmsa.chem.standardize.parse_canonical` (same molecules, cheaper).
    """
    smiles = [str(s) for s in smiles]
    if mode == "fast" and hasattr(encoder, "graph_featurizer") and hasattr(encoder, "model"):
        return embed_chunk_mols(smiles, encoder, batch_size=batch_size, canonical=canonical)
    return embed_chunk_reference(smiles, encoder, mode=mode, batch_size=batch_size)


def embed_chunk_reference(
    smiles: list[str], encoder, mode: str = "fast", batch_size: int = 1024,
    canonical: bool = False,
) -> ChunkResult:
    """:func:`embed_chunk` the straightforward way: ``encoder.embed`` (which parses every
    SMILES), then each molecule parsed again for its fingerprints. The baseline the faster
    path is tested and benchmarked against (and the path of ``"full"`` mode). ``canonical``
    is accepted for :func:`embed_chunk`'s signature; this path always parses in full."""
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


def fingerprints_packed(mols) -> tuple[np.ndarray, np.ndarray]:
    """Morgan r=2 and pattern 2048-bit fingerprints of parsed molecules, packed as
    :func:`morgan_packed` / :func:`pattern_packed` give them: (uint8 [n, 256], uint8 [n, 256]).

    One RDKit call per molecule and fingerprint; the bits are converted for the whole batch
    at once (FPS text, whose bytes are little-endian, joined, decoded and bit-reversed into
    :func:`numpy.packbits` order)."""
    from rdkit import Chem, DataStructs

    from mmsa.chem.fingerprints import REVERSE_BITS

    n = len(mols)
    if n == 0:
        return np.zeros((0, FP_BYTES), np.uint8), np.zeros((0, FP_BYTES), np.uint8)
    to_fps = DataStructs.BitVectToFPSText
    gen = morgan_generator()
    morgan = "".join([to_fps(gen.GetFingerprint(m)) for m in mols])
    pattern = "".join([to_fps(Chem.PatternFingerprint(m, fpSize=FP_BITS)) for m in mols])

    def unpack(text: str) -> np.ndarray:
        raw = np.frombuffer(bytes.fromhex(text), dtype=np.uint8).reshape(n, FP_BYTES)
        return REVERSE_BITS[raw]

    return unpack(morgan), unpack(pattern)


def embed_chunk_mols(smiles: list[str], encoder, batch_size: int = 1024,
                     canonical: bool = False) -> ChunkResult:
    """:func:`embed_chunk` in fast mode, each SMILES parsed once.

    Block by block of ``batch_size`` positions (the batches ``Encoder.embed`` uses, so the
    model sees the same batches; only one block's molecules are held at a time), the
    molecule :func:`mmsa.chem.standardize.parse_smiles` gives is featurised
    (``GraphFeaturizer.batch_mols``), collated, embedded and fingerprinted
    (:func:`fingerprints_packed`); failures carry the same reasons as the reference path.
    ``canonical``: parse with :func:`mmsa.chem.standardize.parse_canonical` (RDKit-written
    SMILES only).
    """
    import torch

    from mmsa.chem.standardize import parse_canonical, parse_smiles

    parse = parse_canonical if canonical else parse_smiles
    from mmsa.model.batch import collate
    from mmsa.types import InputError

    smiles = [str(s) for s in smiles]
    m = len(smiles)
    ok = np.zeros(m, dtype=bool)
    failures: list[Failure] = []
    vectors, weights, morgan, pattern = [], [], [], []
    for b0 in range(0, m, max(1, int(batch_size))):
        mols, where = [], []
        for i in range(b0, min(b0 + batch_size, m)):
            try:
                mols.append(parse(smiles[i]))
                where.append(i)
            except InputError as exc:
                failures.append(Failure(i, smiles[i], str(exc)))
        feats = encoder.graph_featurizer.batch_mols(mols, [smiles[i] for i in where])
        keep = []
        for j, (i, g) in enumerate(zip(where, feats)):
            if g.x.shape[0] == 0:
                failures.append(Failure(i, smiles[i], "molecule has no heavy atoms"))
            else:
                keep.append(j)
        if not keep:
            continue
        ok[[where[j] for j in keep]] = True
        batch = collate([feats[j] for j in keep])
        with torch.inference_mode():
            v, w = encoder.model.embed(batch.to(encoder.device), mode="fast")
        vectors.append(v.float().cpu().numpy())
        weights.append(w.float().cpu().numpy())
        fp_m, fp_p = fingerprints_packed([mols[j] for j in keep])
        morgan.append(fp_m)
        pattern.append(fp_p)

    def stack(parts: list, width: int, dtype) -> np.ndarray:
        return (np.ascontiguousarray(np.concatenate(parts), dtype=dtype) if parts
                else np.zeros((0, width), dtype))

    ids, w = top_slots(stack(weights, encoder.num_slots, np.float32))
    failures.sort(key=lambda f: f.row)
    return ChunkResult(
        vectors=stack(vectors, encoder.dim, np.float32),
        slot_ids=ids,
        slot_weights=w,
        morgan=stack(morgan, FP_BYTES, np.uint8),
        pattern=stack(pattern, FP_BYTES, np.uint8),
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
    CPU, torch limited to ``threads`` threads) on the readers' standardised SMILES
    (``canonical=True``). Both build engines use it: the local engine's worker processes and
    the Ray engine's actors (:mod:`mmsa.library.engines`).
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
        return embed_chunk(smiles, self.encoder, mode=self.mode, canonical=True)
