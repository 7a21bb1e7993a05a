"""The evaluation tasks (B3DB, FreeSolv, solubility) and their Bemis-Murcko scaffold splits."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mmsa.types import InputError

logger = logging.getLogger("mmsa.evaluate")

SEEDS = (0, 1, 2)
FRACTIONS = (0.8, 0.1, 0.1)


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
