"""Opening libraries: the manifest checked, files verified, an opened version kept whole.

    open_library(name, root=None, encoder=None, verify="auto") -> Library
    list_libraries(root=None) -> list[LibraryInfo]

Guarantees (docs/architecture.md, "Guarantees"):

- **Never a silently wrong answer from a damaged file.** Sizes and shapes are checked at
  open; every file's sha256 is checked before its content is first used (at open for
  libraries under :data:`AUTO_HASH_BYTES` or with ``verify="full"``, else on first use).
- **An opened library is a snapshot.** Every file is opened at open time through one
  directory handle (``O_NOFOLLOW``), so a rebuild or delete by another process (which swaps
  folders, never rewrites files) cannot mix versions: the old object keeps reading the
  version it opened. :meth:`Library.is_current` says whether a newer one is on disk.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mmsa.hashing import sha256_file
from mmsa.library.layout import (
    CACHE,
    FAILURES,
    FORMAT,
    FORMAT_VERSION,
    INDEX,
    MANIFEST,
    MAX_SHARDS,
    METADATA,
    NAME_RE,
    SHARD_RE,
    array_dtype,
    indexes_root,
    library_files,
    library_path,
    refuse_symlink,
)
from mmsa.types import Failure, InputError, LibraryError

log = logging.getLogger(__name__)

#: ``verify="auto"`` hashes every file at open when the library is smaller than this (larger
#: libraries hash each file on its first use)
AUTO_HASH_BYTES = 256 * 2**20
#: search modes of :meth:`Library.search`
MODES = ("embedding", "tanimoto", "hybrid", "substructure", "exact")
#: default weight of the embedding cosine in the hybrid score (the rest is Morgan Tanimoto);
#: a library's manifest may carry its own ("hybrid": {"weight": w})
HYBRID_WEIGHT = 0.5


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


# ---------------------------------------------------------------------------- the manifest


def _bad(name: str, what: str, value) -> LibraryError:
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return LibraryError(f"library {name!r}: manifest entry {what} is malformed ({text}); "
                        f"rebuild it")


def _count(value, name: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad(name, what, value)
    return value


def validate_manifest(m, name: str) -> dict:
    """Check the types and ranges of every manifest value the store reads (LibraryError)."""
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise LibraryError(f"library {name!r}: {MANIFEST} is not an MMSA library manifest")
    if m.get("format_version") != FORMAT_VERSION:
        raise LibraryError(
            f"library {name!r} has format version {m.get('format_version')!r}; this mmsa reads "
            f"version {FORMAT_VERSION}: rebuild it"
        )
    for key in ("count", "embedding", "checkpoint", "index", "files", "slots", "hyperedges"):
        if key not in m:
            raise LibraryError(f"library {name!r}: manifest has no {key!r} entry; rebuild it")
    n = _count(m["count"], name, "count")
    _count(m.get("n_failed", 0), name, "n_failed")
    for key in ("embedding", "checkpoint", "index", "slots", "hyperedges", "files"):
        if not isinstance(m[key], dict):
            raise _bad(name, key, m[key])
    dim = m["embedding"].get("dim")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise _bad(name, "embedding.dim", dim)
    if not isinstance(m["checkpoint"].get("sha256", ""), str):
        raise _bad(name, "checkpoint.sha256", m["checkpoint"].get("sha256"))
    if not isinstance(m["index"].get("type", ""), str):
        raise _bad(name, "index.type", m["index"].get("type"))
    if not isinstance(m["index"].get("params", {}), dict):
        raise _bad(name, "index.params", m["index"].get("params"))
    _count(m["hyperedges"].get("k", 0), name, "hyperedges.k")
    _count(m["slots"].get("top", 0), name, "slots.top")
    for key in ("columns", "sources", "failures"):
        if not isinstance(m.get(key, []), list):
            raise _bad(name, key, m.get(key))
    if not all(isinstance(c, str) for c in m.get("columns", [])):
        raise _bad(name, "columns", m.get("columns"))
    if not all(isinstance(s, dict) for s in m.get("sources", [])):
        raise _bad(name, "sources", m.get("sources"))
    shards = _validate_shards(m, name, n)
    rows_of = {f"{s['name']}/vectors.f32": s["count"] for s in shards}
    expected = library_files([s["name"] for s in shards])
    files = m["files"]
    unknown = sorted(set(files) - set(expected))
    if unknown:
        raise LibraryError(f"library {name!r}: the manifest lists {unknown[0]!r}, which is not "
                           f"a library file (files must be {', '.join(expected)}); rebuild it")
    missing = sorted(set(expected) - set(files))
    if missing:
        raise LibraryError(f"library {name!r}: manifest lists no {missing}; rebuild it")
    for fname, entry in files.items():
        if not isinstance(entry, dict):
            raise _bad(name, f"files[{fname!r}]", entry)
        _count(entry.get("size"), name, f"files[{fname!r}].size")
        if not isinstance(entry.get("sha256"), str):
            raise _bad(name, f"files[{fname!r}].sha256", entry.get("sha256"))
        dtype = array_dtype(fname)
        if dtype is not None:
            if entry.get("dtype") != np.dtype(dtype).str:
                raise _bad(name, f"files[{fname!r}].dtype", entry.get("dtype"))
            shape = entry.get("shape")
            if (not isinstance(shape, list) or len(shape) != 2
                    or any(isinstance(s, bool) or not isinstance(s, int) or s < 0
                           for s in shape)):
                raise _bad(name, f"files[{fname!r}].shape", shape)
            want = rows_of.get(fname, n)
            if shape[0] != want:
                what = "the shard's count" if fname in rows_of else "the manifest count"
                raise LibraryError(f"library {name!r}: {fname} has {shape[0]} rows, "
                                   f"{what} is {want}")
            if entry["size"] != shape[0] * shape[1] * np.dtype(dtype).itemsize:
                raise LibraryError(f"library {name!r}: {fname} size does not match its shape")
    for fname in [f for f in files if f.rsplit("/", 1)[-1] == "vectors.f32"]:
        if files[fname]["shape"][1] != dim:
            raise LibraryError(f"library {name!r}: {fname} has width "
                               f"{files[fname]['shape'][1]}, the manifest says {dim}")
    return m


def _validate_shards(m: dict, name: str, n: int) -> list[dict]:
    """The manifest's ``shards`` list checked (names shard-NNNN, unique; starts contiguous
    from 0; counts summing to ``count``; an index entry each); [] for an unsharded library."""
    shards = m.get("shards")
    if shards is None:
        return []
    if not isinstance(shards, list) or not 1 <= len(shards) <= MAX_SHARDS:
        raise _bad(name, "shards", shards)
    start = 0
    seen = set()
    for j, s in enumerate(shards):
        if not isinstance(s, dict):
            raise _bad(name, f"shards[{j}]", s)
        sname = s.get("name")
        if not isinstance(sname, str) or not SHARD_RE.match(sname) or sname in seen:
            raise _bad(name, f"shards[{j}].name", sname)
        seen.add(sname)
        count = _count(s.get("count"), name, f"shards[{j}].count")
        if _count(s.get("start"), name, f"shards[{j}].start") != start:
            raise LibraryError(f"library {name!r}: shard {sname} starts at row "
                               f"{s.get('start')}, the shards before it end at {start}")
        start += count
        info = s.get("index")
        if (not isinstance(info, dict) or not isinstance(info.get("type"), str)
                or not isinstance(info.get("params", {}), dict)):
            raise _bad(name, f"shards[{j}].index", info)
    if start != n:
        raise LibraryError(f"library {name!r}: its shards hold {start} molecules, the "
                           f"manifest count is {n}")
    return shards


# ---------------------------------------------------------------------------- the snapshot


_FD_DIR = next((d for d in ("/proc/self/fd", "/dev/fd") if os.path.isdir(d)), None)


class _Snapshot:
    """The files of one library version, opened together (relative to one directory handle,
    never following symlinks) and checked against the manifest's sha256 before first use."""

    def __init__(self, path: Path, name: str):
        self.path = path
        self.name = name
        flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
        try:
            self.dir_fd = os.open(path, flags)
        except FileNotFoundError:
            raise LibraryError(f"no library named {name!r} in {path.parent}") from None
        except NotADirectoryError:
            raise LibraryError(f"no library named {name!r} in {path.parent} ({path} is "
                               f"not a folder)") from None
        except OSError as exc:
            if path.is_symlink():
                refuse_symlink(path, name)
            raise LibraryError(f"cannot open library {name!r}: {exc.strerror}") from None
        self.fds: dict[str, int] = {}
        self.verified: set[str] = set()
        self.manifest: dict = {}

    def open_file(self, fname: str, missing_hint: str) -> int:
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(fname, flags, dir_fd=self.dir_fd)
        except FileNotFoundError:
            raise LibraryError(f"library {self.name!r} is damaged: {fname} is missing; "
                               f"{missing_hint}") from None
        except OSError as exc:
            raise LibraryError(f"library {self.name!r}: cannot open {fname} ({exc.strerror}; "
                               f"files inside a library may not be symbolic links)") from None
        self.fds[fname] = fd
        return fd

    def file_path(self, fname: str) -> str:
        """A path that reads this version's ``fname`` even after a swap or delete."""
        if _FD_DIR is not None:
            return f"{_FD_DIR}/{self.fds[fname]}"
        return str(self.path / fname)  # pragma: no cover - no fd folder: best effort

    def verify(self, fname: str) -> None:
        """sha256 of ``fname`` against the manifest, once (LibraryError on a mismatch)."""
        if fname in self.verified:
            return
        want = self.manifest["files"][fname]["sha256"]
        try:
            got = sha256_file(self.file_path(fname))
        except OSError as exc:
            raise LibraryError(f"library {self.name!r}: cannot read {fname}: "
                               f"{exc.strerror}") from None
        if got != want:
            raise LibraryError(
                f"library {self.name!r} is damaged: {fname} does not match the checksum in "
                f"the manifest; rebuild it (`mmsa index build FILE --name {self.name} "
                f"--overwrite`)"
            )
        self.verified.add(fname)

    def close(self) -> None:
        for fd in list(self.fds.values()) + [self.dir_fd]:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds.clear()


