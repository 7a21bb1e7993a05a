"""Neighbour quality: what a user who *searches* a library gets from a representation.

Linear probes (the package's other protocol) say whether a property is decodable from a
vector; a similarity search only ever uses the similarity itself. So every representation is
scored here by its nearest neighbours:

- kNN (k = 5) on the scaffold splits of the probe tasks: the test molecules are queries, the
  train molecules the library. B3DB: ROC-AUC of the neighbours' mean BBB+ label and the
  neighbour label agreement (share of the 5 neighbours with the query's label); FreeSolv and
  solubility: RMSE of the neighbours' mean value.
- same-target retrieval: CDK2 and EGFR ligands mixed into the approved drugs (decoys); each
  ligand is a query against everything else; average precision of finding its own target's
  ligands, averaged over queries (mAP), for each target and for all.

A :class:`Space` is a similarity: ``cosine`` over embeddings, ``tanimoto`` over ECFP4 bits, or
``hybrid`` (``w * cosine + (1 - w) * tanimoto``). Numpy in, numpy out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

K = 5


@dataclass
class Space:
    """One similarity over a fixed list of molecules (rows of ``vectors`` / ``bits``)."""

    kind: str  # "cosine" | "tanimoto" | "hybrid"
    vectors: np.ndarray | None = None  # float [n, d], rows L2-normalised by __post_init__
    bits: np.ndarray | None = None  # {0, 1} [n, n_bits]
    weight: float = 0.5  # hybrid: weight of the cosine

    def __post_init__(self):
        if self.kind not in ("cosine", "tanimoto", "hybrid"):
            raise ValueError(f"unknown similarity {self.kind!r}")
        if self.vectors is not None:
            v = np.nan_to_num(np.asarray(self.vectors, dtype=np.float32))
            norm = np.linalg.norm(v, axis=1, keepdims=True)
            self.vectors = v / np.maximum(norm, 1e-12)
        if self.bits is not None:
            self.bits = np.asarray(self.bits, dtype=np.float32)
            self._pop = self.bits.sum(axis=1)

    def similarity(self, rows: np.ndarray, cols: np.ndarray | None = None) -> np.ndarray:
        """``[len(rows), len(cols)]`` similarities (all molecules when ``cols`` is None)."""
        if self.kind == "cosine":
            return self._cos(rows, cols)
        if self.kind == "tanimoto":
            return self._tan(rows, cols)
        return self.weight * self._cos(rows, cols) + (1 - self.weight) * self._tan(rows, cols)

    def _cos(self, rows, cols):
        b = self.vectors if cols is None else self.vectors[cols]
        return self.vectors[rows] @ b.T

    def _tan(self, rows, cols):
        b = self.bits if cols is None else self.bits[cols]
        pb = self._pop if cols is None else self._pop[cols]
        inter = self.bits[rows] @ b.T
        union = self._pop[rows][:, None] + pb[None, :] - inter
        return inter / np.maximum(union, 1.0)


def knn_predict(space: Space, queries: np.ndarray, library: np.ndarray, y: np.ndarray,
                k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """``(mean neighbour value [q], neighbour values [q, k])`` of each query's ``k`` most
    similar library molecules."""
    sim = space.similarity(queries, library)
    k = min(k, len(library))
    top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    values = np.asarray(y)[library][top]
    return values.mean(axis=1), values


def knn_task_scores(space: Space, y: np.ndarray, kind: str, train: np.ndarray,
                    queries: np.ndarray, k: int = K) -> dict[str, float]:
    """kNN scores of ``queries`` against the ``train`` library (see module docstring)."""
    pred, values = knn_predict(space, queries, train, y, k)
    truth = np.asarray(y)[queries]
    if kind == "classification":
        from sklearn.metrics import roc_auc_score

        auc = (float(roc_auc_score(truth, pred)) if len(np.unique(truth)) == 2
               else float("nan"))
        return {"knn_auc": auc,
                "knn_agreement": float((values == truth[:, None]).mean())}
    return {"knn_rmse": float(np.sqrt(np.mean((pred - truth) ** 2)))}


def average_precision(scores: np.ndarray, relevant: np.ndarray) -> float:
    """Average precision of ranking ``scores`` (descending) for the ``relevant`` mask."""
    order = np.argsort(-scores, kind="stable")
    rel = np.asarray(relevant, dtype=bool)[order]
    if not rel.any():
        return float("nan")
    hits = np.cumsum(rel)
    precision = hits / np.arange(1, len(rel) + 1)
    return float(precision[rel].mean())


def retrieval_map(space: Space, labels: Sequence[str]) -> dict[str, float]:
    """Mean average precision per target label (and ``all``) of same-target retrieval.

    ``labels [n]``: a target name for each ligand, ``""`` for decoys. Each ligand queries all
    other molecules; its own target's other ligands are the relevant ones.
    """
    labels = np.asarray(labels, dtype=object)
    ligands = np.flatnonzero(labels != "")
    out: dict[str, list[float]] = {}
    for start in range(0, len(ligands), 256):
        rows = ligands[start:start + 256]
        sim = space.similarity(rows)
        for r, i in enumerate(rows):
            scores = sim[r].copy()
            scores[i] = -np.inf
            mask = labels == labels[i]
            mask[i] = False
            keep = np.arange(len(labels)) != i
            out.setdefault(str(labels[i]), []).append(
                average_precision(scores[keep], mask[keep]))
    result = {t: float(np.nanmean(v)) for t, v in sorted(out.items())}
    result["all"] = float(np.nanmean([x for v in out.values() for x in v]))
    return result


def alignment_uniformity(vectors: np.ndarray, pairs: np.ndarray, n: int = 2000,
                         seed: int = 0) -> tuple[float, float]:
    """Wang & Isola's ``(alignment, uniformity)`` of normalised ``vectors``: mean squared
    distance of the positive ``pairs [p, 2]`` (lower = positives closer), and
    ``log E exp(-2 |x - y|^2)`` over random pairs (lower = more uniform)."""
    v = np.asarray(vectors, dtype=np.float64)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    align = float(np.mean(np.sum((v[pairs[:, 0]] - v[pairs[:, 1]]) ** 2, axis=1))) \
        if len(pairs) else float("nan")
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(v), n), rng.integers(0, len(v), n)
    d2 = np.sum((v[a] - v[b]) ** 2, axis=1)
    return align, float(np.log(np.mean(np.exp(-2 * d2))))


# --------------------------------------------------------------------------- the suite
RETRIEVAL_TARGETS = ("cdk2", "egfr")
RETRIEVAL_DECOYS = "approved-drugs"


def retrieval_set() -> tuple[list[str], list[str]]:
    """``(smiles, labels)``: CDK2 and EGFR ligands (label = target) + approved drugs (``""``)."""
    import pandas as pd

    from mmsa.data import fetch

    smiles: list[str] = []
    labels: list[str] = []
    for target in RETRIEVAL_TARGETS:
        s = pd.read_csv(fetch(target), usecols=["smiles"])["smiles"].astype(str).tolist()
        smiles += s
        labels += [target] * len(s)
    decoys = pd.read_csv(fetch(RETRIEVAL_DECOYS), usecols=["smiles"])["smiles"].astype(str)
    smiles += decoys.tolist()
    labels += [""] * len(decoys)
    return smiles, labels


def neighbour_suite(methods: dict, seeds: Sequence[int] = (0, 1, 2), part: str = "test",
                    tasks: Sequence[str] = ("b3db", "freesolv", "solubility"),
                    hybrid: dict[str, tuple[str, str, float]] | None = None,
                    retrieval: bool = True, progress=None, loaded: dict | None = None
                    ) -> dict[str, dict[str, list[float]]]:
    """Neighbour metrics of every method: ``{method: {metric: [value per seed]}}``.

    ``methods``: name -> ``(kind, fn)`` with kind ``cosine`` (``fn`` an embedding Method) or
    ``tanimoto`` (``fn`` gives {0,1} fingerprints). ``hybrid``: name -> ``(cosine method,
    tanimoto method, weight)``. ``part``: the split part used as queries (``valid`` for model
    selection, ``test`` for the report); the train part is the library. ``loaded``: task
    name -> already loaded ``TaskData`` (default: :func:`mmsa.evaluate.load_task`).
    """
    from mmsa.evaluate.tasks import load_task, scaffold_split

    hybrid = hybrid or {}
    out: dict[str, dict[str, list[float]]] = {m: {} for m in [*methods, *hybrid]}

    def spaces_for(smiles: list[str]) -> dict[str, Space]:
        reps = {}
        for name, (kind, fn) in methods.items():
            if progress:
                progress(name)
            X, _ = fn(smiles)
            reps[name] = (Space("cosine", vectors=X) if kind == "cosine"
                          else Space("tanimoto", bits=X))
        for name, (a, b, w) in hybrid.items():
            reps[name] = Space("hybrid", vectors=reps[a].vectors, bits=reps[b].bits, weight=w)
        return reps

    for task_name in tasks:
        data = (loaded or {}).get(task_name) or load_task(task_name)
        spaces = spaces_for(data.smiles)
        for seed in seeds:
            split = scaffold_split(data.scaffolds, seed=seed)
            queries = split.valid if part == "valid" else split.test
            for name, space in spaces.items():
                scores = knn_task_scores(space, data.y, data.task.kind, split.train, queries)
                for metric, value in scores.items():
                    out[name].setdefault(f"{task_name}_{metric}", []).append(value)
    if retrieval:
        smiles, labels = retrieval_set()
        for name, space in spaces_for(smiles).items():
            for target, value in retrieval_map(space, labels).items():
                out[name][f"map_{target}"] = [value]
    return out


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of a neighbour metric is better (RMSE: lower is better)."""
    return not metric.endswith("rmse")
