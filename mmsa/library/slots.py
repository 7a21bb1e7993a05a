"""Memory-slot summaries of a library: what each learned prototype (memory anchor) holds.

Inputs are a library's per-molecule top-t slot assignments (``Library.slot_topk``: ids int
[n, t] and weights float [n, t], each row sorted by weight, descending). A molecule *belongs*
to the slot of its largest weight (its top-1 slot).

    >>> ids, w = lib.slot_topk                                 # doctest: +SKIP
    >>> table = slot_table(ids, w, num_slots=64)               # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: metadata columns that are not properties (never offered as distributions/colours)
NON_PROPERTY_COLUMNS = ("row", "id", "input_smiles", "smiles")


def _check(slot_ids: np.ndarray, slot_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray(slot_ids)
    w = np.asarray(slot_weights, dtype=np.float32)
    if ids.ndim == 1:
        ids, w = ids[:, None], w[:, None]
    if ids.shape != w.shape:
        raise ValueError(f"slot ids {ids.shape} and weights {w.shape} differ in shape")
    return ids.astype(np.int64), w


def slot_table(
    slot_ids: np.ndarray, slot_weights: np.ndarray, num_slots: int | None = None,
    n_prototypes: int = 4,
) -> pd.DataFrame:
    """One row per memory slot.

    Args:
        slot_ids: int [n, t] top-t slots of each molecule (descending weight).
        slot_weights: float [n, t] their weights.
        num_slots: slots in the model (default: largest id + 1); empty slots are listed too.
        n_prototypes: prototype molecules per slot.
    Returns:
        DataFrame with columns ``slot``, ``size`` (molecules whose top-1 slot it is),
        ``mean_weight`` (mean top-1 weight of those members; NaN when empty), ``usage``
        (share of all assignment weight in the top-t lists), ``prototypes`` (list of rows with
        the highest weight on the slot, best first), sorted by slot.
    """
    ids, w = _check(slot_ids, slot_weights)
    n = len(ids)
    m = int(num_slots if num_slots is not None else (ids.max() + 1 if ids.size else 0))
    top1 = ids[:, 0] if n else np.zeros(0, dtype=np.int64)
    size = np.bincount(top1, minlength=m)[:m]
    wsum = np.bincount(top1, weights=w[:, 0] if n else None, minlength=m)[:m]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_weight = np.where(size > 0, wsum / np.maximum(size, 1), np.nan)
    mass = np.bincount(ids.ravel(), weights=w.ravel(), minlength=m)[:m]
    usage = mass / mass.sum() if mass.sum() > 0 else mass
    # prototypes: sort all (slot, weight, row) triples by slot then weight desc
    flat_rows = np.repeat(np.arange(n), ids.shape[1])
    flat_ids, flat_w = ids.ravel(), w.ravel()
    order = np.lexsort((-flat_w, flat_ids))
    sorted_ids = flat_ids[order]
    starts = np.searchsorted(sorted_ids, np.arange(m), side="left")
    ends = np.searchsorted(sorted_ids, np.arange(m), side="right")
    protos = [flat_rows[order[s:min(e, s + n_prototypes)]].tolist() for s, e in zip(starts, ends)]
    return pd.DataFrame({
        "slot": np.arange(m), "size": size.astype(np.int64), "mean_weight": mean_weight,
        "usage": usage, "prototypes": protos,
    })


def slot_members(
    slot_ids: np.ndarray, slot_weights: np.ndarray, slot: int
) -> tuple[np.ndarray, np.ndarray]:
    """Molecules whose top-1 slot is ``slot``: (rows int64 [s], weights float32 [s]), by
    weight, descending."""
    ids, w = _check(slot_ids, slot_weights)
    rows = np.flatnonzero(ids[:, 0] == slot)
    weights = w[rows, 0]
    order = np.argsort(-weights, kind="stable")
    return rows[order], weights[order]


def dense_weights(slot_ids: np.ndarray, slot_weights: np.ndarray, num_slots: int) -> np.ndarray:
    """Top-t assignments as dense float32 [n, num_slots] (0 outside each molecule's top-t)."""
    ids, w = _check(slot_ids, slot_weights)
    out = np.zeros((len(ids), num_slots), dtype=np.float32)
    np.put_along_axis(out, ids, w, axis=1)
    return out


def property_columns(metadata: pd.DataFrame) -> list[str]:
    """Numeric property columns of a library's metadata (the user's own columns)."""
    cols = []
    for c in metadata.columns:
        if c in NON_PROPERTY_COLUMNS:
            continue
        if pd.api.types.is_numeric_dtype(metadata[c]) and not pd.api.types.is_bool_dtype(metadata[c]):
            cols.append(c)
            continue
        converted = pd.to_numeric(metadata[c], errors="coerce")
        if converted.notna().sum() >= max(1, 0.9 * metadata[c].notna().sum()):
            cols.append(c)
    return cols


def property_distributions(
    metadata: pd.DataFrame, rows: np.ndarray, columns: list[str] | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """For each numeric property: (values of the molecules ``rows``, values of the library),
    as float64 arrays with NaN where missing."""
    columns = property_columns(metadata) if columns is None else columns
    out = {}
    for c in columns:
        values = pd.to_numeric(metadata[c], errors="coerce").to_numpy(dtype=np.float64)
        out[c] = (values[np.asarray(rows, dtype=np.int64)], values)
    return out
