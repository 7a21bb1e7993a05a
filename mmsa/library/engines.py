"""Where a build's per-chunk work runs: the local engine and the Ray Data engine.

Both take the chunks of :func:`mmsa.chem.io.iter_library` (read in this process, so rows,
ids and reader failures are the same whatever the engine), run
:class:`mmsa.library.embed.ChunkEmbedder` (the encoder loaded once per worker, then
:func:`mmsa.library.embed.embed_chunk` on each chunk) and yield ``(chunk, ChunkResult)`` in
input order. :mod:`mmsa.library.build` writes what they yield; the library format does not
depend on the engine.

- ``local`` (the default): this process (``n_jobs=1``) or ``n_jobs`` spawned worker processes
  that die with the build (PR_SET_PDEATHSIG + parent polling).
- ``ray``: a Ray Data pipeline. The chunks' SMILES go through a bounded ``ray.util.queue``
  to zero-CPU pull tasks, then to ``map_batches`` over an actor pool of ``workers`` actors
  (one CPU each, one torch thread); each Ray row is one whole chunk, so an actor embeds the
  same batches as the local engine. The checkpoint's bytes travel through the object store
  and each actor checks their sha256, so the nodes of a cluster need mmsa installed (the
  same version) but not the checkpoint file. Ray is imported only here, only when asked for.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator

import numpy as np

from mmsa.types import Failure, InputError, LibraryError, MMSAError

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")
#: the Ray version this project is tested with (the ``ray`` extra of pyproject.toml)
RAY_VERSION = "2.60.0"


def check_engine(engine: str) -> str:
    """``engine`` if it is one of :data:`ENGINES` (InputError naming the choices otherwise)."""
    if engine not in ENGINES:
        raise InputError(f"engine (--engine) must be one of {', '.join(ENGINES)} "
                         f"(got {engine!r})")
    return engine


# ---------------------------------------------------------------------------- local


def _die_with_parent(parent: int) -> None:
    """End this worker when the build process that started it dies, even by kill -9:
    PR_SET_PDEATHSIG on Linux, and on every platform a thread polling the parent pid."""
    import signal
    import sys
    import time

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # pragma: no cover
            pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="mmsa-parent-watch", daemon=True).start()


_WORKER = None  # the ChunkEmbedder of a local worker process


def _worker_init(spec, threads: int, parent: int | None, mode: str) -> None:
    global _WORKER
    from mmsa.library.embed import ChunkEmbedder

    if parent is not None:
        _die_with_parent(parent)
    _WORKER = ChunkEmbedder(spec, threads=threads, mode=mode)


def _worker_embed(smiles: list[str]):
    return _WORKER(smiles)


def local_results(chunks: Iterable, encoder, spec, n_jobs: int = 1,
                  mode: str = "fast") -> Iterator[tuple]:
    """Yield (chunk, ChunkResult) in input order: in this process with ``encoder`` when
    ``n_jobs`` is 1, else in ``n_jobs`` spawned processes that each load ``spec`` once."""
    from mmsa.library.embed import embed_chunk

    if n_jobs <= 1:
        for chunk in chunks:
            yield chunk, embed_chunk(chunk.records["smiles"].tolist(), encoder, mode=mode,
                                     canonical=True)
        return
    import multiprocessing as mp
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(
        max_workers=n_jobs,
        mp_context=mp.get_context("spawn"),
        initializer=_worker_init,
        initargs=(spec, 1, os.getpid(), mode),
    ) as pool:
        pending: deque = deque()
        for chunk in chunks:
            pending.append((chunk, pool.submit(_worker_embed, chunk.records["smiles"].tolist())))
            while len(pending) > n_jobs:
                c, fut = pending.popleft()
                yield c, fut.result()
        while pending:
            c, fut = pending.popleft()
            yield c, fut.result()


# ---------------------------------------------------------------------------- ray


def import_ray():
    """``ray`` with Ray Data, or an InputError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
        import ray.util.queue  # noqa: F401
    except ImportError as exc:
        raise InputError(
            f"the Ray engine (--engine ray) needs Ray Data, which is not installed ({exc}); "
            f"install it with `pip install 'mmsa-explorer[ray]'` (ray[data]=={RAY_VERSION}), "
            f"or build with the local engine (the default)") from None
    return ray


