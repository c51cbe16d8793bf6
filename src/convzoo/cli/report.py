"""``convzoo report``: train the d2l table's models on Fashion-MNIST and set them beside d2l's results
(the training and writing are :mod:`convzoo.zoo_report`'s)."""

from __future__ import annotations

import argparse
import math

from convzoo.cli.args import Subcommands, add_device_argument
from convzoo.errors import ConvzooError

__all__ = ["register", "run"]


def register(sub: Subcommands) -> None:
    from convzoo.train.config import RECIPES

    p = sub.add_parser("report", help="train the d2l table's models on Fashion-MNIST; write zoo.md and zoo.png")
    p.add_argument("--models", help="comma-separated (default: every model of d2l's table)")
    p.add_argument("--budget-minutes", type=float, default=15.0, help="per model (default 15)")
    p.add_argument("--recipe", choices=sorted(RECIPES),
                   help="fast (convzoo's CPU recipe) or d2l (d2l's hyperparameters) for every model "
                        "(default: per model, the better one on the CPU)")
    add_device_argument(p, default="cpu", note="a GPU trains at d2l's input sizes")
    p.add_argument("--full-size", action="store_true", help="d2l's input sizes on the CPU too")
    p.add_argument("--data-dir", help="folder holding Fashion-MNIST")
    p.add_argument("--runs", default="runs/report",
                   help="where each model's run and result go, under RUNS/RECIPE/MODEL (resumable)")
    p.add_argument("--out", help="the folder for zoo.md and zoo.png (default: a new runs/report-YYYYmmdd-HHMMSS); "
                                 "one already holding a report is refused without --force")
    p.add_argument("--force", action="store_true", help="replace the report already in --out")
    p.set_defaults(_run=run)


def run(args: argparse.Namespace) -> int:
    from convzoo.models import d2l_models
    from convzoo.train.env import pick_device
    from convzoo.zoo_report import run_report

    table = d2l_models()  # the models registered with d2l's recipe, in d2l's order
    models = args.models.split(",") if args.models is not None else table
    if not all(models):  # "" would otherwise be read as "every model": minutes of training nobody asked for
        raise ConvzooError(f"--models {args.models!r} holds an empty name; give comma-separated names, e.g. "
                           "--models lenet,resnet18, or leave --models out for every model of d2l's table")
    unknown = [m for m in models if m not in table]
    if unknown:
        raise ConvzooError(f"no d2l recipe for {', '.join(unknown)}; report models: {', '.join(table)}")
    if not (args.budget_minutes > 0 and math.isfinite(args.budget_minutes)):
        raise ConvzooError(f"--budget-minutes must be > 0 and finite, got {args.budget_minutes}")
    run_report(models, budget_minutes=args.budget_minutes, device=str(pick_device(args.device)), runs=args.runs,
               out=args.out, data_dir=args.data_dir, full_size=args.full_size, recipe=args.recipe, force=args.force)
    return 0
