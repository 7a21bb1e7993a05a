"""Fusion: per-modality auto-encoders into one shared space, with reconstruction and
cross-modal contrastive (InfoNCE) losses; molecules missing a modality are masked out."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    """Two-layer perceptron ``[*, d_in] -> [*, d_out]``."""
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Linear(d_hidden, d_out))


class ModalityAutoEncoder(nn.Module):
    """Encodes one modality's features into the shared space and decodes them back.

    ``forward(f [B, in_dim]) -> (z [B, dim] L2-normalised, recon [B, in_dim])``.
    ``reconstruction_loss(f, recon)`` is the MSE to the (detached, layer-normalised) features,
    so the shared code keeps the information of each modality.
    """

    def __init__(self, in_dim: int, dim: int, hidden: int):
        super().__init__()
        self.encoder = mlp(in_dim, hidden, dim)
        self.decoder = mlp(dim, hidden, in_dim)

    def forward(self, f: Tensor) -> tuple[Tensor, Tensor]:
        code = self.encoder(f)
        return F.normalize(code, dim=-1), self.decoder(code)

    @staticmethod
    def reconstruction_loss(f: Tensor, recon: Tensor, mask: Tensor | None = None) -> Tensor:
        target = F.layer_norm(f.detach(), f.shape[-1:])
        err = (recon - target).pow(2).mean(dim=-1)
        if mask is not None:
            if not bool(mask.any()):
                return err.sum() * 0.0
            err = err[mask]
        return err.mean()


def info_nce(a: Tensor, b: Tensor, tau: float = 0.1, mask: Tensor | None = None) -> Tensor:
    """Symmetric InfoNCE between paired rows of ``a`` and ``b`` (both ``[B, D]``, normalised).

    Row ``i`` of ``a`` and of ``b`` are the positive pair; the other rows are negatives.
    ``mask [B]`` keeps only the molecules that have both views. Returns a scalar (0 when fewer
    than two pairs remain).
    """
    if mask is not None:
        a, b = a[mask], b[mask]
    if a.size(0) < 2:
        return a.sum() * 0.0 + b.sum() * 0.0
    logits = a @ b.t() / tau
    target = torch.arange(a.size(0), device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def masked_mean_fuse(codes: list[Tensor], masks: list[Tensor]) -> Tensor:
    """Fuse modality codes ``[B, D]`` by the mean over the modalities each molecule has.

    ``masks`` are bool ``[B]``; every molecule must have at least one modality. Returns the
    L2-normalised fused embedding ``[B, D]``.
    """
    total = torch.zeros_like(codes[0])
    count = torch.zeros(codes[0].size(0), 1, device=codes[0].device)
    for z, m in zip(codes, masks):
        w = m.to(z.dtype).unsqueeze(-1)
        total = total + z * w
        count = count + w
    return F.normalize(total / count.clamp(min=1.0), dim=-1)
