"""Structure awareness, part 2: a memory bank of M learnable anchors (prototypes).

Each embedding is softly assigned to the anchors (softmax of cosine / tau); its memory readout
is the assignment-weighted mean of the anchors. Training aligns embeddings with their readout
(alignment loss) and predicts Sinkhorn-balanced assignments (SwAV), which keeps every anchor in
use (the anti-collapse term).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@torch.no_grad()
def sinkhorn(scores: Tensor, eps: float = 0.05, iters: int = 3) -> Tensor:
    """Balanced soft assignment (SwAV): ``scores [B, M] -> q [B, M]``, rows sum to 1 and every
    anchor receives about ``B / M`` of the mass."""
    q = torch.exp((scores - scores.max()) / eps).t()  # [M, B]
    q = q / q.sum()
    m, b = q.shape
    for _ in range(iters):
        q = q / q.sum(dim=1, keepdim=True).clamp(min=1e-12) / m
        q = q / q.sum(dim=0, keepdim=True).clamp(min=1e-12) / b
    return (q * b).t()


class MemoryBank(nn.Module):
    """M anchors in the shared space.

    Args:
        num_slots: M.
        dim: shared-space width.
        tau: softmax temperature of the assignment.
    """

    def __init__(self, num_slots: int, dim: int, tau: float = 0.1):
        super().__init__()
        self.anchors = nn.Parameter(F.normalize(torch.randn(num_slots, dim), dim=-1))
        self.tau = tau

    @property
    def num_slots(self) -> int:
        return self.anchors.size(0)

    def normalized_anchors(self) -> Tensor:
        """``[M, D]``, unit rows."""
        return F.normalize(self.anchors, dim=-1)

    def scores(self, z: Tensor) -> Tensor:
        """Cosine similarity ``[B, M]`` of normalised ``z [B, D]`` to every anchor."""
        return z @ self.normalized_anchors().t()

    def assign(self, z: Tensor) -> Tensor:
        """Soft assignment ``[B, M]`` (rows sum to 1)."""
        return torch.softmax(self.scores(z) / self.tau, dim=-1)

    def readout(self, weights: Tensor) -> Tensor:
        """Memory readout ``[B, D]``: assignment-weighted mean of the anchors."""
        return weights @ self.normalized_anchors()

    def alignment_loss(self, z: Tensor) -> Tensor:
        """Mean ``1 - cos(z, readout(assign(z)))``: pulls embeddings and anchors together."""
        r = self.readout(self.assign(z))
        return (1.0 - F.cosine_similarity(z, r, dim=-1)).mean()

    def assignment_loss(self, z: Tensor, target_z: Tensor, eps: float = 0.05) -> Tensor:
        """Cross-entropy of ``assign(z)`` to Sinkhorn-balanced assignments of ``target_z``
        (detached): the anti-collapse term (a collapsed memory cannot match balanced targets)."""
        q = sinkhorn(self.scores(target_z.detach()).detach(), eps=eps)
        logp = torch.log_softmax(self.scores(z) / self.tau, dim=-1)
        return -(q * logp).sum(dim=-1).mean()


def assignment_entropy(weights: Tensor) -> tuple[Tensor, Tensor]:
    """``(marginal, mean_per_row)`` entropies (nats) of soft assignments ``[B, M]``.

    The marginal entropy (of the batch-mean assignment) is log(M) when every anchor is used
    equally and 0 when all molecules go to one anchor (collapse).
    """
    p = weights.clamp(min=1e-12)
    marginal = p.mean(dim=0)
    h_marg = -(marginal * marginal.log()).sum()
    h_row = -(p * p.log()).sum(dim=-1).mean()
    return h_marg, h_row
