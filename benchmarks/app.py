"""App speed on a 100,000-molecule MOSES library and on the default approved-drugs library:
first load, search round trip, first visits of the Map, Memory and Hyperedges pages, UMAP.

Server-side timings through Streamlit's AppTest (the whole script run a browser would trigger:
sidebar, page logic, search, depictions, figure serialisation), medians over repeats:

- first app run (model load, first render) and first search (index and metadata load);
- search round trip: a new query typed on the Search page -> hits drawn (target <= 0.5 s);
- map page: opening the Map page with the coordinates already cached, then the first
  colouring by memory slot, cluster, a property and nothing (target <= 5 s each);
- first visit of the Memory and Hyperedges pages;
- the views computed at build time (mmsa.library.views.prepare_views, as `mmsa index build`
  runs it), step by step; the "map" step is the UMAP of the whole library (<= 2 minutes).

    python benchmarks/app.py [--library moses approved-drugs] [--n 100000] [--checkpoint PATH]

"moses": the first N MOSES rows (mmsa.data.fetch("moses")) built with
mmsa.library.build_library into $MMSA_CACHE/bench-app/indexes unless it is there already
(``--copy-from`` copies an identical library built elsewhere, e.g. by benchmarks/search.py);
its view caches are dropped and recomputed (``--skip-views`` keeps them).
"approved-drugs": the default library, built by mmsa.library.ensure_default_library into a
fresh temporary libraries folder under $MMSA_CACHE/bench-app (removed afterwards; the
project's indexes/ is never touched), then its views.
Each library runs in its own Python process, so every "first" figure includes the model load
and the imports a fresh app server pays. Prints the figures and writes
benchmarks/results/app.json (one entry per library under "runs"; the entries of libraries
not run this time are kept).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
APP_MAIN = REPO / "app" / "main.py"
OUT = REPO / "benchmarks" / "results" / "app.json"
TARGETS = {"search_roundtrip_s": 0.5, "map_page_s": 5.0, "umap_s": 120.0}
LIBRARIES = ("moses", "approved-drugs")
#: the Map page colourings timed, in this order (then one library property column)
COLOURINGS = ("memory slot", "cluster")


def _subset_csv(n: int, cache: Path) -> Path:
    from mmsa.data import fetch

    out = cache / f"moses-{n}.csv"
    if out.exists():
        return out
    src = fetch("moses")
    tmp = out.with_suffix(".tmp")
    with open(src) as fin, open(tmp, "w") as fout:
        for i, line in enumerate(fin):
            if i > n:
                break
            fout.write(line)
    os.replace(tmp, out)
    return out


def ensure_library(name: str, n: int, root: Path, checkpoint: Path, copy_from: Path | None,
                   cache: Path) -> dict:
    """The benchmark library (built or copied once); returns how it was obtained."""
    from mmsa.library import build_library, open_library
    from mmsa.model.encoder import file_sha256

    path = root / name
    want = file_sha256(checkpoint)
    if path.exists():
        lib = open_library(name, root=root, verify="size")
        if lib.checkpoint_hash == want and len(lib) == n:
            return {"how": "reused", "seconds": None}
        shutil.rmtree(path)
    if copy_from is not None:
        t0 = time.perf_counter()
        shutil.copytree(copy_from, path)
        shutil.rmtree(path / "cache", ignore_errors=True)  # no derived caches (maps) copied
        lib = open_library(name, root=root, verify="size")
        if lib.checkpoint_hash != want or len(lib) != n:
            raise SystemExit(f"{copy_from} holds {len(lib)} molecules embedded with "
                             f"{lib.checkpoint_hash[:12]}, not {n} with {want[:12]}")
        return {"how": f"copied from {copy_from}", "seconds": time.perf_counter() - t0}
    from tqdm import tqdm

    csv = _subset_csv(n, cache)
    bar = tqdm(total=n, unit="mol", desc=f"building {name}")

    def progress(done, total):
        bar.n = done
        bar.refresh()

    t0 = time.perf_counter()
    build_library(csv, name, root=root, encoder=checkpoint, progress=progress, overwrite=True)
    bar.close()
    return {"how": "built", "seconds": time.perf_counter() - t0}


def time_views(name: str, root: Path, fresh: bool = True) -> dict:
    """:func:`mmsa.library.views.prepare_views` of the library, timed per step, its view
    caches dropped first when ``fresh`` (what `mmsa index build` runs after the store)."""
    from mmsa.library import open_library
    from mmsa.library.maps import MapParams
    from mmsa.library.views import prepare_views

    lib = open_library(name, root=root, verify="size")
    if fresh:
        for pattern in ("map.*", "clusters-*", "properties.parquet", "slot-names.json",
                        "motifs.json"):
            for f in lib.cache_dir.glob(pattern):
                f.unlink()
    t0 = time.perf_counter()
    report = prepare_views(lib)
    return {"fresh": fresh, "seconds": report.seconds, "skipped": report.skipped,
            "total_s": time.perf_counter() - t0, "map_params": asdict(MapParams())}


def _timed_run(at, timeout: float = 600) -> float:
    t0 = time.perf_counter()
    at.run(timeout=timeout)
    secs = time.perf_counter() - t0
    if at.exception:
        raise RuntimeError(at.exception[0].value)
    return secs


def time_app(name: str, queries: list[str], repeats: int) -> dict:
    """Search round trips and map page runs through AppTest (env already points at the
    library root and checkpoint)."""
    sys.path.insert(0, str(APP_MAIN.parent))
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP_MAIN), default_timeout=600)
    first = _timed_run(at)  # model load, first render
    picker = at.sidebar.selectbox(key="library_picker")
    if picker.value != name:
        picker.set_value(name)
        _timed_run(at)
    # warm-up: the first search opens the index, loads metadata and fingerprints
    at.text_input(key="search_query").set_value(queries[0])
    warm = _timed_run(at)
    n_cards = [h.value.count('class="mmsa-card"') for h in at.html]
    if not n_cards or n_cards[0] == 0:
        raise RuntimeError(f"no hits drawn: {[e.value for e in at.error]}")
    modes = {}
    for mode in ("embedding", "tanimoto"):
        at.selectbox(key="search_mode").set_value(mode)
        _timed_run(at)
        times = []
        for q in queries[1:1 + repeats]:
            at.text_input(key="search_query").set_value(q)
            times.append(_timed_run(at))
            assert at.html and 'class="mmsa-card"' in at.html[0].value, "hits drawn"
        modes[mode] = {"median": statistics.median(times), "all": times}
    # map page, coordinates cached: first visit of the page, then the first run with
    # each other colouring
    at.switch_page("pages/map.py")
    map_first = _timed_run(at)
    assert at.get("plotly_chart"), "map drawn"
    options = at.selectbox(key="map_colour").options
    own = [o for o in options if o not in ("(none)", *COLOURINGS) and not o.startswith("RDKit")]
    first_colouring = {}
    for opt in [*COLOURINGS, *own[:1], "(none)"]:
        at.selectbox(key="map_colour").set_value(opt)
        first_colouring[opt] = _timed_run(at)
        assert at.get("plotly_chart"), f"map coloured by {opt} drawn"
    reruns = list(first_colouring.values())
    pages = {}
    for page in ("memory", "hyperedges"):
        at.switch_page(f"pages/{page}.py")
        pages[page] = _timed_run(at)
    # the Hyperedges page's two views: the most coherent hyperedges (motifs cached at build
    # time, the first one drawn), then one molecule's hyperedge (its MCS computed now)
    at.radio(key="hyperedge_view").set_value("Most coherent hyperedges")
    pages["hyperedges, most coherent"] = _timed_run(at)
    at.radio(key="hyperedge_view").set_value("This molecule's hyperedge")
    at.text_input(key="hyperedge_id").set_value(f"#{len(queries) * 11 + 3}")
    pages["hyperedges, one molecule"] = _timed_run(at)
    if at.error:
        raise RuntimeError(f"hyperedge not drawn: {[e.value for e in at.error]}")
    return {
        "app_first_run_s": first, "first_search_s": warm,
        "search_roundtrip_s": modes,
        "map_page_s": {"first_visit": map_first, "median_rerun": statistics.median(reruns),
                       "first_colouring": first_colouring, "colourings": options[:6]},
        "first_visit_s": pages,
    }


def _load_results(path: Path) -> dict:
    """The results file as {"runs": {library: result}} (an older single-run file is kept as
    its library's run)."""
    if not path.is_file():
        return {"runs": {}}
    data = json.loads(path.read_text())
    if "runs" not in data:
        data = {"runs": {"moses" if data["library"]["name"].startswith("moses") else
                         data["library"]["name"]: data}}
    return data


def run_one(which: str, args, checkpoint: Path, cache: Path) -> dict:
    """Obtain library ``which``, prepare its views, time the app on it."""
    from mmsa.library import open_library

    tmp_root = None
    if which == "moses":
        root = Path(args.root) if args.root else cache / "indexes"
        root.mkdir(parents=True, exist_ok=True)
        name = f"moses-{args.n}"
        lib_info = ensure_library(name, args.n, root, checkpoint,
                                  Path(args.copy_from) if args.copy_from else None, cache)
        views = time_views(name, root, fresh=not args.skip_views)
    elif which == "approved-drugs":
        from mmsa.library import ensure_default_library

        tmp_root = root = Path(tempfile.mkdtemp(prefix="default-indexes-", dir=cache))
        t0 = time.perf_counter()
        name = ensure_default_library(root, encoder=checkpoint)
        lib_info = {"how": "built by ensure_default_library in a fresh folder",
                    "seconds": time.perf_counter() - t0}
        views = time_views(name, root, fresh=False)
    else:
        raise SystemExit(f"unknown library {which!r} (use {' or '.join(LIBRARIES)})")
    try:
        lib = open_library(name, root=root, verify="size")
        # queries: library molecules spread over the file (new to the app each time)
        rows = [len(lib) * i // (args.repeats + 2) + 7 for i in range(args.repeats + 1)]
        queries = [str(lib.metadata["smiles"].iloc[r]) for r in rows]
        os.environ["MMSA_INDEXES"] = str(root)
        os.environ["MMSA_CHECKPOINT"] = str(checkpoint)
        app = time_app(name, queries, args.repeats)
    finally:
        if tmp_root is not None:
            shutil.rmtree(tmp_root, ignore_errors=True)
    return {
        "library": {"name": name, "molecules": len(lib), "dim": lib.dim,
                    "checkpoint": str(checkpoint), "checkpoint_sha256": lib.checkpoint_hash,
                    "obtained": lib_info},
        "views": views,
        "umap_s": views["seconds"].get("map") if views["fresh"] or which != "moses" else None,
        **app,
        "targets": TARGETS,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "note": args.note,
    }


def _print(r: dict) -> None:
    lib, m = r["library"], r["map_page_s"]
    emb = r["search_roundtrip_s"]["embedding"]["median"]
    tan = r["search_roundtrip_s"]["tanimoto"]["median"]
    print(f"library            {lib['name']}: {lib['molecules']:,} molecules, dim {lib['dim']}")
    print("views              " + ", ".join(f"{k} {v:.1f} s" for k, v in r["views"]["seconds"].items()))
    print(f"first app run      {r['app_first_run_s']:.2f} s, first search {r['first_search_s']:.2f} s")
    print(f"search round trip  embedding median {emb:.3f} s, tanimoto median {tan:.3f} s "
          f"(target <= {TARGETS['search_roundtrip_s']} s)")
    print(f"map page (cached)  first visit {m['first_visit']:.2f} s; first colouring "
          + ", ".join(f"{k} {v:.2f} s" for k, v in m["first_colouring"].items()))
    print("first visit        " + ", ".join(f"{k} {v:.2f} s" for k, v in r["first_visit_s"].items()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--library", nargs="+", choices=LIBRARIES, default=list(LIBRARIES),
                   help="which libraries to time (each in its own process; default both)")
    p.add_argument("--n", type=int, default=100_000, help="MOSES molecules in the library")
    p.add_argument("--checkpoint", default=None, help="MMSA checkpoint (default: shipped)")
    p.add_argument("--root", default=None,
                   help="libraries folder of the MOSES library (default $MMSA_CACHE/bench-app/indexes)")
    p.add_argument("--copy-from", default=None, help="an identical MOSES library folder to copy")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--skip-views", "--skip-umap", dest="skip_views", action="store_true",
                   help="keep the MOSES library's cached map and views")
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--doc", default=str(REPO / "docs" / "benchmarks.md"),
                   help="markdown file whose 'App' section is rewritten ('' to skip)")
    p.add_argument("--note", default="", help="a sentence for the docs (e.g. which model)")
    p.add_argument("--doc-only", action="store_true",
                   help="rewrite the docs section from the JSON of an earlier run")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    if not args.doc_only and len(args.library) > 1:
        # one fresh process per library: its "first" figures include the model load
        forward = [a for a in (argv if argv is not None else sys.argv[1:])]
        i = forward.index("--library") if "--library" in forward else None
        if i is not None:
            j = i + 1
            while j < len(forward) and not forward[j].startswith("--"):
                j += 1
            del forward[i:j]
        for which in args.library:
            code = subprocess.call([sys.executable, __file__, *forward, "--library", which,
                                    "--doc", ""])
            if code:
                return code
    elif not args.doc_only:
        from mmsa.paths import DEFAULT_CHECKPOINT, cache_dir

        cache = cache_dir() / "bench-app"
        cache.mkdir(parents=True, exist_ok=True)
        checkpoint = Path(args.checkpoint or os.environ.get("MMSA_CHECKPOINT")
                          or DEFAULT_CHECKPOINT)
        if not checkpoint.is_file():
            raise SystemExit(f"checkpoint not found: {checkpoint} (pass --checkpoint)")
        result = run_one(args.library[0], args, checkpoint, cache)
        _print(result)
        data = _load_results(out)  # read just before writing: keep the other libraries' runs
        data["runs"][args.library[0]] = result
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data, indent=1))
        print(f"wrote {out}")
    data = _load_results(out)
    if args.doc_only and args.note:
        for r in data["runs"].values():
            r["note"] = args.note
        out.write_text(json.dumps(data, indent=1))
    if args.doc:
        from mmsa.evaluate import update_markdown_section

        update_markdown_section(args.doc, "App", doc_section(data))
        print(f"updated the App section of {args.doc}")
    return 0


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def _visit_label(page: str) -> str:
    if "," in page:  # a view of a page: "hyperedges, most coherent"
        return f"{page}: first time"
    return f"{page} page, first visit" + (" (asks for a molecule)" if page == "hyperedges" else "")


