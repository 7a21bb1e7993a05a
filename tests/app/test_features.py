"""Issue 12 features: property filters, "why is this a hit", named memory slots, activity
cliffs; the pure functions behind them (mmsa.chem.properties, mmsa.library.cliffs,
mmsa.library.slot_names) and the pages through AppTest."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from mmsa.chem.properties import PROPERTIES, properties, properties_frame
from mmsa.library import open_library
from mmsa.library.cliffs import activity_cliffs, pair_tanimoto, sali
from mmsa.library.results import search_parents
from mmsa.library.slot_names import enriched_scaffold, separating_property, slot_labels

IMATINIB = "Cc1ccc(NC(=O)c2ccc(CN3CCN(C)CC3)cc2)cc1Nc1nccc(-c2cccnc2)n1"


def html_of(at) -> str:
    return "\n".join(h.value for h in at.html)


def no_exception(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def goto(at, page: str, library: str | None = None):
    at.run()
    at.switch_page(f"pages/{page}.py").run()
    if library:
        at.sidebar.selectbox(key="library_picker").set_value(library).run()
    no_exception(at)
    return at


def search(at, query: str, mode: str, k: int):
    at.selectbox(key="search_mode").set_value(mode)
    at.number_input(key="search_k").set_value(k)
    at.text_input(key="search_query").set_value(query).run()
    no_exception(at)
    return at


def arr(value) -> np.ndarray:
    """A plotly JSON array (a list, or a base64 typed array)."""
    if isinstance(value, dict) and "bdata" in value:
        import base64

        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
    return np.asarray(value if value is not None else [])


def titles(at) -> list[str]:
    return [c.split('class="mmsa-title">')[1].split("<")[0]
            for c in html_of(at).split('class="mmsa-card"')[1:]]


# ------------------------------------------------------------------ pure functions

def test_properties_of_aspirin_and_of_a_bad_smiles():
    p = properties("CC(=O)Oc1ccccc1C(=O)O")
    assert p["MW"] == pytest.approx(180.16, abs=0.01)
    assert p["HBD"] == 1 and p["HBA"] == 3 and p["rotatable bonds"] == 2
    assert p["TPSA"] == pytest.approx(63.6, abs=0.1) and 0 < p["QED"] < 1
    frame = properties_frame(["CCO", "not a smiles"])
    assert list(frame.columns) == list(PROPERTIES) and len(frame) == 2
    assert frame.iloc[1].isna().all() and frame["HBD"].dtype == "Int64"


def test_sali_and_pair_tanimoto():
    assert sali(np.array([2.0, -1.0]), np.array([0.9, 0.5])).tolist() == pytest.approx([20, 2])
    assert np.isfinite(sali(np.array([1.0]), np.array([1.0]))).all()  # identical: capped
    packed = np.array([[0b1111, 0], [0b0011, 0], [0, 0]], dtype=np.uint8)
    got = pair_tanimoto(packed, np.array([0, 0, 2]), np.array([1, 0, 2]))
    assert got.tolist() == [0.5, 1.0, 0.0]


def test_slot_labels_name_the_shared_scaffold_and_property():
    smiles = ["c1ccccc1O", "c1ccccc1N", "c1ccccc1C", "CCO", "CCCO", "CCCCO", "C1CCNCC1"]
    top1 = np.array([0, 0, 0, 1, 1, 1, 1])
    props = pd.DataFrame({"MW": [94, 93, 92, 46, 60, 74, 85.0], "flat": [1.0] * 7})
    labels = slot_labels(smiles, top1, props)
    assert labels[0].startswith("scaffold c1ccccc1 (3/3)") and "high MW" in labels[0]
    assert labels[1].startswith("acyclic") and "low MW" in labels[1]
    assert "flat" not in labels[0] + labels[1]
    assert enriched_scaffold(["a", "a", "b", "b", "b", ""], np.array([0, 1])) == ("a", 2, 3.0)
    assert separating_property(props[["flat"]], np.array([0, 1])) is None


def test_activity_cliffs_rank_neighbour_pairs_by_sali(app_library, app_checkpoint):
    root, name, rows = app_library
    lib = open_library(name, root=root)
    table = activity_cliffs(lib, "MolWt", top=20)
    assert len(table) > 0 and table["sali"].is_monotonic_decreasing
    y = pd.to_numeric(lib.metadata["MolWt"]).to_numpy()
    for r in table.itertuples():
        assert r.row_b in lib.hyperedge(r.row_a) or r.row_a in lib.hyperedge(r.row_b)
        assert r.sali == pytest.approx(abs(y[r.row_b] - y[r.row_a]) / (1 - min(r.similarity, 0.99)))
    pairs = set(zip(table["row_a"], table["row_b"]))
    assert len(pairs) == len(table) and all(a < b for a, b in pairs)  # each pair once
    tani = activity_cliffs(lib, "MolWt", top=5, similarity="tanimoto")
    assert ((tani["similarity"] >= 0) & (tani["similarity"] <= 1)).all()


# ------------------------------------------------------------------ pages



@pytest.mark.slow
def test_search_hits_filtered_by_molecular_weight(app, odd_env):
    at = goto(app, "search", "odd")
    search(at, IMATINIB, "tanimoto", k=12)
    before = titles(at)
    assert "IMATINIB" in before
    at.toggle(key="search_filter_on").set_value(True).run()
    at.slider(key="search_filter_MW").set_value((0.0, 200.0)).run()
    no_exception(at)
    after = titles(at)
    assert after and "IMATINIB" not in after and set(after) < set(before)
    lib = open_library("odd", root=odd_env[0])
    meta = lib.metadata.set_index("id")
    for t in after:
        assert properties(meta.loc[t, "smiles"])["MW"] <= 200
    assert any(f"{len(after)} of" in c.value for c in at.caption)


@pytest.mark.slow
def test_why_is_this_a_hit_shows_cosine_motif_and_slots(app, odd_env):
    root = odd_env[0]
    at = goto(app, "search", "odd")
    search(at, "NCCc1c[nH]c2ccccc12", "embedding", k=5)
    assert html_of(at).count('class="mmsa-card"') == 5  # nothing explained until asked
    lib = open_library("odd", root=root, encoder=os.environ["MMSA_CHECKPOINT"])
    _, parents = search_parents(lib, "NCCc1c[nH]c2ccccc12", "embedding", k=5)
    row = int(parents["row"].iloc[1])
    at.selectbox(key="why_pick").set_value(row).run()
    no_exception(at)
    text = " ".join(m.value for m in at.markdown)
    assert f"**{parents['id'].iloc[1]}**" in text
    assert f"embedding cosine **{parents['cosine'].iloc[1]:.3f}" in text
    assert html_of(at).count('class="mmsa-card"') == 5 + 2  # query and hit side by side
    assert "common substructure of" in text
    slots = next((d.value for d in at.dataframe if "shared" in d.value.columns), None)
    if slots is not None:  # the hit's top slots among the query's strongest
        ids, _ = lib.slot_topk
        assert set(slots["slot"]) <= set(np.asarray(ids[row]).tolist())
        assert (slots["shared"] <= slots["hit weight"] + 1e-6).all()
    else:
        assert any("share none" in c.value for c in at.caption)
    assert "**Cosine per modality**" in text  # the page renders explain_hit's modalities
    for label in ("2D graph", "2D depiction", "3D conformer"):
        assert label in text


@pytest.mark.slow
def test_memory_slots_are_named(app, app_env):
    at = goto(app, "memory")
    table = at.dataframe[0].value
    names = table["what the slot holds"].tolist()
    assert all(isinstance(n, str) and n for n in names)
    assert all(n.split(" \u00b7 ")[0].startswith(("scaffold ", "acyclic", "mixed scaffolds"))
               for n in names)


@pytest.mark.slow
def test_activity_cliffs_page(app, app_env):
    root, name, rows = app_env
    at = goto(app, "cliffs")
    assert at.title[0].value == "Activity cliffs"
    at.slider(key="cliff_min_sim").set_value(0.0).run()
    no_exception(at)
    table = next(d.value for d in at.dataframe if "sali" in d.value.columns)
    lib = open_library(name, root=root)
    want = activity_cliffs(lib, "MolWt", top=50)
    assert table["sali"].tolist() == pytest.approx(want["sali"].tolist())
    assert html_of(at).count('class="mmsa-card"') == 2 * min(10, len(want))


@pytest.mark.slow
def test_cliffs_page_without_a_numeric_column_says_so(app, app_env, tmp_path):
    from mmsa.library import build_library

    root, name, rows = app_env
    src = tmp_path / "plain.smi"
    src.write_text("".join(f"{r['smiles']} m{i}\n" for i, r in enumerate(rows[:8])))
    build_library(src, "plain", root=root, encoder=os.environ["MMSA_CHECKPOINT"], hyperedge_k=3)
    at = goto(app, "cliffs", "plain")
    assert any("no numeric column" in i.value for i in at.info)


@pytest.mark.slow
def test_map_filter_greys_out_the_rest(app, app_env):
    root, name, rows = app_env
    at = goto(app, "map")
    at.toggle(key="map_filter_on").set_value(True).run()
    at.slider(key="map_filter_MW").set_value((0.0, 300.0)).run()
    no_exception(at)
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    grey = next(t for t in fig["data"] if t.get("name") == "filtered out")
    lib = open_library(name, root=root)
    mw = properties_frame(lib.metadata["smiles"])["MW"].to_numpy()
    assert len(arr(grey["x"])) == int((mw > 300).sum()) > 0
    kept = [int(c) for t in fig["data"] if t.get("name") != "filtered out"
            for c in arr(t.get("customdata"))]
    assert sorted(kept) == sorted(np.flatnonzero(mw <= 300).tolist())
    at.selectbox(key="map_colour").set_value("RDKit: QED").run()
    no_exception(at)


@pytest.mark.slow
def test_hit_cards_coloured_by_a_numeric_column(app, app_env):
    root, name, rows = app_env
    at = goto(app, "search")
    search(at, rows[0]["smiles"], "tanimoto", k=6)
    assert "border-top" not in html_of(at)
    at.selectbox(key="search_colour").set_value("MolWt").run()
    no_exception(at)
    page = html_of(at)
    cards = page.split('class="mmsa-card"')[1:]
    weights = [float(c.split("MolWt</td><td>")[1].split("<")[0]) for c in cards]
    colours = [c.split("border-top:6px solid ")[1][:7] for c in cards]
    assert colours[weights.index(max(weights))] == "#fde725"  # Viridis high
    assert colours[weights.index(min(weights))] == "#440154"  # Viridis low
