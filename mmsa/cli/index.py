"""``mmsa index build|add|list|info|delete|ensure-default`` and ``mmsa search``.

Parsing only: the work is done by :mod:`mmsa.library`.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys

#: terminal control characters (ANSI escapes start with ESC): never printed from user data
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _clean(text) -> str:
    """``text`` with control characters shown as ``?`` (file contents never drive the
    terminal)."""
    return _CONTROL.sub("?", str(text))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--indexes", default=None, metavar="DIR",
                   help="libraries root (default $MMSA_INDEXES, else ./indexes)")


def _views_opt(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-map", action="store_true",
                   help="do not compute the map and the other page caches (k-means clusters, "
                        "drug-like properties, slot names, hyperedge motifs) after the build; the app "
                        "then computes them on first use")


def _encoder_opt(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default=None, metavar="PT",
                   help="MMSA checkpoint (default $MMSA_CHECKPOINT, else the shipped one)")


def _input_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--smiles-col", default=None, help="SMILES column (default: found by name)")
    p.add_argument("--id-col", default=None, help="id column (default: found by name)")
    p.add_argument("--chunk-size", type=int, default=4096, help="molecules per chunk")
    p.add_argument("--n-jobs", type=int, default=1,
                   help="worker processes for embedding (local engine)")
    p.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="where chunks are embedded: local (this machine, --n-jobs processes; "
                        "the default) or ray (a Ray Data actor pool; needs the [ray] extra)")
    p.add_argument("--address", default=None, metavar="ADDR",
                   help="Ray engine: join this running Ray cluster ('auto' = the one `ray "
                        "start` runs here, or HOST:PORT); default: start a local Ray instance")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="Ray engine: number of actors, one CPU each (default: all CPUs of "
                        "the Ray instance)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(subparsers) -> None:
    # pandas imports numexpr, which logs its thread count at INFO: not news to our users
    logging.getLogger("numexpr.utils").setLevel(logging.WARNING)
    parser = subparsers.add_parser(
        "index", help="build and manage searchable libraries",
        description="Build, append to, list, inspect and delete libraries (indexes/NAME/).",
    )
    sub = parser.add_subparsers(dest="index_command", required=True)

    p = sub.add_parser("build", help="build a library from a .smi/.csv/.tsv/.sdf[.gz] file")
    p.add_argument("input", help="molecule file")
    p.add_argument("--name", required=True, help="library name")
    p.add_argument("--index", default="auto",
                   choices=["auto", "flat", "hnsw", "ivf", "ivfpq", "ivfopq"],
                   help="FAISS index: auto = exact below --approx-threshold, HNSW up to 1M "
                        "molecules, IVF-flat up to 5M, IVF-PQ (re-ranked exactly) above; "
                        "ivfopq = IVF-PQ behind a learned OPQ rotation (re-ranked exactly)")
    p.add_argument("--approx-threshold", type=int, default=50_000,
                   help="library size from which 'auto' uses an approximate index")
    p.add_argument("--hyperedge-k", type=int, default=8, help="neighbours per hyperedge")
    p.add_argument("--overwrite", action="store_true", help="replace an existing library")
    _input_opts(p)
    _views_opt(p)
    _encoder_opt(p)
    _common(p)
    p.set_defaults(func=_build)

    p = sub.add_parser("add", help="append the molecules of a file to a library")
    p.add_argument("name", help="library name")
    p.add_argument("input", help="molecule file")
    p.add_argument("--shard", action="store_true",
                   help="write the new molecules as a new shard (their vectors and their own "
                        "index) and leave the existing shards untouched instead of rebuilding "
                        "the index; a sharded library stays sharded (every add is a shard)")
    _input_opts(p)
    _views_opt(p)
    _encoder_opt(p)
    _common(p)
    p.set_defaults(func=_add)

    p = sub.add_parser("list", help="list the libraries")
    _common(p)
    p.set_defaults(func=_list)

    p = sub.add_parser("info", help="show a library's manifest summary")
    p.add_argument("name", help="library name")
    p.add_argument("--json", action="store_true", help="print the whole manifest as JSON")
    p.add_argument("--verify", action="store_true", help="check every file's sha256")
    _common(p)
    p.set_defaults(func=_info)

    p = sub.add_parser("delete", help="delete a library")
    p.add_argument("name", help="library name")
    _common(p)
    p.set_defaults(func=_delete)

    p = sub.add_parser("ensure-default",
                       help="build the default library (approved drugs) if there is none")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _views_opt(p)
    _encoder_opt(p)
    _common(p)
    p.set_defaults(func=_ensure_default)

    p = subparsers.add_parser(
        "search", help="search a library with a query molecule",
        description="Search a library: embedding (MMSA cosine), tanimoto (Morgan r=2 2048), "
                    "substructure (SMILES/SMARTS pattern) or exact (same standardised "
                    "structure, stereo included; tautomers are not merged). Limits: "
                    "mmsa.limits (k, query size, substructure time).",
    )
    p.add_argument("name", help="library name")
    p.add_argument("--smiles", required=True, help="query SMILES (SMARTS allowed for substructure)")
    p.add_argument("-k", type=int, default=10,
                   help="number of hits (default 10; 1 to mmsa.limits.MAX_K = 10,000)")
    p.add_argument("--all", action="store_true",
                   help="every hit (tanimoto, substructure, exact; not embedding)")
    p.add_argument("--mode", default="embedding",
                   choices=["embedding", "tanimoto", "hybrid", "substructure", "exact"],
                   help="embedding: MMSA cosine; tanimoto: Morgan r=2 2048; hybrid: "
                        "w x cosine + (1 - w) x Tanimoto (w in the library manifest, default "
                        "0.5); substructure: "
                        "SMILES/SMARTS pattern; exact: the same standardised structure "
                        "(largest fragment, neutralised), stereo included: a query without "
                        "stereo, or another tautomer, does not match (no tautomer-"
                        "insensitive key yet)")
    p.add_argument("--threshold", type=float, default=None, help="minimum score")
    p.add_argument("--format", default="table", choices=["table", "csv"], help="output format")
    _encoder_opt(p)
    _common(p)
    p.set_defaults(func=_search)


class _Bar:
    """A tqdm bar driven by the library's progress(done, total) callback.

    While the bar is open, log records go through ``tqdm.write`` (tqdm's
    ``logging_redirect_tqdm``), so a log line never lands on the bar's line and the bar is
    drawn once, below them; an update that reaches the total is drawn at once (tqdm would
    otherwise hold it back until ``close``, after the lines logged meanwhile)."""

    def __init__(self, enabled: bool, desc: str, unit: str = "mol"):
        self.bar = None
        self.enabled = enabled
        self.desc = desc
        self.unit = unit
        self._redirect = None

    def __call__(self, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm.auto import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            self.bar = tqdm(total=total, unit=self.unit, desc=self.desc, file=sys.stderr)
            self._redirect = logging_redirect_tqdm()
            self._redirect.__enter__()
        if total is not None and self.bar.total != total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)
        if total is not None and done >= total:
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self._redirect is not None:
            self._redirect.__exit__(None, None, None)
            self._redirect = None


def _report(report) -> None:
    idx = report.index
    recall = idx.get("recall_at_10")
    print(
        f"library {report.name!r}: {report.n_total:,} molecules ({report.n_ok:,} added, "
        f"{report.n_failed:,} failed) in {report.seconds:.1f} s; index {idx.get('type')}"
        + (f" (recall@10 {recall:.3f} vs exact)" if idx.get("type") != "flat" else "")
        + f"; {report.path}",
        file=sys.stderr,
    )
    for f in report.failures[:20]:
        print(_clean(f"  failed: {f}"), file=sys.stderr)
    if len(report.failures) > 20:
        print(f"  ... and {len(report.failures) - 20} more (see `mmsa index info "
              f"{report.name} --json`)", file=sys.stderr)


def _prepare_views(args: argparse.Namespace, name: str) -> None:
    """The map and page caches of the library just built (unless --no-map), a bar a step."""
    if args.no_map:
        return
    from mmsa.library import open_library
    from mmsa.library.views import STEP_UNITS, prepare_views

    lib = open_library(name, root=args.indexes)
    report = prepare_views(lib, progress=lambda step: _Bar(
        not args.no_progress, f"{step} {name}", unit=STEP_UNITS[step]))
    done = ", ".join(f"{step} {secs:.1f} s" for step, secs in report.seconds.items())
    print(_clean(f"views of {name!r} ready for the app: {done or 'none'}"), file=sys.stderr)
    for step, why in report.skipped.items():
        print(_clean(f"  {step} not computed now: {why}"), file=sys.stderr)


def _engine_args(args: argparse.Namespace) -> dict:
    return {"engine": args.engine, "workers": args.workers, "address": args.address}


def _build(args: argparse.Namespace) -> int:
    from mmsa.library import build_library

    bar = _Bar(not args.no_progress, f"build {args.name}")
    try:
        report = build_library(
            args.input, args.name, root=args.indexes, encoder=args.checkpoint,
            smiles_col=args.smiles_col, id_col=args.id_col, index=args.index,
            approx_threshold=args.approx_threshold, hyperedge_k=args.hyperedge_k,
            chunk_size=args.chunk_size, n_jobs=args.n_jobs, progress=bar,
            overwrite=args.overwrite, **_engine_args(args),
        )
    finally:
        bar.close()
    _report(report)
    _prepare_views(args, report.name)
    return 0


def _add(args: argparse.Namespace) -> int:
    from mmsa.library import add_to_library

    bar = _Bar(not args.no_progress, f"add to {args.name}")
    try:
        report = add_to_library(
            args.name, args.input, root=args.indexes, encoder=args.checkpoint,
            smiles_col=args.smiles_col, id_col=args.id_col, chunk_size=args.chunk_size,
            n_jobs=args.n_jobs, progress=bar, shard=args.shard, **_engine_args(args),
        )
    finally:
        bar.close()
    _report(report)
    _prepare_views(args, report.name)
    return 0


def _list(args: argparse.Namespace) -> int:
    from mmsa.library import list_libraries

    infos = list_libraries(args.indexes)
    if not infos:
        print("no libraries (build one with `mmsa index build FILE --name NAME`)",
              file=sys.stderr)
        return 0
    header = ("name", "molecules", "failed", "index", "dim", "checkpoint", "updated")
    rows = [
        (i.name, f"{i.count:,}", f"{i.n_failed:,}", i.index_type, str(i.dim),
         i.checkpoint_sha256[:12], i.updated or i.created)
        if i.ok else (i.name, "-", "-", "-", "-", "-", f"unreadable: {i.error}")
        for i in infos
    ]
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    for r in [header, *rows]:
        print(_clean("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip()))
    return 0


def _info(args: argparse.Namespace) -> int:
    from mmsa.library import open_library

    lib = open_library(args.name, root=args.indexes, verify="full" if args.verify else "auto")
    m = lib.manifest
    if args.json:
        print(json.dumps(m, indent=1, default=str))  # JSON escapes control characters
        return 0
    idx = m["index"]
    lines = [
        ("name", lib.name),
        ("path", str(lib.path)),
        ("molecules", f"{len(lib):,}"),
        ("failed rows", f"{m.get('n_failed', 0):,}"),
        ("embedding", f"dim {m['embedding']['dim']}, {m['embedding']['metric']}, "
                      f"{m['embedding']['normalization']}-normalised"),
        ("checkpoint", m["checkpoint"]["sha256"]),
        ("index", f"{idx.get('type')} {idx.get('params', {})}"
                  + (f", recall@10 {idx['recall_at_10']} on {idx['recall_sample']} queries"
                     if idx.get("type") != "flat" else "")),
        ("hyperedges", f"k = {m['hyperedges']['k']}"),
        ("memory slots", f"top {m['slots']['top']} of {m['slots'].get('num_slots', '?')}"),
        ("properties", ", ".join(m.get("columns", [])) or "-"),
        ("created", m.get("created", "")),
        ("updated", m.get("updated", "")),
    ]
    for s in m.get("sources", []):
        lines.append(("source", f"{s['path']} ({s['n_ok']:,} ok, {s['n_failed']:,} failed)"))
    width = max(len(k) for k, _ in lines)
    for k, v in lines:
        print(_clean(f"{k.ljust(width)}  {v}"))
    return 0


def _delete(args: argparse.Namespace) -> int:
    from mmsa.library import delete_library

    delete_library(args.name, root=args.indexes)
    print(f"deleted library {args.name!r}", file=sys.stderr)
    return 0


def _ensure_default(args: argparse.Namespace) -> int:
    from mmsa.library import ensure_default_library

    bar = _Bar(not args.no_progress, "build the default library")
    try:
        built = ensure_default_library(root=args.indexes, progress=bar, encoder=args.checkpoint)
    finally:
        bar.close()
    if built:
        print(f"built the default library {built!r}", file=sys.stderr)
        _prepare_views(args, built)
        return 0
    print("a library already exists; nothing to build", file=sys.stderr)
    from mmsa.library import library_path
    from mmsa.library.layout import DEFAULT_LIBRARY

    if not args.no_map and library_path(DEFAULT_LIBRARY, args.indexes).is_dir():
        from mmsa.library import open_library
        from mmsa.library.maps import load_map

        if load_map(open_library(DEFAULT_LIBRARY, root=args.indexes)) is None:
            _prepare_views(args, DEFAULT_LIBRARY)  # built before maps were made at build time
    return 0


def _search(args: argparse.Namespace) -> int:
    import pandas as pd

    from mmsa import limits
    from mmsa.library import open_library

    k = None if args.all else limits.check_k(args.k)
    # sizes at open; every file's checksum is still checked before its first use
    lib = open_library(args.name, root=args.indexes, encoder=args.checkpoint, verify="size")
    hits = lib.search(args.smiles, k=k, mode=args.mode, threshold=args.threshold)
    for col in ("score", "tanimoto", "cosine"):
        hits[col] = hits[col].round(4)
    if args.format == "csv":
        if sys.stdout.isatty():  # a terminal: no control characters; a file: the data as is
            hits = _clean_frame(hits)
        hits.to_csv(sys.stdout, index=False)
        return 0
    hits = _clean_frame(hits)
    if hits.empty:
        print("no hits", file=sys.stderr)
        return 0
    with pd.option_context("display.max_columns", 12, "display.width", 160,
                           "display.max_colwidth", 50):
        print(hits.to_string(index=False))
    return 0


def _clean_frame(frame):
    """``frame`` with control characters removed from column names and text cells."""
    frame = frame.rename(columns=lambda c: _clean(c))
    for col in frame.columns:
        if frame[col].dtype == object:
            frame[col] = frame[col].map(lambda v: _clean(v) if isinstance(v, str) else v)
    return frame
