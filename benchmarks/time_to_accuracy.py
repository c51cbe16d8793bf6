"""Time to a target accuracy, by MLPerf's rules, with a named recipe (``fast``, ``airbench``) and a zoo model.

    python benchmarks/time_to_accuracy.py TASK [--runs N] [--data-dir DIR] [--cold-cache] [--json FILE] [--plot FILE]
    python benchmarks/time_to_accuracy.py TASK --on-val    # making choices: on a validation split instead
    python benchmarks/time_to_accuracy.py --list

The clock starts before the data is first touched (``convzoo.fit`` loads it; imports are done before)
and stops when the target is first reached on the evaluation split, checked after every epoch;
evaluation, checkpoints and plots are inside the clock. Each run uses another seed; the median and the
spread are reported, and a run that ends its epochs short of the target is reported with how far it got.
The decoded-data cache is warm unless ``--cold-cache`` (then decoding is timed too).

Machine speed changes from day to day (2-3x on a shared CPU), so before each run, outside its clock, the
fp32 matmul peak of the training device is measured (``convzoo.bench.matmul_peak``) and printed beside the
run's time, with the time in "peak-seconds": seconds x measured GFLOP/s / 200 (200 GFLOP/s: this project's
two-core CPU on a good day), which compare across days.

The CIFAR-10 tasks train on all 50,000 images of the lossless copy and stop their clock on the official
10,000-image test split, as airbench's published figures do. Their settings are chosen on a validation split,
never on the test split: ``--on-val`` holds out 10% of the training images (``--val-split 0.1``) and stops the
clock on those instead; each task's comment says what was chosen there.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True)
class Task:
    dataset: str
    target: float
    split: str  # where the clock stops: "test" (every task; --on-val: "val", held out of the training split)
    goal_s: float | None  # the goal, seconds (None: report the best time)
    overrides: dict[str, Any] = field(default_factory=dict)  # on top of the recipe
    recipe: str = "fast"


# the goals (seconds on this 2-core machine) are issue 15's
TASKS: dict[str, Task] = {
    # one epoch at 18x18 (the digits fill the middle 20x20 of MNIST's 28x28): chosen on a validation split of
    # 10%, 0.9907 there in 9.2 s of epoch on 2026-12-02 evening (28x28: 0.9917 in 17.7 s; 16x16: 0.9867)
    "mnist-99": Task("mnist", 0.99, "test", 8, dict(model="fastcnn_mnist", epochs=1, batch_size=256, lr=0.2,
                                                    resize=18)),
    # 2 epochs, no flips, no label smoothing: chosen on a validation split of 10% on 2026-12-02 evening (val
    # 0.9185; with label smoothing 0.1 0.9157, with flips 0.9123, 1 epoch 0.9018, 3 epochs with flips: the old task);
    # at 26x26, 2026-12-02 night, once channels_last was on for this model (val 0.9153 in 10.4 s per epoch; 28x28
    # 0.9145 in 12.3 s, 24x24 0.9123 in 9.2 s, 24x24 with flip TTA 0.9025, 24 then 28 (progressive) 0.9142)
    "fashion-91": Task("fashion-mnist", 0.91, "test", 25,
                       dict(model="fastcnn_mnist", epochs=2, batch_size=256, lr=0.2, label_smoothing=0.0,
                            resize=26)),
    "fashion-93": Task("fashion-mnist", 0.93, "test", 120,
                       dict(model="fastcnn_fashion", epochs=6, batch_size=256, lr=0.2, augment="crop-flip",
                            crop_padding=2)),
    # airbench's recipe on its network at half the widths, 4 epochs at batch 256: chosen on this validation split
    # on 2026-12-03 (after 4 epochs, the time in brackets: batch 256 lr 0.5 0.8564 (257 s); lr 0.375 0.8522
    # (265 s); batch 128 lr 0.25 0.8516 (246 s); batch 512 lr 0.75 0.8486 (289 s), lr 1.0 0.8506 (264 s); the
    # recipe's batch 1024 and 6-view tta 0.8452 (356 s)); it was fastcnn_cifar_small with --recipe fast, 9 epochs.
    # Remade on the lossless copy for issue 31's goal (<= 150 peak-seconds), on its validation split of 10%
    # (convzoo train --val-split 0.1, seed 0), 2026-12-08: the same settings in 2 epochs, the recipe's warm-up (23%
    # of the steps) and whitening-bias epochs (the first 30%) scaled to 2 epochs: val 0.8558 after epoch 2, 72-76 s
    # an epoch of 45,000 images there.
    "cifar10-85": Task("cifar10", 0.85, "test", 300,
                       dict(model="airbench_cifar_small", epochs=2, batch_size=256, lr=0.5, tta="flip",
                            warmup_epochs=0.46, whiten_bias_epochs=1),
                       recipe="airbench"),
    # fastcnn_cifar, 20 epochs with flip TTA: chosen on the JPEG copy's validation split of 10%
    "cifar10-90": Task("cifar10", 0.90, "test", 600,
                       dict(model="fastcnn_cifar", epochs=20, batch_size=512, lr=0.4, augment="crop-flip",
                            crop_padding=2, tta="flip")),
    # the airbench recipe as it is (airbench94's own settings); on the lossless copy it reached 0.9402 on a
    # validation split of 10% (issue 31)
    "cifar10-94": Task("cifar10", 0.94, "test", 35 * 60, {}, recipe="airbench"),
    "fashion-94": Task("fashion-mnist", 0.94, "test", None, {}, recipe="airbench"),
}

PEAK_REFERENCE = 200e9  # FLOP/s: peak-seconds = seconds x measured peak / this


def peak_seconds(seconds: float, peak: float) -> float:
    """``seconds`` on a machine of matmul peak ``peak`` (FLOP/s), as seconds at ``PEAK_REFERENCE``."""
    return seconds * peak / PEAK_REFERENCE


def one_run(task: Task, seed: int, data_dir: str | None, work: Path) -> dict[str, Any]:
    from convzoo.train.config import resolve_config
    from convzoo.train.loop import fit

    config = resolve_config(recipe=task.recipe, overrides={**task.overrides, "dataset": task.dataset, "seed": seed,
                                                      "data_dir": data_dir, "out": str(work / f"run-{seed}")})
    key = f"{task.split}_acc"
    curve: list[tuple[float, float]] = []
    reached: list[float] = []

    def on_epoch(row: dict[str, Any]) -> bool:
        curve.append((time.perf_counter() - start, row[key]))
        if row[key] >= task.target and not reached:
            reached.append(curve[-1][0])
        return bool(reached)

    start = time.perf_counter()
    with open(os.devnull, "w") as quiet:
        fit(config, progress=False, out=quiet, on_epoch=on_epoch)
    return {"seed": seed, "seconds": reached[0] if reached else None, "curve": curve,
            "best": max(acc for _, acc in curve), "epochs": len(curve)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", nargs="?", choices=sorted(TASKS))
    parser.add_argument("--list", action="store_true", help="print the tasks and their configurations")
    parser.add_argument("--runs", type=int, default=3, help="seeds 0..N-1 (default 3)")
    parser.add_argument("--data-dir", help=f"default: {SHARED} for mnist and cifar10, Debian's for fashion-mnist")
    parser.add_argument("--epochs", type=int, help="override the task's epochs (CI smoke runs)")
    parser.add_argument("--train-limit", type=int, help="train on N images, drawn per class (CI smoke runs)")
    parser.add_argument("--cold-cache", action="store_true", help="decode the data afresh inside the clock")
    parser.add_argument("--on-val", action="store_true", help="hold out 10%% of the training split and stop the "
                        "clock there instead of on the test split (for making choices)")
    parser.add_argument("--device", help="train on this device (auto, cpu, cuda; default: the recipe's)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path, help="accuracy against time, one curve per run (PNG)")
    args = parser.parse_args(argv)
    if args.list or args.task is None:
        for name, task in TASKS.items():
            goal = f"goal {task.goal_s:g} s" if task.goal_s else "report the best time"
            print(f"{name:<12} {task.dataset} >= {task.target:.1%} on {task.split}, {goal}: --recipe {task.recipe} "
                  + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in {"dataset": task.dataset,
                                                                         **task.overrides}.items()))
        return 0
    task = TASKS[args.task]
    overrides = dict(task.overrides)
    if args.epochs:
        overrides["epochs"] = args.epochs
    if args.train_limit:
        overrides["train_limit"] = args.train_limit
    if args.device:
        overrides["device"] = args.device
    if args.on_val:
        overrides["val_split"] = 0.1
    task = dataclasses.replace(task, overrides=overrides, split="val" if args.on_val else task.split)
    from convzoo.bench import matmul_peak
    from convzoo.train.env import pick_device

    peak_device = pick_device(args.device or "auto").type
    data_dir = args.data_dir or (str(SHARED) if task.dataset in ("mnist", "cifar10") else None)
    runs = []
    with tempfile.TemporaryDirectory(prefix="convzoo-tta-") as tmp:
        work = Path(tmp)
        if args.cold_cache:
            os.environ["CONVZOO_CACHE"] = str(work / "cache")
        else:  # warm the decoded cache outside the clock
            from convzoo.data import load_dataset

            load_dataset(task.dataset, data_dir=data_dir)
        # imports are the process's start, outside the clock as torch's own is: torch.optim's first optimizer
        # imports torch._dynamo (1.8 s here), which only the first seed of a process would otherwise pay
        import torch._dynamo  # noqa: F401
        for seed in range(args.runs):
            if args.cold_cache:
                import shutil

                shutil.rmtree(work / "cache", ignore_errors=True)
            peak = matmul_peak(device=peak_device)  # outside the clock, just before the run
            run = one_run(task, seed, data_dir, work)
            run["peak_gflops"] = peak / 1e9
            run["peak_seconds"] = peak_seconds(run["seconds"], peak) if run["seconds"] is not None else None
            runs.append(run)
            got = f"{run['seconds']:.1f} s ({run['peak_seconds']:.1f} peak-s)" if run["seconds"] is not None else \
                f"not reached (best {run['best']:.4f})"
            print(f"seed {seed}: {got} at fp32 matmul peak {peak / 1e9:.1f} GFLOP/s; {run['epochs']} epochs, "
                  "accuracy by epoch " + " ".join(f"{acc:.4f}" for _, acc in run["curve"]), flush=True)
    times = [r["seconds"] for r in runs if r["seconds"] is not None]
    summary = f"{args.task}: {len(times)}/{len(runs)} runs reached {task.target:.1%} on {task.split}"
    if times:
        summary += f"; median {statistics.median(times):.1f} s (min {min(times):.1f}, max {max(times):.1f})"
        normalised = [r["peak_seconds"] for r in runs if r["peak_seconds"] is not None]
        summary += (f", {statistics.median(normalised):.1f} peak-s at a median peak of "
                    f"{statistics.median(r['peak_gflops'] for r in runs):.1f} GFLOP/s")
        if task.goal_s:
            verdict = "meets" if statistics.median(times) <= task.goal_s else "misses"
            summary += f"; {verdict} the goal of {task.goal_s:g} s"
    else:
        summary += f"; best accuracy {max(r['best'] for r in runs):.4f}"
    print(summary)
    if args.json:
        args.json.write_text(json.dumps({"task": args.task, "target": task.target, "split": task.split,
                                         "goal_s": task.goal_s, "recipe": task.recipe, "config": overrides,
                                         "peak_reference_gflops": PEAK_REFERENCE / 1e9, "runs": runs}, indent=2))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for run in runs:
            ax.plot([t for t, _ in run["curve"]], [a for _, a in run["curve"]], marker="o", label=f"seed {run['seed']}")
        ax.axhline(task.target, color="gray", linestyle="--", label=f"target {task.target:.0%}")
        ax.set(xlabel="seconds from first touch of the data", ylabel=f"{task.split} accuracy", title=args.task)
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)
    return 0


if __name__ == "__main__":
    sys.exit(main())