def _rebuild_hint(name: str) -> str:
    return f"rebuild it with `mmsa index build FILE --name {name} --overwrite`"


def _load(path: Path, name: str, verify: str) -> _Snapshot:
    if verify not in ("auto", "full", "size"):
        raise ValueError(f"verify must be 'auto', 'full' or 'size', not {verify!r}")
    snap = _Snapshot(path, name)
    try:
        try:
            fd = os.open(MANIFEST, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0),
                         dir_fd=snap.dir_fd)
        except FileNotFoundError:
            raise LibraryError(f"library {name!r} is incomplete: {path / MANIFEST} is missing; "
                               f"{_rebuild_hint(name)}") from None
        except OSError as exc:
            raise LibraryError(f"library {name!r}: cannot read {MANIFEST}: "
                               f"{exc.strerror}") from None
        try:
            with os.fdopen(fd, "rb") as fh:
                raw = fh.read(64 * 2**20 + 1)
            if len(raw) > 64 * 2**20:
                raise LibraryError(f"library {name!r}: {MANIFEST} is over 64 MB; rebuild it")
            manifest = json.loads(raw.decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LibraryError(f"library {name!r}: cannot read {path / MANIFEST}: {exc}") \
                from None
        snap.manifest = validate_manifest(manifest, name)
        for shard in manifest.get("shards", []):
            import stat

            try:
                st = os.stat(shard["name"], dir_fd=snap.dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                raise LibraryError(f"library {name!r} is damaged: shard folder "
                                   f"{shard['name']} is missing; {_rebuild_hint(name)}") from None
            if not stat.S_ISDIR(st.st_mode):
                raise LibraryError(f"library {name!r}: {shard['name']} is not a folder (shard "
                                   f"folders may not be symbolic links); {_rebuild_hint(name)}")
        total = 0
        for fname, entry in manifest["files"].items():
            fd = snap.open_file(fname, _rebuild_hint(name))
            size = os.fstat(fd).st_size
            if size != entry["size"]:
                what = "truncated" if size < entry["size"] else "larger than recorded"
                raise LibraryError(
                    f"library {name!r} is damaged: {fname} is {what} ({size} bytes, the "
                    f"manifest says {entry['size']}); rebuild it"
                )
            total += size
        if verify == "full" or (verify == "auto" and total < AUTO_HASH_BYTES):
            for fname in manifest["files"]:
                snap.verify(fname)
        import pyarrow.parquet as pq

        try:
            rows = pq.ParquetFile(snap.file_path(METADATA)).metadata.num_rows
        except Exception as exc:  # pyarrow raises several types for damaged files
            raise LibraryError(f"library {name!r}: cannot read {METADATA}: {exc}") from None
        if rows != manifest["count"]:
            raise LibraryError(f"library {name!r}: {METADATA} has {rows} rows, the manifest "
                               f"says {manifest['count']}")
    except BaseException:
        snap.close()
        raise
    return snap


def open_library(
    name: str,
    root: str | os.PathLike | None = None,
    encoder=None,
    *,
    verify: str = "auto",
) -> Library:
    """Open library ``name``, checking its files against the manifest.

    At open: folder and manifest present and well-formed, format version known, every file
    listed present (not a symlink) with the recorded size, shapes consistent with the count.
    Checksums (sha256 per file): all at open with ``verify="full"``, or with ``"auto"`` when
    the library is under 256 MB; otherwise (``"auto"`` on a large library, ``"size"``) each
    file is hashed before its content is first used, so a damaged file is always a
    LibraryError, never a wrong answer. With ``encoder`` given (an Encoder or a checkpoint
    path), its checkpoint hash must equal the library's. A library whose last swap was
    interrupted is recovered first (the previous or the finished new version).
    """
    path = library_path(name, root)
    refuse_symlink(path, name)
    if not path.exists():
        from mmsa.library.build import recover_interrupted

        recover_interrupted(path.parent, name)
    snap = _load(path, name, verify)
    lib = Library(path, snap.manifest, snap)
    if encoder is not None:
        from mmsa.library.embed import load_encoder

        lib.set_encoder(load_encoder(encoder))
    return lib


_WORK = re.compile(r"^\.(.+)\.(tmp|old)-[0-9a-f]{8}$")


def list_libraries(root: str | os.PathLike | None = None) -> list[LibraryInfo]:
    """Libraries under ``root`` sorted by name (hidden work folders, locks and symbolic links
    skipped). A folder whose manifest cannot be read or is malformed is listed with
    ``ok=False`` and the reason in ``error``; it never hides the others."""
    base = indexes_root(root)
    names = {p.name for p in base.iterdir()}
    for hidden in sorted(names):  # a swap interrupted by a kill: recover before listing
        m = _WORK.match(hidden)
        if m and NAME_RE.match(m.group(1)) and m.group(1) not in names:
            from mmsa.library.build import recover_interrupted

            try:
                recover_interrupted(base, m.group(1))
            except Exception as exc:  # never let one library break the listing
                log.warning("could not recover library %r: %s", m.group(1), exc)
    out = []
    for p in sorted(base.iterdir()):
        if p.name.startswith(".") or not NAME_RE.match(p.name) or p.is_symlink():
            continue
        if not p.is_dir():
            continue
        try:
            m = _read_manifest(p, p.name)
            out.append(LibraryInfo(
                name=p.name, path=p, count=int(m["count"]), n_failed=int(m.get("n_failed", 0)),
                index_type=str(m["index"].get("type", "")), dim=int(m["embedding"]["dim"]),
                checkpoint_sha256=str(m["checkpoint"].get("sha256", "")),
                created=str(m.get("created", "")), updated=str(m.get("updated", "")),
                sources=[str(s.get("path", "")) for s in m.get("sources", [])],
            ))
        except Exception as exc:  # LibraryError, or anything a hostile manifest provokes
            try:
                if not (p / MANIFEST).exists() and not any(p.iterdir()):
                    continue
            except OSError:
                pass
            out.append(LibraryInfo(p.name, p, 0, 0, "", 0, "", "", "", [], ok=False,
                                   error=str(exc)))
    return out


def _read_manifest(path: Path, name: str) -> dict:
    """The validated manifest of the library folder ``path`` (LibraryError)."""
    mpath = path / MANIFEST
    if not path.is_dir():
        raise LibraryError(f"no library named {name!r} in {path.parent}")
    if not mpath.is_file() or mpath.is_symlink():
        raise LibraryError(f"library {name!r} is incomplete: {mpath} is missing; "
                           f"{_rebuild_hint(name)}")
    try:
        if mpath.stat().st_size > 64 * 2**20:
            raise LibraryError(f"library {name!r}: {MANIFEST} is over 64 MB; rebuild it")
        manifest = json.loads(mpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LibraryError(f"library {name!r}: cannot read {mpath}: {exc}") from None
    return validate_manifest(manifest, name)


def read_manifest(name: str, root: str | os.PathLike | None = None) -> dict:
    """The validated manifest of library ``name`` (no file checks; cheap)."""
    path = library_path(name, root)
    refuse_symlink(path, name)
    return _read_manifest(path, name)


# ---------------------------------------------------------------------------- the library


class Library:
    """An opened library (read-only, one version: a snapshot). Get one with
    :func:`open_library`.

    Attributes:
        name, path
        manifest     dict (manifest.json)
        metadata     pandas DataFrame, one row per molecule in vector order: ``row`` (0..n-1),
                     ``id`` (the user's id), ``input_smiles``, ``smiles`` (canonical,
                     standardised), then the input's property columns. Loaded lazily.
        vectors      float32 [n, dim], L2-normalised, memory-mapped
        slot_topk    (ids int32 [n, t], weights float32 [n, t]): each molecule's top-t memory
                     slots by assignment weight (descending); t = min(8, num_slots)
        morgan, pattern  uint8 [n, 256] packed fingerprints
        hyperedges   int32 [n, k+1]: row i = i followed by its k nearest neighbours
        hyperedge_scores float32 [n, k+1]: cosine of each member to molecule i
        failures     list[Failure]: input rows that could not be added (all sources)
        cache_dir    Path ``NAME/cache/`` for derived, re-computable files (motifs, UMAP
                     coordinates); dropped when the library is rebuilt or appended to; a
                     private temporary folder once this version is no longer the current one
        len(lib)     number of molecules
    Every array and file is checked against its sha256 before its first use.
    """

    def __init__(self, path: Path, manifest: dict, snapshot: _Snapshot | None = None):
        self.path = Path(path)
        self.name = self.path.name
        self.manifest = manifest
        self._snap = snapshot if snapshot is not None else _load(self.path, self.name, "auto")
        self._arrays: dict[str, np.ndarray] = {}
        self._metadata: pd.DataFrame | None = None
        self._index = None
        self._encoder = None
        self._morgan_counts: np.ndarray | None = None
        self._cols: dict[str, np.ndarray] | None = None
        self._private_cache: Path | None = None
        self._dir_id = os.fstat(self._snap.dir_fd)[1:3]  # (inode, device)

    def __del__(self):
        snap = getattr(self, "_snap", None)
        if snap is not None:
            snap.close()

    def __len__(self) -> int:
        return int(self.manifest["count"])

    def __repr__(self) -> str:
        return (f"Library({self.name!r}, n={len(self)}, dim={self.dim}, "
                f"index={self.manifest['index'].get('type')})")

    # -- files ------------------------------------------------------------------------------

    def _array(self, fname: str) -> np.ndarray:
        arr = self._arrays.get(fname)
        if arr is None:
            self._snap.verify(fname)
            entry = self.manifest["files"][fname]
            shape = tuple(entry["shape"])
            if shape[0] == 0 or shape[1] == 0:
                arr = np.zeros(shape, dtype=entry["dtype"])
            else:
                arr = np.memmap(self._snap.file_path(fname), dtype=np.dtype(entry["dtype"]),
                                mode="r", shape=shape)
            self._arrays[fname] = arr
        return arr

    @property
    def shards(self) -> list[dict]:
        """The manifest's shard entries (name, start, count, index); [] when unsharded."""
        return list(self.manifest.get("shards", []))

    @property
    def vectors(self) -> np.ndarray:
        """float32 [n, dim]: the memmap of vectors.f32, or for a sharded library a
        :class:`mmsa.library.shards.ShardedVectors` view over the shards' memmaps (rows,
        slices and row arrays read through it; ``np.asarray`` concatenates, a copy)."""
        if not self.shards:
            return self._array("vectors.f32")
        arr = self._arrays.get("vectors.f32")
        if arr is None:
            from mmsa.library.shards import ShardedVectors

            arr = ShardedVectors([self._array(f"{s['name']}/vectors.f32") for s in self.shards],
                                 self.dim)
            self._arrays["vectors.f32"] = arr
        return arr

    @property
    def slot_topk(self) -> tuple[np.ndarray, np.ndarray]:
        return self._array("slot_ids.i32"), self._array("slot_weights.f32")

    @property
    def morgan(self) -> np.ndarray:
        return self._array("morgan.u8")

    @property
    def pattern(self) -> np.ndarray:
        return self._array("pattern.u8")

    @property
    def pattern_packing(self) -> str:
        """Bit order of :attr:`pattern` (older libraries used RDKit's FPS-text order)."""
        from mmsa.chem.fingerprints import PATTERN_PACKING, PATTERN_PACKING_FPS

        fp = self.manifest.get("fingerprints", {})
        packing = fp.get("pattern", {}).get("packing") if isinstance(fp, dict) else None
        return PATTERN_PACKING if packing == PATTERN_PACKING else PATTERN_PACKING_FPS

    @property
    def hyperedges(self) -> np.ndarray:
        return self._array("hyperedges.i32")

    @property
    def hyperedge_scores(self) -> np.ndarray:
        return self._array("hyperedge_scores.f32")

    def _parquet(self, fname: str) -> pd.DataFrame:
        self._snap.verify(fname)
        try:
            return pd.read_parquet(self._snap.file_path(fname))
        except Exception as exc:  # pyarrow raises several types for damaged files
            raise LibraryError(f"library {self.name!r}: cannot read {fname}: {exc}; "
                               f"rebuild it") from None

    @property
    def metadata(self) -> pd.DataFrame:
        if self._metadata is None:
            meta = self._parquet(METADATA)
            if len(meta) != len(self) or "smiles" not in meta.columns:
                raise LibraryError(f"library {self.name!r}: {METADATA} does not match the "
                                   f"manifest; rebuild it")
            self._metadata = meta
        return self._metadata

    @property
    def failures(self) -> list[Failure]:
        df = self._parquet(FAILURES)
        return [Failure(int(r), str(i), str(m)) for r, i, m in
                zip(df["row"], df["input"], df["reason"])]

    @property
    def dim(self) -> int:
        return int(self.manifest["embedding"]["dim"])

    @property
    def checkpoint_hash(self) -> str:
        return str(self.manifest["checkpoint"]["sha256"])

    @property
    def property_columns(self) -> list[str]:
        return list(self.manifest.get("columns", []))

    def is_current(self) -> bool:
        """Whether ``path`` still holds the version this object opened (False after a
        rebuild, append or delete: open the library again for the new version)."""
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except OSError:
            return False
        return (st.st_ino, st.st_dev) == self._dir_id

    @property
    def cache_dir(self) -> Path:
        if self.is_current():
            path = self.path / CACHE
            try:
                path.mkdir(exist_ok=True)
                return path
            except OSError:
                pass
        if self._private_cache is None:  # never write this version's caches into another
            self._private_cache = Path(tempfile.mkdtemp(prefix=f"mmsa-{self.name}-cache-"))
            log.info("library %r changed on disk; caching in %s", self.name,
                     self._private_cache)
        return self._private_cache

    # -- model ------------------------------------------------------------------------------

    def set_encoder(self, encoder) -> None:
        """Use ``encoder`` to embed queries; LibraryError if it is not the library's model."""
        if encoder.checkpoint_hash != self.checkpoint_hash:
            raise LibraryError(
                f"library {self.name!r} was built with checkpoint "
                f"{self.checkpoint_hash[:12]}…, but the encoder's checkpoint is "
                f"{encoder.checkpoint_hash[:12]}… ({getattr(encoder, 'path', '')}); its "
                f"vectors are not comparable: rebuild the library with this checkpoint "
                f"(`mmsa index build FILE --name {self.name} --overwrite`) or use the "
                f"library's checkpoint"
            )
        if int(encoder.dim) != self.dim:
            raise LibraryError(f"encoder dim {encoder.dim} != library dim {self.dim}")
        self._encoder = encoder

    @property
    def encoder(self):
        """The encoder for queries (loaded lazily: the shipped checkpoint, checked)."""
        if self._encoder is None:
            from mmsa.library.embed import load_encoder

            self.set_encoder(load_encoder(None))
        return self._encoder

    @property
    def shard_parts(self) -> list[tuple]:
        """Per shard (index, index info, vectors memmap, first global row), indexes loaded
        once and checked (sha256, vector count); what :func:`mmsa.library.ann.search_shards`
        searches."""
        if self._index is None:
            from mmsa.library import ann

            parts = []
            for s in self.shards:
                fname = f"{s['name']}/{INDEX}"
                self._snap.verify(fname)
                index = ann.read_index(self._snap.file_path(fname), s["index"])
                if index.ntotal != s["count"]:
                    raise LibraryError(f"library {self.name!r}: {fname} holds {index.ntotal} "
                                       f"vectors, the manifest says {s['count']}; rebuild it")
                parts.append((index, s["index"], self._array(f"{s['name']}/vectors.f32"),
                              int(s["start"])))
            self._index = parts
        return self._index

    @property
    def index(self):
        if self.shards:
            raise LibraryError(f"library {self.name!r} is sharded: it has one index per "
                               f"shard (Library.shard_parts), not one index")
        if self._index is None:
            from mmsa.library import ann

            self._snap.verify(INDEX)
            self._index = ann.to_gpu_if_available(
                ann.read_index(self._snap.file_path(INDEX), self.manifest["index"]))
            if self._index.ntotal != len(self):
                raise LibraryError(f"library {self.name!r}: index holds {self._index.ntotal} "
                                   f"vectors, the manifest says {len(self)}; rebuild it")
        return self._index

    def embed_query(self, smiles: str) -> np.ndarray:
        """Embedding of a (standardised) query SMILES with the library's model: float32 [dim].

        One molecule is embedded on one torch thread: for a single tiny graph, intra-op
        threads only add synchronisation (7x slower on a busy 2-core machine)."""
        import torch

        enc = self.encoder
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            res = enc.embed([smiles], mode=self.manifest["checkpoint"].get("mode", "fast"))
        finally:
            torch.set_num_threads(threads)
        if not bool(res.ok[0]):
            reason = res.failures[0].reason if res.failures else "embedding failed"
            raise InputError(f"could not embed query {smiles!r}: {reason}")
        return np.asarray(res.vectors[0], dtype=np.float32)

    # -- search (mmsa.library.query) ----------------------------------------------------------

    def search_vectors(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Raw index search: ``queries`` float32 [m, dim] -> (scores float32 [m, k],
        rows int64 [m, k]); rows -1 where fewer than k hits."""
        from mmsa.library.query import search_vectors

        return search_vectors(self, queries, k)

    def search(self, query: str, k: int | None = 10, mode: str = "embedding",
               threshold: float | None = None) -> pd.DataFrame:
        """Search the library with a query SMILES (or SMARTS/SMILES pattern for substructure).

        Modes:
            embedding     cosine of MMSA embeddings (needs the library's checkpoint);
            tanimoto      exact Morgan r=2 2048-bit Tanimoto over the whole library;
            hybrid        ``w * cosine + (1 - w) * Tanimoto`` (``w`` from the manifest's
                          ``hybrid.weight``, default :data:`HYBRID_WEIGHT`): exact over the
                          whole library up to 500,000 molecules, above that over the union
                          of the embedding and Tanimoto top candidates;
            substructure  molecules containing the pattern (pattern-fingerprint screen that
                          is safe for SMARTS, then RDKit matching), ranked by Tanimoto to the
                          query when it is a molecule (with ``k`` given: among the first
                          10,000 matches in library order; ``k=None`` returns every match);
            exact         the same standardised structure: equal canonical SMILES, stereo
                          included (a stereo-free or other-tautomer query does not match).
        ``k`` caps the hits (1..:data:`mmsa.limits.MAX_K`; None = all, for
        substructure/exact/tanimoto); ``threshold`` keeps hits with score >= threshold.

        Returns a DataFrame with columns ``rank`` (1..), ``row``, ``id``, ``smiles``,
        ``score`` (the mode's similarity; 1.0 for substructure/exact), ``tanimoto`` (Morgan
        Tanimoto to the query), ``cosine`` (embedding cosine to the query where it is
        meaningful: embedding and hybrid modes; NaN elsewhere), then the library's property
        columns.
        Unparseable or over-limit queries raise InputError.
        """
        from mmsa.library.query import search

        return search(self, query, k=k, mode=mode, threshold=threshold)

    def _standard_query(self, query: str):
        from mmsa.library.query import standard_query

        return standard_query(query)

    def neighbors(self, row: int, k: int = 10) -> pd.DataFrame:
        """Nearest library molecules to library molecule ``row`` (no model needed);
        same columns as :meth:`search` (the molecule itself excluded)."""
        from mmsa.library.query import neighbors

        return neighbors(self, row, k)

    def _frame(self, rows, scores, tanimoto, cosine) -> pd.DataFrame:
        from mmsa.library.query import frame

        return frame(self, rows, scores, tanimoto, cosine)

    # -- hyperedges -------------------------------------------------------------------------

    def _check_row(self, i) -> int:
        try:
            i = int(i)
        except (TypeError, ValueError):
            raise InputError(f"row must be an integer, not {i!r}") from None
        if not 0 <= i < len(self):
            raise InputError(f"row {i} is out of range (library {self.name!r} has {len(self)})")
        return i

    def hyperedge(self, i: int) -> np.ndarray:
        """Member rows of molecule ``i``'s hyperedge: int64 [<= k+1], ``i`` first."""
        members = np.asarray(self.hyperedges[self._check_row(i)], dtype=np.int64)
        return members[members >= 0]

    def hyperedge_motif(self, i: int, timeout: float = 2.0):
        """Maximum common substructure of hyperedge ``i``'s members
        (:func:`mmsa.chem.motifs.mcs` result), computed once and cached in ``cache/``."""
        from mmsa.library.hyperedges import hyperedge_motif

        return hyperedge_motif(self, self._check_row(i), timeout=timeout)

    def coherent_hyperedges(self, top: int = 20) -> pd.DataFrame:
        """The ``top`` most coherent, mutually non-overlapping hyperedges: columns
        ``hyperedge`` (centre row), ``id``, ``smiles``, ``size``, ``coherence`` (mean cosine of
        the members to the centre), ``members`` (list of rows)."""
        from mmsa.library.hyperedges import coherent_hyperedges

        return coherent_hyperedges(self, top=top)
