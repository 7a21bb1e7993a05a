"""One seeded run of probes over tasks, splits and methods: records and their summary."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from mmsa.evaluate.methods import Method
from mmsa.evaluate.probes import ALPHA_GRID, C_GRID, effective_rank, fit_probe, impute_failed
from mmsa.evaluate.tasks import SEEDS, TaskData, scaffold_split

logger = logging.getLogger("mmsa.evaluate")


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
