"""Pre-training: featurise a SMILES set once (cached), then train MMSA on it.

    from mmsa.model import MMSAConfig
    from mmsa.model.train import pretrain
    result = pretrain(config, smiles, "runs/mmsa", steps=2000, seed=0)

Writes into ``out_dir``: ``config.json`` (the resolved configuration and training arguments),
``log.csv`` (every step: loss terms, learning rate, memory entropies, wall time),
``last.pt`` (periodic training checkpoint with optimizer state, for ``resume=True``) and
``model.pt`` (the final model). All checkpoints load with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mmsa.model.checkpoint import read_checkpoint, save_checkpoint
from mmsa.model.config import LOSS_TERMS, MMSAConfig
from mmsa.model.corpus import analogue_batch
from mmsa.model.device import resolve_device
from mmsa.model.network import MMSA
from mmsa.model.packed import PackedFeatures, featurize_for_pretraining
from mmsa.types import InputError

log = logging.getLogger(__name__)

LOG_COLUMNS = ("step", "epoch", "wall_s", "lr", "loss", *LOSS_TERMS, "mem_entropy_marginal",
               "mem_entropy_row")


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
             threads: int | None = 1, analogue_fraction: float = 0.0,
             init: str | os.PathLike | None = None) -> PretrainResult:
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
        init: start from this checkpoint's weights (fine-tuning with another objective:
            the architecture must match, the loss weights may differ; a fresh optimizer and
            schedule). Ignored when ``resume`` finds ``out_dir/last.pt``.
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
                      analogue_fraction, init)
    finally:
        torch.set_num_threads(old_threads)


def _train(config: MMSAConfig, features: PackedFeatures, out: Path, dev: torch.device,
           steps: int, seed: int, batch_size: int, lr: float, weight_decay: float, warmup: int,
           checkpoint_every: int, resume: bool, progress: bool,
           max_minutes: float | None, analogue_fraction: float = 0.0,
           init: str | os.PathLike | None = None) -> PretrainResult:
    n = len(features)
    torch.manual_seed(seed)
    model = MMSA(config).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    start_step, elapsed0 = 0, 0.0
    last = out / "last.pt"
    if resume and last.is_file():
        ckpt = read_checkpoint(last)
        if MMSAConfig.from_dict(ckpt["hyper_parameters"]).to_dict() != config.to_dict():
            raise InputError(f"cannot resume: {last} was trained with another config")
        model.load_state_dict(ckpt["state_dict"])
        opt.load_state_dict(ckpt["extra"]["optimizer"])
        start_step = int(ckpt["extra"]["step"])
        elapsed0 = float(ckpt["extra"].get("wall_time_s", 0.0))
        log.info("resuming from %s at step %d", last, start_step)
    else:
        if resume:
            log.warning("no %s to resume from: starting fresh", last)
        if init is not None:
            _load_init(model, init)
    args = {"steps": steps, "seed": seed, "batch_size": batch_size, "lr": lr,
            "weight_decay": weight_decay, "warmup": warmup, "num_molecules": n,
            "device": str(dev), "max_minutes": max_minutes,
            "analogue_fraction": analogue_fraction,
            "init": str(init) if init is not None else None,
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


_ARCHITECTURE_FREE = {"w_recon", "w_contrast", "w_hyper", "w_mem_align", "w_mem_assign", "w_fp",
                      "w_desc", "w_sim", "w_vic", "vic_cov", "sim_tau", "sim_tau_target",
                      "sim_queue", "hyper_source", "aug_node_mask", "aug_edge_drop"}


def _load_init(model: MMSA, path: str | os.PathLike) -> None:
    """Load a checkpoint's weights into ``model`` for fine-tuning: every architecture field
    of the two configs must agree (only the objective may differ)."""
    ckpt = read_checkpoint(path)
    theirs = MMSAConfig.from_dict(ckpt["hyper_parameters"]).to_dict()
    ours = model.config.to_dict()
    diff = sorted(k for k in ours if k not in _ARCHITECTURE_FREE and ours[k] != theirs.get(k))
    if diff:
        raise InputError(f"cannot start from {path}: its architecture differs in {diff}")
    model.load_state_dict(ckpt["state_dict"])
    log.info("starting from the weights of %s", path)


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
