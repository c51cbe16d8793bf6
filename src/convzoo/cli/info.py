"""``convzoo info NAME``: everything the registry knows about one model, one field a line."""

from __future__ import annotations

import argparse

from convzoo.cli.args import Subcommands

__all__ = ["register", "run"]


def register(sub: Subcommands) -> None:
    p = sub.add_parser("info", help="everything the zoo knows about one model")
    p.add_argument("name")
    p.set_defaults(_run=run)


def run(args: argparse.Namespace) -> int:
    from convzoo.models import model_info

    info = model_info(args.name)
    fields = {**vars(info), "min_input_size": info.min_input_size, "max_input_size": info.max_input_size}
    for key, value in fields.items():
        print(f"{key:<20} {value}")
    return 0
