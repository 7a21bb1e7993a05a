"""The MMSA configuration (every field that rebuilds a model) and the training presets."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

from mmsa.types import InputError

log = logging.getLogger(__name__)


LOSS_TERMS = ("recon", "contrast", "hyper", "mem_align", "mem_assign", "fp", "desc", "sim", "vic")
CHECKPOINT_FORMAT = 1


@dataclass
class MMSAConfig:
    """Everything that rebuilds an :class:`MMSA` model (stored in checkpoints).

    Feature sizes (``atom_dim``, ``bond_dim``, ``image_channels``, ``image_size``) come from
    the featurizers (:meth:`from_featurizers`), never from literals; the featurizers' own
    ``config()`` dicts are stored too so the encoder rebuilds the same featurisation.
    """

    atom_dim: int
    bond_dim: int
    image_channels: int = 3
    image_size: int = 64
    dim: int = 256  # shared embedding space (the vectors users get)
    feature_dim: int = 256  # output width of each modality extractor
    ae_hidden: int = 256  # hidden width of the modality auto-encoders
    graph_hidden: int = 128
    graph_layers: int = 3
    image_widths: tuple[int, ...] = (16, 32, 64, 128)
    geom_hidden: int = 64
    geom_filters: int = 64
    geom_interactions: int = 3
    geom_gaussians: int = 20
    cutoff: float = 5.0
    num_slots: int = 64
    knn: int = 4
    tau: float = 0.1  # InfoNCE temperature
    memory_tau: float = 0.1  # anchor-assignment temperature
    sinkhorn_eps: float = 0.05
    readout_weight: float = 0.5  # embedding = norm(z + readout_weight * memory_readout(z))
    use_image: bool = True
    use_geometry: bool = True
    use_hypergraph: bool = True
    use_memory: bool = True
    aug_node_mask: float = 0.15  # graph-only ablation: augmented-view node masking rate
    aug_edge_drop: float = 0.15  # graph-only ablation: augmented-view edge dropping rate
    w_recon: float = 1.0
    w_contrast: float = 1.0
    w_hyper: float = 1.0
    w_mem_align: float = 1.0
    w_mem_assign: float = 1.0
    # chemistry-aware objective (0 / absent in the first checkpoint; see MODEL_CARD.md)
    target_bits: int = 0  # folded Morgan count targets (mmsa.chem.targets), 0 = no decoder
    n_descriptors: int = 0  # RDKit descriptor targets (len(DESCRIPTOR_NAMES))
    w_fp: float = 0.0  # fingerprint-environment decoding (BCE) from every modality's code
    w_desc: float = 0.0  # descriptor decoding (MSE) from every modality's code
    w_sim: float = 0.0  # Tanimoto-kernel neighbour distillation on the fast embedding
    w_vic: float = 0.0  # VICReg variance + vic_cov * covariance on the graph code
    vic_cov: float = 0.04
    sim_tau: float = 0.1
    sim_tau_target: float = 0.05
    sim_queue: int = 0  # earlier batches' vectors + fingerprints in the distillation (0 = in-batch)
    hyper_source: str = "embedding"  # hyperedges from "embedding" kNN or "tanimoto" kNN
    graph_featurizer: dict = field(default_factory=dict)
    image_featurizer: dict = field(default_factory=dict)
    conformer_featurizer: dict = field(default_factory=dict)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities this model was built with (``graph`` always)."""
        mods = ["graph"]
        if self.use_image:
            mods.append("image")
        if self.use_geometry:
            mods.append("geometry")
        return tuple(mods)

    def to_dict(self) -> dict:
        """Primitive-typed dict (lists, not tuples) safe for ``torch.load(weights_only=True)``."""
        d = dataclasses.asdict(self)
        d["image_widths"] = [int(w) for w in self.image_widths]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> MMSAConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            log.warning("ignoring unknown config keys %s", sorted(unknown))
        d = {k: v for k, v in d.items() if k in known}
        if "image_widths" in d:
            d["image_widths"] = tuple(d["image_widths"])
        return cls(**d)

    @classmethod
    def from_featurizers(cls, graph, image=None, conformer=None, **overrides) -> MMSAConfig:
        """Config whose feature sizes and featurizer configs come from the featurizer objects."""
        kw: dict[str, Any] = {"atom_dim": int(graph.atom_dim), "bond_dim": int(graph.bond_dim),
                              "graph_featurizer": dict(graph.config())}
        if image is not None:
            c, h, _ = image.shape
            kw.update(image_channels=int(c), image_size=int(h), image_featurizer=dict(image.config()))
        if conformer is not None:
            kw["conformer_featurizer"] = dict(conformer.config())
        kw.update(overrides)
        return cls(**kw)

    @classmethod
    def tiny(cls, **overrides) -> MMSAConfig:
        """A very small model for tests (default featurizers, 32 px images, narrow widths)."""
        from mmsa.chem.conformer import ConformerFeaturizer
        from mmsa.chem.graph import GraphFeaturizer
        from mmsa.chem.image import ImageFeaturizer

        kw = dict(dim=16, feature_dim=16, ae_hidden=16, graph_hidden=16, graph_layers=2,
                  image_widths=(4, 8, 8, 16), geom_hidden=16, geom_filters=16,
                  geom_interactions=2, geom_gaussians=10, num_slots=8, knn=3)
        kw.update(overrides)
        size = int(kw.pop("image_size", 32))
        return cls.from_featurizers(GraphFeaturizer(), ImageFeaturizer(size=size),
                                    ConformerFeaturizer(), **kw)


def build_config(preset: str = "default", image_size: int | None = None,
                 **overrides) -> MMSAConfig:
    """Config from the current featurizers: ``preset`` "default" (the shipped model's widths)
    or "tiny" (tests), then ``overrides`` (any :class:`MMSAConfig` field)."""
    from mmsa.chem.conformer import ConformerFeaturizer
    from mmsa.chem.graph import GraphFeaturizer
    from mmsa.chem.image import ImageFeaturizer

    if preset == "tiny":
        if image_size is not None:
            overrides.setdefault("image_size", image_size)
        config = MMSAConfig.tiny(**overrides)
        return config
    if preset != "default":
        raise InputError(f"unknown preset {preset!r}")
    from mmsa.chem.targets import DESCRIPTOR_NAMES, TARGET_BITS

    for key, value in CHEMISTRY_DEFAULTS.items():
        overrides.setdefault(key, value)
    overrides.setdefault("target_bits", TARGET_BITS)
    overrides.setdefault("n_descriptors", len(DESCRIPTOR_NAMES))
    image = ImageFeaturizer(size=image_size or DEFAULT_IMAGE_SIZE)
    # Heavy-atom ETKDG (no explicit hydrogens): 2.5x faster on CPU, and SchNet sees heavy
    # atoms only (see MODEL_CARD.md).
    conformer = ConformerFeaturizer(hydrogens=False)
    return MMSAConfig.from_featurizers(GraphFeaturizer(), image, conformer, **overrides)


DEFAULT_IMAGE_SIZE = 64
# The chemistry-aware objective of the second checkpoint (weights chosen by the sweep in
# benchmarks/diagnose.py, see MODEL_CARD.md).
CHEMISTRY_DEFAULTS = {"w_fp": 1.0, "w_desc": 1.0, "w_sim": 1.0, "w_vic": 1.0,
                      "w_mem_align": 0.2, "w_mem_assign": 0.2, "w_hyper": 0.5,
                      "hyper_source": "tanimoto"}
