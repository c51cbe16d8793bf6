"""The ``convzoo`` command line, at the edge of the package: nothing in the library imports it.

One module per command (``models``, ``info``, ``summary``, ``params``, ``explain``, ``train``, ``eval``, ``pack``,
``predict``, ``features``, ``export``, ``bench``, ``report``, ``site``), each with ``register(sub)`` adding its
parser and ``run(args)`` doing the work; what they share (argument types, ``--device``) is :mod:`convzoo.cli.args`.
Command modules import the trainer inside ``run``; torch, which every command and the parser need, is imported first,
inside the boundary, with Ctrl-C held back until it is loaded (``_import_torch``). Every exception ends at one
boundary (:mod:`convzoo.cli._boundary`): a user error is one line and exit 2, a bug is a line naming a traceback
file and exit 1.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from convzoo.cli._boundary import guarded
from convzoo.cli.args import Parser

__all__ = ["COMMANDS", "build_parser", "main"]

# the order of ``convzoo --help``
COMMANDS = ("models", "info", "summary", "params", "explain", "train", "eval", "predict", "pack", "features", "export",
            "bench", "report", "site")


def build_parser() -> argparse.ArgumentParser:
    """The ``convzoo`` parser with every command's subparser; the chosen one's ``run`` is ``args._run``."""
    from convzoo._version import __version__

    parser = Parser(prog="convzoo", description="The classic convolutional networks, LeNet to DenseNet.")
    parser.add_argument("--version", action="version", version=f"convzoo {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="on a bug, print the traceback instead of writing it to a file (or CONVZOO_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMANDS:
        importlib.import_module(f"convzoo.cli.{name}").register(sub)
    return parser


def _import_torch() -> None:
    """Import torch (every command needs it, the parser too) with Ctrl-C held back until it is loaded, then
    delivered: torch's C++ start-up imports numpy and drops whatever that import raises, a
    ``KeyboardInterrupt`` included (the command ran on as if never interrupted, and without numpy), and an
    interrupt during its distributed start-up aborts the process. Outside the main thread, where no handler
    can be set, it is a plain import."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or "torch" in sys.modules:
        import torch  # noqa: F401
        return
    pending: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    try:
        import torch  # noqa: F401
    finally:
        signal.signal(signal.SIGINT, previous)
        if pending:  # to the handler that was there: KeyboardInterrupt here, nothing if ignored
            signal.raise_signal(signal.SIGINT)


def _run(argv: Sequence[str]) -> int:
    _import_torch()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    args._argv = list(argv)  # as typed: ``convzoo train --nproc-per-node N`` hands it on to torchrun
    code: int = args._run(args)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``convzoo ARGV...`` (default: ``sys.argv[1:]``) and return its exit code: 0 done, 1 a bug in
    convzoo (or ``explain``'s check failed), 2 a user error, 3 training diverged, 130/143 interrupted."""
    args = list(sys.argv[1:] if argv is None else argv)
    return guarded(lambda: _run(args), args)
