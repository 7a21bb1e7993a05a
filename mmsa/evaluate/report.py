"""Markdown tables, verdicts and the docs section of ``mmsa evaluate``; JSON output."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mmsa.evaluate.methods import ABLATIONS, ECFP, SHIPPED, SHIPPED_FULL
from mmsa.evaluate.run import EvaluationResult

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
