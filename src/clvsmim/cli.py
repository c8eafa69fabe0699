"""``clvsmim`` command line. Each sub-command lives in its own module, which exposes
``add_cli(subparsers)`` registering its parser(s) with ``set_defaults(func=...)``."""
from __future__ import annotations

import argparse
import importlib
import sys

# Modules that contribute sub-commands (each defines ``add_cli``).
COMMAND_MODULES = [
    "zoo",
    "bookrun",
    "weights",
    "trainer",
    "analyze_cli",
    "claims",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clvsmim", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"clvsmim.{name}").add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
