"""Depictions for result views: a hit drawn like its query with the shared part (their
maximum common substructure) highlighted, or a pattern's matches highlighted.

Returns SVG text from :func:`mmsa.chem.depict.mol_svg` (embed it with
:func:`mmsa.viz.grid.svg_img`); None when the molecule cannot be drawn.
"""

from __future__ import annotations

import logging

from mmsa.types import MMSAError

__all__ = ["MIN_SHARED_ATOMS", "difference_svgs", "pattern_svg", "shared_motif", "shared_svg"]

log = logging.getLogger(__name__)
#: a common part smaller than this is not highlighted (one ring carbon says nothing)
MIN_SHARED_ATOMS = 3


def shared_motif(smiles: str, query: str, timeout: float = 1.0) -> tuple[str | None, int]:
    """``(SMARTS, atoms)`` of the maximum common substructure of two molecules; SMARTS None
    when they share fewer than :data:`MIN_SHARED_ATOMS` atoms."""
    from mmsa.chem.motifs import mcs

    shared = mcs([query, smiles], timeout=timeout)
    if shared.num_atoms < MIN_SHARED_ATOMS:
        return None, int(shared.num_atoms)
    return shared.smarts, int(shared.num_atoms)


def shared_svg(smiles: str, query: str, width: int = 260, height: int = 200,
               timeout: float = 1.0) -> str | None:
    """``smiles`` laid out like ``query``, the part they share highlighted."""
    from mmsa.chem.depict import mol_svg

    try:
        smarts, _ = shared_motif(smiles, query, timeout)
        return mol_svg(smiles, width, height, highlight=smarts, align_to=query)
    except MMSAError as exc:
        log.debug("no depiction for %r against %r: %s", smiles, query, exc)
        return None


def pattern_svg(smiles: str, pattern: str | None = None, width: int = 260, height: int = 200,
                align: bool = True) -> str | None:
    """``smiles`` with every match of a SMARTS ``pattern`` highlighted (aligned to the
    pattern when it is a molecule and ``align``); a plain depiction without a pattern."""
    from mmsa.chem.depict import mol_svg

    try:
        if pattern and align:
            try:
                return mol_svg(smiles, width, height, highlight=pattern, align_to=pattern)
            except MMSAError:  # a SMARTS pattern cannot be laid out: highlight only
                return mol_svg(smiles, width, height, highlight=pattern)
        return mol_svg(smiles, width, height, highlight=pattern or None)
    except MMSAError as exc:
        log.debug("no depiction for %r: %s", smiles, exc)
        return None


def difference_svgs(smiles_a: str, smiles_b: str, width: int = 260, height: int = 200,
                    timeout: float = 1.0) -> tuple[str | None, str | None]:
    """A pair drawn to be compared (an activity cliff): ``b`` laid out like ``a``, and on each
    the atoms *outside* their maximum common substructure highlighted (what differs)."""
    from mmsa.chem.depict import mol_svg
    from mmsa.chem.motifs import match_atoms
    from mmsa.chem.standardize import parse_smiles

    try:
        smarts, _ = shared_motif(smiles_b, smiles_a, timeout)
        differ = []
        for smi in (smiles_a, smiles_b):
            mol = parse_smiles(smi)  # the atom order mol_svg draws
            matches = match_atoms(smarts, mol, max_matches=1) if smarts else []
            common = set(matches[0]) if matches else set()
            differ.append([a.GetIdx() for a in mol.GetAtoms() if a.GetIdx() not in common])
        svg_a = mol_svg(smiles_a, width, height, atoms=differ[0])
        svg_b = mol_svg(smiles_b, width, height, atoms=differ[1], align_to=smiles_a,
                        timeout=timeout)
        return svg_a, svg_b
    except (MMSAError, IndexError) as exc:
        log.debug("no pair depiction for %r / %r: %s", smiles_a, smiles_b, exc)
        return pattern_svg(smiles_a, None, width, height), pattern_svg(smiles_b, None, width, height)
