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
Modules: :mod:`~mmsa.evaluate.tasks` (tasks, scaffold splits), :mod:`~mmsa.evaluate.probes`,
:mod:`~mmsa.evaluate.methods` (representations and their labels), :mod:`~mmsa.evaluate.run`
(one run of probes), :mod:`~mmsa.evaluate.neighbours` (neighbour quality),
:mod:`~mmsa.evaluate.coherence` (hyperedge / slot MCS), :mod:`~mmsa.evaluate.compare` (the
whole ``mmsa evaluate`` comparison) and :mod:`~mmsa.evaluate.report` (tables, docs, JSON).
The names imported here are the package's public API.
"""

from mmsa.evaluate.compare import COHERENCE_LIBRARY, ablations_dir, find_ablations, run_evaluation
from mmsa.evaluate.methods import (
    ABLATIONS,
    ECFP,
    HYBRID,
    MINIMOL,
    RANDOM,
    SHIPPED,
    SHIPPED_FULL,
    Method,
    checkpoint_method,
    ecfp4,
    encoder_method,
    minimol_method,
    random_init_checkpoint,
)
from mmsa.evaluate.probes import (
    ALPHA_GRID,
    C_GRID,
    ProbeResult,
    effective_rank,
    fit_probe,
    impute_failed,
)
from mmsa.evaluate.report import (
    COHERENCE_METRICS,
    NEIGHBOUR_METRICS,
    coherence_table,
    comparisons,
    neighbours_table,
    render_markdown,
    results_table,
    update_markdown_section,
    write_json,
)
from mmsa.evaluate.run import EvaluationResult, Record, evaluate
from mmsa.evaluate.tasks import (
    FRACTIONS,
    SEEDS,
    TASKS,
    Split,
    Task,
    TaskData,
    get_task,
    load_task,
    murcko_scaffold,
    scaffold_split,
)

__all__ = [
    "ABLATIONS", "ALPHA_GRID", "COHERENCE_LIBRARY", "COHERENCE_METRICS", "C_GRID", "ECFP",
    "FRACTIONS", "HYBRID", "MINIMOL", "NEIGHBOUR_METRICS", "RANDOM", "SEEDS", "SHIPPED",
    "SHIPPED_FULL", "TASKS", "EvaluationResult", "Method", "ProbeResult", "Record", "Split",
    "Task", "TaskData", "ablations_dir", "checkpoint_method", "coherence_table", "comparisons",
    "ecfp4", "effective_rank", "encoder_method", "evaluate", "find_ablations", "fit_probe",
    "get_task", "impute_failed", "load_task", "minimol_method", "murcko_scaffold",
    "neighbours_table", "random_init_checkpoint", "render_markdown", "results_table",
    "run_evaluation", "scaffold_split", "update_markdown_section", "write_json",
]
