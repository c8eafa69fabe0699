"""``clvsmim`` command line: one module per command, each with ``register(subparsers)``.

Commands validate their inputs at the entry and raise the package's own errors; :func:`main`
turns every such error into one line, ``clvsmim <command>: error: <message>``, and exit code 2
(argparse's code for a bad command line). ``CLVSMIM_TRACEBACK=1`` re-raises instead.
``CLVSMIM_THREADS=N`` sets torch's CPU threads for every command (evaluations and analyses too,
not only training), so several commands can share the cores without oversubscribing them.
"""
from __future__ import annotations

import argparse
import os
import sys

from clvsmim.weights import CheckpointError, DownloadError
from clvsmim.train.zoo import ZooBuildError
from clvsmim.train.runtime import set_threads
from clvsmim.train.zoo_weights import ZooWeightsError
from clvsmim.cli import analyze, book, claims, train, weights, zoo

#: The command modules, in ``--help`` order.
COMMANDS = (train, zoo, claims, book, analyze, weights)
#: Errors that describe unusable input or a failed step, printed as one line.
USER_ERRORS = (ValueError, KeyError, OSError, CheckpointError, DownloadError, ZooBuildError, ZooWeightsError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clvsmim", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.register(sub)
    return parser


def error_message(exc: BaseException) -> str:
    """The one-line text of ``exc`` (a ``KeyError``'s message without its quotes)."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(text.split()) or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    set_threads()  # $CLVSMIM_THREADS, when set
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        if os.environ.get("CLVSMIM_TRACEBACK"):
            raise
        print(f"clvsmim {args.command}: error: {error_message(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
