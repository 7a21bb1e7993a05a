"""Morgan (ECFP4-like) fingerprints as packed numpy bits, and bulk Tanimoto similarity.

The convention users compare with: Morgan radius 2, 2,048 bits (RDKit
``rdFingerprintGenerator``), Tanimoto similarity. Fingerprints are stored packed, 8 bits a
byte, with :func:`numpy.packbits`' default big-endian bit order: bit ``i`` of the RDKit
fingerprint is ``(packed[i // 8] >> (7 - i % 8)) & 1``. A 2,048-bit fingerprint is 256 bytes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator

from mmsa.chem.standardize import parse_smiles
from mmsa.types import Failure, InputError

__all__ = [
    "MORGAN_RADIUS", "MORGAN_BITS", "morgan_fingerprint", "morgan_fingerprints",
    "pattern_fingerprint", "screen_fingerprint", "relaxed_query",
    "repack_pattern", "PATTERN_PACKING", "REVERSE_BITS", "pack_bits", "unpack_bits",
    "popcount", "tanimoto",
]

MORGAN_RADIUS = 2
MORGAN_BITS = 2048


@lru_cache(maxsize=8)
def _generator(radius: int, n_bits: int):
    return rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)


def _mol(smiles_or_mol) -> Chem.Mol:
    return smiles_or_mol if isinstance(smiles_or_mol, Chem.Mol) else parse_smiles(smiles_or_mol)


def morgan_fingerprint(smiles_or_mol, radius: int = MORGAN_RADIUS,
                       n_bits: int = MORGAN_BITS) -> np.ndarray:
    """Packed Morgan fingerprint, uint8 ``[n_bits // 8]``.

    Raises:
        InputError: invalid SMILES.
    """
    _check_bits(n_bits)
    bits = _generator(radius, n_bits).GetFingerprintAsNumPy(_mol(smiles_or_mol))
    return np.packbits(bits.astype(bool))


def morgan_fingerprints(smiles: Sequence[str], radius: int = MORGAN_RADIUS,
                        n_bits: int = MORGAN_BITS) -> tuple[np.ndarray, np.ndarray, list[Failure]]:
    """Packed fingerprints of many SMILES.

    Returns:
        ``(fps uint8 [n, n_bits // 8], ok bool [n], failures)``; rows that failed are zeros.
    """
    _check_bits(n_bits)
    out = np.zeros((len(smiles), n_bits // 8), dtype=np.uint8)
    ok = np.zeros(len(smiles), dtype=bool)
    failures = []
    gen = _generator(radius, n_bits)
    for i, smi in enumerate(smiles):
        try:
            mol = parse_smiles(smi)
        except InputError as exc:
            failures.append(Failure(i, str(smi), str(exc)))
            continue
        out[i] = np.packbits(gen.GetFingerprintAsNumPy(mol).astype(bool))
        ok[i] = True
    return out, ok, failures


#: bit ``i`` of byte ``b`` reversed: maps RDKit's FPS-text byte order (bit 0 = least
#: significant bit of byte 0) to :func:`numpy.packbits`' big-endian order, and back
REVERSE_BITS = np.array([int(f"{b:08b}"[::-1], 2) for b in range(256)], dtype=np.uint8)

#: how pattern fingerprints are packed (recorded in library manifests)
PATTERN_PACKING = "np.packbits, big-endian"
#: the packing of libraries built before the fingerprint modules were unified
PATTERN_PACKING_FPS = "BitVectToFPSText bytes"


def pattern_fingerprint(smiles_or_mol, n_bits: int = MORGAN_BITS) -> np.ndarray:
    """Packed RDKit pattern fingerprint of a molecule, uint8 ``[n_bits // 8]``, in the same
    big-endian bit order as :func:`morgan_fingerprint`.

    A substructure screen: when molecule A is a substructure of molecule B, every bit of A's
    fingerprint is set in B's. For a query *pattern* use :func:`screen_fingerprint`, which
    is safe for SMARTS too.
    """
    _check_bits(n_bits)
    fp = Chem.PatternFingerprint(_mol(smiles_or_mol), fpSize=n_bits)
    # FPS text is 10x cheaper than ConvertToNumpyArray; reverse each byte's bits
    return REVERSE_BITS[np.frombuffer(bytes.fromhex(DataStructs.BitVectToFPSText(fp)),
                                       dtype=np.uint8)]


def repack_pattern(packed: np.ndarray, packing: str) -> np.ndarray:
    """Pattern fingerprints ``packed`` (:data:`PATTERN_PACKING`) converted to ``packing``
    (:data:`PATTERN_PACKING` or :data:`PATTERN_PACKING_FPS`, for older libraries)."""
    if packing == PATTERN_PACKING:
        return packed
    if packing == PATTERN_PACKING_FPS:
        return REVERSE_BITS[np.asarray(packed, dtype=np.uint8)]
    raise ValueError(f"unknown pattern fingerprint packing {packing!r}")


def _implied_elements(description: list[str], pos: int = 0) -> tuple[set | None, int]:
    """Atomic numbers an RDKit query atom can match, from ``DescribeQuery()`` lines: a set,
    or None for "any". Sound by construction: AND intersects, OR unites, anything negated or
    unknown (degree, ring, recursion, ...) allows every element. Returns (set, next line)."""
    line = description[pos]
    depth = len(line) - len(line.lstrip(" "))
    text = line.strip()
    name = text.split(" ", 1)[0]
    nxt = pos + 1
    if name in ("AtomAnd", "AtomOr"):
        kids = []
        while nxt < len(description):
            d = len(description[nxt]) - len(description[nxt].lstrip(" "))
            if d <= depth:
                break
            kid, nxt = _implied_elements(description, nxt)
            kids.append(kid)
        if name == "AtomAnd":
            sets = [k for k in kids if k is not None]
            return (set.intersection(*sets) if sets else None), nxt
        return (None if any(k is None for k in kids) else set().union(*kids)), nxt
    # skip any children of a node we do not reason about
    while nxt < len(description) and (len(description[nxt]) -
                                      len(description[nxt].lstrip(" "))) > depth:
        nxt += 1
    m = re.fullmatch(r"(AtomAtomicNum|AtomType) (-?\d+) = val", text)
    if m:
        value = int(m.group(2))
        return {value % 1000 if m.group(1) == "AtomType" else value}, nxt
    return None, nxt


def relaxed_query(pattern: Chem.Mol) -> Chem.Mol:
    """A query that every match of SMARTS ``pattern`` also matches, written only with the
    query features RDKit's pattern fingerprint handles exactly: each atom becomes ``[#Z]``
    when its query implies one element Z (not hydrogen), else ``*``; each bond ``~``."""
    rw = Chem.RWMol(pattern)
    for atom in pattern.GetAtoms():
        if atom.HasQuery():
            lines = [ln for ln in atom.DescribeQuery().split("\n") if ln.strip()]
            elems, _ = _implied_elements(lines) if lines else (None, 0)
        else:
            elems = {atom.GetAtomicNum()}
        if elems is not None and len(elems) == 1 and next(iter(elems)) > 1:
            new = Chem.AtomFromSmarts(f"[#{next(iter(elems))}]")
        else:
            new = Chem.AtomFromSmarts("*")
        rw.ReplaceAtom(atom.GetIdx(), new)
    for bond in pattern.GetBonds():
        rw.ReplaceBond(bond.GetIdx(), Chem.BondFromSmarts("~"))
    return rw.GetMol()


def screen_fingerprint(query: Chem.Mol, n_bits: int = MORGAN_BITS) -> np.ndarray:
    """Pattern fingerprint of a substructure *query*, safe to screen molecules' fingerprints
    (:func:`pattern_fingerprint`) with: no molecule that matches ``query`` lacks a bit.

    A query from SMILES (a molecule: no query atoms or bonds) gets its own fingerprint, the
    case RDKit's screen is designed for. A SMARTS query is first relaxed
    (:func:`relaxed_query`): RDKit's fingerprint of SMARTS atoms such as ``[D4;#6]`` sets
    bits that matching molecules lack (false negatives: issue 11).
    """
    is_query = any(a.HasQuery() for a in query.GetAtoms()) or any(
        b.HasQuery() for b in query.GetBonds())
    return pattern_fingerprint(relaxed_query(query) if is_query else query, n_bits)


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """bool/0-1 ``[..., n_bits]`` -> uint8 ``[..., n_bits // 8]`` (big-endian bit order)."""
    bits = np.asarray(bits)
    _check_bits(bits.shape[-1])
    return np.packbits(bits.astype(bool), axis=-1)


def unpack_bits(packed: np.ndarray) -> np.ndarray:
    """uint8 ``[..., n_bytes]`` -> bool ``[..., 8 * n_bytes]``; inverse of :func:`pack_bits`."""
    return np.unpackbits(np.asarray(packed, dtype=np.uint8), axis=-1).astype(bool)


def popcount(packed: np.ndarray) -> np.ndarray:
    """Number of set bits per row: uint8 ``[..., n_bytes]`` -> int64 ``[...]``."""
    return np.bitwise_count(np.asarray(packed, dtype=np.uint8)).sum(axis=-1, dtype=np.int64)


def tanimoto(query: np.ndarray, fps: np.ndarray, block: int = 65_536) -> np.ndarray:
    """Tanimoto similarity of packed fingerprints.

    Args:
        query: uint8 ``[n_bytes]`` or ``[q, n_bytes]``.
        fps: uint8 ``[n, n_bytes]``.
        block: rows of ``fps`` per step (bounds the temporary memory).

    Returns:
        float32 ``[n]`` for one query, ``[q, n]`` for several. Two empty fingerprints have
        similarity 0.
    """
    query = np.asarray(query, dtype=np.uint8)
    fps = np.asarray(fps, dtype=np.uint8)
    single = query.ndim == 1
    q = np.atleast_2d(query)
    if fps.ndim != 2 or q.shape[1] != fps.shape[1]:
        raise ValueError(f"fingerprint widths differ: query {query.shape}, fps {fps.shape}")
    if q.shape[1] % 8 == 0:  # count 64 bits at a time
        q = np.ascontiguousarray(q).view(np.uint64)
        fps = np.ascontiguousarray(fps).view(np.uint64)
    q_count = np.bitwise_count(q).sum(axis=1, dtype=np.int64)
    out = np.empty((len(q), len(fps)), dtype=np.float32)
    for start in range(0, len(fps), block):
        part = fps[start:start + block]
        p_count = np.bitwise_count(part).sum(axis=1, dtype=np.int64)
        for i in range(len(q)):
            both = np.bitwise_count(part & q[i]).sum(axis=1, dtype=np.int64)
            union = q_count[i] + p_count - both
            out[i, start:start + len(part)] = np.where(union > 0, both / np.maximum(union, 1),
                                                       0.0)
    return out[0] if single else out


def _check_bits(n_bits: int) -> None:
    if n_bits <= 0 or n_bits % 8:
        raise ValueError(f"the number of bits must be a positive multiple of 8, got {n_bits}")
