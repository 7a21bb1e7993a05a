"""Writing libraries: build (streaming), append, delete; the lock, the swap and recovery.

    build_library(source, name, ...) -> BuildReport
    add_to_library(name, source, ...) -> BuildReport
    delete_library(name, root=None)
    ensure_default_library(root=None, progress=None, encoder=None) -> str | None

Crash safety (docs/architecture.md, "Guarantees"): a version is written into a hidden
``ROOT/.NAME.tmp-XXXXXXXX`` folder, its manifest last (after every file is fsynced), and
swapped in with one atomic ``renameat2(RENAME_EXCHANGE)`` where the OS has it (Linux); else
with two renames, between which a kill leaves the old version in ``.NAME.old-XXXXXXXX``.
Whoever next takes the name's lock (a build, an append, a delete, an open or a listing)
recovers: when ``ROOT/NAME`` is missing, the complete new version (a work folder whose
manifest verifies) or else the previous one is renamed back. A delete renames the library
to ``.NAME.del-XXXXXXXX`` (its commit point) before removing it. Only the work folders of
the exact name are ever touched.

Fault injection (tests): ``$MMSA_CRASH_AT=POINT`` kills the process with SIGKILL at that
point of :data:`FAULT_POINTS`; :data:`fault_hook` (a callable, or None) is called with each
point's name.
"""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from mmsa import limits
from mmsa.hashing import sha256_file
from mmsa.library.layout import (
    ARRAYS,
    DEFAULT_LIBRARY,
    FAILURES,
    FORMAT,
    FORMAT_VERSION,
    HYPER,
    INDEX,
    MANIFEST,
    MAX_SHARDS,
    METADATA,
    SHARD_FILES,
    STREAMS,
    check_name,
    indexes_root,
    library_path,
    lock_path,
    refuse_symlink,
    shard_name,
    work_folder,
    work_folders,
    write_json,
)
from mmsa.library.library import HYBRID_WEIGHT
from mmsa.types import Failure, InputError, LibraryError

log = logging.getLogger(__name__)

#: libraries with fewer vectors than this get an exact (flat) index under ``index="auto"``
APPROX_THRESHOLD = 50_000
#: manifests keep this many failure records inline (all are in failures.parquet)
MANIFEST_FAILURES = 1000
#: an append's copy of the current metadata inside the temp folder (merged, then removed)
_EXISTING_META = "_existing-meta.parquet"

#: callable(done, total_or_None) called after each chunk (e.g. to drive st.progress)
Progress = Callable[[int, "int | None"], None]

#: the phase boundaries where a build, append or delete can be interrupted (fault injection)
FAULT_POINTS = (
    "locked",  # lock held, temp folder not yet made
    "ingested",  # arrays and metadata parts written
    "metadata-merged",  # metadata.parquet and failures.parquet written
    "index-written",  # index.faiss written, hyperedges not yet
    "manifest-written",  # the temp folder is complete
    "swap-between-renames",  # the old version moved aside / about to be exchanged
    "swap-done",  # the new version in place, the old not yet removed
    "delete-locked",
    "delete-renamed",  # the library moved to .NAME.del-X, not yet removed
)
#: called with each fault point's name when set (tests)
fault_hook: Callable[[str], None] | None = None


def _fault(point: str) -> None:
    if os.environ.get("MMSA_CRASH_AT") == point:
        os.kill(os.getpid(), signal.SIGKILL)
    if fault_hook is not None:
        fault_hook(point)


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


@dataclass(frozen=True)
class Engine:
    """Where the per-chunk work of a build runs (:mod:`mmsa.library.engines`).

    ``name``: "local" (this process, or ``n_jobs`` worker processes) or "ray" (a Ray Data
    actor pool of ``workers`` actors; ``address`` None starts a local Ray instance, else joins
    that cluster, "auto" being the one ``ray start`` runs on this machine).
    """

    name: str = "local"
    workers: int | None = None
    address: str | None = None

    def describe(self, n_jobs: int) -> dict:
        """The manifest's record of it (in each ``sources`` entry)."""
        if self.name == "local":
            return {"name": "local", "n_jobs": int(n_jobs)}
        return {"name": "ray", "workers": self.workers or "all CPUs of the Ray instance",
                "address": self.address or "local"}


