"""The encoder API: load an MMSA checkpoint and embed SMILES (fast or full multi-modal path).

    enc = Encoder.load()                  # the shipped checkpoint (mmsa/weights/mmsa.pt)
    res = enc.embed(smiles, mode="fast")  # vectors [n, dim], slot_weights [n, M], ok, failures

Rows that cannot be embedded are NaN in ``vectors`` and ``slot_weights``, False in ``ok`` and
listed in ``failures``; nothing is replaced by a zero vector.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mmsa.hashing import sha256_file
from mmsa.model.batch import MMSABatch, collate
from mmsa.model.checkpoint import model_from_checkpoint, read_checkpoint
from mmsa.model.device import resolve_device
from mmsa.model.featurize import build_featurizer, featurize
from mmsa.model.network import MMSA
from mmsa.paths import DEFAULT_CHECKPOINT
from mmsa.types import Failure, InputError

log = logging.getLogger(__name__)

MODES = ("fast", "full")


@dataclass
class EmbedResult:
    """Embeddings of ``n`` molecules.

    vectors: float32 ``[n, dim]``, L2-normalised, NaN rows where failed.
    slot_weights: float32 ``[n, num_slots]``, rows sum to 1, NaN rows where failed.
    ok: bool ``[n]``.
    failures: one :class:`~mmsa.types.Failure` per failed row (``row`` = position in the input).
    """

    vectors: np.ndarray
    slot_weights: np.ndarray
    ok: np.ndarray
    failures: list[Failure] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ok)


file_sha256 = sha256_file


class Encoder:
    """An MMSA model with the featurizers it was trained with.

    Attributes: ``dim`` (embedding width), ``num_slots`` (memory anchors M),
    ``checkpoint_hash`` (sha256 of the checkpoint file, or of nothing for an in-memory model),
    ``modalities`` (the modalities of the model, e.g. ``("graph", "image", "geometry")``),
    ``device``, ``model``, ``path``.
    """

    def __init__(self, model: MMSA, device: str | torch.device = "auto",
                 checkpoint_hash: str | None = None, path: Path | None = None):
        from mmsa.chem.conformer import ConformerFeaturizer
        from mmsa.chem.graph import GraphFeaturizer
        from mmsa.chem.image import ImageFeaturizer

        c = model.config
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.path = path
        self.checkpoint_hash = checkpoint_hash or "unsaved"
        self.graph_featurizer = build_featurizer(GraphFeaturizer, c.graph_featurizer)
        if (self.graph_featurizer.atom_dim, self.graph_featurizer.bond_dim) != (c.atom_dim,
                                                                                c.bond_dim):
            raise InputError(
                f"checkpoint expects atom/bond features of width {c.atom_dim}/{c.bond_dim}, "
                f"this mmsa.chem gives {self.graph_featurizer.atom_dim}/"
                f"{self.graph_featurizer.bond_dim}")
        self.image_featurizer = None
        if c.use_image:
            icfg = dict(c.image_featurizer or {})
            icfg.setdefault("size", c.image_size)
            self.image_featurizer = build_featurizer(ImageFeaturizer, icfg)
        self.conformer_featurizer = (build_featurizer(ConformerFeaturizer, c.conformer_featurizer)
                                     if c.use_geometry else None)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None,
             device: str | torch.device = "auto") -> Encoder:
        """Load a checkpoint (default: the shipped ``mmsa/weights/mmsa.pt``)."""
        path = Path(path) if path is not None else DEFAULT_CHECKPOINT
        if not path.is_file():
            hint = (" (the shipped checkpoint is missing: reinstall, or train one with "
                    "`mmsa pretrain`)") if path == DEFAULT_CHECKPOINT else ""
            raise InputError(f"checkpoint not found: {path}{hint}")
        model = model_from_checkpoint(read_checkpoint(path))
        return cls(model, device=device, checkpoint_hash=file_sha256(path), path=path)

    @property
    def dim(self) -> int:
        return int(self.model.config.dim)

    @property
    def num_slots(self) -> int:
        return int(self.model.num_slots)

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.model.config.modalities

    @property
    def config(self):
        return self.model.config

    def embed(self, smiles: Sequence[str], mode: str = "fast", batch_size: int = 1024,
              n_jobs: int = 1, progress: bool = False) -> EmbedResult:
        """Embed SMILES into L2-normalised vectors and memory-slot weights.

        Args:
            smiles: n SMILES strings.
            mode: ``"fast"`` (graph branch + memory readout) or ``"full"`` (graph + image + 3D
                fused; molecules whose conformer or image fails use the modalities they have).
            batch_size: molecules per model call.
            n_jobs: featurisation processes (``mmsa.chem.parallel.featurize_many``) when > 1.
            progress: show a tqdm bar.
        Returns:
            :class:`EmbedResult` with ``n`` rows in input order.
        """
        if mode not in MODES:
            raise InputError(f"unknown embedding mode {mode!r} (use one of {MODES})")
        smiles = list(smiles)
        n = len(smiles)
        vectors = np.full((n, self.dim), np.nan, dtype=np.float32)
        slots = np.full((n, self.num_slots), np.nan, dtype=np.float32)
        ok = np.zeros(n, dtype=bool)
        failures: list[Failure] = []
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, unit="mol", desc=f"embed ({mode})")
        # with worker processes, featurise large chunks (one pool start per chunk)
        chunk = batch_size if n_jobs <= 1 else max(batch_size, 16_384)
        for c0 in range(0, n, chunk):
            feats = _featurize_inputs(smiles[c0:c0 + chunk], self, mode, n_jobs)
            for b0 in range(0, len(feats.smiles), batch_size):
                res = _embed_features(feats.slice(b0, b0 + batch_size), self, mode)
                start = c0 + b0
                stop = start + len(res)
                vectors[start:stop] = res.vectors
                slots[start:stop] = res.slot_weights
                ok[start:stop] = res.ok
                failures.extend(Failure(f.row + start, f.input, f.reason) for f in res.failures)
                if bar is not None:
                    bar.update(len(res))
        if bar is not None:
            bar.close()
        return EmbedResult(vectors, slots, ok, failures)

    def modality_vectors(self, smiles: Sequence[str]) -> dict[str, np.ndarray]:
        """Each modality's L2-normalised code of each molecule (the shared space, before
        fusion and memory readout): ``{name: float32 [n, dim]}`` over ``self.modalities``,
        NaN rows where a molecule lacks that modality (graph failed, no conformer, no
        depiction). For a few molecules (it featurises images and 3D conformers): e.g. to
        say which modalities find two molecules alike."""
        smiles = list(smiles)
        n = len(smiles)
        out = {m: np.full((n, self.dim), np.nan, dtype=np.float32) for m in self.modalities}
        feats = _featurize_inputs(smiles, self, "full")
        keep = [i for i in range(n) if feats.graphs[i] is not None]
        if not keep:
            return out

        def pick(xs):
            return None if xs is None else [xs[i] for i in keep]

        batch = collate([feats.graphs[i] for i in keep], pick(feats.images),
                        pick(feats.conformers))
        with torch.inference_mode():
            codes = self.model.modality_codes(batch.to(self.device))
        rows = np.asarray(keep)
        for name, (z, mask) in codes.items():
            z = torch.nn.functional.normalize(z.float(), dim=-1).cpu().numpy()
            m = mask.cpu().numpy().astype(bool)
            out.setdefault(name, np.full((n, self.dim), np.nan, dtype=np.float32))
            out[name][rows[m]] = z[m]
        return out


@dataclass
class _Features:
    """Featurised inputs of a chunk (aligned lists; None where a featurizer failed)."""

    smiles: list[str]
    graphs: list
    reasons: dict[int, str]
    images: list | None = None
    conformers: list | None = None

    def slice(self, a: int, b: int) -> _Features:
        def cut(xs):
            return (None if xs is None else xs[a:b])
        return _Features(self.smiles[a:b], self.graphs[a:b],
                         {i - a: r for i, r in self.reasons.items() if a <= i < b},
                         cut(self.images), cut(self.conformers))


def _featurize_inputs(smiles: Sequence[str], encoder: Encoder, mode: str,
                      n_jobs: int = 1) -> _Features:
    smiles = [str(s) if s is not None else "" for s in smiles]
    graphs, reasons = featurize(encoder.graph_featurizer, smiles, n_jobs)
    for i, g in enumerate(graphs):
        if g is not None and g.x.shape[0] == 0:
            graphs[i] = None
            reasons[i] = "molecule has no heavy atoms"
    feats = _Features(smiles, graphs, reasons)
    if mode == "full":
        # image/3D of molecules whose graph failed are not needed: featurise "" -> failure
        todo = [s if graphs[i] is not None else "" for i, s in enumerate(smiles)]
        if encoder.image_featurizer is not None:
            feats.images = featurize(encoder.image_featurizer, todo, n_jobs)[0]
        if encoder.conformer_featurizer is not None:
            feats.conformers = featurize(encoder.conformer_featurizer, todo, n_jobs)[0]
    return feats


def _embed_features(feats: _Features, encoder: Encoder, mode: str) -> EmbedResult:
    n = len(feats.smiles)
    vectors = np.full((n, encoder.dim), np.nan, dtype=np.float32)
    slots = np.full((n, encoder.num_slots), np.nan, dtype=np.float32)
    ok = np.zeros(n, dtype=bool)
    keep = [i for i in range(n) if feats.graphs[i] is not None]
    if keep:
        def pick(xs):
            return (None if xs is None else [xs[i] for i in keep])
        batch: MMSABatch = collate([feats.graphs[i] for i in keep], pick(feats.images),
                                   pick(feats.conformers))
        with torch.inference_mode():
            v, w = encoder.model.embed(batch.to(encoder.device), mode=mode)
        vectors[keep] = v.float().cpu().numpy()
        slots[keep] = w.float().cpu().numpy()
        ok[keep] = True
    failures = [Failure(i, feats.smiles[i], feats.reasons[i]) for i in sorted(feats.reasons)]
    return EmbedResult(vectors, slots, ok, failures)


def embed_batch(smiles: Sequence[str], encoder: Encoder, mode: str = "fast",
                n_jobs: int = 1) -> EmbedResult:
    """Embed one batch: a pure function of the SMILES and the checkpoint (rows do not affect
    each other), so chunked or distributed engines can call it unchanged."""
    if mode not in MODES:
        raise InputError(f"unknown embedding mode {mode!r} (use one of {MODES})")
    return _embed_features(_featurize_inputs(smiles, encoder, mode, n_jobs), encoder, mode)
