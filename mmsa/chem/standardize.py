"""Parsing and standardisation of molecules (RDKit MolStandardize).

Standardisation keeps the largest fragment (organic fragments preferred, so a salt's
counter-ion goes) and neutralises charges where a neutral form exists; the result is RDKit's
canonical SMILES. Every parse goes through :func:`parse_smiles`, so the reader, the
featurizers and the app agree on what a valid molecule is and give the same reasons.
"""

from __future__ import annotations

import re
from functools import lru_cache

from rdkit import Chem
from rdkit.Chem.MolStandardize import rdMolStandardize
from rdkit.rdBase import BlockLogs

from mmsa.types import InputError

__all__ = ["parse_canonical", "parse_smiles", "smiles_error", "standardize_mol", "standardize_or_reason",
           "standardize_smiles"]


def smiles_error(smiles: str) -> str | None:
    """Why ``smiles`` is not a valid molecule, or ``None`` when RDKit accepts it.

    The reason is RDKit's own sanitisation message where there is one (e.g. a valence
    error), else a syntax error.
    """
    if not isinstance(smiles, str):
        return f"SMILES is not text ({type(smiles).__name__})"
    text = smiles.strip()
    if not text:
        return "empty SMILES"
    with BlockLogs():
        mol = Chem.MolFromSmiles(text, sanitize=False)
        if mol is None:
            return "invalid SMILES syntax"
        if mol.GetNumAtoms() == 0:
            return "SMILES has no atoms"
        try:
            Chem.SanitizeMol(mol)
        except Exception as exc:  # RDKit raises several sanitisation exception types
            message = str(exc).strip() or type(exc).__name__
            return f"invalid molecule: {message}"
        if Chem.MolFromSmiles(text) is None:
            return "invalid molecule"
    return None


# A bracket atom whose element is hydrogen ([H], [2H+], ...; not He/Hf/Hg/Ho/Hs).
_EXPLICIT_H = re.compile(r"\[\d*H(?![a-z])")
_KEEP_HS = Chem.SmilesParserParams()
_KEEP_HS.removeHs = False


def parse_smiles(smiles: str) -> Chem.Mol:
    """Parse a SMILES string into a sanitised RDKit molecule (hydrogens implicit).

    The same molecule as ``Chem.MolFromSmiles(smiles)``: explicit hydrogen atoms are
    removed where RDKit removes them. (Without any ``[H]`` atom in the text the hydrogen
    removal pass is skipped, which is faster and gives the same molecule.)

    Raises:
        InputError: the SMILES is empty, unparsable or chemically invalid; the message
            gives the reason.
    """
    mol = None
    if isinstance(smiles, str) and smiles.strip():
        text = smiles.strip()
        with BlockLogs():
            if _EXPLICIT_H.search(text):
                mol = Chem.MolFromSmiles(text)
            else:
                mol = Chem.MolFromSmiles(text, _KEEP_HS)
    if mol is None or mol.GetNumAtoms() == 0:
        reason = smiles_error(smiles) or "invalid SMILES"
        raise InputError(f"{reason}: {smiles!r}")
    return mol


# A SMILES RDKit wrote from a sanitised molecule already holds what kekulisation and
# aromaticity perception would give; parse_canonical re-derives only the rest.
_WRITTEN = Chem.SmilesParserParams()
_WRITTEN.sanitize = False
_WRITTEN.removeHs = False
_S = Chem.SanitizeFlags
_WRITTEN_OPS = (_S.SANITIZE_PROPERTIES | _S.SANITIZE_SYMMRINGS | _S.SANITIZE_FINDRADICALS
                | _S.SANITIZE_SETCONJUGATION | _S.SANITIZE_SETHYBRIDIZATION)
# a double or triple bond between aromatic atoms: full sanitisation marks it aromatic
_AROMATIC_MULTIPLE = Chem.MolFromSmarts("a=,#a")


