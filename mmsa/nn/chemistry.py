"""Chemistry-aware objectives on the shared space.

The first shipped checkpoint showed that instance-level contrast alone (modality vs modality,
graph vs hypergraph) makes cosine neighbours *worse* than at random initialisation: nothing in
those losses says which two different molecules should be close. These blocks say it:

- :class:`ChemistryDecoder`: decodes, from a shared code, the molecule's folded Morgan count
  environments (radius 0-2, presence as multi-label logits) and its standardised RDKit 2D
  descriptors, so the reconstruction side of each modality's auto-encoder carries chemistry.
- :func:`tanimoto_kernel` + :func:`similarity_distillation`: the in-batch neighbour
  distribution of the embedding (softmax of cosines) is matched to that of the Tanimoto kernel
  (softmax of Tanimoto / ``tau_target``) by a KL divergence. This shapes the ranking users see
  when they search, and the graph encoder generalises it beyond exact bit matches.
- :func:`vicreg_regulariser`: VICReg's variance and covariance terms on a batch of codes
  (explicit anti-collapse: every dimension keeps spread, dimensions stay decorrelated).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmsa.nn.fusion import mlp


class ChemistryDecoder(nn.Module):
    """``forward(z [B, dim]) -> (fp_logits [B, n_bits], descriptors [B, n_desc])``."""

    def __init__(self, dim: int, hidden: int, n_bits: int, n_desc: int):
        super().__init__()
        self.fp = mlp(dim, hidden, n_bits)
        self.desc = mlp(dim, hidden, n_desc)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.fp(z), self.desc(z)

    def loss(self, z: Tensor, counts: Tensor, desc: Tensor, mask: Tensor | None = None
             ) -> tuple[Tensor, Tensor]:
        """``(fingerprint BCE, descriptor MSE)`` over the molecules in ``mask``.

        ``counts [B, n_bits]``: Morgan counts (presence is the target); ``desc [B, n_desc]``:
        standardised descriptors."""
        if mask is not None:
            if not bool(mask.any()):
                zero = z.sum() * 0.0
                return zero, zero
            z, counts, desc = z[mask], counts[mask], desc[mask]
        fp_logits, d = self(z)
        bce = F.binary_cross_entropy_with_logits(fp_logits, (counts > 0).to(fp_logits.dtype))
        return bce, F.mse_loss(d, desc)


def tanimoto_kernel(counts: Tensor) -> Tensor:
    """Binary Tanimoto ``[B, B]`` of the fingerprints' presence bits (``counts [B, n_bits]``)."""
    bits = (counts > 0).to(torch.float32)
    inter = bits @ bits.t()
    n = bits.sum(dim=1)
    union = n.unsqueeze(0) + n.unsqueeze(1) - inter
    return inter / union.clamp(min=1.0)


def similarity_distillation(v: Tensor, kernel: Tensor, tau: float = 0.1,
                            tau_target: float = 0.05) -> Tensor:
    """KL(p_kernel || p_embedding) of in-batch neighbour distributions (self excluded).

    ``v [B, D]`` normalised embeddings; ``kernel [B, B]`` target similarities (Tanimoto).
    Row ``i``: ``p = softmax_j(kernel_ij / tau_target)``, ``q = softmax_j(v_i . v_j / tau)``.
    """
    b = v.size(0)
    if b < 3:
        return v.sum() * 0.0
    eye = torch.eye(b, dtype=torch.bool, device=v.device)
    logits = (v @ v.t() / tau).masked_fill(eye, -1e9)
    target = torch.softmax((kernel / tau_target).masked_fill(eye, -1e9), dim=1)
    logq = torch.log_softmax(logits, dim=1)
    return (target * (target.clamp(min=1e-12).log() - logq)).sum(dim=1).mean()


def vicreg_regulariser(z: Tensor, gamma: float = 1.0, eps: float = 1e-4) -> tuple[Tensor, Tensor]:
    """VICReg ``(variance, covariance)`` terms of ``z [B, D]``.

    ``z`` is rescaled by ``sqrt(D)`` first, so for L2-normalised codes a well-spread batch has
    per-dimension standard deviation about 1 (the hinge target ``gamma``)."""
    b, d = z.shape
    if b < 2:
        zero = z.sum() * 0.0
        return zero, zero
    x = z * d ** 0.5
    x = x - x.mean(dim=0)
    std = torch.sqrt(x.var(dim=0) + eps)
    variance = F.relu(gamma - std).mean()
    cov = (x.t() @ x) / (b - 1)
    off = cov - torch.diag(torch.diagonal(cov))
    covariance = off.pow(2).sum() / d
    return variance, covariance
