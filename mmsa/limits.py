"""The limits a user can hit, in one place (documented in docs/architecture.md, "Limits").

Each ``check_*`` function raises :class:`mmsa.types.InputError` with a message that names the
limit and what to do; the library, the CLI and the app call these instead of repeating
numbers. Values are module constants so a deployment (or a test) can change them.
"""

from __future__ import annotations

import os

from mmsa.types import InputError

#: most hits one search returns with a number k (k=None: "all" for the exhaustive modes)
MAX_K = 10_000
#: most neighbours per hyperedge at build time
MAX_HYPEREDGE_K = 256
#: input rows per chunk of a build (memory grows with it)
MAX_CHUNK_SIZE = 1_000_000
#: worker processes for a build
MAX_N_JOBS = 64
#: actors of a Ray build (``--workers``; a cluster can have many more CPUs than one machine)
MAX_WORKERS = 4096
#: characters of a query (SMILES or SMARTS)
MAX_QUERY_CHARS = 5_000
#: heavy atoms of a query molecule or pattern
MAX_QUERY_ATOMS = 200
#: wall-clock seconds one substructure search may spend matching
QUERY_SECONDS = 30.0
#: characters of a failed row's input kept in failure records (manifest and failures.parquet)
MAX_FAILURE_INPUT_CHARS = 1_000
#: upload size of the app in MB (``$MMSA_MAX_UPLOAD_MB`` overrides)
MAX_UPLOAD_MB = 200


def max_upload_mb() -> int:
    """The app's upload limit in MB: ``$MMSA_MAX_UPLOAD_MB``, else :data:`MAX_UPLOAD_MB`."""
    try:
        return int(os.environ.get("MMSA_MAX_UPLOAD_MB", MAX_UPLOAD_MB))
    except ValueError:
        return MAX_UPLOAD_MB


def _int(value, what: str) -> int:
    if isinstance(value, bool):
        raise InputError(f"{what} must be a whole number, not {value!r}")
    try:
        out = int(value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{what} must be a whole number, not {value!r}") from None
    if out != value and not isinstance(value, str):
        raise InputError(f"{what} must be a whole number, not {value!r}")
    return out


def check_k(k, *, allow_none: bool = True) -> int | None:
    """``k`` hits: None (all, where the mode allows it) or 1..MAX_K."""
    if k is None:
        if not allow_none:
            raise InputError(f"k is needed for this search mode (1 to {MAX_K:,})")
        return None
    k = _int(k, "k")
    if not 1 <= k <= MAX_K:
        raise InputError(f"k must be between 1 and {MAX_K:,} (got {k:,}); for every hit of "
                         f"an exhaustive mode use k=None (CLI: --all)")
    return k


def check_hyperedge_k(k) -> int:
    k = _int(k, "hyperedge k")
    if not 1 <= k <= MAX_HYPEREDGE_K:
        raise InputError(f"hyperedge k (--hyperedge-k) must be between 1 and "
                         f"{MAX_HYPEREDGE_K} (got {k:,})")
    return k


def check_chunk_size(n) -> int:
    n = _int(n, "chunk size")
    if not 1 <= n <= MAX_CHUNK_SIZE:
        raise InputError(f"chunk size (--chunk-size) must be between 1 and "
                         f"{MAX_CHUNK_SIZE:,} rows (got {n:,})")
    return n


def check_n_jobs(n) -> int:
    n = _int(n, "n_jobs")
    if not 1 <= n <= MAX_N_JOBS:
        raise InputError(f"n_jobs (--n-jobs) must be between 1 and {MAX_N_JOBS} (got {n:,})")
    return n


def check_workers(n) -> int:
    """Ray build actors: 1..MAX_WORKERS."""
    n = _int(n, "workers")
    if not 1 <= n <= MAX_WORKERS:
        raise InputError(f"workers (--workers) must be between 1 and {MAX_WORKERS:,} "
                         f"(got {n:,})")
    return n


def check_query_text(query) -> str:
    """A non-empty query string of at most MAX_QUERY_CHARS characters (stripped)."""
    if not isinstance(query, str) or not query.strip():
        raise InputError("empty query: give a SMILES string")
    query = query.strip()
    if len(query) > MAX_QUERY_CHARS:
        raise InputError(f"query has {len(query):,} characters; the limit is "
                         f"{MAX_QUERY_CHARS:,}")
    return query


def check_query_atoms(mol) -> None:
    """A query molecule/pattern of at most MAX_QUERY_ATOMS atoms."""
    n = mol.GetNumAtoms()
    if n > MAX_QUERY_ATOMS:
        raise InputError(f"query has {n:,} atoms; the limit is {MAX_QUERY_ATOMS} "
                         f"(search with a smaller fragment)")


def clip_text(text: str, limit: int = MAX_FAILURE_INPUT_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut."""
    text = str(text)
    if len(text) <= limit:
        return text
    return text[:limit] + f"... [{len(text) - limit:,} more characters]"
