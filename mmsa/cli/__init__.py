"""The ``mmsa`` command. Parsing only: every subcommand calls library functions.

Each module in this package registers its subcommands with ``register(subparsers)`` and
sets ``func`` on its parser; the function receives the parsed ``args`` and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from mmsa.types import MMSAError

# module name -> registers these top-level subcommands
_MODULES = ("data", "model", "evaluate", "index")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmsa",
        description="MMSA Explorer: data sets, pre-training, embedding, evaluation, libraries, search.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in _MODULES:
        try:
            module = importlib.import_module(f"mmsa.cli.{name}")
        except ModuleNotFoundError as exc:  # a subcommand module not written yet
            if exc.name == f"mmsa.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except MMSAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
