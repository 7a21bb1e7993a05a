"""The library store's public names in one place (kept for ``from mmsa.library.store import``).

The store is split by job:

- :mod:`mmsa.library.layout`   file names, library names and paths, work folders
- :mod:`mmsa.library.build`    build, append, delete; the lock, the swap, crash recovery
- :mod:`mmsa.library.library`  open (manifest checks, checksums, snapshot), list, ``Library``
- :mod:`mmsa.library.query`    the four search modes

Every deliberate error is a :class:`mmsa.types.InputError` (bad input file, bad query, bad
name, an argument over a limit of :mod:`mmsa.limits`) or :class:`mmsa.types.LibraryError`
(missing/corrupted/locked library, model mismatch, disk full) with a message that says what
to do.
"""

from __future__ import annotations

from mmsa.library.build import (
    APPROX_THRESHOLD,
    MANIFEST_FAILURES,
    BuildReport,
    Progress,
    add_to_library,
    build_library,
    delete_library,
    ensure_default_library,
)
from mmsa.library.layout import (
    DEFAULT_LIBRARY,
    FORMAT,
    FORMAT_VERSION,
    NAME_RE,
    check_name,
    library_path,
)
from mmsa.library.library import (
    AUTO_HASH_BYTES,
    MODES,
    Library,
    LibraryInfo,
    list_libraries,
    open_library,
)
from mmsa.library.query import SUBSTRUCTURE_SCAN

__all__ = [
    "APPROX_THRESHOLD", "AUTO_HASH_BYTES", "DEFAULT_LIBRARY", "FORMAT", "FORMAT_VERSION",
    "MANIFEST_FAILURES", "MODES", "NAME_RE", "SUBSTRUCTURE_SCAN", "BuildReport", "Library",
    "LibraryInfo", "Progress", "add_to_library", "build_library", "check_name",
    "delete_library", "ensure_default_library", "library_path", "list_libraries",
    "open_library",
]
