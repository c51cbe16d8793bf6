"""``convzoo models [PATTERN]``: the zoo, one row per model (name, parameters, default input, notes, paper)."""

from __future__ import annotations

import argparse

from convzoo.cli.args import Subcommands
from convzoo.errors import ConvzooError
from convzoo.utils.table import render_table

__all__ = ["register", "run"]


def register(sub: Subcommands) -> None:
    p = sub.add_parser("models", help="list the zoo: name, parameters, default input, paper")
    p.add_argument("pattern", nargs="?", default="*", help="glob, e.g. 'resnet*' (default: all)")
    p.set_defaults(_run=run)


def run(args: argparse.Namespace) -> int:
    from convzoo.models import list_models, model_info

    names = list_models(args.pattern)
    if not names:
        raise ConvzooError(f"no model matches {args.pattern!r}; `convzoo models` lists all")
    rows = []
    for name in names:
        info = model_info(name)
        size = "x".join(map(str, info.default_input_size))
        rows.append((name, f"{info.num_params:,}", size, info.notes or "-", f"{info.paper} ({info.year})"))
    print(render_table(("model", "params", "input", "notes", "paper"), rows, right=(1,), ragged_last=True))
    return 0
