"""``convzoo explain TOPIC``: a worked example on paper, checked against torch (notes 001).

The topics are spelled out here rather than read from ``convzoo.scratch`` so that building the parser
imports no torch (tests/test_scratch_explain.py keeps the two lists equal). Exit code 1 when the check
against ``torch.nn.functional`` fails.
"""

from __future__ import annotations

import argparse

from convzoo.cli.args import Subcommands, positive_int

__all__ = ["register", "run"]

TOPICS = ("conv", "pad", "stride", "pool", "batchnorm", "channels", "1x1")


def register(sub: Subcommands) -> None:
    p = sub.add_parser("explain", help="a worked example on paper: conv, pad, stride, pool, batchnorm, channels, 1x1 "
                       "(notes 001, d2l 6.4)")
    p.add_argument("topic", choices=TOPICS)
    p.add_argument("--input-size", nargs=2, type=positive_int, metavar=("H", "W"),
                   help="a random input of this size, whole numbers 0-9 (default: the notes' 5x5 input)")
    p.add_argument("--kernel", type=positive_int, metavar="K",
                   help="a random K x K kernel (default: the notes' 3x3 kernel 1..9; 2 for pool)")
    p.add_argument("--padding", type=int, metavar="P", help="pixels added on every side (default 0; 1 for pad)")
    p.add_argument("--stride", type=positive_int, metavar="S", help="default 1; 2 for stride; the kernel for pool")
    p.add_argument("--mode", metavar="MODE",
                   help="padding mode zeros|constant|reflect|replicate|circular, or for pool max|avg (default both)")
    p.add_argument("--value", type=int, metavar="V", help="the fill value of --mode constant (default 0)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the random numbers (default 0)")
    p.set_defaults(_run=run)


def run(args: argparse.Namespace) -> int:
    from convzoo.scratch import explain

    result = explain(args.topic, input_size=args.input_size, kernel=args.kernel, padding=args.padding,
                     stride=args.stride, mode=args.mode, value=args.value, seed=args.seed)
    print(result.text)
    return 0 if result.ok else 1
