"""Maps ready when the library is: a library whose views were prepared at build time opens
its Map, Memory and Hyperedges pages without computing a map; an upload prepares them."""

from __future__ import annotations

import numpy as np
import pytest

from mmsa.library import maps, open_library
from mmsa.library.views import prepare_views

pytestmark = pytest.mark.slow


def _no_map_computation(monkeypatch) -> None:
    def boom(*a, **k):
        raise AssertionError("compute_map called although the map is stored")

    monkeypatch.setattr(maps, "compute_map", boom)


def _no_cluster_computation(monkeypatch) -> None:
    def boom(*a, **k):
        raise AssertionError("compute_clusters called although the clusters are stored")

    monkeypatch.setattr(maps, "compute_clusters", boom)


def _page(at, page: str):
    at.switch_page(f"pages/{page}.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_pages_use_the_map_stored_at_build_time(app, app_env, monkeypatch):
    root, name, rows = app_env
    lib = open_library(name, root=root)
    report = prepare_views(lib)
    assert not report.skipped, report.skipped
    stored = np.load(root / name / "cache" / "map.npy")
    _no_map_computation(monkeypatch)
    app.run()
    _page(app, "map")
    assert len(app.get("plotly_chart")) == 1
    assert not [i.value for i in app.info if "Computing the map" in i.value]
    _page(app, "memory")  # the slot's members on the stored map, not "open the Map page"
    captions = [c.value for c in app.caption]
    assert any("members circled in red on the library map" in c for c in captions), captions
    assert not [c for c in captions if "map is not computed yet" in c]
    _page(app, "hyperedges")
    assert np.array_equal(np.load(root / name / "cache" / "map.npy"), stored)  # untouched


def test_cluster_colouring_uses_the_clusters_stored_at_build_time(app, app_env, monkeypatch):
    root, name, rows = app_env
    lib = open_library(name, root=root)
    report = prepare_views(lib)
    assert "clusters" in report.seconds, report.skipped
    stored = maps.load_clusters(lib)
    assert stored is not None and stored.shape == (len(rows),)
    _no_map_computation(monkeypatch)
    _no_cluster_computation(monkeypatch)
    app.run()
    _page(app, "map")
    app.selectbox(key="map_colour").set_value("cluster").run()
    assert not app.exception, [e.value for e in app.exception]
    chart = app.get("plotly_chart")
    assert len(chart) == 1
    # one trace per stored cluster, named as the page names them
    import json

    names = {t.get("name") for t in json.loads(chart[0].proto.spec)["data"]}
    assert {f"cluster {k}" for k in np.unique(stored)} <= names, names


def test_an_upload_gets_its_map_at_build_time(app, app_env, monkeypatch):
    root, name, rows = app_env
    lines = ["smiles,name"] + [f"{r['smiles']},m{i}" for i, r in enumerate(rows[:12])]
    app.run()
    _page(app, "libraries")
    app.file_uploader[0].set_value(("fresh.csv", ("\n".join(lines) + "\n").encode(),
                                    "text/csv")).run()
    app.button(key="upload_build").click().run()
    assert not app.exception, [e.value for e in app.exception]
    message = [s.value for s in app.success][0]
    assert message.startswith("Built library **fresh**") and "Ready for the pages: map" in message
    coords = maps.load_map(open_library("fresh", root=root))
    assert coords is not None and coords.shape == (12, 2)
    _no_map_computation(monkeypatch)
    _page(app, "map")  # the new library is selected; its map is served from the cache
    assert len(app.get("plotly_chart")) == 1
