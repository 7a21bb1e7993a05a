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

import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from mmsa.hashing import sha256_file
from mmsa.paths import indexes_dir
from mmsa.types import Failure, InputError, LibraryError

log = logging.getLogger(__name__)

#: search modes of :meth:`Library.search`
MODES = ("embedding", "tanimoto", "substructure", "exact")

#: libraries with fewer vectors than this get an exact (flat) index under ``index="auto"``
APPROX_THRESHOLD = 50_000

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


NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
FORMAT = "mmsa-library"
FORMAT_VERSION = 1
DEFAULT_LIBRARY = "approved-drugs"
MANIFEST = "manifest.json"
METADATA = "metadata.parquet"
FAILURES = "failures.parquet"
INDEX = "index.faiss"
CACHE = "cache"
#: manifests keep this many failure records inline (all are in failures.parquet)
MANIFEST_FAILURES = 1000
#: substructure search with k ranks at most this many matches (the first, in library order)
SUBSTRUCTURE_SCAN = 10_000
#: ``verify="auto"`` hashes every file when the library is smaller than this
AUTO_HASH_BYTES = 256 * 2**20

# raw arrays streamed during a build: name -> dtype
_STREAMS = {
    "vectors.f32": np.float32,
    "slot_ids.i32": np.int32,
    "slot_weights.f32": np.float32,
    "morgan.u8": np.uint8,
    "pattern.u8": np.uint8,
}
_HYPER = {"hyperedges.i32": np.int32, "hyperedge_scores.f32": np.float32}


# ---------------------------------------------------------------------------- names, paths


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


def library_path(name: str, root: str | os.PathLike | None = None) -> Path:
    """Folder of library ``name`` under ``root`` (default :func:`mmsa.paths.indexes_dir`)."""
    base = indexes_dir(root)
    path = (base / check_name(name)).resolve()
    if path.parent != base:  # belt and braces: the regex already forbids this
        raise InputError(f"library name {name!r} escapes the indexes folder {base}")
    return path


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


_sha256 = sha256_file


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


