"""Checkpoints: ``{hyper_parameters, state_dict, versions, extra}`` with primitives and tensors
only, so every one loads with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from mmsa.model.config import CHECKPOINT_FORMAT, MMSAConfig
from mmsa.model.network import MMSA
from mmsa.types import InputError

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- checkpoints
def _versions() -> dict[str, str]:
    import torch_geometric

    import mmsa

    v = {"mmsa": str(mmsa.__version__), "torch": str(torch.__version__),
         "torch_geometric": str(torch_geometric.__version__), "format": str(CHECKPOINT_FORMAT)}
    try:
        from rdkit import rdBase

        v["rdkit"] = str(rdBase.rdkitVersion)
    except ImportError:  # pragma: no cover
        pass
    return v


def save_checkpoint(model: MMSA, path: str | os.PathLike, extra: dict | None = None,
                    half: bool = False) -> Path:
    """Write ``{hyper_parameters, state_dict, versions, extra}`` atomically.

    Only primitive types and tensors, so it loads with ``torch.load(weights_only=True)``.
    ``half=True`` stores floating tensors as float16 (the shipped checkpoint, to stay small);
    loading converts them back to float32.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.detach().cpu().half() if half and v.is_floating_point() else v.detach().cpu())
             for k, v in model.state_dict().items()}
    payload = {"hyper_parameters": model.config.to_dict(), "state_dict": state,
               "versions": _versions(), "extra": dict(extra or {})}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The raw checkpoint dict (``torch.load(weights_only=True)``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupted or not a checkpoint
        raise InputError(f"cannot read checkpoint {path}: {exc}") from exc


def model_from_checkpoint(ckpt: dict) -> MMSA:
    """Rebuild the model of a checkpoint dict (float32, eval mode)."""
    for key in ("hyper_parameters", "state_dict"):
        if key not in ckpt:
            raise InputError(f"not an MMSA checkpoint (no {key!r})")
    model = MMSA(MMSAConfig.from_dict(ckpt["hyper_parameters"]))
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in ckpt["state_dict"].items()}
    model.load_state_dict(state)
    return model.eval()


def load_checkpoint(path: str | os.PathLike) -> MMSA:
    """Load a checkpoint written by :func:`save_checkpoint` into a model in eval mode."""
    return model_from_checkpoint(read_checkpoint(path))


def export_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, half: bool = False,
                      extra: dict | None = None) -> Path:
    """Copy the model of a training checkpoint to ``dst`` without optimizer state."""


    ckpt = read_checkpoint(src)
    model = model_from_checkpoint(ckpt)
    info = {k: v for k, v in ckpt.get("extra", {}).items() if k != "optimizer"}
    info.update(extra or {})
    return save_checkpoint(model, dst, extra=info, half=half)
