"""What a library looks like on disk: file names, dtypes, names, paths, hidden work folders.

Shared by :mod:`mmsa.library.build` (writes) and :mod:`mmsa.library.library` (reads).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

import numpy as np

from mmsa.types import InputError, LibraryError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
FORMAT = "mmsa-library"
FORMAT_VERSION = 1
DEFAULT_LIBRARY = "approved-drugs"
MANIFEST = "manifest.json"
METADATA = "metadata.parquet"
FAILURES = "failures.parquet"
INDEX = "index.faiss"
CACHE = "cache"

#: raw arrays streamed during a build: name -> dtype
STREAMS = {
    "vectors.f32": np.float32,
    "slot_ids.i32": np.int32,
    "slot_weights.f32": np.float32,
    "morgan.u8": np.uint8,
    "pattern.u8": np.uint8,
}
HYPER = {"hyperedges.i32": np.int32, "hyperedge_scores.f32": np.float32}
ARRAYS = {**STREAMS, **HYPER}
#: every file a manifest lists (and nothing else)
FILES = (*ARRAYS, METADATA, FAILURES, INDEX)
#: a sharded library keeps each shard's vectors and FAISS index in ``shard-NNNN/``; the
#: per-molecule files above (all but these two) stay library-wide
SHARD_FILES = ("vectors.f32", INDEX)
SHARD_RE = re.compile(r"^shard-[0-9]{4}$")
#: shards a library may have (shard-0000 .. shard-9999)
MAX_SHARDS = 10_000


def shard_name(i: int) -> str:
    """Folder of the ``i``-th shard (0-based): ``shard-0000``."""
    return f"shard-{i:04d}"


def library_files(shards: list[str] | None = None) -> tuple[str, ...]:
    """The exact set of files a manifest lists: :data:`FILES` for an unsharded library; for
    a sharded one the library-wide files and ``shard-NNNN/vectors.f32``,
    ``shard-NNNN/index.faiss`` of each shard."""
    if not shards:
        return FILES
    wide = tuple(f for f in FILES if f not in SHARD_FILES)
    return (*wide, *(f"{s}/{f}" for s in shards for f in SHARD_FILES))


def array_dtype(fname: str):
    """dtype of raw array file ``fname`` (a shard's ``shard-NNNN/vectors.f32`` included), or
    None when it is not a raw array."""
    return ARRAYS.get(fname.rsplit("/", 1)[-1])


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid library name, else raise InputError.

    Valid: ``^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`` and not ending in ``.`` (so ``..``, ``../x``,
    ``a/b``, absolute paths and hidden names can never escape or hide in the indexes folder).
    """
    if not isinstance(name, str) or not NAME_RE.match(name) or name.endswith("."):
        raise InputError(
            f"invalid library name {name!r}: use 1-64 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit (no '/', no leading dot)"
        )
    return name


def indexes_root(root: str | os.PathLike | None = None) -> Path:
    """The libraries folder (:func:`mmsa.paths.indexes_dir`), LibraryError when it is a file
    or cannot be created."""
    from mmsa.paths import indexes_dir

    raw = root or os.environ.get("MMSA_INDEXES") or (Path.cwd() / "indexes")
    path = Path(raw).expanduser()
    if path.exists() and not path.is_dir():
        raise LibraryError(f"the indexes folder {path} is not a folder (it is a file); "
                           f"give --indexes / $MMSA_INDEXES a folder")
    try:
        return indexes_dir(root)
    except OSError as exc:
        raise LibraryError(f"cannot use the indexes folder {path}: {exc.strerror or exc}") \
            from None


def library_path(name: str, root: str | os.PathLike | None = None) -> Path:
    """Folder of library ``name`` under ``root`` (default :func:`mmsa.paths.indexes_dir`).

    The last component is not resolved: a symbolic link named ``name`` is the link itself
    (which no operation follows)."""
    base = indexes_root(root)
    path = base / check_name(name)
    if path.parent != base:  # belt and braces: the regex already forbids this
        raise InputError(f"library name {name!r} escapes the indexes folder {base}")
    return path


def refuse_symlink(path: Path, name: str) -> None:
    if path.is_symlink():
        raise LibraryError(
            f"{path} is a symbolic link, not a library: libraries are never followed or "
            f"deleted through links (remove the link yourself if it should go)"
        )


def work_folder(root: Path, name: str, kind: str) -> Path:
    """A fresh hidden work folder ``ROOT/.NAME.KIND-XXXXXXXX`` (kind "tmp" or "old")."""
    return root / f".{name}.{kind}-{uuid.uuid4().hex[:8]}"


def work_folders(root: Path, name: str, kind: str) -> list[Path]:
    """Existing work folders of library ``name`` only (never those of a library whose name
    merely starts with ``name.tmp-``): exactly ``.NAME.KIND-`` + 8 hex digits."""
    pat = re.compile(rf"^\.{re.escape(name)}\.{kind}-[0-9a-f]{{8}}$")
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    return sorted(p for p in entries if pat.match(p.name) and p.is_dir()
                  and not p.is_symlink())


def lock_path(root: Path, name: str) -> Path:
    return root / f".{name}.lock"


def write_json(path: Path, obj) -> None:
    """Write JSON atomically (temp file, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    try:
        with open(tmp, "w") as fh:
            fh.write(json.dumps(obj, indent=1, default=str))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