def ray_checkpoint(encoder) -> tuple:
    """What the actors load: ("bytes", checkpoint file bytes, sha256) for a saved checkpoint,
    ("object", encoder, sha256) for an in-memory one."""
    from mmsa.hashing import sha256_file

    path = getattr(encoder, "path", None)
    if path is None:
        return ("object", encoder, encoder.checkpoint_hash)
    data = open(path, "rb").read()
    import hashlib

    sha = hashlib.sha256(data).hexdigest()
    if sha != encoder.checkpoint_hash or sha != sha256_file(path):
        raise LibraryError(f"checkpoint {path} changed while the build was starting; "
                           f"run the build again")
    return ("bytes", data, sha)


class _RayEmbedder:
    """A Ray Data actor: loads the checkpoint once, then embeds whole chunks (one per row)."""

    def __init__(self, kind: str, payload, sha256: str, mode: str):
        import tempfile
        from pathlib import Path

        from mmsa.library.embed import ChunkEmbedder

        if kind == "bytes":
            with tempfile.TemporaryDirectory(prefix="mmsa-ray-") as tmp:
                path = Path(tmp) / "checkpoint.pt"
                path.write_bytes(payload)
                self.embedder = ChunkEmbedder(path, threads=1, mode=mode)
        else:
            self.embedder = ChunkEmbedder(payload, threads=1, mode=mode)
        got = self.embedder.encoder.checkpoint_hash
        if got != sha256:
            raise LibraryError(f"a Ray worker loaded checkpoint {got[:12]}…, the build's is "
                               f"{sha256[:12]}…")

    def __call__(self, batch: dict) -> dict:
        rows = [pack_result(int(i), self.embedder(json.loads(s)))
                for i, s in zip(batch["chunk"], batch["smiles"])]
        return {key: np.array([r[key] for r in rows], dtype=object if key in _BYTES else None)
                for key in _COLUMNS}


_BYTES = ("ok", "fail_pos", "vectors", "slot_ids", "slot_weights", "morgan", "pattern")
_COLUMNS = ("chunk", "m", "dim", "t", "fail_reason", *_BYTES)


def pack_result(index: int, res) -> dict:
    """One Ray row holding a whole ChunkResult (arrays as raw bytes, so values are exact)."""
    return {
        "chunk": index,
        "m": len(res.ok),
        "dim": res.vectors.shape[1],
        "t": res.slot_ids.shape[1],
        "ok": np.asarray(res.ok, bool).tobytes(),
        "fail_pos": np.array([f.row for f in res.failures], np.int64).tobytes(),
        "fail_reason": json.dumps([f.reason for f in res.failures]),
        "vectors": np.ascontiguousarray(res.vectors, np.float32).tobytes(),
        "slot_ids": np.ascontiguousarray(res.slot_ids, np.int32).tobytes(),
        "slot_weights": np.ascontiguousarray(res.slot_weights, np.float32).tobytes(),
        "morgan": np.ascontiguousarray(res.morgan, np.uint8).tobytes(),
        "pattern": np.ascontiguousarray(res.pattern, np.uint8).tobytes(),
    }


def unpack_result(row: dict, smiles: list[str]):
    """The ChunkResult of :func:`pack_result`'s row; ``smiles`` are the chunk's SMILES (the
    failures' inputs)."""
    from mmsa.library.embed import FP_BYTES, ChunkResult

    m, dim, t = int(row["m"]), int(row["dim"]), int(row["t"])
    ok = np.frombuffer(row["ok"], bool).copy()
    n = int(ok.sum())
    if m != len(smiles) or len(ok) != m:
        raise LibraryError(f"internal error: a Ray result of {m} rows for a chunk of "
                           f"{len(smiles)} molecules")

    def arr(key, dtype, width):
        return np.frombuffer(row[key], dtype).reshape(n, width).copy()

    pos = np.frombuffer(row["fail_pos"], np.int64)
    reasons = json.loads(row["fail_reason"])
    return ChunkResult(
        vectors=arr("vectors", np.float32, dim),
        slot_ids=arr("slot_ids", np.int32, t),
        slot_weights=arr("slot_weights", np.float32, t),
        morgan=arr("morgan", np.uint8, FP_BYTES),
        pattern=arr("pattern", np.uint8, FP_BYTES),
        ok=ok,
        failures=[Failure(int(p), smiles[int(p)], str(r)) for p, r in zip(pos, reasons)],
    )


