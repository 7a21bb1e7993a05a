"""Libraries on disk: build (streaming, atomic), append, open (checked), list, delete.

Public API (re-exported by :mod:`mmsa.library`)::

    build_library(source, name, ...) -> BuildReport
    add_to_library(name, source, ...) -> BuildReport
    open_library(name, root=None, encoder=None) -> Library
    list_libraries(root=None) -> list[LibraryInfo]
    delete_library(name, root=None) -> None
    ensure_default_library(root=None, progress=None) -> str | None

Every deliberate error is a :class:`mmsa.types.InputError` (bad input file, bad query, bad
name) or :class:`mmsa.types.LibraryError` (missing/corrupted/locked library, model mismatch)
with a message that says what to do.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mmsa.types import Failure

log = logging.getLogger(__name__)

#: search modes of :meth:`Library.search`
MODES = ("embedding", "tanimoto", "substructure", "exact")

#: libraries with fewer vectors than this get an exact (flat) index under ``index="auto"``
APPROX_THRESHOLD = 200_000

#: callable(done, total_or_None) called after each chunk (e.g. to drive st.progress)
Progress = Callable[[int, "int | None"], None]


@dataclass
class BuildReport:
    """What a build or append did.

    ``n_ok``/``n_failed`` count molecules of this run; ``failures`` are their records (row =
    0-based row of the input file); ``n_total`` is the library size afterwards.
    """

    name: str
    path: Path
    n_ok: int
    n_failed: int
    n_total: int
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    index: dict = field(default_factory=dict)  # the manifest's "index" entry (type, recall...)


@dataclass
class LibraryInfo:
    """One row of :func:`list_libraries` (read from the manifest only; cheap)."""

    name: str
    path: Path
    count: int
    n_failed: int
    index_type: str
    dim: int
    checkpoint_sha256: str
    created: str
    updated: str
    sources: list[str]
    ok: bool = True  # False when the manifest cannot be read; ``error`` says why
    error: str = ""


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid library name, else raise InputError.

    Valid: ``^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`` and not ending in ``.`` (so ``..``, ``../x``,
    ``a/b``, absolute paths and hidden names can never escape or hide in the indexes folder).
    """
    raise NotImplementedError


def library_path(name: str, root: str | os.PathLike | None = None) -> Path:
    """Folder of library ``name`` under ``root`` (default :func:`mmsa.paths.indexes_dir`)."""
    raise NotImplementedError


def build_library(
    source: str | os.PathLike,
    name: str,
    *,
    root: str | os.PathLike | None = None,
    encoder=None,
    smiles_col: str | None = None,
    id_col: str | None = None,
    index: str = "auto",
    approx_threshold: int = APPROX_THRESHOLD,
    hyperedge_k: int = 8,
    chunk_size: int = 10_000,
    n_jobs: int = 1,
    progress: Progress | None = None,
    overwrite: bool = False,
    seed: int = 0,
) -> BuildReport:
    """Build library ``name`` from a molecule file (.smi/.csv/.tsv/.sdf[.gz]).

    Streams the file in chunks (:func:`mmsa.chem.io.iter_library`); each chunk goes through
    :func:`embed_chunk` (a pure function of the SMILES batch and the checkpoint, run in
    ``n_jobs`` worker processes when ``n_jobs > 1``) and is appended to the files on disk, so
    memory stays bounded. Then the FAISS index (``index``: "auto" | "flat" | "hnsw" | "ivf";
    "auto" = flat below ``approx_threshold`` vectors, else HNSW with recall@10 >= 0.95 measured
    on a sample and recorded) and the kNN hyperedges (``hyperedge_k`` neighbours) are built.

    Everything is written into a temporary folder ``ROOT/.NAME.tmp-XXXX`` renamed to
    ``ROOT/NAME`` at the end: a failed or interrupted build leaves the previous version intact.
    A lock file ``ROOT/.NAME.lock`` refuses concurrent builds of one name (LibraryError).

    ``encoder``: an :class:`mmsa.encoder.Encoder`, a checkpoint path, or None for the shipped
    checkpoint. ``progress(done, total)`` is called after each chunk (total may be None).
    Raises InputError for unreadable/empty/all-invalid input and bad names, LibraryError if the
    name exists and ``overwrite`` is False, or if it is locked.
    """
    raise NotImplementedError


def add_to_library(
    name: str,
    source: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    encoder=None,
    smiles_col: str | None = None,
    id_col: str | None = None,
    chunk_size: int = 10_000,
    n_jobs: int = 1,
    progress: Progress | None = None,
    seed: int = 0,
) -> BuildReport:
    """Append the molecules of ``source`` to library ``name`` (atomically, like a build).

    The encoder must be the library's checkpoint (LibraryError otherwise). The index is
    rebuilt with the library's index type (recall re-measured), hyperedges recomputed, and
    derived caches (``cache/``: motifs, maps) dropped.
    """
    raise NotImplementedError


