"""Names for memory slots: what a slot's members share, so a list of slots reads as a list
of chemotypes. A slot's label is its most enriched Bemis-Murcko scaffold (members carrying it
vs the library) and the property that most separates its members from the library.

    >>> labels = slot_labels(smiles, top1, properties)          # doctest: +SKIP
    >>> labels[3]
    'scaffold c1ccc2ncncc2c1 (9/12) · high MW'
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["enriched_scaffold", "library_slot_labels", "murcko_scaffolds",
           "separating_property", "slot_labels"]

log = logging.getLogger(__name__)

#: a property must differ by at least this many library standard deviations to be named
MIN_EFFECT = 0.5


def murcko_scaffolds(smiles: Sequence[str]) -> list[str]:
    """Bemis-Murcko scaffold SMILES of each molecule ("" for acyclic or unparseable ones)."""
    from rdkit import Chem
    from rdkit.Chem.Scaffolds import MurckoScaffold
    from rdkit.rdBase import BlockLogs

    out = []
    with BlockLogs():
        for s in smiles:
            mol = Chem.MolFromSmiles(str(s)) if s else None
            if mol is None:
                out.append("")
                continue
            try:
                out.append(Chem.MolToSmiles(MurckoScaffold.GetScaffoldForMol(mol)))
            except Exception:  # noqa: BLE001 - RDKit errors on odd molecules: no scaffold
                out.append("")
    return out


def enriched_scaffold(scaffolds: Sequence[str], members: np.ndarray, min_count: int = 2
                      ) -> tuple[str, int, float] | None:
    """The scaffold most enriched among ``members`` (row indices) over the library:
    ``(scaffold, members with it, enrichment = share in slot / share in library)``, or None
    when no scaffold occurs ``min_count`` times among them. Ties go to the more frequent."""
    scaffolds = np.asarray(scaffolds, dtype=object)
    inside = Counter(s for s in scaffolds[members] if s)
    if not inside:
        return None
    total = Counter(s for s in scaffolds if s)
    n, m = len(scaffolds), len(members)
    best = None
    for scaf, c in inside.items():
        if c < min(min_count, m):
            continue
        enrich = (c / m) / (total[scaf] / n)
        score = (enrich * np.log1p(c), c)
        if best is None or score > best[0]:
            best = (score, scaf, c, enrich)
    return None if best is None else (best[1], best[2], float(best[3]))


def separating_property(properties: pd.DataFrame, members: np.ndarray
                        ) -> tuple[str, float] | None:
    """The numeric property whose mean over ``members`` differs most from the library's, in
    library standard deviations: ``(name, effect)`` (effect > 0: higher in the slot), or None
    when no property differs by :data:`MIN_EFFECT`."""
    best = None
    for col in properties.columns:
        values = pd.to_numeric(properties[col], errors="coerce").to_numpy(np.float64,
                                                                          na_value=np.nan)
        sd = np.nanstd(values)
        inside = values[members]
        if not np.isfinite(sd) or sd == 0 or not np.isfinite(inside).any():
            continue
        effect = (np.nanmean(inside) - np.nanmean(values)) / sd
        if abs(effect) >= MIN_EFFECT and (best is None or abs(effect) > abs(best[1])):
            best = (str(col), float(effect))
    return best


def slot_labels(smiles: Sequence[str], top1: np.ndarray, properties: pd.DataFrame | None = None,
                scaffolds: Sequence[str] | None = None) -> dict[int, str]:
    """A label for every slot that has members (``top1``: int [n], each molecule's slot).

    "scaffold S (c/m)" for the most enriched scaffold (see :func:`enriched_scaffold`),
    "acyclic" when most members have no ring, then "· high P" / "· low P" for the most
    separating property (:func:`separating_property`) of ``properties`` (one row per
    molecule, numeric columns).
    """
    top1 = np.asarray(top1, dtype=np.int64)
    scaffolds = murcko_scaffolds(smiles) if scaffolds is None else list(scaffolds)
    labels = {}
    for slot in np.unique(top1):
        members = np.flatnonzero(top1 == slot)
        parts = []
        scaf = enriched_scaffold(scaffolds, members)
        if scaf is not None:
            parts.append(f"scaffold {scaf[0]} ({scaf[1]}/{len(members)})")
        elif sum(1 for r in members if not scaffolds[r]) > len(members) / 2:
            parts.append("acyclic")
        else:
            parts.append("mixed scaffolds")
        if properties is not None and len(properties.columns):
            sep = separating_property(properties, members)
            if sep is not None:
                parts.append(f"{'high' if sep[1] > 0 else 'low'} {sep[0]}")
        labels[int(slot)] = " \u00b7 ".join(parts)
    return labels


#: slots are named from at most this many molecules (a seeded sample of bigger libraries)
LABEL_SAMPLE = 5_000
LABELS_CACHE = "slot-names.json"
_LABELS_FORMAT = 1


def library_slot_labels(lib, sample: int = LABEL_SAMPLE, seed: int = 0) -> dict[int, str]:
    """:func:`slot_labels` of library ``lib`` over its numeric columns and the drug-like
    properties (:mod:`mmsa.library.properties`), from a seeded sample of ``sample``
    molecules in bigger libraries (a slot absent from the sample gets no label).

    Cached in ``lib.cache_dir/slot-names.json`` (written atomically), reused only when the
    library size, its manifest's ``updated`` time, ``sample`` and ``seed`` all match.
    """
    import json
    import os
    import tempfile
    from pathlib import Path

    from mmsa.library.properties import rows_properties
    from mmsa.library.slots import property_columns

    key = {"format": _LABELS_FORMAT, "n": len(lib), "sample": int(sample), "seed": int(seed),
           "updated": str(lib.manifest.get("updated") or lib.manifest.get("created") or "")}
    path = Path(lib.cache_dir) / LABELS_CACHE
    try:
        cached = json.loads(path.read_text())
        if isinstance(cached, dict) and cached.get("key") == key:
            return {int(s): str(v) for s, v in cached["labels"].items()}
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    meta = lib.metadata
    n = len(meta)
    rows = (np.arange(n) if n <= sample else
            np.sort(np.random.default_rng(seed).choice(n, sample, replace=False)))
    props = rows_properties(lib, rows.tolist())
    part = meta.iloc[rows].reset_index(drop=True)
    own = part[property_columns(meta)].apply(pd.to_numeric, errors="coerce")
    table = pd.concat([own, props.reset_index(drop=True)], axis=1)
    table = table.loc[:, ~table.columns.duplicated()]
    ids, _ = lib.slot_topk
    labels = slot_labels(part["smiles"].tolist(), np.asarray(ids)[rows, 0], table)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{LABELS_CACHE}.", dir=path.parent)
        with os.fdopen(fd, "w") as fh:
            json.dump({"key": key, "labels": {str(s): v for s, v in labels.items()}}, fh)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        log.warning("could not cache the slot names of %s: %s", getattr(lib, "name", "?"), exc)
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return labels