# ---------------------------------------------------------------------------- locking


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def _build_lock(root: Path, name: str):
    """Hold ``ROOT/.NAME.lock`` (O_CREAT|O_EXCL, holds our pid) for a build of ``name``."""
    path = root / f".{name}.lock"
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                pid = int(path.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and _pid_alive(pid):
                raise LibraryError(
                    f"library {name!r} is being built by another process (pid {pid}); wait "
                    f"for it to finish (or delete {path} if that process is gone)"
                ) from None
            if not pid:  # being written right now, or garbage: give the writer a moment
                time.sleep(0.2)
                try:
                    pid = int(path.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and _pid_alive(pid):
                    continue
            log.warning("removing stale lock %s (pid %s is gone)", path, pid or "?")
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        break
    else:
        raise LibraryError(f"could not lock library {name!r} ({path}); try again")
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _swap_in(tmp: Path, final: Path) -> None:
    """Replace ``final`` by the complete folder ``tmp`` (the old version survives until the
    new one is in place)."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(final, old)
    try:
        os.rename(tmp, final)
    except OSError:
        if old is not None:
            os.rename(old, final)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _cleanup_stale(root: Path, name: str) -> None:
    """Remove temp folders of earlier interrupted builds of ``name`` (we hold its lock)."""
    for pat in (f".{name}.tmp-*", f".{name}.old-*"):
        for p in root.glob(pat):
            if p.is_dir():
                log.info("removing leftover %s of an interrupted build", p.name)
                shutil.rmtree(p, ignore_errors=True)


# ---------------------------------------------------------------------------- building


def _estimate_rows(path: Path) -> int | None:
    """Rough count of input records for the progress bar (None when unknown/compressed)."""
    suffix = path.name.lower()
    try:
        if suffix.endswith((".csv", ".tsv", ".smi", ".smiles", ".txt")):
            with open(path, "rb") as fh:
                lines = sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 22), b""))
            header = 0 if suffix.endswith((".smi", ".smiles", ".txt")) else 1
            return max(0, lines - header)
        if suffix.endswith(".sdf"):
            with open(path, "rb") as fh:
                return sum(block.count(b"$$$$") for block in iter(lambda: fh.read(1 << 22), b""))
    except OSError:
        return None
    return None


def _encoder_spec(encoder):
    """(encoder object for this process, spec for worker processes)."""
    from mmsa.library.embed import load_encoder

    enc = load_encoder(encoder)
    path = getattr(enc, "path", None)
    return enc, (str(path) if path is not None else enc)


class _Streams:
    """Append-only raw array files of a library being built."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.files = {name: open(folder / name, "ab") for name in _STREAMS}

    def append(self, res) -> None:
        arrays = {
            "vectors.f32": res.vectors,
            "slot_ids.i32": res.slot_ids,
            "slot_weights.f32": res.slot_weights,
            "morgan.u8": res.morgan,
            "pattern.u8": res.pattern,
        }
        for name, arr in arrays.items():
            self.files[name].write(np.ascontiguousarray(arr, dtype=_STREAMS[name]).tobytes())

    def close(self) -> None:
        for fh in self.files.values():
            fh.close()


def _chunk_results(chunks, encoder, spec, n_jobs: int, mode: str = "fast"):
    """Yield (chunk, ChunkResult) in input order; embeds in ``n_jobs`` processes if > 1."""
    from mmsa.library.embed import _worker_embed, _worker_init, embed_chunk

    if n_jobs <= 1:
        for chunk in chunks:
            smiles = chunk.records["smiles"].tolist()
            yield chunk, embed_chunk(smiles, encoder, mode=mode)
        return
    import multiprocessing as mp
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(
        max_workers=n_jobs,
        mp_context=mp.get_context("spawn"),
        initializer=_worker_init,
        initargs=(spec, 1),
    ) as pool:
        pending: deque = deque()
        for chunk in chunks:
            pending.append((chunk, pool.submit(_worker_embed, chunk.records["smiles"].tolist(), mode)))
            while len(pending) > n_jobs:
                c, fut = pending.popleft()
                yield c, fut.result()
        while pending:
            c, fut = pending.popleft()
            yield c, fut.result()


def _ingest(
    source: Path,
    folder: Path,
    streams: _Streams,
    *,
    encoder,
    spec,
    start_row: int,
    smiles_col,
    id_col,
    chunk_size: int,
    n_jobs: int,
    progress: Progress | None,
    part0: int,
) -> tuple[int, list[Failure], int, int]:
    """Read ``source`` chunk by chunk, embed, append arrays and metadata parts.

    Returns (n_ok, failures, rows_read, parts_written).
    """
    from mmsa.chem.io import iter_library

    total = _estimate_rows(source)
    n_ok = 0
    rows_read = 0
    failures: list[Failure] = []
    part = part0
    chunks = iter_library(source, smiles_col=smiles_col, id_col=id_col, chunk_size=chunk_size)
    if progress is not None:
        progress(0, total)
    for chunk, res in _chunk_results(chunks, encoder, spec, n_jobs):
        rec = chunk.records
        failures.extend(chunk.failures)
        for f in res.failures:
            failures.append(
                Failure(int(rec["row"].iloc[f.row]), str(rec["input_smiles"].iloc[f.row]), f.reason)
            )
        meta = rec.loc[res.ok].drop(columns=["row"]).reset_index(drop=True)
        meta.insert(0, "row", np.arange(start_row + n_ok, start_row + n_ok + len(meta), dtype=np.int64))
        if len(meta):
            streams.append(res)
            meta.to_parquet(folder / f"_meta-{part:06d}.parquet", index=False)
            part += 1
        n_ok += len(meta)
        rows_read += len(rec) + len(chunk.failures)
        if progress is not None:
            progress(rows_read, total)
    return n_ok, failures, rows_read, part - part0


def _arrow_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Make mixed-type object columns storable in parquet (as text)."""
    import pyarrow as pa

    for col in df.columns:
        if df[col].dtype == object:
            try:
                pa.array(df[col], from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                df[col] = df[col].map(lambda v: v if v is None or v is pd.NA else str(v))
    return df


def _merge_metadata(folder: Path, existing: pd.DataFrame | None) -> pd.DataFrame:
    parts = sorted(folder.glob("_meta-*.parquet"))
    frames = ([existing] if existing is not None else []) + [pd.read_parquet(p) for p in parts]
    meta = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["row", "id", "input_smiles", "smiles"]
    )
    meta["row"] = np.arange(len(meta), dtype=np.int64)
    meta = _arrow_safe(meta)
    meta.to_parquet(folder / METADATA, index=False)
    for p in parts:
        p.unlink()
    return meta


def _finish(
    folder: Path,
    manifest: dict,
    *,
    dim: int,
    index: str,
    approx_threshold: int,
    hyperedge_k: int,
    seed: int,
    progress: Progress | None,
) -> dict:
    """Index + hyperedges + file table; returns the completed manifest (also written)."""
    from mmsa.library import ann

    n = manifest["count"]
    vectors = np.memmap(folder / "vectors.f32", dtype=np.float32, mode="r", shape=(n, dim))
    log.info("building the %s index over %d vectors", index, n)
    idx, info = ann.build_index(vectors, index, approx_threshold=approx_threshold, seed=seed)
    info["threshold"] = approx_threshold
    info["requested"] = index
    ann.write_index(idx, folder / INDEX)
    log.info("index: %s", info)
    k = max(1, int(hyperedge_k))
    log.info("computing the %d-NN hyperedges of %d molecules", k, n)
    t0 = time.perf_counter()
    rows, scores = ann.knn_graph(ann.to_gpu_if_available(idx), vectors, k)
    rows.tofile(folder / "hyperedges.i32")
    scores.tofile(folder / "hyperedge_scores.f32")
    del idx, vectors
    manifest["index"] = info
    manifest["hyperedges"] = {"k": k, "method": f"kNN over the {info['type']} index",
                              "seconds": round(time.perf_counter() - t0, 3)}
    t = manifest["slots"]["top"]
    shapes = {
        "vectors.f32": [n, dim],
        "slot_ids.i32": [n, t],
        "slot_weights.f32": [n, t],
        "morgan.u8": [n, 256],
        "pattern.u8": [n, 256],
        "hyperedges.i32": [n, k + 1],
        "hyperedge_scores.f32": [n, k + 1],
    }
    files = {}
    for name, shape in shapes.items():
        dtype = {**_STREAMS, **_HYPER}[name]
        path = folder / name
        files[name] = {"dtype": np.dtype(dtype).str, "shape": shape, "size": path.stat().st_size,
                       "sha256": _sha256(path)}
        expect = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if files[name]["size"] != expect:  # our own bug, never a user's
            raise LibraryError(f"internal error: {name} has {files[name]['size']} bytes, "
                               f"expected {expect}")
    for name in (METADATA, FAILURES, INDEX):
        path = folder / name
        files[name] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    manifest["files"] = files
    _write_json(folder / MANIFEST, manifest)
    return manifest


def _source_entry(source: Path, smiles_col, id_col, n_ok, n_failed, rows_read, seconds) -> dict:
    st = source.stat()
    return {"path": str(source), "size": st.st_size, "sha256": _sha256(source),
            "smiles_col": smiles_col, "id_col": id_col, "rows": rows_read, "n_ok": n_ok,
            "n_failed": n_failed, "added": _now(), "seconds": round(seconds, 3)}


def _check_source(source) -> Path:
    path = Path(source).expanduser()
    if not path.is_file():
        raise InputError(f"input file not found: {path}")
    return path.resolve()


def _run_into(
    root: Path,
    name: str,
    make_tmp: Callable[[Path], dict],
    source: Path,
    *,
    encoder,
    smiles_col,
    id_col,
    index: str,
    approx_threshold: int,
    hyperedge_k: int,
    chunk_size: int,
    n_jobs: int,
    progress: Progress | None,
    seed: int,
    existing_meta_path: Path | None = None,
) -> BuildReport:
    """Common body of build and append: prepare a temp folder with ``make_tmp`` (returns the
    starting manifest), ingest ``source``, finish, swap in."""
    from mmsa.library import ann

    if index not in ann.INDEX_TYPES:
        raise InputError(f"unknown index type {index!r}; choose one of {', '.join(ann.INDEX_TYPES)}")
    t0 = time.perf_counter()
    final = root / name
    with _build_lock(root, name):
        _cleanup_stale(root, name)
        tmp = root / f".{name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            manifest = make_tmp(tmp)
            enc, spec = _encoder_spec(encoder)
            if n_jobs > 1 and str(getattr(enc, "device", "cpu")).startswith("cuda"):
                log.info("embedding on %s in this process (n_jobs=%d ignored)", enc.device, n_jobs)
                n_jobs = 1
            ck = manifest.get("checkpoint")
            if ck and ck.get("sha256") != enc.checkpoint_hash:
                raise LibraryError(
                    f"library {name!r} was built with checkpoint {ck.get('sha256', '?')[:12]}…, "
                    f"the encoder is {enc.checkpoint_hash[:12]}…; rebuild it with "
                    f"`mmsa index build ... --name {name}` instead of appending"
                )
            from mmsa.library.embed import SLOT_TOP

            manifest.setdefault("checkpoint", {
                "sha256": enc.checkpoint_hash,
                "path": str(getattr(enc, "path", "") or ""),
                "dim": int(enc.dim),
                "num_slots": int(enc.num_slots),
                "mode": "fast",
            })
            dim = int(enc.dim)
            manifest.setdefault("embedding", {"dim": dim, "dtype": "float32",
                                              "metric": "inner_product", "normalization": "l2"})
            manifest.setdefault("slots", {"top": min(SLOT_TOP, int(enc.num_slots)),
                                          "num_slots": int(enc.num_slots)})
            manifest.setdefault("fingerprints", {
                "morgan": {"radius": 2, "nbits": 2048, "packing": "np.packbits, big-endian"},
                "pattern": {"kind": "rdkit PatternFingerprint", "nbits": 2048,
                            "packing": "BitVectToFPSText bytes"},
            })
            start = int(manifest.get("count", 0))
            streams = _Streams(tmp)
            ts = time.perf_counter()
            try:
                n_ok, failures, rows_read, _ = _ingest(
                    source, tmp, streams, encoder=enc, spec=spec, start_row=start,
                    smiles_col=smiles_col, id_col=id_col, chunk_size=chunk_size,
                    n_jobs=n_jobs, progress=progress, part0=0,
                )
            finally:
                streams.close()
            failures = [Failure(f.row, f.input, f.reason) for f in failures]
            if n_ok == 0:
                first = "; ".join(str(f) for f in failures[:3])
                raise InputError(f"no molecule of {source.name} could be added ({first})")
            existing = pd.read_parquet(existing_meta_path) if existing_meta_path else None
            meta = _merge_metadata(tmp, existing)
            _append_failures(tmp, failures, str(source))
            manifest["count"] = len(meta)
            manifest["n_failed"] = int(manifest.get("n_failed", 0)) + len(failures)
            inline = manifest.get("failures", [])
            inline.extend(dict(f.to_dict(), source=str(source)) for f in failures)
            manifest["failures"] = inline[:MANIFEST_FAILURES]
            manifest["columns"] = [c for c in meta.columns
                                   if c not in ("row", "id", "input_smiles", "smiles")]
            del meta, existing  # not needed while the index is built
            manifest.setdefault("sources", []).append(_source_entry(
                source, smiles_col, id_col, n_ok, len(failures), rows_read,
                time.perf_counter() - ts))
            manifest["updated"] = _now()
            manifest = _finish(tmp, manifest, dim=dim, index=index,
                               approx_threshold=approx_threshold, hyperedge_k=hyperedge_k,
                               seed=seed, progress=progress)
            _swap_in(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    seconds = time.perf_counter() - t0
    log.info("library %r: %d molecules (+%d, %d failed) in %.1f s", name, manifest["count"],
             n_ok, len(failures), seconds)
    return BuildReport(name=name, path=final, n_ok=n_ok, n_failed=len(failures),
                       n_total=manifest["count"], failures=failures, seconds=seconds,
                       index=manifest["index"])


def _append_failures(folder: Path, failures: list[Failure], source: str) -> None:
    """Add ``failures`` (of input ``source``) to ``folder/failures.parquet``."""
    new = pd.DataFrame([f.to_dict() for f in failures], columns=["row", "input", "reason"])
    new["source"] = source
    old = folder / FAILURES
    df = pd.concat([pd.read_parquet(old), new], ignore_index=True) if old.exists() else new
    df["row"] = df["row"].astype(np.int64)
    df.to_parquet(old, index=False)


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
    chunk_size: int = 4096,
    n_jobs: int = 1,
    progress: Progress | None = None,
    overwrite: bool = False,
    seed: int = 0,
) -> BuildReport:
    """Build library ``name`` from a molecule file (.smi/.csv/.tsv/.sdf[.gz]).

    Streams the file in chunks (:func:`mmsa.chem.io.iter_library`); each chunk goes through
    :func:`mmsa.library.embed.embed_chunk` (a pure function of the SMILES batch and the
    checkpoint, run in ``n_jobs`` worker processes when ``n_jobs > 1``) and is appended to the
    files on disk, so memory stays bounded. Then the FAISS index (``index``: "auto" | "flat" |
    "hnsw" | "ivf"; "auto" = flat below ``approx_threshold`` vectors, HNSW up to 1M, IVF
    above, with recall@10 >= 0.95 measured on a sample and recorded) and the kNN hyperedges
    (``hyperedge_k`` neighbours) are built.

    Everything is written into a temporary folder ``ROOT/.NAME.tmp-XXXX`` renamed to
    ``ROOT/NAME`` at the end: a failed or interrupted build leaves the previous version intact.
    A lock file ``ROOT/.NAME.lock`` refuses concurrent builds of one name (LibraryError).

    ``encoder``: an :class:`mmsa.encoder.Encoder`, a checkpoint path, or None for the shipped
    checkpoint. ``progress(done, total)`` is called after each chunk (total may be None).
    Raises InputError for unreadable/empty/all-invalid input and bad names, LibraryError if the
    name exists and ``overwrite`` is False, or if it is locked.
    """
    check_name(name)
    base = indexes_dir(root)
    src = _check_source(source)
    if (base / name).exists() and not overwrite:
        raise LibraryError(
            f"library {name!r} already exists in {base}; use overwrite=True (--overwrite) to "
            f"rebuild it, or `mmsa index add {name} FILE` to append"
        )

    def make_tmp(tmp: Path) -> dict:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "name": name,
                "created": _now(), "count": 0, "n_failed": 0, "failures": [], "sources": []}

    return _run_into(base, name, make_tmp, src, encoder=encoder, smiles_col=smiles_col,
                     id_col=id_col, index=index, approx_threshold=approx_threshold,
                     hyperedge_k=hyperedge_k, chunk_size=chunk_size, n_jobs=n_jobs,
                     progress=progress, seed=seed)


def add_to_library(
    name: str,
    source: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    encoder=None,
    smiles_col: str | None = None,
    id_col: str | None = None,
    chunk_size: int = 4096,
    n_jobs: int = 1,
    progress: Progress | None = None,
    seed: int = 0,
) -> BuildReport:
    """Append the molecules of ``source`` to library ``name`` (atomically, like a build).

    The encoder must be the library's checkpoint (LibraryError otherwise). The index is
    rebuilt with the library's requested index type (recall re-measured), hyperedges
    recomputed, and derived caches (``cache/``: motifs, maps) dropped.
    """
    base = indexes_dir(root)
    src = _check_source(source)
    current = open_library(name, root=base, verify="size")
    old = current.manifest
    n0 = len(current)
    dim = int(old["embedding"]["dim"])
    del current

    def make_tmp(tmp: Path) -> dict:
        cur = base / name
        for fname in _STREAMS:
            shutil.copyfile(cur / fname, tmp / fname)
        if (cur / FAILURES).exists():
            shutil.copyfile(cur / FAILURES, tmp / FAILURES)
        # the copies must still match the manifest (no concurrent writer: we hold the lock)
        for fname in _STREAMS:
            size = (tmp / fname).stat().st_size
            if size != old["files"][fname]["size"]:
                raise LibraryError(f"library {name!r} changed while appending ({fname})")
        m = json.loads(json.dumps(old))
        m.pop("files", None)
        m.pop("index", None)
        m.pop("hyperedges", None)
        return m

    idx_kind = old.get("index", {}).get("requested", old.get("index", {}).get("type", "auto"))
    threshold = int(old.get("index", {}).get("threshold", APPROX_THRESHOLD))
    k = int(old.get("hyperedges", {}).get("k", 8))
    log.info("appending %s to %r (%d molecules, dim %d)", src, name, n0, dim)
    return _run_into(base, name, make_tmp, src, encoder=encoder, smiles_col=smiles_col,
                     id_col=id_col, index=idx_kind, approx_threshold=threshold,
                     hyperedge_k=k, chunk_size=chunk_size, n_jobs=n_jobs, progress=progress,
                     seed=seed, existing_meta_path=base / name / METADATA)


# ---------------------------------------------------------------------------- opening


def _read_manifest(path: Path, name: str) -> dict:
    mpath = path / MANIFEST
    if not path.is_dir():
        raise LibraryError(f"no library named {name!r} in {path.parent}")
    if not mpath.is_file():
        raise LibraryError(
            f"library {name!r} is incomplete: {mpath} is missing; rebuild it with "
            f"`mmsa index build FILE --name {name} --overwrite`"
        )
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LibraryError(f"library {name!r}: cannot read {mpath}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise LibraryError(f"library {name!r}: {mpath} is not an MMSA library manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise LibraryError(
            f"library {name!r} has format version {manifest.get('format_version')!r}; this "
            f"mmsa reads version {FORMAT_VERSION}: rebuild it"
        )
    for key in ("count", "embedding", "checkpoint", "index", "files", "slots", "hyperedges"):
        if key not in manifest:
            raise LibraryError(f"library {name!r}: manifest has no {key!r} entry; rebuild it")
    return manifest


def _verify_files(path: Path, name: str, manifest: dict, verify: str) -> None:
    files = manifest["files"]
    n = int(manifest["count"])
    dim = int(manifest["embedding"]["dim"])
    required = set(_STREAMS) | set(_HYPER) | {METADATA, FAILURES, INDEX}
    missing_entries = required - set(files)
    if missing_entries:
        raise LibraryError(f"library {name!r}: manifest lists no {sorted(missing_entries)}")
    total = 0
    for fname, entry in files.items():
        f = path / fname
        if not f.is_file():
            raise LibraryError(
                f"library {name!r} is damaged: {fname} is missing; rebuild it with "
                f"`mmsa index build FILE --name {name} --overwrite`"
            )
        size = f.stat().st_size
        if size != entry.get("size"):
            what = "truncated" if size < entry.get("size", 0) else "larger than recorded"
            raise LibraryError(
                f"library {name!r} is damaged: {fname} is {what} ({size} bytes, the manifest "
                f"says {entry.get('size')}); rebuild it"
            )
        if "shape" in entry:
            shape = entry["shape"]
            if shape[0] != n:
                raise LibraryError(f"library {name!r}: {fname} has {shape[0]} rows, the manifest "
                                   f"count is {n}")
            if size != int(np.prod(shape)) * np.dtype(entry["dtype"]).itemsize:
                raise LibraryError(f"library {name!r}: {fname} size does not match its shape")
        total += size
    if files["vectors.f32"]["shape"][1] != dim:
        raise LibraryError(f"library {name!r}: vectors have width "
                           f"{files['vectors.f32']['shape'][1]}, the manifest says {dim}")
    if verify == "full" or (verify == "auto" and total < AUTO_HASH_BYTES):
        for fname, entry in files.items():
            if _sha256(path / fname) != entry.get("sha256"):
                raise LibraryError(
                    f"library {name!r} is damaged: {fname} does not match the checksum in the "
                    f"manifest; rebuild it"
                )
    elif verify not in ("auto", "full", "size"):
        raise ValueError(f"verify must be 'auto', 'full' or 'size', not {verify!r}")
    import pyarrow.parquet as pq

    try:
        rows = pq.ParquetFile(path / METADATA).metadata.num_rows
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise LibraryError(f"library {name!r}: cannot read {METADATA}: {exc}") from None
    if rows != n:
        raise LibraryError(f"library {name!r}: {METADATA} has {rows} rows, the manifest says {n}")


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
    with the count. With ``encoder`` given (an Encoder or a checkpoint path), its checkpoint
    hash must equal the library's. Any mismatch raises LibraryError naming the file and how to
    fix it (rebuild).
    """
    path = library_path(name, root)
    manifest = _read_manifest(path, name)
    _verify_files(path, name, manifest, verify)
    lib = Library(path, manifest)
    if encoder is not None:
        from mmsa.library.embed import load_encoder

        lib.set_encoder(load_encoder(encoder))
    return lib


def list_libraries(root: str | os.PathLike | None = None) -> list[LibraryInfo]:
    """Libraries under ``root`` sorted by name (hidden temp/lock entries skipped). A folder
    whose manifest cannot be read is listed with ``ok=False`` and the reason in ``error``."""
    base = indexes_dir(root)
    out = []
    for p in sorted(base.iterdir()):
        if not p.is_dir() or p.name.startswith(".") or not NAME_RE.match(p.name):
            continue
        try:
            m = _read_manifest(p, p.name)
        except LibraryError as exc:
            if not (p / MANIFEST).exists() and not any(p.iterdir()):
                continue
            out.append(LibraryInfo(p.name, p, 0, 0, "", 0, "", "", "", [], ok=False,
                                   error=str(exc)))
            continue
        out.append(LibraryInfo(
            name=p.name, path=p, count=int(m["count"]), n_failed=int(m.get("n_failed", 0)),
            index_type=str(m["index"].get("type", "")), dim=int(m["embedding"]["dim"]),
            checkpoint_sha256=str(m["checkpoint"].get("sha256", "")),
            created=str(m.get("created", "")), updated=str(m.get("updated", "")),
            sources=[str(s.get("path", "")) for s in m.get("sources", [])],
        ))
    return out


def delete_library(name: str, root: str | os.PathLike | None = None) -> None:
    """Delete library ``name`` (LibraryError if missing or being built)."""
    base = indexes_dir(root)
    path = library_path(name, base)
    if not path.is_dir():
        raise LibraryError(f"no library named {name!r} in {base}")
    with _build_lock(base, name):
        trash = base / f".{name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(path, trash)
        shutil.rmtree(trash, ignore_errors=True)
    log.info("deleted library %r", name)


def ensure_default_library(
    root: str | os.PathLike | None = None, progress: Progress | None = None, encoder=None
) -> str | None:
    """Build the default library "approved-drugs" (mmsa.data "approved-drugs") if the root
    holds no library, or rebuild it if it was built with another checkpoint than ``encoder``
    (default: ``$MMSA_CHECKPOINT`` or the shipped one), so that `make app` never serves a
    library its model cannot search. Returns the name built, or None if nothing was done."""
    base = indexes_dir(root)
    infos = [i for i in list_libraries(base) if i.ok]
    default = next((i for i in infos if i.name == DEFAULT_LIBRARY), None)
    if infos and default is None:
        return None
    if default is not None:
        current = _checkpoint_sha256(encoder)
        if current is None or current == default.checkpoint_sha256:
            return None
        log.info("the default library was built with checkpoint %s…, the model is %s…: "
                 "rebuilding it", default.checkpoint_sha256[:12], current[:12])
    from mmsa.data import fetch

    csv = fetch(DEFAULT_LIBRARY)
    build_library(csv, DEFAULT_LIBRARY, root=base, encoder=encoder, progress=progress,
                  overwrite=True)
    return DEFAULT_LIBRARY


def _checkpoint_sha256(encoder) -> str | None:
    """sha256 of the checkpoint ``encoder`` stands for, without loading a model (None if the
    file is missing: the build will say so)."""
    if encoder is not None and not isinstance(encoder, (str, os.PathLike)):
        return str(encoder.checkpoint_hash)
    from mmsa.paths import DEFAULT_CHECKPOINT

    path = Path(encoder or os.environ.get("MMSA_CHECKPOINT") or DEFAULT_CHECKPOINT)
    return _sha256(path) if path.is_file() else None


# ---------------------------------------------------------------------------- the library


def _memmap(path: Path, entry: dict) -> np.ndarray:
    shape = tuple(entry["shape"])
    if shape[0] == 0:
        return np.zeros(shape, dtype=entry["dtype"])
    return np.memmap(path, dtype=np.dtype(entry["dtype"]), mode="r", shape=shape)


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

    def __init__(self, path: Path, manifest: dict):
        self.path = Path(path)
        self.name = self.path.name
        self.manifest = manifest
        files = manifest["files"]
        self.vectors = _memmap(self.path / "vectors.f32", files["vectors.f32"])
        self.slot_topk = (
            _memmap(self.path / "slot_ids.i32", files["slot_ids.i32"]),
            _memmap(self.path / "slot_weights.f32", files["slot_weights.f32"]),
        )
        self.morgan = _memmap(self.path / "morgan.u8", files["morgan.u8"])
        self.pattern = _memmap(self.path / "pattern.u8", files["pattern.u8"])
        self.hyperedges = _memmap(self.path / "hyperedges.i32", files["hyperedges.i32"])
        self.hyperedge_scores = _memmap(self.path / "hyperedge_scores.f32",
                                        files["hyperedge_scores.f32"])
        self._metadata: pd.DataFrame | None = None
        self._index = None
        self._encoder = None
        self._morgan_counts: np.ndarray | None = None
        self._cols: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return int(self.manifest["count"])

    def __repr__(self) -> str:
        return (f"Library({self.name!r}, n={len(self)}, dim={self.dim}, "
                f"index={self.manifest['index'].get('type')})")

    @property
    def dim(self) -> int:
        return int(self.manifest["embedding"]["dim"])

    @property
    def checkpoint_hash(self) -> str:
        return str(self.manifest["checkpoint"]["sha256"])

    @property
    def cache_dir(self) -> Path:
        path = self.path / CACHE
        path.mkdir(exist_ok=True)
        return path

    @property
    def metadata(self) -> pd.DataFrame:
        if self._metadata is None:
            self._metadata = pd.read_parquet(self.path / METADATA)
        return self._metadata

    @property
    def property_columns(self) -> list[str]:
        return list(self.manifest.get("columns", []))

    @property
    def failures(self) -> list[Failure]:
        df = pd.read_parquet(self.path / FAILURES)
        return [Failure(int(r), str(i), str(m)) for r, i, m in
                zip(df["row"], df["input"], df["reason"])]

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
    def index(self):
        if self._index is None:
            from mmsa.library import ann

            self._index = ann.to_gpu_if_available(
                ann.read_index(self.path / INDEX, self.manifest["index"]))
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

    # -- search -----------------------------------------------------------------------------

    def search_vectors(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Raw index search: ``queries`` float32 [m, dim] -> (scores float32 [m, k],
        rows int64 [m, k]); rows -1 where fewer than k hits."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if q.shape[1] != self.dim:
            raise InputError(f"query vectors have width {q.shape[1]}, the library {self.dim}")
        if len(self) == 0:
            return np.zeros((len(q), k), np.float32), np.full((len(q), k), -1, np.int64)
        index = self.index
        if len(q) <= 8:  # a few queries: OpenMP threads only add synchronisation
            import faiss

            threads = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(1)
            try:
                d, i = index.search(q, int(k))
            finally:
                faiss.omp_set_num_threads(threads)
        else:
            d, i = index.search(q, int(k))
        return d.astype(np.float32), i.astype(np.int64)

    def _morgan_counts_all(self) -> np.ndarray:
        if self._morgan_counts is None:
            from mmsa.library.search import popcounts

            self._morgan_counts = popcounts(self.morgan)
        return self._morgan_counts

    def _columns(self) -> dict[str, np.ndarray]:
        """Metadata columns as numpy arrays (cached; fancy indexing them is fast)."""
        if self._cols is None:
            meta = self.metadata
            names = ["id", "smiles"] + [c for c in self.property_columns if c in meta.columns]
            self._cols = {c: meta[c].to_numpy() for c in names}
        return self._cols

    def _frame(self, rows: np.ndarray, scores: np.ndarray, tanimoto: np.ndarray,
               cosine: np.ndarray | None) -> pd.DataFrame:
        cols = self._columns()
        rows = np.asarray(rows, dtype=np.int64)
        n = len(rows)
        data = {
            "rank": np.arange(1, n + 1),
            "row": rows,
            "id": cols["id"][rows],
            "smiles": cols["smiles"][rows],
            "score": np.asarray(scores, dtype=np.float64),
            "tanimoto": np.asarray(tanimoto, dtype=np.float64),
            "cosine": (np.asarray(cosine, dtype=np.float64) if cosine is not None
                       else np.full(n, np.nan)),
        }
        for col, values in cols.items():
            if col not in data:
                data[col] = values[rows]
        return pd.DataFrame(data)

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
                          molecule (with ``k`` given: among the first 10,000 matches in
                          library order; ``k=None`` returns every match);
            exact         the same molecule after standardisation (canonical SMILES).
        ``k`` caps the hits (None = all, for substructure/exact/thresholded tanimoto);
        ``threshold`` keeps hits with score >= threshold.

        Returns a DataFrame with columns ``rank`` (1..), ``row``, ``id``, ``smiles``,
        ``score`` (the mode's similarity; 1.0 for substructure/exact), ``tanimoto`` (Morgan
        Tanimoto to the query), ``cosine`` (embedding cosine to the query where it is
        meaningful: embedding mode; NaN elsewhere), then the library's property columns.
        Unparseable queries raise InputError.
        """
        from mmsa.library import search as S
        from mmsa.library.embed import morgan_packed

        if mode not in MODES:
            raise InputError(f"unknown search mode {mode!r}; choose one of {', '.join(MODES)}")
        if k is not None and int(k) < 1:
            raise InputError("k must be at least 1")
        if mode == "embedding" and k is None:
            raise InputError("embedding search needs k")
        if mode == "substructure":
            patt, is_smarts = S.parse_query(query, allow_smarts=True)
            # with k given, rank the first SUBSTRUCTURE_SCAN matches (library order), so that
            # a common pattern in a million molecules still answers in seconds
            limit = None if k is None else max(int(k), SUBSTRUCTURE_SCAN)
            rows = S.substructure_rows(patt, self.pattern, self._columns()["smiles"],
                                       limit=limit)
            if is_smarts:
                tani = np.full(len(rows), np.nan)
                order = np.arange(len(rows))
            else:
                tani = S.tanimoto_rows(morgan_packed(patt), self.morgan, rows)
                order = np.lexsort((rows, -tani))
            rows, tani = rows[order], tani[order]
            if k is not None:
                rows, tani = rows[:k], tani[:k]
            return self._frame(rows, np.ones(len(rows)), tani, None)

        mol = self._standard_query(query)
        qfp = morgan_packed(mol)
        from rdkit import Chem

        smiles = Chem.MolToSmiles(mol)
        if mode == "exact":
            meta = self.metadata
            rows = np.flatnonzero(meta["smiles"].to_numpy() == smiles)
            if k is not None:
                rows = rows[:k]
            return self._frame(rows, np.ones(len(rows)), S.tanimoto_rows(qfp, self.morgan, rows),
                               None)
        if mode == "tanimoto":
            scores = S.tanimoto_all(qfp, self.morgan, self._morgan_counts_all())
            rows = S.top_k(scores, k, threshold)
            return self._frame(rows, scores[rows], scores[rows], None)
        # embedding
        vec = self.embed_query(smiles)
        d, i = self.search_vectors(vec[None, :], int(k))
        keep = i[0] >= 0
        rows, scores = i[0][keep], d[0][keep]
        if threshold is not None:
            sel = scores >= threshold
            rows, scores = rows[sel], scores[sel]
        tani = S.tanimoto_rows(qfp, self.morgan, rows)
        return self._frame(rows, scores, tani, scores)

    def _standard_query(self, query: str):
        """Standardised RDKit Mol of a query SMILES (as the library's molecules were)."""
        from mmsa.chem.standardize import parse_smiles, standardize_mol

        if not isinstance(query, str) or not query.strip():
            raise InputError("empty query: give a SMILES string")
        try:
            return standardize_mol(parse_smiles(query.strip()))
        except InputError as exc:
            raise InputError(f"could not parse query SMILES {query.strip()!r}: {exc}") from None

    def neighbors(self, row: int, k: int = 10) -> pd.DataFrame:
        """Nearest library molecules to library molecule ``row`` (no model needed);
        same columns as :meth:`search` (the molecule itself excluded)."""
        from mmsa.library import search as S

        row = self._check_row(row)
        d, i = self.search_vectors(np.asarray(self.vectors[row])[None, :], int(k) + 1)
        keep = (i[0] >= 0) & (i[0] != row)
        rows, scores = i[0][keep][:k], d[0][keep][:k]
        tani = S.tanimoto_rows(np.asarray(self.morgan[row]), self.morgan, rows)
        return self._frame(rows, scores, tani, scores)

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
