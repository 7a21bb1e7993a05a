"""Every page of the app through streamlit.testing.v1.AppTest, on a tiny library built with a
tiny random-weights encoder (fixtures in conftest.py)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from mmsa.library import list_libraries, open_library

EVIL_ID = "<img src=x onerror=alert(1)>"  # the hostile id conftest puts in row 3
pytestmark = pytest.mark.slow  # each AppTest run starts the app (model load, first renders)


def html_of(at) -> str:
    return "\n".join(h.value for h in at.html)


def errors_of(at) -> list[str]:
    return [e.value for e in at.error]


def no_exception(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def goto(at, page: str):
    at.run()
    at.switch_page(f"pages/{page}.py")
    at.run()
    no_exception(at)
    return at


def search(at, query: str, mode: str = "embedding", k: int = 5):
    at.selectbox(key="search_mode").set_value(mode)
    at.number_input(key="search_k").set_value(k)
    at.text_input(key="search_query").set_value(query)
    at.run()
    no_exception(at)
    return at


# ---------------------------------------------------------------------------- search

def test_search_lists_the_same_hits_as_the_library(app, app_env):
    root, name, rows = app_env
    at = goto(app, "search")
    assert at.sidebar.selectbox(key="library_picker").value == name
    query = rows[0]["smiles"]
    search(at, query, "embedding", k=5)
    lib = open_library(name, root=root, encoder=os.environ["MMSA_CHECKPOINT"])
    want = lib.search(query, k=5, mode="embedding")
    page = html_of(at)
    positions = [page.index(f">{i}<") for i in want["id"] if i != EVIL_ID]
    assert positions == sorted(positions), "hits drawn in rank order"
    assert page.count('class="mmsa-card"') == 5
    assert want["id"].iloc[0] == rows[0]["name"]  # a molecule is its own nearest neighbour
    assert "cosine" in page and "tanimoto" in page and "MolWt" in page
    assert "data:image/svg+xml;base64," in page
    # both exports are offered
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Download CSV" in labels and "Download SDF" in labels


def test_search_exact_and_substructure_modes(app, app_env):
    root, name, rows = app_env
    at = goto(app, "search")
    search(at, rows[1]["smiles"], "exact")
    page = html_of(at)
    assert page.count('class="mmsa-card"') == 1 and f">{rows[1]['name']}<" in page
    # fingerprint hits also get their embedding cosine to the query (both scores shown)
    search(at, rows[1]["smiles"], "tanimoto", k=3)
    lib = open_library(name, root=root, encoder=os.environ["MMSA_CHECKPOINT"])
    top = lib.search(rows[1]["smiles"], k=3, mode="tanimoto")
    cos = lib.search(rows[1]["smiles"], k=len(lib), mode="embedding").set_index("row")["cosine"]
    want = [f"{cos[r]:.3f}" for r in top["row"]]
    page = html_of(at)
    got = [c.split("cosine</td><td>")[1].split("<")[0] for c in page.split('class="mmsa-card"')[1:]]
    assert got == want
    search(at, "c1ccccc1", "substructure", k=100)
    lib = open_library(name, root=root)
    want = lib.search("c1ccccc1", k=100, mode="substructure")
    assert html_of(at).count('class="mmsa-card"') == len(want) > 0


def test_bad_smiles_shows_an_error_not_a_traceback(app):
    at = goto(app, "search")
    search(at, "C1CC(N", "embedding")
    errs = errors_of(at)
    assert errs and "could not parse" in errs[0].lower()
    assert not at.html


def test_names_from_files_are_escaped_in_the_grid(app, app_env):
    root, name, rows = app_env
    at = goto(app, "search")
    search(at, rows[3]["smiles"], "exact")
    page = html_of(at)
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert EVIL_ID not in page


# ---------------------------------------------------------------------------- map

def test_map_page_computes_caches_and_colours(app, app_env):
    root, name, rows = app_env
    at = goto(app, "map")
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    assert (root / name / "cache" / "map.npy").is_file()
    coords = np.load(root / name / "cache" / "map.npy")
    assert coords.shape == (len(rows), 2) and np.isfinite(coords).all()
    opts = at.selectbox(key="map_colour").options
    assert {"memory slot", "cluster", "MolWt"} <= set(opts)
    at.selectbox(key="map_colour").set_value("memory slot").run()
    no_exception(at)
    at.selectbox(key="map_colour").set_value("MolWt").run()
    no_exception(at)
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert any(tr.get("type") == "scattergl" for tr in fig["data"])
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Download the map (self-contained HTML)" in labels
    # the map is cached: a second visit does not recompute (the file is untouched)
    mtime = (root / name / "cache" / "map.npy").stat().st_mtime_ns
    at.run()
    assert (root / name / "cache" / "map.npy").stat().st_mtime_ns == mtime


def test_query_is_placed_on_the_map(app, app_env):
    root, name, rows = app_env
    at = goto(app, "search")
    search(at, rows[0]["smiles"])
    at.switch_page("pages/map.py").run()
    no_exception(at)
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    stars = [tr for tr in fig["data"] if tr.get("marker", {}).get("symbol") == "star"]
    assert len(stars) == 1


# ---------------------------------------------------------------------------- hyperedges

def test_hyperedges_page_shows_members_with_motif(app, app_env):
    root, name, rows = app_env
    at = goto(app, "hyperedges")
    lib = open_library(name, root=root)
    centre = 0
    at.text_input(key="hyperedge_id").set_value(rows[centre]["name"]).run()
    no_exception(at)
    page = html_of(at)
    members = lib.hyperedge(centre)
    ids = lib.metadata["id"].to_numpy()[members]
    assert page.count('class="mmsa-card"') >= len(members)
    for i in ids:
        if i != EVIL_ID:
            assert f">{i}<" in page
    # the most coherent hyperedges, largest shared motif first
    at.radio(key="hyperedge_view").set_value("Most coherent hyperedges").run()
    no_exception(at)
    table = next(d.value for d in at.dataframe if "coherence" in d.value.columns)
    assert len(table) >= 1
    assert table["motif atoms"].tolist() == sorted(table["motif atoms"], reverse=True)
    first = int(table["hyperedge"].iloc[0])
    assert table["motif atoms"].iloc[0] == lib.hyperedge_motif(first).num_atoms
    assert html_of(at).count('class="mmsa-card"') == len(lib.hyperedge(first))


def test_hyperedges_unknown_id_is_a_message(app):
    at = goto(app, "hyperedges")
    at.text_input(key="hyperedge_id").set_value("no-such-molecule").run()
    no_exception(at)
    assert any("no molecule with id" in e for e in errors_of(at))


# ---------------------------------------------------------------------------- memory

def test_memory_page_lists_slots_and_query_weights(app, app_env):
    root, name, rows = app_env
    at = goto(app, "memory")
    table = at.dataframe[0].value
    assert {"slot", "size", "mean_weight"} <= set(table.columns)
    assert table["size"].sum() == len(rows)  # every molecule has one top slot
    assert (table["size"] > 0).all()  # "hide empty slots" is on
    slot = int(table["slot"].iloc[0])
    at.selectbox(key="mem_slot").set_value(slot).run()
    no_exception(at)
    assert html_of(at).count('class="mmsa-card"') == min(12, int(table["size"].iloc[0]))
    at.text_input(key="mem_query").set_value(rows[0]["smiles"]).run()
    no_exception(at)
    assert any(c.proto.spec and "slot weights" in c.proto.spec for c in at.get("plotly_chart"))
    at.text_input(key="mem_query").set_value("not-a-smiles((").run()
    assert errors_of(at)


# ---------------------------------------------------------------------------- model

def test_model_page_shows_the_checkpoint(app, app_env):
    from mmsa.model.encoder import file_sha256

    at = goto(app, "model")
    facts = at.dataframe[0].value
    sha = file_sha256(os.environ["MMSA_CHECKPOINT"])
    assert sha in facts["value"].tolist()
    assert "graph" in " ".join(facts["value"].astype(str))


# ---------------------------------------------------------------------------- libraries

def _csv(rows) -> bytes:
    lines = ["smiles,name,MolWt"] + [f"{r['smiles']},{r['name'].replace(',', ' ')},{r['MolWt']}"
                                      for r in rows]
    return ("\n".join(lines) + "\n").encode()


def test_libraries_page_lists_uploads_builds_and_deletes(app, app_env):
    root, name, rows = app_env
    at = goto(app, "libraries")
    table = at.dataframe[0].value
    assert table["name"].tolist() == [name] and table["molecules"].tolist() == [len(rows)]
    data = _csv(rows[:10]) + b"not_a_smiles,broken,1\n"
    at.file_uploader[0].set_value(("my mols.csv", data, "text/csv")).run()
    no_exception(at)
    assert at.selectbox(key="upload_smiles_col").value == "smiles"
    assert at.selectbox(key="upload_id_col").value == "name"
    assert at.text_input(key="upload_name").value == "my_mols"
    at.button(key="upload_build").click().run()
    no_exception(at)
    assert not errors_of(at)
    assert [s.value for s in at.success][0].startswith("Built library **my_mols**: 10 molecules")
    failed = next(d.value for d in at.dataframe if "reason" in d.value.columns)
    assert failed["input"].tolist() == ["not_a_smiles"] and failed["row"].tolist() == [10]
    assert {i.name for i in list_libraries(root)} == {name, "my_mols"}
    assert at.sidebar.selectbox(key="library_picker").value == "my_mols"  # selectable, and selected
    assert at.file_uploader[0].key == "upload_file_1"  # the uploader was emptied
    # delete it, with confirmation
    at.selectbox(key="delete_name").set_value("my_mols").run()
    assert at.button(key="delete_button").disabled
    at.checkbox(key="delete_sure_my_mols").check().run()
    at.button(key="delete_button").click().run()
    no_exception(at)
    assert {i.name for i in list_libraries(root)} == {name}


@pytest.mark.parametrize("filename,data,env,message", [
    ("mols.xlsx", b"whatever", None, "not a format we read"),
    ("mols.csv", b"smiles\nCCO\n" * 100, "0.0001", "the limit is"),
    ("mols.csv", b"name,weight\na,1\nb,2\n", None, "Nothing was stored"),
    ("mols.csv", b"smiles,name\nnot_a_smiles,a\nC1CC,b\n", None, "Nothing was stored"),
    ("empty.smi", b"", None, "is empty"),
])
def test_bad_uploads_get_a_message_and_store_nothing(app, app_env, monkeypatch,
                                                     filename, data, env, message):
    root, name, rows = app_env
    if env:
        monkeypatch.setenv("MMSA_MAX_UPLOAD_MB", env)
    at = goto(app, "libraries")
    at.file_uploader[0].set_value((filename, data, "text/plain")).run()
    no_exception(at)
    if any(b.key == "upload_build" for b in at.button):
        at.button(key="upload_build").click().run()
        no_exception(at)
    errs = errors_of(at)
    assert errs and message in errs[0], errs
    assert {i.name for i in list_libraries(root)} == {name}
    assert not [p for p in root.iterdir() if p.name.startswith(".") and "tmp" in p.name]


def test_other_checkpoint_disables_embedding_search_only(app, app_env, tmp_path, monkeypatch):
    import torch

    from mmsa.model import MMSA, MMSAConfig, save_checkpoint

    root, name, rows = app_env
    torch.manual_seed(1)
    other = save_checkpoint(MMSA(MMSAConfig.tiny()), tmp_path / "other.pt")
    monkeypatch.setenv("MMSA_CHECKPOINT", str(other))
    at = goto(app, "search")
    search(at, rows[1]["smiles"], "embedding")
    assert any("another model checkpoint" in w.value for w in at.warning)
    assert not at.html
    search(at, rows[1]["smiles"], "tanimoto", k=3)
    assert f">{rows[1]['name']}<" in html_of(at)  # fingerprint search still works


def test_a_search_hit_opens_its_hyperedge(app, app_env):
    root, name, rows = app_env
    at = goto(app, "search")
    search(at, rows[2]["smiles"], "exact")
    at.button(key="search_to_hyperedge").click().run()
    no_exception(at)
    assert at.title[0].value == "Hyperedges"
    page = html_of(at)
    assert f"Hyperedge of {rows[2]['name']}" in [h.value for h in at.subheader]
    assert f">{rows[2]['name']}<" in page
