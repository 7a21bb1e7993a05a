"""The on-disk library store: build, append, open, search, hyperedges.

Split by job: layout.py (names, files), build.py (build, append, delete, lock, swap,
recovery), library.py (open, verify, snapshot, list), query.py (search modes).

A library is one folder ``indexes/NAME/`` (see docs/architecture.md, "A library on disk").
Nothing heavy is imported here: torch is imported only when molecules are embedded, faiss only
when an index is built or searched.

    >>> from mmsa.library import build_library, open_library
    >>> report = build_library("drugs.csv", "drugs")          # doctest: +SKIP
    >>> lib = open_library("drugs")                           # doctest: +SKIP
    >>> lib.search("CN1CCC[C@H]1c1cccnc1", k=10)              # doctest: +SKIP
"""

from __future__ import annotations

from mmsa.library.build import (
    BuildReport,
    add_to_library,
    build_library,
    delete_library,
    ensure_default_library,
)
from mmsa.library.layout import check_name, library_path
from mmsa.library.library import (
    MODES,
    Library,
    LibraryInfo,
    list_libraries,
    open_library,
)

__all__ = [
    "MODES",
    "BuildReport",
    "Library",
    "LibraryInfo",
    "add_to_library",
    "build_library",
    "check_name",
    "delete_library",
    "ensure_default_library",
    "library_path",
    "list_libraries",
    "open_library",
]
