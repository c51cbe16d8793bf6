"""``convzoo params NAME``: every named parameter with its shape (notes 003)."""

from __future__ import annotations

import argparse

from convzoo.cli.args import Subcommands, add_build_arguments, build_model

__all__ = ["register", "run"]


def register(sub: Subcommands) -> None:
    p = sub.add_parser("params", help="every named parameter with its shape (notes 003)")
    p.add_argument("name")
    add_build_arguments(p)
    p.set_defaults(_run=run)


def run(args: argparse.Namespace) -> int:
    from convzoo.inspector import parameters_table

    print(parameters_table(build_model(args, args.in_channels)))
    return 0
