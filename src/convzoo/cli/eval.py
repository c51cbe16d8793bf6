"""``convzoo eval RUN``: accuracy, top-5, per-class accuracy and the confusion matrix of a checkpoint."""

from __future__ import annotations

import argparse
import sys
import warnings

from convzoo.cli.args import Subcommands, add_device_argument

__all__ = ["register", "run"]


def register(sub: Subcommands) -> None:
    from convzoo.train.config import TTAS

    p = sub.add_parser("eval", help="accuracy, per-class accuracy, confusion matrix and top-5 of a checkpoint")
    p.add_argument("checkpoint", metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--split", choices=("test", "val"), help="the run's test split (default) or validation split; "
                   "with --dataset, that folder of a train/ + val/ or test/ layout (default test/, else val/)")
    p.add_argument("--dataset", metavar="imagefolder:DIR", help="evaluate on another labelled folder (DIR/<class>/ "
                   "or a train/ + val/ or test/ layout) whose classes are among the run's, preprocessed as the "
                   "run's evaluation was")
    p.add_argument("--tta", choices=TTAS, help="test-time augmentation (default: the run's own)")
    p.add_argument("--data-dir", help="folder holding the data set")
    add_device_argument(p, default="auto")
    p.set_defaults(_run=run)


def run(args: argparse.Namespace) -> int:
    from convzoo.train.inference import evaluate

    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always", UserWarning)
        report = evaluate(args.checkpoint, args.split, data_dir=args.data_dir, device=args.device, tta=args.tta,
                          dataset=args.dataset)
    for note in notes:  # e.g. a run too old to have recorded its data: said once, as a note
        print(f"note: {note.message}", file=sys.stderr)
    print(report)
    return 0
