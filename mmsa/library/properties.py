"""Drug-like properties of a library's molecules (:mod:`mmsa.chem.properties`), computed on
demand and cached in the library's ``cache/`` folder (dropped when the library changes)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from mmsa.chem.properties import PROPERTIES, properties_frame

__all__ = ["PROPERTIES", "filter_mask", "library_properties", "rows_properties"]

log = logging.getLogger(__name__)
CACHE_FILE = "properties.parquet"
BLOCK = 500


def _cache_path(lib):
    return lib.cache_dir / CACHE_FILE


def library_properties(lib, progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """:data:`PROPERTIES` of every molecule of ``lib`` (row order), from the standardised
    parent SMILES; computed once (``progress(done, total)`` per block) and cached."""
    path = _cache_path(lib)
    if path.is_file():
        try:
            frame = pd.read_parquet(path)
            if len(frame) == len(lib) and list(frame.columns) == list(PROPERTIES):
                return frame
        except (OSError, ValueError) as exc:
            log.warning("%s: unreadable property cache (%s); recomputing", path, exc)
    smiles = lib.metadata["smiles"].tolist()
    parts = []
    for start in range(0, len(smiles), BLOCK):
        parts.append(properties_frame(smiles[start:start + BLOCK]))
        if progress:
            progress(min(start + BLOCK, len(smiles)), len(smiles))
    frame = (pd.concat(parts, ignore_index=True) if parts else properties_frame([]))
    tmp = path.with_suffix(".tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)
    return frame


def rows_properties(lib, rows: Sequence[int]) -> pd.DataFrame:
    """:data:`PROPERTIES` of library ``rows`` (in that order): from the cache when the whole
    library has been computed, else computed for these rows only."""
    rows = np.asarray(rows, dtype=np.int64)
    path = _cache_path(lib)
    if path.is_file():
        frame = library_properties(lib)
        return frame.iloc[rows].reset_index(drop=True)
    return properties_frame(lib.metadata["smiles"].to_numpy()[rows].tolist())


def filter_mask(frame: pd.DataFrame, ranges: dict[str, tuple[float, float]]) -> np.ndarray:
    """bool [len(frame)]: rows whose every property lies in its ``(low, high)`` range
    (inclusive; a missing value fails a range)."""
    keep = np.ones(len(frame), dtype=bool)
    for name, (low, high) in ranges.items():
        values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64,
                                                                      na_value=np.nan)
        keep &= (values >= low) & (values <= high)
    return keep