def _engine(engine: str, workers, address) -> Engine:
    from mmsa.library.engines import check_engine

    check_engine(engine)
    if engine == "local":
        if workers is not None or address is not None:
            raise InputError("workers (--workers) and address (--address) are options of the "
                             "Ray engine; add engine='ray' (--engine ray) or leave them out")
        return Engine()
    if workers is not None:
        workers = limits.check_workers(workers)
    if address is not None and (not isinstance(address, str) or not address.strip()):
        raise InputError(f"address (--address) must be a Ray cluster address such as "
                         f"'auto' or 'HOST:6379' (got {address!r})")
    return Engine("ray", workers, address.strip() if address else None)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------- locking


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def _take_lock(root: Path, name: str, wait: bool) -> Path | None:
    """Create ``ROOT/.NAME.lock`` (O_CREAT|O_EXCL, holding our pid); None when another live
    process holds it and ``wait`` is False (LibraryError when True)."""
    path = lock_path(root, name)
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            pid = _read_pid(path)
            if pid and _pid_alive(pid):
                if not wait:
                    return None
                raise LibraryError(
                    f"library {name!r} is being built by another process (pid {pid}); wait "
                    f"for it to finish (or delete {path} if that process is gone)"
                ) from None
            if not pid:  # being written right now, or garbage: give the writer a moment
                time.sleep(0.2)
                pid = _read_pid(path)
                if pid and _pid_alive(pid):
                    continue
            log.warning("removing stale lock %s (pid %s is gone)", path, pid or "?")
            path.unlink(missing_ok=True)
            continue
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(str(os.getpid()))
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path
    if not wait:
        return None
    raise LibraryError(f"could not lock library {name!r} ({path}); try again")


@contextmanager
def _build_lock(root: Path, name: str):
    """Hold ``ROOT/.NAME.lock`` for a build/append/delete of ``name``."""
    path = _take_lock(root, name, wait=True)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------- swap, recovery

