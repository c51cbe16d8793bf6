"""Scaling on one machine: the same training, one process with T threads against P processes (torchrun, gloo)
with T/P threads each, same global batch (issue 13's goal on this 2-core CPU: 2 x 1 thread at least 0.9x as
fast as 1 x 2 threads, and the same test accuracy).

    python benchmarks/scaling.py [--model lenet] [--dataset fashion-mnist] [--epochs 1] [--batch-size 256]
                                 [--processes 2] [--runs 3] [--recipe R] [--data-dir DIR] [--train-limit N]
                                 [--json FILE]

Each round trains the run once each way, the two taking turns so that a busy machine slows both alike; a
figure is the median over the rounds of the run's own epoch time (``epoch_time`` in metrics.jsonl: training
and evaluation of every epoch, summed; the processes' start-up is left out, and printed apart). The ratio is
one-process time / several-process time: above 1, the processes are faster. Accuracy must be the same to the
last image: the runs differ by float rounding only (batch norm aside: each process normalises its shard).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _train(args: argparse.Namespace, out: Path, processes: int) -> dict[str, float]:
    """One run; its summed epoch time, its wall time and its last test accuracy."""
    cores = len(os.sched_getaffinity(0))
    command = [sys.executable, "-m", "convzoo", "train", "--model", args.model, "--dataset", args.dataset,
               "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--quiet", "--out", str(out),
               "--threads", str(max(1, cores // processes))] + (["--recipe", args.recipe] if args.recipe else [])
    if processes > 1:
        command += ["--nproc-per-node", str(processes)]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    if args.train_limit:
        command += ["--train-limit", str(args.train_limit)]
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"scaling: the run failed ({' '.join(command)}):\n{done.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"epoch_time": sum(r["epoch_time"] for r in rows), "wall": wall, "test_acc": rows[-1]["test_acc"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lenet")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--recipe", help="a named recipe (default: none, TrainConfig's defaults)")
    parser.add_argument("--data-dir")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--train-limit", type=int, default=0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    results: dict[str, list[dict[str, float]]] = {"one": [], "several": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            for name, processes in (("one", 1), ("several", args.processes)):
                results[name].append(_train(args, Path(tmp) / f"{name}-{i}", processes))
    median = {name: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for name, runs in results.items()}
    ratio = median["one"]["epoch_time"] / median["several"]["epoch_time"]
    accuracies = {name: sorted({r["test_acc"] for r in runs}) for name, runs in results.items()}
    same = accuracies["one"] == accuracies["several"]
    print(f"{args.model} on {args.dataset}, {args.epochs} epoch(s), global batch {args.batch_size}, {cores} cores, "
          f"median of {args.runs}")
    print(f"{'layout':<26}{'epoch time (s)':>16}{'wall (s)':>10}{'test acc':>10}")
    for name, label in (("one", f"1 process x {cores} threads"),
                        ("several", f"{args.processes} processes x {max(1, cores // args.processes)} thread")):
        m = median[name]
        print(f"{label:<26}{m['epoch_time']:>16.2f}{m['wall']:>10.2f}{m['test_acc']:>10.4f}")
    print(f"speed ratio (1 process time / {args.processes} processes time): {ratio:.2f}x (goal >= 0.9x: "
          f"{'PASS' if ratio >= 0.9 else 'FAIL'}); same test accuracy: {'PASS' if same else 'FAIL'} {accuracies}")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "cores": cores,
                                         "runs": results, "median": median, "ratio": ratio,
                                         "same_accuracy": same}, indent=2))


if __name__ == "__main__":
    main()
