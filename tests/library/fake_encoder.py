"""A torch-free stand-in for mmsa.model.encoder.Encoder (fault-injection subprocesses start fast)."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import numpy as np


class FakeEncoder:
    """Deterministic 16-d unit vectors from each SMILES' sha256; 4 equal memory slots."""

    dim, num_slots, checkpoint_hash, device, path = 16, 4, "f" * 64, "cpu", None

    def embed(self, smiles, mode="fast", batch_size=1024, **kw):
        if smiles:
            v = np.stack([np.frombuffer(hashlib.sha256(s.encode()).digest()[:16], np.uint8)
                          .astype(np.float32) + 1 for s in smiles])
        else:
            v = np.zeros((0, 16), np.float32)
        return SimpleNamespace(
            vectors=v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12),
            slot_weights=np.full((len(smiles), 4), 0.25, np.float32),
            ok=np.ones(len(smiles), bool), failures=[])
