"""Pre-training: featurise a SMILES set once (cached), then train MMSA on it.

    from mmsa.model import MMSAConfig
    from mmsa.train import pretrain
    result = pretrain(config, smiles, "runs/mmsa", steps=2000, seed=0)

Writes into ``out_dir``: ``config.json`` (the resolved configuration and training arguments),
``log.csv`` (every step: loss terms, learning rate, memory entropies, wall time),
``last.pt`` (periodic training checkpoint with optimizer state, for ``resume=True``) and
``model.pt`` (the final model). All checkpoints load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mmsa.model import (
    LOSS_TERMS,
    MMSA,
    MMSABatch,
    MMSAConfig,
    read_checkpoint,
    save_checkpoint,
)
from mmsa.paths import cache_dir
from mmsa.types import InputError

log = logging.getLogger(__name__)

LOG_COLUMNS = ("step", "epoch", "wall_s", "lr", "loss", *LOSS_TERMS, "mem_entropy_marginal",
               "mem_entropy_row")


# --------------------------------------------------------------------------- packed features
@dataclass
class PackedFeatures:
    """Featurised molecules packed into flat numpy arrays (fast batching, no pickles on disk).

    Graph: ``x [sum N, atom_dim]`` (uint8 when one-hot), ``node_ptr [n + 1]``,
    ``edge_index [2, sum E]`` (local atom indices), ``edge_attr [sum E, bond_dim]``,
    ``edge_ptr [n + 1]``. Image: ``images uint8 [n, C, H, W]`` or None, ``image_ok [n]``.
    Conformer: ``conf_z [sum N3]``, ``conf_pos [sum N3, 3]``, ``conf_ptr [n + 1]``,
    ``conf_ok [n]``. ``rows [n]``: position of each molecule in the SMILES list it came from.
    """

    x: np.ndarray
    node_ptr: np.ndarray
    edge_index: np.ndarray
    edge_attr: np.ndarray
    edge_ptr: np.ndarray
    rows: np.ndarray
    images: np.ndarray | None = None
    image_ok: np.ndarray | None = None
    conf_z: np.ndarray | None = None
    conf_pos: np.ndarray | None = None
    conf_ptr: np.ndarray | None = None
    conf_ok: np.ndarray | None = None
    image_row: np.ndarray | None = None  # int32 [n]: row of ``images`` per molecule, -1 none
    fp_counts: np.ndarray | None = None  # uint8 [n, bits]: Morgan count targets
    descriptors: np.ndarray | None = None  # float32 [n, D]: standardised descriptor targets
    desc_centre: np.ndarray | None = None  # [D] training statistics of the standardisation
    desc_scale: np.ndarray | None = None
    scaffold: np.ndarray | None = None  # int64 [n]: Murcko scaffold group, -1 none
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.node_ptr) - 1

    def save(self, path: str | os.PathLike) -> None:
        arrays = {k: v for k, v in self.__dict__.items()
                  if isinstance(v, np.ndarray)}
        tmp = Path(str(path) + ".tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> PackedFeatures:
        with np.load(path, allow_pickle=False) as data:
            return cls(**{k: data[k] for k in data.files})

    def batch(self, idx: np.ndarray) -> MMSABatch:
        """Collate molecules ``idx`` into an :class:`MMSABatch`."""
        idx = np.asarray(idx)
        b = len(idx)
        n0, n1 = self.node_ptr[idx], self.node_ptr[idx + 1]
        e0, e1 = self.edge_ptr[idx], self.edge_ptr[idx + 1]
        sizes = n1 - n0
        node_sel = np.concatenate([np.arange(s, e) for s, e in zip(n0, n1)])
        edge_sel = np.concatenate([np.arange(s, e) for s, e in zip(e0, e1)])
        offsets = np.cumsum(sizes) - sizes
        shift = np.repeat(offsets, e1 - e0)
        ei = self.edge_index[:, edge_sel].astype(np.int64) + shift
        out = MMSABatch(
            x=torch.from_numpy(self.x[node_sel].astype(np.float32)),
            edge_index=torch.from_numpy(ei),
            edge_attr=torch.from_numpy(self.edge_attr[edge_sel].astype(np.float32)),
            batch=torch.from_numpy(np.repeat(np.arange(b), sizes)), num_graphs=b)
        if self.images is not None and self.image_row is not None:
            rows = self.image_row[idx]
            have = rows >= 0
            stack = np.zeros((b, *self.images.shape[1:]), dtype=np.uint8)
            stack[have] = self.images[rows[have]]
            out.images = torch.from_numpy(stack)
            out.image_mask = torch.from_numpy(have.copy())
        elif self.images is not None:
            out.images = torch.from_numpy(self.images[idx])
            out.image_mask = torch.from_numpy(self.image_ok[idx].copy())
        if self.fp_counts is not None:
            out.fp_counts = torch.from_numpy(self.fp_counts[idx])
            out.descriptors = torch.from_numpy(self.descriptors[idx].astype(np.float32))
        if self.conf_ptr is not None:
            mask = self.conf_ok[idx]
            have = np.flatnonzero(mask)
            c0, c1 = self.conf_ptr[idx[have]], self.conf_ptr[idx[have] + 1]
            if len(have):
                sel = np.concatenate([np.arange(s, e) for s, e in zip(c0, c1)])
                out.z = torch.from_numpy(self.conf_z[sel].astype(np.int64))
                out.pos = torch.from_numpy(self.conf_pos[sel].astype(np.float32))
                out.pos_batch = torch.from_numpy(np.repeat(have, c1 - c0))
            out.geom_mask = torch.from_numpy(mask.copy())
        return out


def pack_features(graphs: list, images: list | None = None,
                  conformers: list | None = None) -> PackedFeatures:
    """Pack aligned featurizer outputs (graphs must all be valid; images/conformers may hold
    None or failures) into :class:`PackedFeatures`."""
    n = len(graphs)
    sizes = np.array([g.x.shape[0] for g in graphs], dtype=np.int64)
    esizes = np.array([g.edge_index.shape[1] for g in graphs], dtype=np.int64)
    x = np.concatenate([g.x for g in graphs])
    if np.array_equal(x, x.astype(np.uint8)):
        x = x.astype(np.uint8)
    ea = np.concatenate([g.edge_attr for g in graphs])
    if np.array_equal(ea, ea.astype(np.uint8)):
        ea = ea.astype(np.uint8)
    packed = PackedFeatures(
        x=x, node_ptr=np.concatenate([[0], np.cumsum(sizes)]),
        edge_index=np.concatenate([g.edge_index for g in graphs], axis=1).astype(np.int32),
        edge_attr=ea, edge_ptr=np.concatenate([[0], np.cumsum(esizes)]),
        rows=np.arange(n, dtype=np.int64))
    if images is not None:
        first = next((im for im in images if im is not None), None)
        if first is not None:
            packed.images = np.zeros((n, *first.shape), dtype=np.uint8)
            packed.image_ok = np.zeros(n, dtype=bool)
            for i, im in enumerate(images):
                if im is not None:
                    packed.images[i] = im
                    packed.image_ok[i] = True
    if conformers is not None:
        pack_conformers(packed, conformers)
    return packed


def pack_conformers(packed: PackedFeatures, conformers: list) -> None:
    """Set ``packed``'s conformer arrays from ``conformers`` (aligned with its molecules;
    ``None`` or a failure where a molecule has none)."""
    ok = np.array([c is not None and hasattr(c, "pos") and len(c.z) > 0 for c in conformers],
                  dtype=bool)
    csz = np.array([len(c.z) if o else 0 for c, o in zip(conformers, ok)], dtype=np.int64)
    good = [c for c, o in zip(conformers, ok) if o]
    packed.conf_ok = ok
    packed.conf_ptr = np.concatenate([[0], np.cumsum(csz)])
    packed.conf_z = (np.concatenate([np.asarray(c.z) for c in good]).astype(np.uint8)
                     if good else np.zeros(0, np.uint8))
    packed.conf_pos = (np.concatenate([np.asarray(c.pos) for c in good]).astype(np.float32)
                       if good else np.zeros((0, 3), np.float32))


def _featurize_all(featurizer, smiles: list[str], n_jobs: int, progress: bool,
                   cache: bool = True, block: int = 10_000) -> list:
    """Featurizer outputs aligned with ``smiles``; None where featurisation failed.

    Uses ``mmsa.chem.parallel.featurize_many`` (worker processes, on-disk cache) unless a
    single process without cache is asked for.
    """
    if n_jobs <= 1 and not cache:
        from mmsa.encoder import _featurize

        return _featurize(featurizer, smiles, 1)[0]
    from mmsa.chem.parallel import featurize_many

    out: list = []
    for start in range(0, len(smiles), block):  # cached block by block: an interrupted
        part = smiles[start:start + block]       # run resumes from the last finished block
        results, failures = featurize_many(featurizer, part, n_jobs=n_jobs, progress=progress,
                                           cache=cache)
        failed = {f.row for f in failures}
        out.extend(None if i in failed else r for i, r in enumerate(results))
    return out


def _smiles_key(smiles: list[str]) -> str:
    h = hashlib.sha256()
    for s in smiles:
        h.update(s.encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


def featurize_for_pretraining(config: MMSAConfig, smiles: list[str], n_jobs: int = 2,
                              progress: bool = False, cache: bool = True) -> PackedFeatures:
    """Featurise ``smiles`` with every modality ``config`` uses; cached under
    ``$MMSA_CACHE/pretrain``. Molecules whose graph fails are left out (``rows`` says which
    remain); failed images/conformers are masked."""
    from mmsa.chem.conformer import ConformerFeaturizer
    from mmsa.chem.graph import GraphFeaturizer
    from mmsa.chem.image import ImageFeaturizer
    from mmsa.encoder import _build

    smiles = [str(s) for s in smiles]
    gf = _build(GraphFeaturizer, config.graph_featurizer)
    if (gf.atom_dim, gf.bond_dim) != (config.atom_dim, config.bond_dim):
        raise InputError("config feature sizes do not match mmsa.chem.graph.GraphFeaturizer")
    feats = {"graph": gf.config()}
    imf = cf = None
    if config.use_image:
        icfg = dict(config.image_featurizer or {})
        icfg.setdefault("size", config.image_size)
        imf = _build(ImageFeaturizer, icfg)
        feats["image"] = imf.config()
    if config.use_geometry:
        cf = _build(ConformerFeaturizer, config.conformer_featurizer)
        feats["conformer"] = cf.config()
    key = hashlib.sha256(json.dumps(feats, sort_keys=True, default=str).encode()
                         + _smiles_key(smiles).encode()).hexdigest()[:20]
    path = cache_dir() / "pretrain" / f"{key}.npz"
    if cache and path.is_file():
        log.info("loading packed features from %s", path)
        return PackedFeatures.load(path)
    log.info("featurising %d molecules (%s)", len(smiles), ", ".join(feats))
    graphs = _featurize_all(gf, smiles, n_jobs, progress, cache)
    keep = [i for i, g in enumerate(graphs) if g is not None and g.x.shape[0] > 0]
    if not keep:
        raise InputError("no molecule could be featurised")
    if len(keep) < len(smiles):
        log.warning("%d of %d molecules failed graph featurisation and are left out",
                    len(smiles) - len(keep), len(smiles))
    sub = [smiles[i] for i in keep]
    images = _featurize_all(imf, sub, n_jobs, progress, cache) if imf is not None else None
    confs = _featurize_all(cf, sub, n_jobs, progress, cache) if cf is not None else None
    packed = pack_features([graphs[i] for i in keep], images, confs)
    packed.rows = np.asarray(keep, dtype=np.int64)
    if confs is not None:
        log.info("conformers: %d of %d", int(packed.conf_ok.sum()), len(packed))
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        packed.save(path)
        log.info("packed features written to %s", path)
    return packed


# --------------------------------------------------------------------------- training
@dataclass
class PretrainResult:
    """What :func:`pretrain` produced."""

    checkpoint: Path
    out_dir: Path
    steps: int
    wall_time_s: float
    num_molecules: int
    final_losses: dict[str, float]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _lr_at(step: int, steps: int, lr: float, warmup: int, time_frac: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to 5% of ``lr`` over the run; the run's progress is
    the larger of the step fraction and ``time_frac`` (the fraction of a time budget used)."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = max((step - warmup) / max(1, steps - warmup), time_frac)
    return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def pretrain(config: MMSAConfig, smiles: list[str] | None, out_dir: str | os.PathLike,
             steps: int = 1000, seed: int = 0, batch_size: int = 128, lr: float = 1e-3,
             weight_decay: float = 1e-5, warmup: int = 100, n_jobs: int = 2,
             checkpoint_every: int = 200, resume: bool = False, device: str = "auto",
             progress: bool = False, max_minutes: float | None = None,
             features: PackedFeatures | None = None, cache: bool = True,
             threads: int | None = 1, analogue_fraction: float = 0.0) -> PretrainResult:
    """Pre-train MMSA (see module docstring for the files written to ``out_dir``).

    Args:
        config: model configuration (``use_image``/``use_geometry``/``use_hypergraph``/
            ``use_memory`` switch the ablations; both modality switches off = graph vs
            augmented-graph contrastive).
        smiles: training molecules (ignored when ``features`` is given).
        steps: optimisation steps (the cosine schedule spans them).
        seed: seeds weights, batch order and augmentations.
        max_minutes: time budget: stop (with a final checkpoint) after this much training
            time (resumed runs count their earlier time) and pace the cosine learning-rate
            decay by whichever of steps and time runs out first.
        features: pre-packed features (from :func:`featurize_for_pretraining`).
        resume: continue from ``out_dir/last.pt`` (same config and data).
        analogue_fraction: share of each batch drawn as pairs of molecules with the same
            Murcko scaffold (needs ``features.scaffold``; 0 = uniform batches).
        threads: torch CPU threads while training (restored afterwards; None keeps torch's
            setting). One thread is the default: on a shared 2-core machine two OpenMP threads
            were 3-50x slower per step than one (they wait on each other when descheduled).
    Returns:
        :class:`PretrainResult`; the final model is ``out_dir/model.pt``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    if features is None:
        if not smiles:
            raise InputError("no SMILES to pre-train on")
        features = featurize_for_pretraining(config, list(smiles), n_jobs=n_jobs,
                                             progress=progress, cache=cache)
    n = len(features)
    if n < 2:
        raise InputError("pre-training needs at least 2 molecules")
    batch_size = min(batch_size, n)
    old_threads = torch.get_num_threads()
    if threads is not None and dev.type == "cpu":
        torch.set_num_threads(threads)
    try:
        return _train(config, features, out, dev, steps, seed, batch_size, lr, weight_decay,
                      warmup, checkpoint_every, resume, progress, max_minutes,
                      analogue_fraction)
    finally:
        torch.set_num_threads(old_threads)


