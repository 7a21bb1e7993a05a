"""Linear probes (logistic / ridge chosen on the valid split), effective rank, imputation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mmsa.evaluate.tasks import Split

# Regularisation grids searched on the valid split (log-spaced, wide on purpose).
C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
ALPHA_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 1e2, 1e3, 1e4, 1e5)


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
