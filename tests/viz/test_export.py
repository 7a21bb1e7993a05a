import io

import numpy as np
import pandas as pd

from mmsa.viz.export import map_html, to_csv_bytes, to_sdf_bytes
from mmsa.viz.figures import map_figure


def _frame():
    return pd.DataFrame({
        "rank": [1, 2, 3], "id": ["aspirin", "bad", "caff<eine>"],
        "smiles": ["CC(=O)Oc1ccccc1C(=O)O", "not_a_smiles", "Cn1cnc2c1c(=O)n(C)c(=O)n2C"],
        "score": [0.9, 0.5, 0.25], "note": ["two\n\nlines", None, "x"],
    })


def test_csv_round_trip():
    back = pd.read_csv(io.BytesIO(to_csv_bytes(_frame())))
    assert list(back.columns) == list(_frame().columns)
    assert back["id"].tolist() == ["aspirin", "bad", "caff<eine>"]


def test_sdf_keeps_ids_and_properties_and_skips_unparseable_rows():
    from rdkit import Chem

    data = to_sdf_bytes(_frame())
    mols = [m for m in Chem.ForwardSDMolSupplier(io.BytesIO(data)) if m is not None]
    assert [m.GetProp("_Name") for m in mols] == ["aspirin", "caff<eine>"]
    assert mols[0].GetProp("score") == "0.9"
    assert mols[0].GetProp("note") == "two\nlines"
    assert not mols[1].HasProp("note") or mols[1].GetProp("note") == "x"
    assert Chem.MolToSmiles(mols[1]) == Chem.MolToSmiles(Chem.MolFromSmiles("Cn1cnc2c1c(=O)n(C)c(=O)n2C"))


def test_map_html_is_self_contained_and_script_safe():
    coords = np.random.default_rng(0).normal(size=(5, 2))
    fig = map_figure(coords)
    pics = ["<svg><path d='M0 0'/></svg>", None, "</script><script>alert(1)</script>", None, None]
    page = map_html(fig, title="<my map>", pictures=pics)
    assert "<script src=" not in page  # plotly.js inlined, no network
    assert "Plotly.newPlot" in page or "newPlot" in page
    assert "&lt;my map&gt;" in page
    # the hostile "picture" cannot close the JSON script tag
    assert "</script><script>alert(1)" not in page
    assert "mmsa-hover" in page