def _train(config: MMSAConfig, features: PackedFeatures, out: Path, dev: torch.device,
           steps: int, seed: int, batch_size: int, lr: float, weight_decay: float, warmup: int,
           checkpoint_every: int, resume: bool, progress: bool,
           max_minutes: float | None, analogue_fraction: float = 0.0) -> PretrainResult:
    n = len(features)
    torch.manual_seed(seed)
    model = MMSA(config).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    start_step, elapsed0 = 0, 0.0
    last = out / "last.pt"
    if resume and last.is_file():
        ckpt = read_checkpoint(last)
        if ckpt["hyper_parameters"] != config.to_dict():
            raise InputError(f"cannot resume: {last} was trained with another config")
        model.load_state_dict(ckpt["state_dict"])
        opt.load_state_dict(ckpt["extra"]["optimizer"])
        start_step = int(ckpt["extra"]["step"])
        elapsed0 = float(ckpt["extra"].get("wall_time_s", 0.0))
        log.info("resuming from %s at step %d", last, start_step)
    elif resume:
        log.warning("no %s to resume from: starting fresh", last)
    args = {"steps": steps, "seed": seed, "batch_size": batch_size, "lr": lr,
            "weight_decay": weight_decay, "warmup": warmup, "num_molecules": n,
            "device": str(dev), "max_minutes": max_minutes,
            "analogue_fraction": analogue_fraction,
            "torch_threads": torch.get_num_threads()}
    (out / "config.json").write_text(json.dumps({"model": config.to_dict(), "training": args},
                                                indent=2))
    log_path = out / "log.csv"
    new_log = start_step == 0 or not log_path.is_file()
    if not new_log:  # drop rows logged after the checkpoint we resume from
        with open(log_path, newline="") as fh:
            rows = list(csv.reader(fh))
        with open(log_path, "w", newline="") as fh:
            csv.writer(fh).writerows([rows[0]] + [r for r in rows[1:]
                                                  if r and int(r[0]) <= start_step])
    log_fh = open(log_path, "w" if new_log else "a", newline="")
    writer = csv.writer(log_fh)
    if new_log:
        writer.writerow(LOG_COLUMNS)
    steps_per_epoch = max(1, n // batch_size)
    gen = torch.Generator().manual_seed(seed + 1)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, initial=start_step, unit="step", desc="pretrain")
    t0 = time.monotonic()
    perm_epoch, perm = -1, None
    step = start_step
    terms: dict[str, float] = {}

    def save(path: Path, final: bool = False) -> None:
        extra = {"step": step, "wall_time_s": elapsed0 + time.monotonic() - t0,
                 "num_molecules": n, "seed": seed}
        if features.desc_centre is not None:  # descriptor standardisation of the targets
            extra["descriptor_centre"] = [float(v) for v in features.desc_centre]
            extra["descriptor_scale"] = [float(v) for v in features.desc_scale]
        if not final:
            extra["optimizer"] = opt.state_dict()
        save_checkpoint(model, path, extra=extra)

    try:
        model.train()
        while step < steps:
            epoch = step // steps_per_epoch
            if epoch != perm_epoch:
                perm = np.random.default_rng([seed, epoch]).permutation(n)
                perm_epoch = epoch
            k = step % steps_per_epoch
            if analogue_fraction > 0 and features.scaffold is not None:
                idx = analogue_batch(features, np.random.default_rng([seed, step]), batch_size,
                                     analogue_fraction)
            else:
                idx = perm[k * batch_size:(k + 1) * batch_size]
            batch = features.batch(idx).to(dev)
            time_frac = 0.0
            if max_minutes:
                time_frac = (elapsed0 + time.monotonic() - t0) / (60 * max_minutes)
            cur_lr = _lr_at(step, steps, lr, warmup, time_frac)
            for group in opt.param_groups:
                group["lr"] = cur_lr
            losses = model.losses(batch, generator=gen)
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            step += 1
            terms = {k: float(v.detach()) for k, v in losses.items()}
            h_m = terms.get("mem_entropy_marginal", float("nan"))
            h_r = terms.get("mem_entropy_row", float("nan"))
            wall = elapsed0 + time.monotonic() - t0
            writer.writerow([step, epoch, f"{wall:.2f}", f"{cur_lr:.6g}", f"{terms['loss']:.6f}",
                             *(f"{terms[t]:.6f}" for t in LOSS_TERMS), f"{h_m:.4f}",
                             f"{h_r:.4f}"])
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{terms['loss']:.3f}", epoch=epoch)
            if step % checkpoint_every == 0:
                log_fh.flush()
                save(last)
            if max_minutes is not None and wall > 60 * max_minutes:  # resumed time counts
                log.info("time budget of %.1f min reached at step %d", max_minutes, step)
                break
    finally:
        log_fh.close()
        if bar is not None:
            bar.close()
    model.eval()
    save(last)
    final = out / "model.pt"
    save(final, final=True)
    wall = elapsed0 + time.monotonic() - t0
    log.info("pre-training done: %d steps, %.0f s, final loss %.4f", step, wall,
             terms.get("loss", float("nan")))
    return PretrainResult(final, out, step, wall, n, terms)