#: renameat2(RENAME_EXCHANGE) is available (Linux); tests switch it off to check the fallback
HAVE_EXCHANGE = sys.platform.startswith("linux")


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange folders ``a`` and ``b``; False when the OS cannot."""
    if not HAVE_EXCHANGE:
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                   ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(a))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _swap_in(tmp: Path, final: Path, name: str) -> None:
    """Put the complete folder ``tmp`` at ``final``; the previous version survives until the
    new one is in place (and is recoverable at every instant: see the module docstring)."""
    root = final.parent
    if not os.path.lexists(final):
        _fault("swap-between-renames")
        os.rename(tmp, final)
    else:
        exchanged = False
        if HAVE_EXCHANGE:  # one atomic step: the boundary is just before it
            _fault("swap-between-renames")
            exchanged = _exchange(tmp, final)
        if exchanged:
            old = tmp  # now holds the previous version
        else:
            old = work_folder(root, name, "old")
            os.rename(final, old)
            if not HAVE_EXCHANGE:
                _fault("swap-between-renames")  # NAME missing: recovery restores a version
            try:
                os.rename(tmp, final)
            except OSError:
                os.rename(old, final)
                raise
        _fsync_dir(root)
        try:
            _fault("swap-done")
        except OSError as exc:  # the new version is in place: only the cleanup failed
            log.warning("after the swap of %r: %s", name, exc)
        shutil.rmtree(old, ignore_errors=True)
        return
    _fsync_dir(root)
    try:
        _fault("swap-done")
    except OSError as exc:
        log.warning("after the swap of %r: %s", name, exc)


def _complete(folder: Path, name: str) -> bool:
    """Whether ``folder`` holds a complete library version (manifest valid, every file
    present with its recorded size and sha256)."""
    from mmsa.library.library import validate_manifest

    try:
        m = validate_manifest(json.loads((folder / MANIFEST).read_text()), name)
        for fname, entry in m["files"].items():
            f = folder / fname
            if f.is_symlink() or not f.is_file() or f.stat().st_size != entry["size"]:
                return False
            if sha256_file(f) != entry["sha256"]:
                return False
        return True
    except (OSError, ValueError, LibraryError):
        return False


def _recover_locked(root: Path, name: str) -> None:
    """With the lock of ``name`` held: restore ``ROOT/NAME`` if a kill left it missing, then
    remove every work folder of ``name`` (never another name's)."""
    final = root / name
    if not os.path.lexists(final):
        # newest first: a complete temp folder is the version that was being swapped in
        candidates = (sorted(work_folders(root, name, "tmp"), key=os.path.getmtime,
                             reverse=True)
                      + sorted(work_folders(root, name, "old"), key=os.path.getmtime,
                               reverse=True))
        for cand in candidates:
            if _complete(cand, name):
                log.warning("library %r: recovering %s left by an interrupted build", name,
                            cand.name)
                os.rename(cand, final)
                _fsync_dir(root)
                break
    for kind in ("tmp", "old", "del"):
        for p in work_folders(root, name, kind):
            log.info("removing leftover %s of an interrupted operation", p.name)
            shutil.rmtree(p, ignore_errors=True)


def recover_interrupted(root: Path, name: str) -> None:
    """Recover library ``name`` after an interrupted swap, if nobody holds its lock (a build
    in flight is left alone)."""
    check_name(name)
    if not (work_folders(root, name, "tmp") or work_folders(root, name, "old")):
        return
    try:
        lock = _take_lock(root, name, wait=False)
    except OSError:
        return
    if lock is None:
        return
    try:
        _recover_locked(root, name)
    finally:
        lock.unlink(missing_ok=True)


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
        self.files = {}
        for name in STREAMS:
            self.files[name] = open(folder / name, "ab")

    def append(self, res) -> None:
        arrays = {
            "vectors.f32": res.vectors,
            "slot_ids.i32": res.slot_ids,
            "slot_weights.f32": res.slot_weights,
            "morgan.u8": res.morgan,
            "pattern.u8": res.pattern,
        }
        for name, arr in arrays.items():
            self.files[name].write(np.ascontiguousarray(arr, dtype=STREAMS[name]).tobytes())

    def close(self) -> None:
        for fh in self.files.values():
            fh.close()


def _clip(f: Failure) -> Failure:
    """A failure record with its input and reason cut to the stored limit."""
    return Failure(int(f.row), limits.clip_text(f.input), limits.clip_text(f.reason))


def _ingest(source: Path, folder: Path, streams: _Streams, *, encoder, spec, start_row: int,
            smiles_col, id_col, chunk_size: int, n_jobs: int, progress: Progress | None,
            engine: Engine) -> tuple[int, list[Failure], int]:
    """Read ``source`` chunk by chunk, embed (on ``engine``), append arrays and metadata parts.

    Returns (n_ok, failures, rows_read)."""
    from contextlib import closing

    from mmsa.chem.io import iter_library
    from mmsa.library import engines

    total = _estimate_rows(source)
    chunks = iter_library(source, smiles_col=smiles_col, id_col=id_col, chunk_size=chunk_size)
    if progress is not None:
        progress(0, total)
    if engine.name == "ray":
        results = engines.ray_results(chunks, encoder, workers=engine.workers,
                                      address=engine.address)
    else:
        results = engines.local_results(chunks, encoder, spec, n_jobs)
    with closing(results):
        return _write_chunks(results, folder, streams, start_row, progress, total)


def _write_chunks(results, folder: Path, streams: _Streams, start_row: int,
                  progress: Progress | None, total: int | None) -> tuple[int, list[Failure], int]:
    n_ok = 0
    rows_read = 0
    failures: list[Failure] = []
    part = 0
    for chunk, res in results:
        rec = chunk.records
        failures.extend(_clip(f) for f in chunk.failures)
        for f in res.failures:
            failures.append(_clip(Failure(int(rec["row"].iloc[f.row]),
                                          str(rec["input_smiles"].iloc[f.row]), f.reason)))
        meta = rec.loc[res.ok].drop(columns=["row"]).reset_index(drop=True)
        meta.insert(0, "row", np.arange(start_row + n_ok, start_row + n_ok + len(meta),
                                        dtype=np.int64))
        if len(meta):
            streams.append(res)
            meta.to_parquet(folder / f"_meta-{part:06d}.parquet", index=False)
            part += 1
        n_ok += len(meta)
        rows_read += len(rec) + len(chunk.failures)
        if progress is not None:
            progress(rows_read, total)
    return n_ok, failures, rows_read


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


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _finish(folder: Path, manifest: dict, *, dim: int, index: str, approx_threshold: int,
            hyperedge_k: int, seed: int) -> dict:
    """Index + hyperedges + file table; returns the completed manifest (written last)."""
    from mmsa.library import ann

    n = manifest["count"]
    vectors = np.memmap(folder / "vectors.f32", dtype=np.float32, mode="r", shape=(n, dim))
    log.info("building the %s index over %d vectors", index, n)
    idx, info = ann.build_index(vectors, index, approx_threshold=approx_threshold, seed=seed)
    info["threshold"] = approx_threshold
    info["requested"] = index
    ann.write_index(idx, folder / INDEX)
    log.info("index: %s", info)
    _fault("index-written")
    k = max(1, int(hyperedge_k))
    log.info("computing the %d-NN hyperedges of %d molecules", k, n)
    t0 = time.perf_counter()
    how: dict = {}
    rows, scores = ann.knn_graph(ann.to_gpu_if_available(idx), vectors, k, info=info,
                                 stats=how)
    rows.tofile(folder / "hyperedges.i32")
    scores.tofile(folder / "hyperedge_scores.f32")
    del idx, vectors
    manifest["index"] = info
    method = (f"kNN over the {info['type']} index, list by list (exact scores)"
              if how.get("method") == "list-blocked" else f"kNN over the {info['type']} index")
    manifest["hyperedges"] = {"k": k, "method": method,
                              "seconds": round(time.perf_counter() - t0, 3)}
    if "nprobe" in how:
        manifest["hyperedges"]["nprobe"] = how["nprobe"]
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
        dtype = ARRAYS[name]
        path = folder / name
        _fsync(path)
        files[name] = {"dtype": np.dtype(dtype).str, "shape": shape, "size": path.stat().st_size,
                       "sha256": sha256_file(path)}
        expect = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if files[name]["size"] != expect:  # our own bug, never a user's
            raise LibraryError(f"internal error: {name} has {files[name]['size']} bytes, "
                               f"expected {expect}")
    for name in (METADATA, FAILURES, INDEX):
        path = folder / name
        _fsync(path)
        files[name] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    manifest["files"] = files
    write_json(folder / MANIFEST, manifest)
    _fault("manifest-written")
    return manifest


def _file_entry(path: Path, dtype=None, shape=None) -> dict:
    """A manifest ``files`` entry of ``path`` (fsynced first): size, sha256 (and dtype and
    shape for a raw array, whose size is checked against them)."""
    _fsync(path)
    entry = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    if dtype is not None:
        entry = {"dtype": np.dtype(dtype).str, "shape": list(shape), **entry}
        expect = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if entry["size"] != expect:  # our own bug, never a user's
            raise LibraryError(f"internal error: {path.name} has {entry['size']} bytes, "
                               f"expected {expect}")
    return entry


def shards_summary(shards: list[dict], requested: str, threshold: int) -> dict:
    """The top-level ``index`` entry of a sharded library: type "sharded", the shards' index
    types, the lowest shard recall, their RAM per molecule weighted by count."""
    n = sum(s["count"] for s in shards)
    infos = [s["index"] for s in shards]
    return {
        "type": "sharded",
        "params": {"shards": len(shards),
                   "types": sorted({str(i.get("type")) for i in infos})},
        "requested": requested,
        "threshold": threshold,
        "recall_at_10": min(float(i.get("recall_at_10", 1.0)) for i in infos),
        "recall_sample": int(sum(int(i.get("recall_sample", 0)) for i in infos)),
        "build_seconds": round(sum(float(i.get("build_seconds", 0.0)) for i in infos), 3),
        "ram_bytes_per_molecule": round(sum(float(i.get("ram_bytes_per_molecule", 0.0))
                                            * s["count"] for i, s in zip(infos, shards))
                                        / max(n, 1), 2),
    }


def _finish_shard(folder: Path, manifest: dict, *, dim: int, index: str, approx_threshold: int,
                  hyperedge_k: int, seed: int, kept: dict) -> dict:
    """Finish a shard add: the new molecules' vectors (``folder/vectors.f32``, only theirs)
    become ``shard-NNNN/`` with their own index; the earlier shards (hard-linked, ``kept``
    their manifest entries) are not touched; the new rows' hyperedges come from the merged
    search over every shard and are appended to the earlier rows' (which are kept)."""
    from mmsa.library import ann

    n = manifest["count"]
    shards = manifest["shards"]
    if len(shards) >= MAX_SHARDS:
        raise LibraryError(f"library {manifest['name']!r} has {len(shards)} shards, the most "
                           f"a library may have; rebuild it from its sources")
    start = shards[-1]["start"] + shards[-1]["count"]
    n_new = n - start
    sname = shard_name(len(shards))
    (folder / sname).mkdir()
    os.replace(folder / "vectors.f32", folder / sname / "vectors.f32")
    vectors = np.memmap(folder / sname / "vectors.f32", dtype=np.float32, mode="r",
                        shape=(n_new, dim))
    log.info("building the %s index of %s over %d vectors", index, sname, n_new)
    idx, info = ann.build_index(vectors, index, approx_threshold=approx_threshold, seed=seed)
    info["threshold"] = approx_threshold
    info["requested"] = index
    ann.write_index(idx, folder / sname / INDEX)
    log.info("%s index: %s", sname, info)
    _fault("index-written")
    parts = []
    for s in shards:
        old_vec = np.memmap(folder / s["name"] / "vectors.f32", dtype=np.float32, mode="r",
                            shape=(s["count"], dim))
        parts.append((ann.read_index(folder / s["name"] / INDEX, s["index"]), s["index"],
                      old_vec, s["start"]))
    parts.append((idx, info, vectors, start))
    shards.append({"name": sname, "start": start, "count": n_new, "index": info})
    k = max(1, int(hyperedge_k))
    t0 = time.perf_counter()
    rows, scores = ann.knn_graph(None, vectors, k, offset=start, ntotal=n,
                                 search_fn=lambda q, kk: ann.search_shards(parts, q, kk))
    with open(folder / "hyperedges.i32", "ab") as fh:
        fh.write(rows.tobytes())
    with open(folder / "hyperedge_scores.f32", "ab") as fh:
        fh.write(scores.tobytes())
    parts.clear()
    del idx, vectors
    manifest["index"] = shards_summary(shards, index, approx_threshold)
    manifest["hyperedges"] = {
        "k": k, "method": "kNN over every shard's index, per-shard top-k merged; the rows "
        "of earlier shards keep the hyperedges computed when they were added",
        "seconds": round(time.perf_counter() - t0, 3)}
    t = manifest["slots"]["top"]
    shapes = {"slot_ids.i32": [n, t], "slot_weights.f32": [n, t], "morgan.u8": [n, 256],
              "pattern.u8": [n, 256], "hyperedges.i32": [n, k + 1],
              "hyperedge_scores.f32": [n, k + 1]}
    files = {fname: _file_entry(folder / fname, ARRAYS[fname], shape)
             for fname, shape in shapes.items()}
    for fname in (METADATA, FAILURES):
        files[fname] = _file_entry(folder / fname)
    files.update(kept)  # the earlier shards' files: the same inodes, already verified
    files[f"{sname}/vectors.f32"] = _file_entry(folder / sname / "vectors.f32", np.float32,
                                                [n_new, dim])
    files[f"{sname}/{INDEX}"] = _file_entry(folder / sname / INDEX)
    _fsync_dir(folder / sname)
    manifest["files"] = files
    write_json(folder / MANIFEST, manifest)
    _fault("manifest-written")
    return manifest


def _link_or_copy(snap, fname: str, dst: Path) -> None:
    """Hard-link file ``fname`` of the verified snapshot ``snap`` at ``dst``, so a shard add
    writes no byte of an earlier shard (linked by its path, with the build lock held, then
    checked to be the very inode the snapshot opened); a copy of the snapshot's file where
    the filesystem refuses links."""
    try:
        os.link(snap.path / fname, dst, follow_symlinks=False)
        a, b = os.stat(dst), os.fstat(snap.fds[fname])
        if (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev):
            return
        dst.unlink()
        log.info("%s changed under the snapshot; copying the verified version", fname)
    except OSError as exc:
        dst.unlink(missing_ok=True)
        log.info("cannot hard-link %s (%s); copying it", fname, exc.strerror or exc)
    shutil.copyfile(snap.file_path(fname), dst)


def _source_entry(source: Path, smiles_col, id_col, n_ok, n_failed, rows_read, seconds) -> dict:
    st = source.stat()
    return {"path": str(source), "size": st.st_size, "sha256": sha256_file(source),
            "smiles_col": smiles_col, "id_col": id_col, "rows": rows_read, "n_ok": n_ok,
            "n_failed": n_failed, "added": _now(), "seconds": round(seconds, 3)}


def _check_source(source) -> Path:
    path = Path(source).expanduser()
    if not path.is_file():
        raise InputError(f"input file not found: {path}")
    return path.resolve()


def _os_error(exc: OSError, name: str) -> LibraryError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return LibraryError(
            f"no space left on the device while writing library {name!r} "
            f"({exc.filename or 'the indexes folder'}); nothing was changed: free some space "
            f"and run it again")
    where = f" ({exc.filename})" if exc.filename else ""
    return LibraryError(f"library {name!r}: {exc.strerror or exc}{where}; nothing was changed")


def _run_into(root: Path, name: str, make_tmp: Callable[[Path], dict], source: Path, *,
              encoder, smiles_col, id_col, index: str, approx_threshold: int, hyperedge_k: int,
              chunk_size: int, n_jobs: int, progress: Progress | None, seed: int,
              expect_existing: dict | None = None, engine: Engine = Engine(),
              shard_add: dict | None = None) -> BuildReport:
    """Common body of build and append: prepare a temp folder with ``make_tmp`` (returns the
    starting manifest), ingest ``source``, finish, swap in."""
    from mmsa.library import ann

    if index not in ann.INDEX_TYPES:
        raise InputError(f"unknown index type {index!r}; choose one of {', '.join(ann.INDEX_TYPES)}")
    t0 = time.perf_counter()
    final = root / name
    try:
        with _build_lock(root, name):
            _fault("locked")
            _recover_locked(root, name)
            if expect_existing is not None:  # append: the library must be what we checked
                from mmsa.library.library import _read_manifest

                if _read_manifest(final, name).get("files") != expect_existing.get("files"):
                    raise LibraryError(f"library {name!r} changed while appending; try again")
            tmp = work_folder(root, name, "tmp")
            tmp.mkdir()
            try:
                manifest, n_ok, failures = _fill(
                    tmp, make_tmp, source, name=name, encoder=encoder, smiles_col=smiles_col,
                    id_col=id_col, index=index, approx_threshold=approx_threshold,
                    hyperedge_k=hyperedge_k, chunk_size=chunk_size, n_jobs=n_jobs,
                    progress=progress, seed=seed, engine=engine, shard_add=shard_add)
                _swap_in(tmp, final, name)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    except OSError as exc:
        raise _os_error(exc, name) from None
    seconds = time.perf_counter() - t0
    log.info("library %r: %d molecules (+%d, %d failed) in %.1f s", name, manifest["count"],
             n_ok, len(failures), seconds)
    return BuildReport(name=name, path=final, n_ok=n_ok, n_failed=len(failures),
                       n_total=manifest["count"], failures=failures, seconds=seconds,
                       index=manifest["index"])


def _fill(tmp: Path, make_tmp, source: Path, *, name, encoder, smiles_col, id_col, index,
          approx_threshold, hyperedge_k, chunk_size, n_jobs, progress, seed,
          engine: Engine, shard_add: dict | None = None) -> tuple[dict, int, list[Failure]]:
    """Write a complete library version into ``tmp``: (manifest, n_ok, failures)."""
    from mmsa.chem.fingerprints import PATTERN_PACKING
    from mmsa.library.embed import SLOT_TOP

    manifest = make_tmp(tmp)
    enc, spec = _encoder_spec(encoder)
    if engine.name == "local" and n_jobs > 1 and str(getattr(enc, "device", "cpu")).startswith("cuda"):
        log.info("embedding on %s in this process (n_jobs=%d ignored)", enc.device, n_jobs)
        n_jobs = 1
    ck = manifest.get("checkpoint")
    if ck and ck.get("sha256") != enc.checkpoint_hash:
        raise LibraryError(
            f"library {name!r} was built with checkpoint {ck.get('sha256', '?')[:12]}…, "
            f"the encoder is {enc.checkpoint_hash[:12]}…; rebuild it with "
            f"`mmsa index build ... --name {name}` instead of appending"
        )
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
    manifest.setdefault("hybrid", {"weight": HYBRID_WEIGHT,
                                   "score": "weight * cosine + (1 - weight) * tanimoto"})
    manifest.setdefault("slots", {"top": min(SLOT_TOP, int(enc.num_slots)),
                                  "num_slots": int(enc.num_slots)})
    manifest.setdefault("fingerprints", {
        "morgan": {"radius": 2, "nbits": 2048, "packing": "np.packbits, big-endian"},
        "pattern": {"kind": "rdkit PatternFingerprint", "nbits": 2048,
                    "packing": PATTERN_PACKING},
    })
    start = int(manifest.get("count", 0))
    streams = _Streams(tmp)
    ts = time.perf_counter()
    try:
        n_ok, failures, rows_read = _ingest(
            source, tmp, streams, encoder=enc, spec=spec, start_row=start,
            smiles_col=smiles_col, id_col=id_col, chunk_size=chunk_size,
            n_jobs=n_jobs, progress=progress, engine=engine,
        )
    finally:
        streams.close()
    _fault("ingested")
    if n_ok == 0:
        first = "; ".join(str(f) for f in failures[:3])
        raise InputError(f"no molecule of {source.name} could be added ({first})")
    ex = tmp / _EXISTING_META
    existing = pd.read_parquet(ex) if ex.exists() else None
    meta = _merge_metadata(tmp, existing)
    ex.unlink(missing_ok=True)
    _append_failures(tmp, failures, str(source))
    _fault("metadata-merged")
    manifest["count"] = len(meta)
    manifest["n_failed"] = int(manifest.get("n_failed", 0)) + len(failures)
    inline = manifest.get("failures", [])
    inline.extend(dict(f.to_dict(), source=str(source)) for f in failures[:MANIFEST_FAILURES])
    manifest["failures"] = inline[:MANIFEST_FAILURES]
    manifest["columns"] = [c for c in meta.columns
                           if c not in ("row", "id", "input_smiles", "smiles")]
    del meta, existing  # not needed while the index is built
    manifest.setdefault("sources", []).append(dict(_source_entry(
        source, smiles_col, id_col, n_ok, len(failures), rows_read, time.perf_counter() - ts),
        engine=engine.describe(n_jobs)))
    manifest["updated"] = _now()
    if shard_add is not None:
        manifest = _finish_shard(tmp, manifest, dim=dim, index=index,
                                 approx_threshold=approx_threshold, hyperedge_k=hyperedge_k,
                                 seed=seed, kept=shard_add["kept"])
    else:
        manifest = _finish(tmp, manifest, dim=dim, index=index,
                           approx_threshold=approx_threshold, hyperedge_k=hyperedge_k,
                           seed=seed)
    return manifest, n_ok, failures


def _append_failures(folder: Path, failures: list[Failure], source: str) -> None:
    """Add ``failures`` (of input ``source``) to ``folder/failures.parquet``."""
    new = pd.DataFrame([f.to_dict() for f in failures], columns=["row", "input", "reason"])
    new["source"] = source
    old = folder / FAILURES
    df = pd.concat([pd.read_parquet(old), new], ignore_index=True) if old.exists() else new
    df["row"] = df["row"].astype(np.int64)
    df.to_parquet(old, index=False)


def _check_build_args(hyperedge_k, chunk_size, n_jobs) -> tuple[int, int, int]:
    return (limits.check_hyperedge_k(hyperedge_k), limits.check_chunk_size(chunk_size),
            limits.check_n_jobs(n_jobs))


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
    engine: str = "local",
    workers: int | None = None,
    address: str | None = None,
) -> BuildReport:
    """Build library ``name`` from a molecule file (.smi/.csv/.tsv/.sdf[.gz]).

    Streams the file in chunks (:func:`mmsa.chem.io.iter_library`); each chunk goes through
    :func:`mmsa.library.embed.embed_chunk` (a pure function of the SMILES batch and the
    checkpoint, run in ``n_jobs`` worker processes when ``n_jobs > 1``) and is appended to the
    files on disk, so memory stays bounded. Then the FAISS index (``index``: "auto" | "flat" |
    "hnsw" | "ivf" | "ivfpq" | "ivfopq"; "auto" = flat below ``approx_threshold`` vectors,
    HNSW up to 1M, IVF-flat up to 5M, IVF-PQ with exact re-ranking above; "ivfopq" = IVF-PQ
    behind an OPQ rotation, re-ranked the same way (:mod:`mmsa.library.ann`),
    with recall@10 >= 0.95 measured on a sample and recorded) and the kNN hyperedges
    (``hyperedge_k`` neighbours) are built.

    Everything is written into a temporary folder ``ROOT/.NAME.tmp-XXXX`` swapped in at the
    end: a failed, interrupted or killed build leaves the previous version intact (see the
    module docstring). A lock file ``ROOT/.NAME.lock`` refuses concurrent builds of one name.

    ``engine``: where the chunks are embedded (:mod:`mmsa.library.engines`): "local" (this
    process or ``n_jobs`` processes) or "ray" (a Ray Data actor pool of ``workers`` actors,
    each loading the encoder once; ``address`` None starts a local Ray instance with
    ``workers`` CPUs, else joins that running cluster, e.g. "auto"). The engine changes
    nothing in what is written: the same vectors, fingerprints, metadata and failures.

    ``encoder``: an :class:`mmsa.model.encoder.Encoder`, a checkpoint path, or None for the shipped
    checkpoint. ``progress(done, total)`` is called after each chunk (total may be None).
    Raises InputError for unreadable/empty/all-invalid input, bad names and arguments over
    the limits of :mod:`mmsa.limits`, an unknown engine, or engine "ray" without Ray
    installed; LibraryError if the name exists and ``overwrite`` is False, if it is locked,
    when the disk is full, or when a Ray worker fails.
    """
    check_name(name)
    hyperedge_k, chunk_size, n_jobs = _check_build_args(hyperedge_k, chunk_size, n_jobs)
    eng = _engine(engine, workers, address)
    base = indexes_root(root)
    refuse_symlink(base / name, name)
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
                     progress=progress, seed=seed, engine=eng)


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
    engine: str = "local",
    workers: int | None = None,
    address: str | None = None,
    shard: bool = False,
) -> BuildReport:
    """Append the molecules of ``source`` to library ``name`` (atomically, like a build).

    The encoder must be the library's checkpoint (LibraryError otherwise). The index is
    rebuilt with the library's requested index type (recall re-measured), hyperedges
    recomputed, and derived caches (``cache/``: motifs, maps) dropped. The current version is
    read through a verified snapshot (every file's sha256 checked before it is copied).
    ``engine``, ``workers``, ``address``: as :func:`build_library`.

    ``shard=True`` (CLI ``--shard``), and every add to a library that is already sharded:
    the new molecules' vectors and a FAISS index of their own (the library's requested
    index type, recall measured on the new shard) are written as a new ``shard-NNNN/``;
    the earlier shards' files are hard-linked into the new version unchanged (an unsharded
    library's vectors.f32 and index.faiss become shard-0000), so no vector is re-read and no
    index retrained. The library-wide per-molecule files (metadata, fingerprints, slots,
    hyperedges) are copied and extended as in a plain add; the new rows' hyperedges are
    their k nearest neighbours over every shard, the earlier rows' are kept.
    """
    from mmsa.library.library import open_library

    _, chunk_size, n_jobs = _check_build_args(1, chunk_size, n_jobs)
    eng = _engine(engine, workers, address)
    base = indexes_root(root)
    src = _check_source(source)
    current = open_library(name, root=base, verify="full")
    old = current.manifest
    n0 = len(current)
    dim = int(old["embedding"]["dim"])

    def make_tmp(tmp: Path) -> dict:
        snap = current._snap
        for fname in (*STREAMS, FAILURES):
            shutil.copyfile(snap.file_path(fname), tmp / fname)
        shutil.copyfile(snap.file_path(METADATA), tmp / _EXISTING_META)
        for fname in STREAMS:  # the copies are the verified version
            if (tmp / fname).stat().st_size != old["files"][fname]["size"]:
                raise LibraryError(f"library {name!r} changed while appending ({fname})")
        m = json.loads(json.dumps(old))
        for key in ("files", "index", "hyperedges"):
            m.pop(key, None)
        return m

    shard_add = None
    if shard or old.get("shards"):
        shard_add = {"kept": {}}

        def make_tmp(tmp: Path) -> dict:  # noqa: F811 - the shard add's version
            snap = current._snap
            wide = [f for f in (*STREAMS, *HYPER) if f not in SHARD_FILES]
            for fname in (*wide, FAILURES):
                shutil.copyfile(snap.file_path(fname), tmp / fname)
                if fname in ARRAYS and (tmp / fname).stat().st_size != \
                        old["files"][fname]["size"]:
                    raise LibraryError(f"library {name!r} changed while appending ({fname})")
            shutil.copyfile(snap.file_path(METADATA), tmp / _EXISTING_META)
            shards = json.loads(json.dumps(old.get("shards") or [
                {"name": shard_name(0), "start": 0, "count": n0, "index": old["index"]}]))
            for s in shards:
                (tmp / s["name"]).mkdir()
                for fname in SHARD_FILES:
                    key = f"{s['name']}/{fname}" if old.get("shards") else fname
                    _link_or_copy(snap, key, tmp / s["name"] / fname)
                    if (tmp / s["name"] / fname).stat().st_size != old["files"][key]["size"]:
                        raise LibraryError(f"library {name!r} changed while appending ({key})")
                    shard_add["kept"][f"{s['name']}/{fname}"] = old["files"][key]
            m = json.loads(json.dumps(old))
            for key in ("files", "index", "hyperedges"):
                m.pop(key, None)
            m["shards"] = shards
            return m

    info0 = old.get("index", {})
    if old.get("shards"):
        info0 = old["shards"][-1]["index"]
    idx_kind = info0.get("requested", info0.get("type", "auto"))
    if idx_kind not in ("auto", "flat", "hnsw", "ivf", "ivfpq", "ivfopq"):
        idx_kind = "auto"
    threshold = int(info0.get("threshold", APPROX_THRESHOLD))
    k = int(old.get("hyperedges", {}).get("k", 8))
    log.info("appending %s to %r (%d molecules, dim %d%s)", src, name, n0, dim,
             ", as a new shard" if shard_add is not None else "")
    return _run_into(base, name, make_tmp, src, encoder=encoder, smiles_col=smiles_col,
                     id_col=id_col, index=idx_kind, approx_threshold=threshold,
                     hyperedge_k=k, chunk_size=chunk_size, n_jobs=n_jobs,
                     progress=progress, seed=seed, expect_existing=old, engine=eng,
                     shard_add=shard_add)


