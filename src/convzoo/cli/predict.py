"""``convzoo predict CHECKPOINT IMAGE...``: the top-k classes of each image file, with probabilities."""

from __future__ import annotations

import argparse

from convzoo.cli.args import Subcommands, add_device_argument, positive_int

__all__ = ["register", "run"]


def register(sub: Subcommands) -> None:
    p = sub.add_parser("predict", help="top-k classes of image files")
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--topk", type=positive_int, default=5)
    add_device_argument(p, default="cpu")
    p.set_defaults(_run=run)


def run(args: argparse.Namespace) -> int:
    from convzoo.train.inference import load

    ckpt = load(args.checkpoint, device=args.device)
    for path, top in zip(args.images, ckpt.predict(args.images, topk=args.topk), strict=True):
        print(f"{path}: " + ", ".join(f"{name} {prob:.3f}" for name, prob in top))
    return 0