def _run_section(r: dict) -> str:
    lib, s, m = r["library"], r["search_roundtrip_s"], r["map_page_s"]
    ok = lambda v, t: "-" if t is None else ("yes" if v is not None and v <= t else "no")  # noqa: E731
    colour = m.get("first_colouring") or {}
    rows = [
        ("first app run (model load, library open, first render)", r.get("app_first_run_s"),
         None),
        ("first search (index, metadata, fingerprints load)", r.get("first_search_s"), None),
        ("search round trip, embedding (median)", s["embedding"]["median"],
         TARGETS["search_roundtrip_s"]),
        ("search round trip, tanimoto (median)", s["tanimoto"]["median"],
         TARGETS["search_roundtrip_s"]),
        ("map page, first visit, coordinates cached", m["first_visit"], TARGETS["map_page_s"]),
        *[(f"map page, first colouring by {k}", v, TARGETS["map_page_s"])
          for k, v in colour.items()],
        *[(_visit_label(page), v, None) for page, v in (r.get("first_visit_s") or {}).items()],
    ]
    if not colour:  # an older run: re-runs with other colourings, median
        rows.append(("map page, re-run with another colouring (median)", m["median_rerun"],
                     TARGETS["map_page_s"]))
    views = r.get("views")
    if views:
        rows += [(f"build time: {step}" + (" (UMAP of all molecules)" if step == "map" else ""),
                  v, TARGETS["umap_s"] if step == "map" else None)
                 for step, v in views["seconds"].items()]
    elif r.get("umap_s") is not None:
        rows.append((f"UMAP of all {lib['molecules']:,} molecules", r["umap_s"], TARGETS["umap_s"]))
    table = "\n".join(f"| {name} | {_fmt(v)} | {'-' if t is None else f'{t:g}'} | {ok(v, t)} |"
                      for name, v, t in rows)
    obtained = lib["obtained"]
    how = obtained["how"] + (f", {obtained['seconds']:.0f} s" if obtained.get("seconds") else "")
    skipped = ("" if not views or not views.get("skipped") else
               " Not computed at build time: " + "; ".join(
                   f"{k} ({v})" for k, v in views["skipped"].items()) + ".")
    return f"""### {lib['name']} ({lib['molecules']:,} molecules)

{r['date']}; dim {lib['dim']}, checkpoint `{lib['checkpoint_sha256'][:12]}`, library {how};
{r['machine']['cpus']} CPU cores shared with other jobs (load average at the end:
{', '.join(str(x) for x in r['machine']['loadavg_at_end'])}).{skipped}

| measure | seconds | target | met |
|---|---|---|---|
{table}
{(chr(10) + r["note"] + chr(10)) if r.get("note") else ""}"""


