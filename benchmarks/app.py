"""App speed on a 100,000-molecule MOSES library: search round trip, map page, UMAP.

Server-side timings through Streamlit's AppTest (the whole script run a browser would trigger:
sidebar, page logic, search, depictions, figure serialisation), medians over repeats:

- search round trip: a new query typed on the Search page -> hits drawn (target <= 0.5 s);
- map page: opening the Map page with the coordinates already cached, and re-running it
  with another colouring (target <= 5 s);
- UMAP of the whole library: fit on a seeded sample + placement of the rest (<= 2 minutes).

    python benchmarks/app.py [--n 100000] [--checkpoint PATH] [--copy-from LIBDIR]

The library is built with mmsa.library.build_library from the first N MOSES rows
(mmsa.data.fetch("moses")) into $MMSA_CACHE/bench-app/indexes unless it is there already
(``--copy-from`` copies an identical library built elsewhere, e.g. by benchmarks/search.py,
instead of spending another build). Prints the figures and writes benchmarks/results/app.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
APP_MAIN = REPO / "app" / "main.py"
OUT = REPO / "benchmarks" / "results" / "app.json"
TARGETS = {"search_roundtrip_s": 0.5, "map_page_s": 5.0, "umap_s": 120.0}


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


def time_umap(name: str, root: Path) -> dict:
    """Fresh UMAP of the whole library (cache removed first), then cached for the app."""
    from mmsa.library import open_library
    from mmsa.library.maps import MAP_FILE, MAP_META, MapParams, ensure_map

    lib = open_library(name, root=root, verify="size")
    for f in (MAP_FILE, MAP_META):
        (lib.cache_dir / f).unlink(missing_ok=True)
    t0 = time.perf_counter()
    coords = ensure_map(lib)
    secs = time.perf_counter() - t0
    return {"seconds": secs, "n": int(len(coords)), "params": asdict(MapParams())}


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
    # map page, coordinates cached: first visit of the page, then reruns with other colours
    at.switch_page("pages/map.py")
    map_first = _timed_run(at)
    assert at.get("plotly_chart"), "map drawn"
    reruns = []
    options = at.selectbox(key="map_colour").options
    for opt in (["memory slot", "cluster"] + [o for o in options if o not in
                ("(none)", "memory slot", "cluster")][:1] + ["(none)"])[:repeats]:
        at.selectbox(key="map_colour").set_value(opt)
        reruns.append(_timed_run(at))
    return {
        "app_first_run_s": first, "first_search_s": warm,
        "search_roundtrip_s": modes,
        "map_page_s": {"first_visit": map_first, "median_rerun": statistics.median(reruns),
                       "reruns": reruns, "colourings": options[:6]},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000, help="MOSES molecules in the library")
    p.add_argument("--checkpoint", default=None, help="MMSA checkpoint (default: shipped)")
    p.add_argument("--root", default=None, help="libraries folder (default $MMSA_CACHE/bench-app/indexes)")
    p.add_argument("--copy-from", default=None, help="an identical library folder to copy")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--skip-umap", action="store_true", help="keep the cached map")
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--doc", default=str(REPO / "docs" / "benchmarks.md"),
                   help="markdown file whose 'App' section is rewritten ('' to skip)")
    p.add_argument("--note", default="", help="a sentence for the docs (e.g. which model)")
    p.add_argument("--doc-only", action="store_true",
                   help="rewrite the docs section from the JSON of an earlier run")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.doc_only:
        from mmsa.evaluate import update_markdown_section

        result = json.loads(Path(args.out).read_text())
        if args.note:
            result["note"] = args.note
            Path(args.out).write_text(json.dumps(result, indent=1))
        update_markdown_section(args.doc, "App", doc_section(result))
        print(f"updated the App section of {args.doc}")
        return 0

    from mmsa.paths import DEFAULT_CHECKPOINT, cache_dir

    cache = cache_dir() / "bench-app"
    root = Path(args.root) if args.root else cache / "indexes"
    root.mkdir(parents=True, exist_ok=True)
    checkpoint = Path(args.checkpoint or os.environ.get("MMSA_CHECKPOINT") or DEFAULT_CHECKPOINT)
    if not checkpoint.is_file():
        raise SystemExit(f"checkpoint not found: {checkpoint} (pass --checkpoint)")
    name = f"moses-{args.n}"
    lib_info = ensure_library(name, args.n, root, checkpoint,
                              Path(args.copy_from) if args.copy_from else None, cache)
    umap = None if args.skip_umap else time_umap(name, root)

    from mmsa.library import open_library

    lib = open_library(name, root=root, verify="size")
    # queries: library molecules spread over the file (new to the app each time), and drugs
    rows = [len(lib) * i // (args.repeats + 2) + 7 for i in range(args.repeats + 1)]
    queries = [str(lib.metadata["smiles"].iloc[r]) for r in rows]

    os.environ["MMSA_INDEXES"] = str(root)
    os.environ["MMSA_CHECKPOINT"] = str(checkpoint)
    app = time_app(name, queries, args.repeats)
    load = os.getloadavg()
    result = {
        "library": {"name": name, "molecules": len(lib), "dim": lib.dim,
                    "checkpoint": str(checkpoint), "checkpoint_sha256": lib.checkpoint_hash,
                    "obtained": lib_info},
        "umap_s": None if umap is None else umap["seconds"],
        "umap": umap,
        "search_roundtrip_s": app["search_roundtrip_s"],
        "map_page_s": app["map_page_s"],
        "app_first_run_s": app["app_first_run_s"],
        "first_search_s": app["first_search_s"],
        "targets": TARGETS,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_at_end": [round(x, 2) for x in load]},
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "note": args.note,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    emb = app["search_roundtrip_s"]["embedding"]["median"]
    tan = app["search_roundtrip_s"]["tanimoto"]["median"]
    mp = app["map_page_s"]
    print(f"library            {name}: {len(lib):,} molecules, dim {lib.dim}")
    print(f"search round trip  embedding median {emb:.3f} s, tanimoto median {tan:.3f} s "
          f"(target <= {TARGETS['search_roundtrip_s']} s)")
    print(f"map page (cached)  first visit {mp['first_visit']:.2f} s, rerun median "
          f"{mp['median_rerun']:.2f} s (target <= {TARGETS['map_page_s']} s)")
    if umap is not None:
        print(f"UMAP of {umap['n']:,}     {umap['seconds']:.1f} s (target <= {TARGETS['umap_s']:.0f} s)")
    print(f"wrote {out}")
    if args.doc:
        from mmsa.evaluate import update_markdown_section

        update_markdown_section(args.doc, "App", doc_section(result))
        print(f"updated the App section of {args.doc}")
    return 0


def doc_section(r: dict) -> str:
    """The body of docs/benchmarks.md's "App" section."""
    lib, s, m = r["library"], r["search_roundtrip_s"], r["map_page_s"]
    ok = lambda v, t: "yes" if v is not None and v <= t else "no"  # noqa: E731
    emb, tan = s["embedding"]["median"], s["tanimoto"]["median"]
    rows = [
        ("search round trip, embedding (median)", emb, TARGETS["search_roundtrip_s"]),
        ("search round trip, tanimoto (median)", tan, TARGETS["search_roundtrip_s"]),
        ("map page, first visit, coordinates cached", m["first_visit"], TARGETS["map_page_s"]),
        ("map page, re-run with another colouring (median)", m["median_rerun"],
         TARGETS["map_page_s"]),
        (f"UMAP of all {lib['molecules']:,} molecules", r["umap_s"], TARGETS["umap_s"]),
    ]
    table = "\n".join(
        f"| {name} | {'-' if v is None else f'{v:.2f}'} | {t:g} | {ok(v, t)} |"
        for name, v, t in rows)
    return f"""`python benchmarks/app.py` ({r['date']}): server-side timings of the whole script run
through Streamlit's AppTest (what a browser's request triggers: sidebar, page logic, search,
depictions with MCS highlighting, figure serialisation), on a {lib['molecules']:,}-molecule
MOSES library ({lib['name']}, dim {lib['dim']}, checkpoint `{lib['checkpoint_sha256'][:12]}`,
{lib['obtained']['how']}), {r['machine']['cpus']} CPU cores shared with other jobs (load
average at the end: {', '.join(str(x) for x in r['machine']['loadavg_at_end'])}). Search: k=12,
a new library molecule as query each time (medians of the repeats); first search after start
(index and model load): {r['first_search_s']:.2f} s.

| measure | seconds | target | met |
|---|---|---|---|
{table}

The map is fitted on a seeded 15,000-molecule sample and the rest placed from their nearest
sample molecules (docs/architecture.md, "mmsa.library.maps"). Raw figures:
benchmarks/results/app.json.{(" " + r["note"]) if r.get("note") else ""}"""


if __name__ == "__main__":
    sys.exit(main())