def load_training_log(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Columns of a ``log.csv`` as float arrays."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return {c: np.zeros(0) for c in LOG_COLUMNS}
    return {c: np.array([float(r[c]) for r in rows]) for c in rows[0]}


def plot_loss_curves(log_csv: str | os.PathLike, png: str | os.PathLike,
                     smooth: int = 25) -> Path:
    """Plot every loss term of a training log (moving average of ``smooth`` steps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = load_training_log(log_csv)
    terms = ["loss", *(t for t in LOSS_TERMS if t in data and np.nanmax(np.abs(data[t])) > 0)]
    cols = 5 if len(terms) > 6 else 3
    rows = -(-len(terms) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.2 * rows), sharex=True,
                             squeeze=False)
    for ax in axes.ravel()[len(terms):]:
        ax.set_visible(False)
    kernel = np.ones(max(1, smooth)) / max(1, smooth)
    for ax, term in zip(axes.ravel(), terms):
        y = data[term]
        ax.plot(data["step"], y, color="0.8", lw=0.6)
        if len(y) >= len(kernel):
            ax.plot(data["step"][len(kernel) - 1:], np.convolve(y, kernel, mode="valid"),
                    color="C0", lw=1.4)
        ax.set_title(term)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("step")
    fig.suptitle("MMSA pre-training losses (grey: per step; blue: moving average)")
    fig.tight_layout()
    png = Path(png)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def export_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, half: bool = False,
                      extra: dict | None = None) -> Path:
    """Copy the model of a training checkpoint to ``dst`` without optimizer state."""
    from mmsa.model import model_from_checkpoint

    ckpt = read_checkpoint(src)
    model = model_from_checkpoint(ckpt)
    info = {k: v for k, v in ckpt.get("extra", {}).items() if k != "optimizer"}
    info.update(extra or {})
    return save_checkpoint(model, dst, extra=info, half=half)


def moses_training_smiles(n: int, seed: int = 0) -> list[str]:
    """``n`` SMILES drawn (seeded) from the MOSES training split (``mmsa.data.fetch``)."""
    import pandas as pd

    from mmsa.data import fetch

    df = pd.read_csv(fetch("moses"), usecols=["smiles", "split"])
    train = df.loc[df["split"] == "train", "smiles"].to_numpy()
    if n > len(train):
        raise InputError(f"MOSES has only {len(train)} training molecules")
    rng = np.random.default_rng(seed)
    return [str(s) for s in train[np.sort(rng.choice(len(train), n, replace=False))]]


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


# --------------------------------------------------------------------------- the corpus
EVALUATION_SETS = ("b3db", "b3db-regression", "freesolv", "solubility", "cdk2", "egfr",
                   "approved-drugs")
_ORGANIC = frozenset((1, 5, 6, 7, 8, 9, 14, 15, 16, 17, 34, 35, 53))


def _canonical_or_none(smiles: str) -> str | None:
    from mmsa.chem.standardize import standardize_or_reason

    std, _ = standardize_or_reason(smiles)
    return std


def _druglike(smiles: str, min_heavy: int = 6, max_heavy: int = 60) -> bool:
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    if mol is None or not min_heavy <= mol.GetNumHeavyAtoms() <= max_heavy:
        return False
    return all(a.GetAtomicNum() in _ORGANIC for a in mol.GetAtoms())


def _canonical_druglike_block(smiles: list[str]) -> list[str | None]:
    from rdkit.rdBase import BlockLogs

    out: list[str | None] = []
    with BlockLogs():
        for s in smiles:
            c = _canonical_or_none(s)
            out.append(c if c is not None and _druglike(c) else None)
    return out


def _map_blocks(fn, items: list, n_jobs: int, block: int = 5_000) -> list:
    """``fn`` over blocks of ``items`` in ``n_jobs`` processes, results concatenated in order."""
    blocks = [items[i:i + block] for i in range(0, len(items), block)]
    if n_jobs <= 1:
        parts = [fn(b) for b in blocks]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(n_jobs, mp_context=multiprocessing.get_context("spawn")) as ex:
            parts = list(ex.map(fn, blocks))
    return parts


def pretraining_corpus(n_molecules: int = 500_000, seed: int = 0, n_jobs: int = 2,
                       cache: bool = True) -> list[str]:
    """The pre-training set: every drug-like ChEMBL molecule of ``chembl-sample`` plus MOSES
    training molecules up to ``n_molecules``, standardised (largest fragment, neutral),
    canonical, distinct, without any molecule of the evaluation sets
    (:data:`EVALUATION_SETS`), shuffled with ``seed``. Cached under ``$MMSA_CACHE/pretrain``.

    Drug-like: 6-60 heavy atoms of H, B, C, N, O, F, Si, P, S, Cl, Se, Br, I.
    """
    import pandas as pd

    from mmsa.data import fetch

    path = cache_dir() / "pretrain" / f"corpus-{n_molecules}-{seed}.txt"
    if cache and path.is_file():
        return path.read_text().split("\n")
    exclude: set[str] = set()
    for name in EVALUATION_SETS:
        df = pd.read_csv(fetch(name), usecols=["smiles"])
        exclude.update(c for c in _canonical_blocks(df["smiles"].astype(str).tolist(), n_jobs)
                       if c)
    chembl = pd.read_csv(fetch("chembl-sample"), usecols=["smiles"])["smiles"].astype(str)
    seen: dict[str, None] = {}
    for c in _canonical_blocks(chembl.tolist(), n_jobs):
        if c and c not in exclude:
            seen.setdefault(c, None)
    n_chembl = len(seen)
    need = n_molecules - n_chembl
    if need > 0:
        moses = moses_training_smiles(min(need + need // 10 + 1000, 1_500_000), seed=seed)
        for c in _canonical_blocks(moses, n_jobs):
            if len(seen) >= n_molecules:
                break
            if c and c not in exclude:
                seen.setdefault(c, None)
    smiles = list(seen)[:n_molecules]
    if len(smiles) < n_molecules:
        log.warning("corpus has %d molecules (asked %d)", len(smiles), n_molecules)
    order = np.random.default_rng(seed).permutation(len(smiles))
    smiles = [smiles[i] for i in order]
    log.info("corpus: %d molecules (%d drug-like ChEMBL, %d MOSES), %d evaluation "
             "molecules excluded", len(smiles), min(n_chembl, len(smiles)),
             max(0, len(smiles) - n_chembl), len(exclude))
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text("\n".join(smiles))
        os.replace(tmp, path)
    return smiles


def _canonical_blocks(smiles: list[str], n_jobs: int) -> list[str | None]:
    out: list[str | None] = []
    for part in _map_blocks(_canonical_druglike_block, smiles, n_jobs):
        out.extend(part)
    return out


def _targets_block(smiles: list[str]) -> dict[str, np.ndarray]:
    from mmsa.chem.targets import compute_targets

    return compute_targets(smiles)


def compute_corpus_targets(smiles: list[str], n_jobs: int = 2) -> dict[str, np.ndarray]:
    """Morgan count targets, raw descriptors and scaffold groups for ``smiles``."""
    from mmsa.chem.targets import scaffold_ids

    parts = _map_blocks(_targets_block, smiles, n_jobs)
    keys = np.concatenate([p["scaffold_key"] for p in parts])
    return {"counts": np.concatenate([p["counts"] for p in parts]),
            "descriptors": np.concatenate([p["descriptors"] for p in parts]),
            "scaffold": scaffold_ids(keys.tolist())}


def _targets_path(config: MMSAConfig, smiles: list[str]) -> Path:
    key = hashlib.sha256(json.dumps([config.target_bits, config.n_descriptors]).encode()
                         + _smiles_key(smiles).encode()).hexdigest()[:20]
    return cache_dir() / "pretrain" / f"targets-{key}.npz"


def cached_corpus_targets(config: MMSAConfig, smiles: list[str],
                          n_jobs: int = 2) -> dict[str, np.ndarray]:
    """:func:`compute_corpus_targets` with standardised descriptors (``desc_centre``,
    ``desc_scale``), computed once per molecule list and cached under
    ``$MMSA_CACHE/pretrain``, so that changing the image or 3D share of a corpus does not
    recompute them (500k molecules: ~12 min on 2 cores)."""
    from mmsa.chem.targets import standardise_descriptors

    path = _targets_path(config, smiles)
    if path.is_file():
        log.info("loading chemistry targets from %s", path)
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    log.info("computing chemistry targets")
    t = compute_corpus_targets(smiles, n_jobs)
    desc, centre, scale = standardise_descriptors(t["descriptors"])
    out = {"counts": t["counts"], "descriptors": desc, "desc_centre": centre,
           "desc_scale": scale, "scaffold": t["scaffold"]}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(path) + ".tmp.npz")
    np.savez(tmp, **out)
    os.replace(tmp, path)
    return out


def featurize_corpus(config: MMSAConfig, smiles: list[str], n_multimodal: int,
                     n_jobs: int = 2, progress: bool = False,
                     n_geometry: int | None = None) -> PackedFeatures:
    """Graphs + chemistry targets for every molecule, the depiction for the first
    ``n_multimodal`` and the conformer for the first ``n_geometry`` (default the same; the
    corpus is shuffled, so they are random subsets). Cached."""
    n_geometry = n_multimodal if n_geometry is None else min(n_geometry, n_multimodal)
    from mmsa.chem.conformer import ConformerFeaturizer
    from mmsa.chem.graph import GraphFeaturizer
    from mmsa.chem.image import ImageFeaturizer
    from mmsa.encoder import _build

    gf = _build(GraphFeaturizer, config.graph_featurizer)
    icfg = dict(config.image_featurizer or {})
    icfg.setdefault("size", config.image_size)
    imf = _build(ImageFeaturizer, icfg) if config.use_image else None
    cf = _build(ConformerFeaturizer, config.conformer_featurizer) if config.use_geometry else None
    feats = {"graph": gf.config(), "image": imf.config() if imf else None,
             "conformer": cf.config() if cf else None, "n_multimodal": n_multimodal,
             "n_geometry": n_geometry,
             "targets": [config.target_bits, config.n_descriptors]}
    key = hashlib.sha256(json.dumps(feats, sort_keys=True, default=str).encode()
                         + _smiles_key(smiles).encode()).hexdigest()[:20]
    path = cache_dir() / "pretrain" / f"corpus-{key}.npz"
    if path.is_file():
        log.info("loading packed corpus from %s", path)
        return PackedFeatures.load(path)
    log.info("featurising %d graphs", len(smiles))
    # in this process: the batched graph featuriser is faster than shipping its arrays back
    # from worker processes (measured: 10k graphs per ~60 s through a pool on a busy machine)
    graphs = _featurize_all(gf, smiles, 1, progress, True)
    keep = [i for i, g in enumerate(graphs) if g is not None and g.x.shape[0] > 0]
    sub = [smiles[i] for i in keep]
    m = sum(1 for i in keep if i < n_multimodal)
    m3 = sum(1 for i in keep if i < n_geometry)
    images = _featurize_all(imf, sub[:m], n_jobs, progress, True) if imf else None
    confs = _featurize_all(cf, sub[:m3], n_jobs, progress, True) if cf else None
    packed = pack_features([graphs[i] for i in keep])
    packed.rows = np.asarray(keep, dtype=np.int64)
    n = len(keep)
    if images is not None:
        ok = np.array([im is not None for im in images], dtype=bool)
        first = next(im for im in images if im is not None)
        packed.images = np.zeros((int(ok.sum()), *first.shape), dtype=np.uint8)
        packed.image_row = np.full(n, -1, dtype=np.int32)
        for j, i in enumerate(np.flatnonzero(ok)):
            packed.images[j] = images[i]
            packed.image_row[i] = j
        packed.image_ok = packed.image_row >= 0
    if confs is not None:
        pack_conformers(packed, list(confs) + [None] * (n - m3))
        log.info("conformers: %d of %d", int(packed.conf_ok.sum()), m3)
    t = cached_corpus_targets(config, sub, n_jobs)
    packed.fp_counts = t["counts"]
    packed.descriptors, packed.desc_centre, packed.desc_scale = (
        t["descriptors"], t["desc_centre"], t["desc_scale"])
    packed.scaffold = t["scaffold"]
    path.parent.mkdir(parents=True, exist_ok=True)
    packed.save(path)
    log.info("packed corpus written to %s", path)
    return packed


def analogue_batch(features: PackedFeatures, rng: np.random.Generator, batch_size: int,
                   analogue_fraction: float) -> np.ndarray:
    """Indices of one batch: ``analogue_fraction`` of it as pairs of molecules sharing a
    Murcko scaffold (so the batch holds close analogues for the similarity terms), the rest
    drawn uniformly."""
    n = len(features)
    n_pairs = int(batch_size * analogue_fraction) // 2
    groups = features.extra.get("_groups")
    if groups is None:
        scaf = features.scaffold if features.scaffold is not None else np.full(n, -1)
        valid = np.flatnonzero(scaf >= 0)
        order = valid[np.argsort(scaf[valid], kind="stable")]
        ids, start, size = np.unique(scaf[order], return_index=True, return_counts=True)
        multi = size >= 2
        member_group = np.repeat(np.arange(len(ids)), size)
        in_multi = multi[member_group]
        groups = (order, start, size, np.flatnonzero(in_multi), member_group)
        features.extra["_groups"] = groups
    order, start, size, candidates, member_group = groups
    if n_pairs == 0 or len(candidates) == 0:
        return rng.choice(n, batch_size, replace=False)
    pos = rng.choice(candidates, n_pairs, replace=False)
    g = member_group[pos]
    within = pos - start[g]
    sib = start[g] + (within + rng.integers(1, size[g])) % size[g]
    anchors = np.unique(np.concatenate([order[pos], order[sib]]))
    rest = rng.choice(n, batch_size - len(anchors) + 16, replace=False)
    rest = rest[~np.isin(rest, anchors)][:batch_size - len(anchors)]
    return np.concatenate([anchors, rest])