def _pull(batch: dict, queue) -> Iterator[dict]:
    """A zero-CPU Ray task: hand the queued chunks on, one Ray block per chunk, until the
    end marker (None)."""
    while True:
        item = queue.get()
        if item is None:
            return
        index, smiles_json = item
        yield {"chunk": np.array([index], np.int64),
               "smiles": np.array([smiles_json], dtype=object)}


def connect_ray(address: str | None, workers: int | None) -> tuple[object, bool, int]:
    """(ray, whether this call started/joined Ray (and must shut it down), actor count).

    Already connected (a notebook, a test): that session is used as it is. ``address``:
    join that cluster (``"auto"``: the one ``ray start`` runs on this machine). None: start
    a private local instance with ``workers`` CPUs (default: this machine's CPU count), no
    dashboard and no usage-stats reporting (works offline, and as root in a container).
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network call home
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        kwargs = {"include_dashboard": False, "configure_logging": False,
                  "log_to_driver": True}
        try:
            if address:
                log.info("joining the Ray cluster at %s", address)
                ray.init(address=address, **kwargs)
            else:
                n = workers or os.cpu_count() or 1
                log.info("starting a local Ray instance with %d CPUs", n)
                ray.init(num_cpus=n, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            if not address:
                raise InputError(f"could not start a local Ray instance: {exc}") from None
            hint = ("" if os.environ.get("RAY_AUTH_MODE") else
                    "; if the cluster uses token authentication (Ray's default), set "
                    "RAY_AUTH_MODE=token with its token in ~/.ray/auth_token or "
                    "$RAY_AUTH_TOKEN (`ray get-auth-token` on the head prints it)")
            raise InputError(f"could not connect to the Ray cluster at {address!r}: "
                             f"{exc}{hint}") from None
        started = True
    elif address:
        log.info("Ray is already initialised in this process: using it (not %s)", address)
    if workers is None:
        workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
    return ray, started, int(workers)


def ray_results(chunks: Iterable, encoder, *, workers: int | None = None,
                address: str | None = None, mode: str = "fast",
                in_flight: int | None = None) -> Iterator[tuple]:
    """Yield (chunk, ChunkResult) in input order, embedding on a Ray Data actor pool.

    ``chunks`` are read here, in a thread; at most ``in_flight`` (default 2 x workers + 2)
    chunks are between the reader and the caller at any time, so memory stays bounded
    whatever the input size. Chunks without molecules never leave this process. A failure
    on a worker is a LibraryError (nothing is written by the caller's atomic build).
    """
    ray, started, workers = connect_ray(address, workers)
    stop = threading.Event()
    try:
        kind, payload, sha = ray_checkpoint(encoder)
        yield from _run_pipeline(ray, chunks, kind, payload, sha, workers, mode,
                                 in_flight or 2 * workers + 2, stop)
    finally:
        stop.set()
        if started:
            ray.shutdown()


def _run_pipeline(ray, chunks, kind, payload, sha, workers, mode, in_flight, stop):
    from ray.util.queue import Queue

    from mmsa.library.embed import ChunkResult

    readers = max(1, min(4, workers))
    queue = Queue(maxsize=workers, actor_options={"num_cpus": 0})
    slots = threading.BoundedSemaphore(in_flight)
    lock = threading.Lock()
    pending: dict[int, object] = {}  # index -> chunk, read and not yet yielded
    results: dict[int, object] = {}  # index -> ChunkResult, not yet yielded
    state: dict = {"error": None, "count": None}

    def put(item) -> bool:
        while not stop.is_set():
            try:
                queue.put(item, timeout=0.5)
                return True
            except ray.util.queue.Full:
                continue
        return False

    def feed() -> None:
        count = 0
        try:
            for index, chunk in enumerate(chunks):
                smiles = chunk.records["smiles"].tolist()
                if not smiles:  # reader failures only: nothing for the workers
                    with lock:
                        pending[index] = chunk
                        results[index] = _empty_result(ChunkResult, chunk)
                    count = index + 1
                    continue
                while not slots.acquire(timeout=0.5):
                    if stop.is_set():
                        return
                with lock:
                    pending[index] = chunk
                count = index + 1
                if not put((index, json.dumps(smiles))):
                    return
        except BaseException as exc:  # the caller re-raises it (e.g. an all-invalid file)
            state["error"] = exc
        finally:
            state["count"] = count
            for _ in range(readers):
                if not put(None):
                    break

    from ray.data import ActorPoolStrategy, DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False  # the build reports progress per chunk itself
    saved = ctx.target_max_block_size
    # a Ray row is a whole chunk: one block per row, so each chunk reaches an actor as soon
    # as it is read (the dataset copies the context when it is created; restored below)
    ctx.target_max_block_size = 1
    try:
        ds = (ray.data.from_items([{"reader": r} for r in range(readers)],
                                  override_num_blocks=readers)
              .map_batches(_pull, batch_size=1, num_cpus=0, fn_kwargs={"queue": queue})
              .map_batches(_RayEmbedder, batch_size=1, num_cpus=1,
                           compute=ActorPoolStrategy(size=workers),
                           fn_constructor_kwargs={"kind": kind, "payload": payload,
                                                  "sha256": sha, "mode": mode}))
    finally:
        ctx.target_max_block_size = saved

    reader = threading.Thread(target=feed, name="mmsa-ray-reader", daemon=True)
    reader.start()
    next_index = 0

    def ready():
        nonlocal next_index
        while True:
            with lock:
                if next_index not in results:
                    return
                chunk = pending.pop(next_index)
                res = results.pop(next_index)
            if len(chunk.records):
                slots.release()
            next_index += 1
            yield chunk, res

    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for j in range(len(batch["chunk"])):
                row = {key: batch[key][j] for key in _COLUMNS}
                index = int(row["chunk"])
                with lock:
                    chunk = pending[index]
                res = unpack_result(row, chunk.records["smiles"].tolist())
                with lock:
                    results[index] = res
            yield from ready()
    except MMSAError:
        raise
    except Exception as exc:
        if state["error"] is not None:
            raise state["error"] from None
        raise LibraryError(f"the Ray engine failed: {worker_error(exc)}; nothing was "
                           f"changed") from exc
    reader.join()
    if state["error"] is not None:
        raise state["error"]
    yield from ready()
    if next_index != state["count"]:
        raise LibraryError(f"internal error: the Ray engine returned {next_index} of "
                           f"{state['count']} chunks")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_MMSA_ERROR = re.compile(r"^mmsa\.types\.(\w+): (.+)$", re.MULTILINE)


def worker_error(exc: BaseException) -> str:
    """The line of a Ray error that says what went wrong: the mmsa error a worker raised
    (e.g. "InputError: cannot read checkpoint ...") when there is one, else the first line."""
    text = _ANSI.sub("", str(exc)).strip()
    found = _MMSA_ERROR.findall(text)
    if found:
        kind, message = found[-1]
        return f"a worker raised {kind}: {message}"
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}"


def _empty_result(cls, chunk):
    from mmsa.library.embed import FP_BYTES

    return cls(vectors=np.zeros((0, 0), np.float32), slot_ids=np.zeros((0, 0), np.int32),
               slot_weights=np.zeros((0, 0), np.float32),
               morgan=np.zeros((0, FP_BYTES), np.uint8),
               pattern=np.zeros((0, FP_BYTES), np.uint8), ok=np.zeros(0, bool))
