"""``convzoo summary NAME``: layer by layer, output shape, parameters and multiply-adds (or the notes' lines)."""

from __future__ import annotations

import argparse

from convzoo.cli.args import Subcommands, add_build_arguments, build_model, check_values, positive_int

__all__ = ["register", "run"]


def register(sub: Subcommands) -> None:
    p = sub.add_parser("summary", help="layer-by-layer output shape, parameters and multiply-adds")
    p.add_argument("name")
    p.add_argument("--input-size", nargs=3, type=positive_int, metavar=("C", "H", "W"),
                   help="input channels, height, width (default: the model's own)")
    p.add_argument("--depth", type=positive_int, help="show layers down to this depth (default: all)")
    p.add_argument("--style", choices=("table", "notes"), default="table",
                   help="'table' (default) or the notes' 'Conv2d output shape: ...' lines")
    add_build_arguments(p)
    p.set_defaults(_run=run)


def run(args: argparse.Namespace) -> int:
    from convzoo.inspector import summary
    from convzoo.models import model_info

    info = model_info(args.name)
    if args.input_size is not None:
        c, h, w = args.input_size
    else:
        c, h, w = info.default_input_size
        c = args.in_channels or c
    check_values((1, c, h, w), "--input-size")
    net = build_model(args, args.in_channels or c)
    print(summary(net, (c, h, w), depth=args.depth, style=args.style))
    return 0
