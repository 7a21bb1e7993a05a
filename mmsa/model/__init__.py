"""The MMSA model side: configuration, batches, network, checkpoints, pre-training, encoder.

- :mod:`~mmsa.model.config`: :class:`MMSAConfig`, the loss terms, ``build_config`` presets;
- :mod:`~mmsa.model.batch`: ``collate`` of featurised molecules into an :class:`MMSABatch`;
- :mod:`~mmsa.model.network`: the composed :class:`MMSA` model and its losses;
- :mod:`~mmsa.model.checkpoint`: save / read / load / export (``weights_only=True``);
- :mod:`~mmsa.model.featurize`, :mod:`~mmsa.model.device`: featurizers rebuilt from a
  checkpoint, the device rule, shared by training and the encoder;
- :mod:`~mmsa.model.train`: the pre-training loop (``mmsa pretrain``);
- :mod:`~mmsa.model.corpus`: the ChEMBL + MOSES corpus, cached targets, analogue batches;
- :mod:`~mmsa.model.encoder`: :class:`~mmsa.model.encoder.Encoder`, what libraries and the
  app embed with.

The names below are the model's public API; training and the encoder are imported from their
modules (they pull in featurisation and data code that a model user does not need).
"""

from mmsa.model.batch import MMSABatch, augment_graph, collate
from mmsa.model.checkpoint import (
    export_checkpoint,
    load_checkpoint,
    model_from_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from mmsa.model.config import CHECKPOINT_FORMAT, LOSS_TERMS, MMSAConfig, build_config
from mmsa.model.network import MMSA

__all__ = [
    "CHECKPOINT_FORMAT", "LOSS_TERMS", "MMSA", "MMSABatch", "MMSAConfig", "augment_graph",
    "build_config", "collate", "export_checkpoint", "load_checkpoint", "model_from_checkpoint",
    "read_checkpoint", "save_checkpoint",
]