def parse_canonical(smiles: str) -> Chem.Mol:
    """:func:`parse_smiles` of a SMILES that RDKit wrote (``Chem.MolToSmiles`` of a sanitised
    molecule, e.g. the readers' standardised SMILES), about twice as fast.

    Such a SMILES already carries RDKit's aromaticity, so kekulisation and aromaticity
    perception are skipped; valences, rings, radicals, conjugation and hybridisation are
    computed as sanitisation does. The molecule is the same as :func:`parse_smiles` gives for
    everything the library computes from it (graph features, Morgan and pattern
    fingerprints, canonical SMILES: tests/chem/test_parse_canonical.py). Where skipping
    could differ it is :func:`parse_smiles`: bond stereo (``/``, ``\\``: set by stereo
    perception), explicit hydrogens, a double or triple bond between aromatic atoms, and any
    SMILES the partial sanitisation rejects (with :func:`parse_smiles`' error).

    Not for user input: it does not check that aromatic rings can be kekulised. One case
    differs on purpose: a SMILES RDKit wrote but cannot read back (a round-trip failure,
    e.g. QM9's ``N=c1cc(=O)cc[nH]1``, "Can't kekulize") is read here from the aromaticity
    it was written with, where :func:`parse_smiles` fails; the build then keeps that valid
    input molecule instead of recording a failure.
    """
    text = smiles.strip() if isinstance(smiles, str) else ""
    if not text or "/" in text or "\\" in text or _EXPLICIT_H.search(text):
        return parse_smiles(smiles)
    with BlockLogs():
        mol = Chem.MolFromSmiles(text, _WRITTEN)
        if mol is None or mol.GetNumAtoms() == 0:
            return parse_smiles(smiles)
        try:
            Chem.SanitizeMol(mol, _WRITTEN_OPS)
        except Exception:  # RDKit raises several sanitisation exception types
            return parse_smiles(smiles)
    if mol.HasSubstructMatch(_AROMATIC_MULTIPLE):
        return parse_smiles(smiles)
    return mol


@lru_cache(maxsize=1)
def _tools() -> tuple[rdMolStandardize.LargestFragmentChooser, rdMolStandardize.Uncharger]:
    # One set per process; building them is cheap but not free.
    return (rdMolStandardize.LargestFragmentChooser(preferOrganic=True),
            rdMolStandardize.Uncharger(canonicalOrder=True))


_CHARGED = Chem.MolFromSmarts("[!+0]")  # any atom with a formal charge


def standardize_mol(mol: Chem.Mol, *, fragments: bool = True, charges: bool = True
                    ) -> Chem.Mol:
    """Largest fragment, then neutralised; returns a new molecule (``mol`` is not changed).

    ``fragments=False`` / ``charges=False`` tell it the molecule has a single fragment / no
    charged atom (e.g. no "." / "+" or "-" in its SMILES), skipping those checks.

    Raises:
        InputError: standardisation failed (the molecule is left without atoms or RDKit
            raises).
    """
    chooser, uncharger = _tools()
    with BlockLogs():
        try:
            out = Chem.Mol(mol)
            if fragments and len(Chem.GetMolFrags(out)) > 1:
                out = chooser.choose(out)
            if charges and out.HasSubstructMatch(_CHARGED):
                out = uncharger.uncharge(out)
        except Exception as exc:  # RDKit errors surface as several exception types
            raise InputError(f"standardisation failed: {exc}") from exc
    if out is None or out.GetNumAtoms() == 0:
        raise InputError("standardisation left no atoms")
    return out


def standardize_smiles(smiles: str) -> str:
    """Canonical SMILES of the standardised molecule (largest fragment, neutralised).

    >>> standardize_smiles("CC(=O)[O-].[Na+]")
    'CC(=O)O'

    Raises:
        InputError: ``smiles`` is invalid or cannot be standardised (message gives why).
    """
    return Chem.MolToSmiles(standardize_mol(parse_smiles(smiles)))


def standardize_or_reason(smiles: str) -> tuple[str | None, str | None]:
    """``(canonical standardised SMILES, None)``, or ``(None, reason)`` when it fails.

    The non-raising form used by the readers, which turn the reason into a ``Failure``.
    """
    try:
        mol = parse_smiles(smiles)
    except InputError:
        return None, smiles_error(smiles) or "invalid SMILES"
    text = smiles.strip()
    fragments, charges = "." in text, "+" in text or "-" in text
    if not (fragments or charges):  # nothing to standardise: skip standardize_mol's copy
        return Chem.MolToSmiles(mol), None
    try:
        std = standardize_mol(mol, fragments=fragments, charges=charges)
        return Chem.MolToSmiles(std), None
    except InputError as exc:
        return None, str(exc)