def open_library(
    name: str,
    root: str | os.PathLike | None = None,
    encoder=None,
    *,
    verify: str = "auto",
) -> Library:
    """Open library ``name``, checking its files against the manifest.

    Checks: folder and manifest present and readable, format version known, every file listed
    in the manifest present with the recorded size (and sha256: always when ``verify="full"``,
    for libraries under 256 MB when ``"auto"``, never when ``"size"``), array shapes consistent
    with the count. With ``encoder`` given, its checkpoint hash must equal the library's.
    Any mismatch raises LibraryError naming the file and how to fix it (rebuild).
    """
    raise NotImplementedError


def list_libraries(root: str | os.PathLike | None = None) -> list[LibraryInfo]:
    """Libraries under ``root`` sorted by name (hidden temp/lock entries skipped)."""
    raise NotImplementedError


def delete_library(name: str, root: str | os.PathLike | None = None) -> None:
    """Delete library ``name`` (LibraryError if missing or being built)."""
    raise NotImplementedError


def ensure_default_library(
    root: str | os.PathLike | None = None, progress: Progress | None = None, encoder=None
) -> str | None:
    """Build the default library "approved-drugs" if the root holds no library.

    Returns the name built, or None if a library already existed.
    """
    raise NotImplementedError


class Library:
    """An opened library (read-only). Get one with :func:`open_library`.

    Attributes:
        name, path
        manifest     dict (manifest.json)
        metadata     pandas DataFrame, one row per molecule in vector order: ``row`` (0..n-1),
                     ``id`` (the user's id), ``input_smiles``, ``smiles`` (canonical,
                     standardised), then the input's property columns. Loaded lazily.
        vectors      float32 [n, dim], L2-normalised, memory-mapped
        slot_topk    (ids int32 [n, t], weights float32 [n, t]): each molecule's top-t memory
                     slots by assignment weight (descending); t = min(8, num_slots)
        hyperedges   int32 [n, k+1]: row i = i followed by its k nearest neighbours
        hyperedge_scores float32 [n, k+1]: cosine of each member to molecule i
        failures     list[Failure]: input rows that could not be added (all sources)
        cache_dir    Path ``NAME/cache/`` for derived, re-computable files (motifs, UMAP
                     coordinates); dropped when the library is rebuilt or appended to
        len(lib)     number of molecules
    """

    def search(
        self,
        query: str,
        k: int | None = 10,
        mode: str = "embedding",
        threshold: float | None = None,
    ) -> pd.DataFrame:
        """Search the library with a query SMILES (or SMARTS/SMILES pattern for substructure).

        Modes:
            embedding     cosine of MMSA embeddings (needs the library's checkpoint);
            tanimoto      exact Morgan r=2 2048-bit Tanimoto over the whole library;
            substructure  molecules containing the pattern (pattern-fingerprint screen, then
                          RDKit matching), ranked by Tanimoto to the query when it is a
                          molecule;
            exact         the same molecule after standardisation (canonical SMILES).
        ``k`` caps the hits (None = all, for substructure/exact/thresholded tanimoto);
        ``threshold`` keeps hits with score >= threshold.

        Returns a DataFrame with columns ``rank`` (1..), ``row``, ``id``, ``smiles``,
        ``score`` (the mode's similarity; 1.0 for substructure/exact), ``tanimoto`` (Morgan
        Tanimoto to the query), ``cosine`` (embedding cosine to the query, when the query
        could be embedded), then the library's property columns. Unparseable queries raise
        InputError.
        """
        raise NotImplementedError

    def search_vectors(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Raw index search: ``queries`` float32 [m, dim] -> (scores float32 [m, k],
        rows int64 [m, k]); rows -1 where fewer than k hits."""
        raise NotImplementedError

    def neighbors(self, row: int, k: int = 10) -> pd.DataFrame:
        """Nearest library molecules to library molecule ``row`` (no model needed);
        same columns as :meth:`search` (the molecule itself excluded)."""
        raise NotImplementedError

    def hyperedge(self, i: int) -> np.ndarray:
        """Member rows of molecule ``i``'s hyperedge: int64 [k+1], ``i`` first."""
        raise NotImplementedError

    def hyperedge_motif(self, i: int, timeout: float = 2.0):
        """Maximum common substructure of hyperedge ``i``'s members
        (:func:`mmsa.chem.motifs.mcs` result), computed once and cached in ``cache/``."""
        raise NotImplementedError

    def coherent_hyperedges(self, top: int = 20) -> pd.DataFrame:
        """The ``top`` most coherent, mutually non-overlapping hyperedges: columns
        ``hyperedge`` (centre row), ``id``, ``smiles``, ``size``, ``coherence`` (mean cosine of
        the members to the centre), ``members`` (list of rows)."""
        raise NotImplementedError
