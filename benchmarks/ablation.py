"""What each of airbench's techniques contributes: ``--recipe airbench`` in full, then once without each
technique (one option flipped back), on CIFAR-10's validation split (--val-split 0.1: 5,000 images held
out of the training split; nothing is chosen on test data).

    python benchmarks/ablation.py [--only NAME,...] [--seed S] [--epochs N] [--model NAME] [--batch-size N]
                                  [--lr LR] [--train-limit N] [--data-dir DIR] [--dataset NAME] [--json FILE]
    python benchmarks/ablation.py --list

Each run reports the validation accuracy after its last epoch (with the run's own test-time augmentation),
its wall time from the first touch of the data to the end (evaluation included) and the fp32 matmul peak
measured just before it (outside its time), so that runs on a machine whose speed changes compare
(peak-seconds = seconds x GFLOP/s / 200, as benchmarks/time_to_accuracy.py). The delta is the accuracy
minus the full recipe's, in percentage points: how much leaving the technique out costs. One seed per
call; run it with several ``--seed`` values to see the spread. ``--model``, ``--epochs``, ``--batch-size`` and
``--lr`` give a reduced-scale ablation (``airbench_cifar_small`` for a few epochs) where fourteen full-length
runs do not fit.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PEAK_REFERENCE = 200e9  # FLOP/s, as in time_to_accuracy.py

# technique -> the options that leave it out of the airbench recipe (each the one home of its technique)
ABLATIONS: dict[str, dict[str, Any]] = {
    "whitening": {"whiten": False, "whiten_bias_epochs": 0},  # the first layer trains from its default init
    "whiten-bias-epochs": {"whiten_bias_epochs": 0},  # the whitening bias trains throughout
    "dirac-init": {"init": "default"},
    "bn-frozen-scale": {"bn_frozen_scale": False},
    "bias-lr-scale": {"bias_lr_scale": 1.0},
    "label-smoothing": {"label_smoothing": 0.0},
    "lookahead": {"ema": 0.0, "lookahead": False},  # the moving average and the lookahead to it
    "alt-flip": {"augment": "crop-flip"},  # random flips instead
    "reflect-crop": {"crop_mode": "zero"},  # zero padding instead
    "tta": {"tta": "none"},  # neither the test-time flip nor the translations
    "nesterov": {"optimizer": "momentum"},
    "warmup": {"warmup_epochs": 0.0},
    "lr-ends": {"warmup_start": 0.0, "final_lr_fraction": 0.0},  # the schedule from 0 and down to 0
}


def flags(overrides: dict[str, Any]) -> str:
    """The ``convzoo train`` flags of ``overrides``, as typed."""
    words = []
    for key, value in overrides.items():
        name = key.replace("_", "-")
        if isinstance(value, bool):
            words.append(f"--{name}" if value else f"--no-{name}")
        else:
            words.append(f"--{name} {value:g}" if isinstance(value, float) else f"--{name} {value}")
    return " ".join(words)


def one_run(name: str, overrides: dict[str, Any], args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from convzoo.bench import matmul_peak
    from convzoo.train.config import resolve_config
    from convzoo.train.loop import fit

    config = resolve_config(recipe="airbench", overrides={
        **overrides, "dataset": args.dataset, "val_split": 0.1, "seed": args.seed, "data_dir": args.data_dir,
        "out": str(work / name), **({"epochs": args.epochs} if args.epochs else {}),
        **({"train_limit": args.train_limit} if args.train_limit else {}),
        **{key: value for key in ("model", "batch_size", "lr") if (value := getattr(args, key)) is not None}})
    peak = matmul_peak()  # outside the clock
    start = time.perf_counter()
    with open(os.devnull, "w") as quiet:
        result = fit(config, progress=False, out=quiet)
    seconds = time.perf_counter() - start
    last = result.history[-1]
    return {"technique": name, "left_out_by": flags(overrides), "val_acc": last["val_acc"], "seconds": seconds,
            "peak_gflops": peak / 1e9, "peak_seconds": seconds * peak / PEAK_REFERENCE,
            "epochs": len(result.history), "model": config.model, "batch_size": config.batch_size, "lr": config.lr}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="print the techniques and the flags that leave each out")
    parser.add_argument("--only", help="comma-separated techniques to leave out, one run each (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs (smoke runs)")
    parser.add_argument("--model", help="another zoo model with a whitening layer (default: the recipe's, "
                        "airbench_cifar)")
    parser.add_argument("--batch-size", type=int, help="override the recipe's batch size (1024)")
    parser.add_argument("--lr", type=float, help="override the recipe's learning rate")
    parser.add_argument("--train-limit", type=int, help="train on N images, drawn per class (smoke runs)")
    parser.add_argument("--dataset", default="cifar10", help="default cifar10 (a toy copy for smoke runs)")
    parser.add_argument("--data-dir", help=f"default: {SHARED}")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.list:
        for name, overrides in ABLATIONS.items():
            print(f"{name:<16} {flags(overrides)}")
        return 0
    names = list(ABLATIONS) if not args.only else [n.strip() for n in args.only.split(",")]
    unknown = [n for n in names if n not in ABLATIONS]
    if unknown:
        parser.error(f"unknown technique(s) {', '.join(unknown)}; known: {', '.join(ABLATIONS)}")
    args.data_dir = args.data_dir or str(SHARED)
    from convzoo.data import load_dataset

    load_dataset(args.dataset, data_dir=args.data_dir)  # decode into the cache outside the clock
    runs = []
    with tempfile.TemporaryDirectory(prefix="convzoo-ablation-") as tmp:
        for name in ["full recipe", *names]:
            run = one_run(name.replace(" ", "-"), ABLATIONS.get(name, {}), args, Path(tmp))
            run["technique"] = name
            runs.append(run)
            print(f"{name}: val acc {run['val_acc']:.4f} in {run['seconds']:.1f} s (peak {run['peak_gflops']:.1f} "
                  f"GFLOP/s)", flush=True)
    from convzoo.utils.table import render_table

    full = runs[0]["val_acc"]
    rows = [(r["technique"] if i == 0 else f"without {r['technique']}", r["left_out_by"] or "--recipe airbench",
             f"{r['val_acc']:.4f}", f"{r['seconds']:.1f}", f"{r['peak_seconds']:.1f}",
             "" if i == 0 else f"{100 * (r['val_acc'] - full):+.2f}") for i, r in enumerate(runs)]
    print(render_table(("technique", "flags", "val acc", "time (s)", "peak-s", "delta (pp)"), rows,
                       right={2, 3, 4, 5}))
    if args.json:
        args.json.write_text(json.dumps({"dataset": args.dataset, "seed": args.seed, "epochs": args.epochs,
                                         "train_limit": args.train_limit, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