def doc_section(data: dict) -> str:
    """The body of docs/benchmarks.md's "App" section, one table per library run."""
    runs = data["runs"]
    parts = [run for key in (*LIBRARIES, *[k for k in runs if k not in LIBRARIES])
             if (run := runs.get(key))]
    body = "\n".join(_run_section(r) for r in parts)
    return f"""`python benchmarks/app.py`: server-side timings of the whole script run through
Streamlit's AppTest (what a browser's request triggers: sidebar, page logic, search,
depictions with MCS highlighting, figure serialisation), each library in a fresh process.
Search: k=12, a new library molecule as query each time (medians of the repeats). "First colouring" is the first script run with that colouring
chosen on the Map page; "build time" rows are the steps of `prepare_views`, which `mmsa index
build|add|ensure-default` and the upload run after the store (docs/architecture.md,
"mmsa.library.views"). The library is obtained (approved-drugs: built) and its views
prepared in the same process just before the app is timed, so the Python imports (torch,
RDKit, umap) are already paid; the model checkpoint and the library files are loaded by the
app itself and counted (in the first app run).

{body}
The map is fitted on a seeded 15,000-molecule sample and the rest placed from their nearest
sample molecules (docs/architecture.md, "mmsa.library.maps"). Raw figures:
benchmarks/results/app.json."""


if __name__ == "__main__":
    sys.exit(main())
