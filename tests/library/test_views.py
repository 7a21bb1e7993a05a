"""Views ready when the library is: `mmsa index build|add` compute the map and the page caches
(mmsa.library.views), `--no-map` skips them; the terminal shows one progress bar per job."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmsa.cli import main
from mmsa.library import maps, open_library
from mmsa.library.views import STEPS, prepare_views

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # UMAP (numba) on a 70-molecule library


def _no_recompute(monkeypatch) -> None:
    def boom(*a, **k):
        raise AssertionError("the map or its clusters were recomputed although the build "
                             "stored them")

    monkeypatch.setattr(maps, "compute_map", boom)
    monkeypatch.setattr(maps, "compute_clusters", boom)


def test_build_and_add_store_the_map_and_page_caches(tmp_path, tiny_csv, extra_csv,
                                                     tiny_checkpoint, capsys, monkeypatch):
    root = str(tmp_path / "idx")
    ck = ["--checkpoint", str(tiny_checkpoint), "--indexes", root, "--no-progress"]
    assert main(["index", "build", str(tiny_csv), "--name", "v", *ck]) == 0
    assert "views of 'v' ready for the app: map" in capsys.readouterr().err
    cache = Path(root) / "v" / "cache"
    assert {"map.npy", "map.json", "clusters-12.npy", "clusters-12.json", "properties.parquet",
            "slot-names.json", "motifs.json"} <= {p.name for p in cache.iterdir()}
    meta = json.loads((cache / "map.json").read_text())
    lib = open_library("v", root=root)
    assert meta["fingerprint"] == maps.vectors_fingerprint(lib.vectors)
    built_coords = np.load(cache / "map.npy")
    assert built_coords.shape == (len(lib), 2) and np.isfinite(built_coords).all()

    built_clusters = np.load(cache / "clusters-12.npy")
    assert built_clusters.shape == (len(lib),)

    with monkeypatch.context() as m:  # what the Map page calls: no recomputation
        _no_recompute(m)
        assert np.array_equal(maps.load_map(lib), built_coords)
        assert np.array_equal(maps.ensure_map(lib), built_coords)
        assert np.array_equal(maps.cluster_labels(lib), built_clusters)

    # append: the store drops cache/, the command computes the new version's map
    assert main(["index", "add", "v", str(extra_csv), *ck]) == 0
    capsys.readouterr()
    lib2 = open_library("v", root=root)
    assert len(lib2) == len(lib) + 30
    meta2 = json.loads((cache / "map.json").read_text())
    assert meta2["fingerprint"] != meta["fingerprint"]
    assert meta2["fingerprint"] == maps.vectors_fingerprint(lib2.vectors)
    assert meta2["n"] == len(lib2)
    with monkeypatch.context() as m:
        _no_recompute(m)
        coords = maps.load_map(lib2)
        assert coords is not None and coords.shape == (len(lib2), 2)
        # the clusters of the appended version, computed by `add`, not the build's
        clusters = maps.cluster_labels(lib2)
        assert clusters.shape == (len(lib2),)
        assert maps.load_clusters(lib) is None  # the build's vectors: stale


def test_no_map_leaves_no_map(tmp_path, tiny_csv, extra_csv, tiny_checkpoint, capsys):
    root = str(tmp_path / "idx")
    ck = ["--checkpoint", str(tiny_checkpoint), "--indexes", root, "--no-progress", "--no-map"]
    assert main(["index", "build", str(tiny_csv), "--name", "n", *ck]) == 0
    assert main(["index", "add", "n", str(extra_csv), *ck]) == 0
    assert "views of" not in capsys.readouterr().err
    cache = Path(root) / "n" / "cache"
    assert not (cache / "map.npy").exists() and not (cache / "properties.parquet").exists()
    assert maps.load_map(open_library("n", root=root)) is None


def test_prepare_views_reports_each_step_and_survives_a_failing_one(lib_copy, monkeypatch):
    root, name = lib_copy
    lib = open_library(name, root=root)
    seen = []

    def progress(step):
        calls = []
        seen.append((step, calls))
        return lambda done, total: calls.append((done, total))

    def broken(*a, **k):
        from mmsa.types import LibraryError

        raise LibraryError("no space left on the device")

    monkeypatch.setattr("mmsa.library.properties.library_properties", broken)
    report = prepare_views(lib, progress=progress)
    assert report.skipped == {"properties": "no space left on the device"}
    assert list(report.seconds) == [s for s in STEPS if s != "properties"]
    for step, calls in seen:  # every step that ran drove its bar to its end
        if step != "properties":
            assert calls and calls[-1][0] == calls[-1][1], (step, calls)
    assert maps.load_map(lib) is not None
    with pytest.raises(ValueError, match="unknown view steps"):
        prepare_views(lib, steps=["mapp"])


def test_slot_names_and_motifs_are_cached_for_the_pages(lib_copy, monkeypatch):
    from mmsa.library import hyperedges, slot_names

    root, name = lib_copy
    lib = open_library(name, root=root)
    labels = slot_names.library_slot_labels(lib)
    ids, _ = lib.slot_topk
    assert set(labels) == set(np.unique(np.asarray(ids)[:, 0]).tolist())
    table = hyperedges.coherent_with_motifs(lib, top=5)
    assert list(table["motif atoms"]) == sorted(table["motif atoms"], reverse=True)
    assert {"motif atoms", "motif smarts", "coherence", "members"} <= set(table.columns)

    def boom(*a, **k):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(slot_names, "slot_labels", boom)
    monkeypatch.setattr("mmsa.chem.motifs.mcs", boom)
    assert slot_names.library_slot_labels(lib) == labels  # from cache/slot-names.json
    assert hyperedges.coherent_with_motifs(lib, top=5).equals(table)  # from cache/motifs.json
    # another sample size is another cache entry, never a stale answer
    with pytest.raises(AssertionError, match="recomputed"):
        slot_names.library_slot_labels(lib, sample=10)
