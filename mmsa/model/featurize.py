"""Featurizers rebuilt from a checkpoint's stored ``config()`` and applied to a list of SMILES."""

from __future__ import annotations

import inspect


def build_featurizer(cls, cfg: dict):
    """Instantiate a featurizer from its stored ``config()``, keeping the args it accepts."""
    params = inspect.signature(cls).parameters
    kwargs = {k: v for k, v in (cfg or {}).items() if k in params}
    return cls(**kwargs)


def featurize(featurizer, smiles: list[str], n_jobs: int) -> tuple[list, dict[int, str]]:
    """Features aligned with ``smiles`` (None where failed) and {position: reason}."""
    if n_jobs > 1 and len(smiles) > 1:
        from mmsa.chem.parallel import featurize_many

        kwargs = {"n_jobs": n_jobs}
        if "cache" in inspect.signature(featurize_many).parameters:
            kwargs["cache"] = False
        results, fails = featurize_many(featurizer, smiles, **kwargs)
        reasons = {f.row: f.reason for f in fails}
        return [None if i in reasons else r for i, r in enumerate(results)], reasons
    if hasattr(featurizer, "batch"):  # one numpy pass for the whole chunk (graph featurizer)
        out, errors = featurizer.batch(smiles)
        return list(out), dict(errors)
    out: list = []
    reasons: dict[int, str] = {}
    for i, s in enumerate(smiles):
        try:
            out.append(featurizer(s))
        except Exception as exc:  # InputError for bad SMILES; anything else is reported too
            out.append(None)
            reasons[i] = str(exc) or type(exc).__name__
    return out, reasons