def delete_library(name: str, root: str | os.PathLike | None = None) -> None:
    """Delete library ``name`` (LibraryError if missing, being built, or a symbolic link:
    nothing is ever deleted through a link)."""
    base = indexes_root(root)
    path = library_path(name, base)
    refuse_symlink(path, name)
    if not path.is_dir():
        recover_interrupted(base, name)
        if not path.is_dir():
            raise LibraryError(f"no library named {name!r} in {base}")
    try:
        with _build_lock(base, name):
            _fault("delete-locked")
            refuse_symlink(path, name)
            trash = work_folder(base, name, "del")
            os.rename(path, trash)
            _fsync_dir(base)
            _fault("delete-renamed")
            shutil.rmtree(trash, ignore_errors=True)
    except OSError as exc:
        raise _os_error(exc, name) from None
    log.info("deleted library %r", name)


def ensure_default_library(
    root: str | os.PathLike | None = None, progress: Progress | None = None, encoder=None
) -> str | None:
    """Build the default library "approved-drugs" (mmsa.data "approved-drugs") if the root
    holds no library, or rebuild it if it was built with another checkpoint than ``encoder``
    (default: ``$MMSA_CHECKPOINT`` or the shipped one), so that `make app` never serves a
    library its model cannot search. Returns the name built, or None if nothing was done."""
    from mmsa.library.library import list_libraries

    base = indexes_root(root)
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
    return sha256_file(path) if path.is_file() else None


__all__ = ["APPROX_THRESHOLD", "FAULT_POINTS", "BuildReport", "Engine", "HYPER", "add_to_library",
           "build_library", "delete_library", "ensure_default_library", "recover_interrupted"]
