import numpy as np
import pandas as pd
import pytest

from mmsa.library.slots import (
    dense_weights,
    property_columns,
    property_distributions,
    slot_members,
    slot_table,
)

# 5 molecules, top-2 slots each (descending weights), 4 slots in the model (slot 3 unused)
IDS = np.array([[0, 1], [0, 2], [1, 0], [2, 1], [0, 1]], dtype=np.int32)
W = np.array([[0.9, 0.1], [0.6, 0.4], [0.7, 0.3], [0.5, 0.5], [0.8, 0.2]], dtype=np.float32)


def test_slot_table_sizes_weights_usage_prototypes():
    t = slot_table(IDS, W, num_slots=4, n_prototypes=2)
    assert t["slot"].tolist() == [0, 1, 2, 3]
    assert t["size"].tolist() == [3, 1, 1, 0]
    assert t["mean_weight"].iloc[0] == pytest.approx((0.9 + 0.6 + 0.8) / 3)
    assert t["mean_weight"].iloc[1] == pytest.approx(0.7)
    assert np.isnan(t["mean_weight"].iloc[3])
    assert t["usage"].sum() == pytest.approx(1.0)
    assert t["usage"].iloc[0] == pytest.approx((0.9 + 0.6 + 0.3 + 0.8) / W.sum())
    # prototypes: highest weight on the slot among all molecules listing it, best first
    assert t["prototypes"].iloc[0] == [0, 4]
    assert t["prototypes"].iloc[1] == [2, 3]
    assert t["prototypes"].iloc[2] == [3, 1]
    assert t["prototypes"].iloc[3] == []


def test_slot_table_defaults_to_largest_id():
    assert len(slot_table(IDS, W)) == 3


def test_slot_members_sorted_by_weight():
    rows, w = slot_members(IDS, W, 0)
    assert rows.tolist() == [0, 4, 1]
    assert np.allclose(w, [0.9, 0.8, 0.6])
    rows, _ = slot_members(IDS, W, 3)
    assert rows.size == 0


def test_dense_weights_round_trip():
    d = dense_weights(IDS, W, 4)
    assert d.shape == (5, 4)
    assert d[1, 2] == pytest.approx(0.4) and d[1, 3] == 0
    assert np.allclose(d.sum(axis=1), W.sum(axis=1))


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        slot_table(IDS, W[:, :1])


def test_property_columns_and_distributions():
    meta = pd.DataFrame({
        "row": range(4), "id": list("abcd"), "input_smiles": ["C"] * 4, "smiles": ["C"] * 4,
        "MolWt": [16.0, 30.0, 44.0, np.nan], "logp_text": ["1.5", "2", "x", "3"],
        "name": ["methane", "ethane", "propane", "butane"],
    })
    assert property_columns(meta) == ["MolWt"]
    dist = property_distributions(meta, np.array([2, 0]))
    sel, ref = dist["MolWt"]
    assert sel.tolist() == [44.0, 16.0]
    assert len(ref) == 4 and np.isnan(ref[3])
