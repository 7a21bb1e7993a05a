"""Featurise many molecules over worker processes, with an optional on-disk cache.

``featurize_many(featurizer, smiles, n_jobs)`` returns ``(results, failures)``: ``results``
is aligned with the input (``None`` where that molecule failed) and ``failures`` holds one
:class:`mmsa.types.Failure` per failed molecule (invalid SMILES, no conformer, ...).

Workers get large chunks of SMILES, so the per-task overhead stays small. Processes are
started with ``fork`` when that is safe (a single-threaded parent without torch loaded) and
``spawn`` otherwise; featurizers are plain picklable objects, so both work.

The cache holds one ``.npz`` file per (featurizer config, SMILES list) under
``$MMSA_CACHE/features``: every array field of the results is stored flat with its shapes
(numpy only, ``allow_pickle=False``), so loading a cache file never unpickles anything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing
import os
import sys
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import fields, is_dataclass
from pathlib import Path

import numpy as np

from mmsa.chem.conformer import Conformer, ConformerFailure
from mmsa.chem.graph import GraphFeatures
from mmsa.paths import cache_dir
from mmsa.types import Failure, MMSAError

__all__ = ["featurize_many", "cache_file", "CACHE_FORMAT"]

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
# Result containers a cache file may hold, by name (nothing else is ever constructed).
_CONTAINERS = {"GraphFeatures": GraphFeatures, "Conformer": Conformer}


def featurize_many(featurizer, smiles: Sequence[str], n_jobs: int = 1, progress: bool = False,
                   chunksize: int | None = None, cache: bool | str | os.PathLike = False
                   ) -> tuple[list, list[Failure]]:
    """Run ``featurizer`` on every SMILES, in ``n_jobs`` processes.

    Args:
        featurizer: a picklable callable with ``.config()`` (GraphFeaturizer, ...).
        smiles: the SMILES strings; ``Failure.row`` is the position in this list.
        n_jobs: worker processes; 1 runs in this process, -1 uses every CPU.
        progress: show a tqdm progress bar.
        chunksize: SMILES per worker task (default: about 8 tasks per worker, <= 2,000).
        cache: ``True`` for ``$MMSA_CACHE/features``, a folder path, or ``False`` (no cache).

    Returns:
        ``(results, failures)``; ``results[i]`` is the featurizer's output for
        ``smiles[i]`` or ``None`` when it failed (then a Failure with row ``i`` says why).
    """
    smiles = [str(s) if s is not None else "" for s in smiles]
    path = None
    if cache:
        root = Path(cache) if not isinstance(cache, bool) else cache_dir() / "features"
        path = cache_file(featurizer, smiles, root)
        loaded = _load(path, len(smiles))
        if loaded is not None:
            log.info("features from cache %s", path)
            return loaded

    n_jobs = _resolve_jobs(n_jobs)
    if chunksize is None:
        chunksize = min(2000, max(1, math.ceil(len(smiles) / (n_jobs * 8))))
    starts = list(range(0, len(smiles), chunksize))
    bar = _progress_bar(len(smiles), progress, featurizer)
    results: list = [None] * len(smiles)
    failures: list[Failure] = []
    try:
        if n_jobs == 1 or len(starts) <= 1:
            parts = (_featurize_chunk(featurizer, s, smiles[s:s + chunksize]) for s in starts)
            _collect(parts, results, failures, bar)
        else:
            workers = min(n_jobs, len(starts))
            with ProcessPoolExecutor(max_workers=workers, mp_context=_context()) as pool:
                parts = pool.map(_featurize_chunk, [featurizer] * len(starts), starts,
                                 [smiles[s:s + chunksize] for s in starts])
                _collect(parts, results, failures, bar)
    finally:
        if bar is not None:
            bar.close()
    failures.sort(key=lambda f: f.row)
    if path is not None:
        _save(path, results, failures)
    return results, failures


def cache_file(featurizer, smiles: Sequence[str], root: str | os.PathLike) -> Path:
    """Cache path for this featurizer config and SMILES list (both hashed into the name)."""
    config = json.dumps(featurizer.config(), sort_keys=True, default=str)
    digest = hashlib.sha256()
    digest.update(f"format {CACHE_FORMAT}\n{config}\n{len(smiles)}\n".encode())
    for smi in smiles:
        digest.update(smi.encode())
        digest.update(b"\n")
    name = featurizer.config().get("name", type(featurizer).__name__.lower())
    return Path(root) / f"{name}-{digest.hexdigest()[:32]}.npz"


# --------------------------------------------------------------------------- workers


def _featurize_chunk(featurizer, start: int, smiles: list[str]):
    """Featurise one chunk; returns (start, results, [(row, input, reason), ...]).

    A featurizer with ``batch(smiles) -> (results, [(i, reason), ...])`` does the chunk in
    one call (GraphFeaturizer: one numpy pass); if that raises, molecules go one by one.
    """
    batch = getattr(featurizer, "batch", None)
    if batch is not None:
        try:
            out, errors = batch(smiles)
        except Exception as exc:  # noqa: BLE001 - fall back to finding the culprit below
            log.debug("batch featurisation failed (%s); going molecule by molecule", exc)
        else:
            return start, list(out), [(start + i, smiles[i], reason) for i, reason in errors]
    out, bad = [], []
    for k, smi in enumerate(smiles):
        try:
            res = featurizer(smi)
        except MMSAError as exc:
            res, reason = None, str(exc)
        except Exception as exc:  # noqa: BLE001 - a featurizer crash fails that molecule only
            res, reason = None, f"featurizer error: {type(exc).__name__}: {exc}"
        else:
            if isinstance(res, ConformerFailure):
                res, reason = None, res.reason
        if res is None:
            bad.append((start + k, smi, reason))
        out.append(res)
    return start, out, bad


def _collect(parts, results: list, failures: list[Failure], bar) -> None:
    for start, out, bad in parts:
        results[start:start + len(out)] = out
        failures.extend(Failure(row, smi, reason) for row, smi, reason in bad)
        if bar is not None:
            bar.update(len(out))


def _resolve_jobs(n_jobs: int) -> int:
    if n_jobs is None or n_jobs == 0:
        return 1
    if n_jobs < 0:
        return max(1, (os.cpu_count() or 1) + 1 + n_jobs)
    return int(n_jobs)


def _context():
    """``fork`` when safe (single-threaded parent, no torch), else ``spawn``."""
    methods = multiprocessing.get_all_start_methods()
    if ("fork" in methods and threading.active_count() == 1 and "torch" not in sys.modules):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _progress_bar(total: int, progress: bool, featurizer):
    if not progress:
        return None
    from tqdm.auto import tqdm

    name = featurizer.config().get("name", "features") if hasattr(featurizer, "config") else ""
    return tqdm(total=total, desc=f"featurising ({name})", unit="mol")


# --------------------------------------------------------------------------- cache


def _kind(value) -> str:
    if isinstance(value, np.ndarray):
        return "ndarray"
    name = type(value).__name__
    if is_dataclass(value) and _CONTAINERS.get(name) is type(value):
        return name
    raise TypeError(f"cannot cache results of type {type(value).__name__}")


def _save(path: Path, results: list, failures: list[Failure]) -> None:
    ok = np.array([r is not None for r in results], dtype=bool)
    present = [r for r in results if r is not None]
    arrays: dict[str, np.ndarray] = {
        "format": np.array(CACHE_FORMAT),
        "ok": ok,
        "failure_rows": np.array([f.row for f in failures], dtype=np.int64),
        "failure_inputs": np.array([f.input for f in failures], dtype=str),
        "failure_reasons": np.array([f.reason for f in failures], dtype=str),
    }
    kind = _kind(present[0]) if present else "none"
    arrays["kind"] = np.array(kind)
    if present:
        names = ["value"] if kind == "ndarray" else [f.name for f in fields(present[0])]
        for name in names:
            parts = [r if kind == "ndarray" else getattr(r, name) for r in present]
            arrays[f"{name}__shape"] = np.array([p.shape for p in parts], dtype=np.int64)
            arrays[f"{name}__data"] = (np.concatenate([p.ravel() for p in parts])
                                       if parts else np.zeros(0))
        arrays["fields"] = np.array(names, dtype=str)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except OSError as exc:  # a cache that cannot be written is not an error
        log.warning("could not write feature cache %s: %s", path, exc)


def _load(path: Path, n: int):
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if int(data["format"]) != CACHE_FORMAT or len(data["ok"]) != n:
                return None
            ok = data["ok"]
            kind = str(data["kind"])
            results: list = [None] * n
            if kind != "none":
                names = [str(x) for x in data["fields"]]
                columns = {}
                for name in names:
                    shapes, flat = data[f"{name}__shape"], data[f"{name}__data"]
                    sizes = np.prod(shapes, axis=1) if shapes.shape[1] else np.ones(len(shapes),
                                                                                    dtype=np.int64)
                    offsets = np.concatenate([[0], np.cumsum(sizes)])
                    columns[name] = [flat[offsets[i]:offsets[i + 1]].reshape(shapes[i])
                                     for i in range(len(shapes))]
                make = (lambda i: columns["value"][i]) if kind == "ndarray" else (
                    lambda i: _CONTAINERS[kind](**{nm: columns[nm][i] for nm in names}))
                for i, row in enumerate(np.flatnonzero(ok)):
                    results[row] = make(i)
            failures = [Failure(int(r), str(s), str(m)) for r, s, m in
                        zip(data["failure_rows"], data["failure_inputs"],
                            data["failure_reasons"])]
        return results, failures
    except (OSError, KeyError, ValueError) as exc:
        log.warning("ignoring unreadable feature cache %s: %s", path, exc)
        return None
