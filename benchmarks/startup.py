"""Start-up cost: how long a fresh process takes to import convzoo and to run its lightest commands, as
ratios to ``python -c "import torch"`` measured in the same run (issue 12's goals: ``import convzoo``
<= 1.3x, ``convzoo models`` <= 1.5x).

    python benchmarks/startup.py [--runs N] [--warmup W] [--json FILE] [--no-train] [--data-dir MNIST_DIR]

The second table is the fixed cost of ``convzoo train`` (goal <= 3 s): one LeNet epoch on 256 MNIST images
(``--train-limit 256``, the full 10,000-image test split evaluated), whole process, minus the epoch's own
time (``epoch_time`` in its metrics.jsonl: training and evaluation); what is left is the imports, loading
the data set from the decoded cache (filled by the warm-up run), building the model, the run directory's
files and the final confusion and sample plots. Beside it, ``import torch, torch._dynamo``: what torch
itself costs a training process before convzoo does anything (``torch.optim`` imports ``torch._dynamo`` on
an optimizer's first use, in torch 2.14).

Each command runs W untimed rounds first (default 1: the files are in the page cache for every command
alike), then N timed rounds (default 5), the commands taking turns within each round so that a busy
machine slows all of them alike. A figure is the median wall time of one process, start to exit. The
exit code is 0 either way; each goal prints PASS or FAIL.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path


def _cli() -> list[str]:
    """The ``convzoo`` console script installed beside this interpreter (what a user runs), else ``-m``."""
    script = shutil.which("convzoo", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "convzoo"]


def commands() -> dict[str, list[str]]:
    """What is timed, by the label printed; the first is the baseline every ratio divides by."""
    cli = _cli()
    return {
        'python -c "import torch"': [sys.executable, "-c", "import torch"],
        'python -c "import convzoo"': [sys.executable, "-c", "import convzoo"],
        "convzoo --help": [*cli, "--help"],
        "convzoo models": [*cli, "models"],
    }


# label -> the largest ratio to ``import torch`` the issue allows
GOALS = {'python -c "import convzoo"': 1.3, "convzoo models": 1.5}


def time_once(argv: list[str]) -> float:
    """Wall seconds of one fresh process running ``argv``; its failure is an error (a crash is not fast)."""
    start = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed with exit code {done.returncode}: {done.stderr[-1000:]}")
    return seconds


def measure(cases: dict[str, list[str]], runs: int, warmup: int) -> dict[str, list[float]]:
    """``runs`` timings of every case, the cases interleaved round by round after ``warmup`` untimed rounds."""
    for _ in range(warmup):
        for argv in cases.values():
            time_once(argv)
    seconds: dict[str, list[float]] = {label: [] for label in cases}
    for _ in range(runs):
        for label, argv in cases.items():
            seconds[label].append(time_once(argv))
    return seconds


MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
FIXED_COST_GOAL_S = 3.0


def train_fixed_cost(data_dir: Path, runs: int) -> dict[str, object]:
    """Median whole-process seconds of a one-epoch ``convzoo train`` and of its epoch, over ``runs`` fresh
    processes after one warm-up run (which fills the decoded cache), interleaved with ``import torch,
    torch._dynamo`` (the floor torch sets)."""
    floor_argv = [sys.executable, "-c", "import torch, torch._dynamo"]
    with tempfile.TemporaryDirectory(prefix="convzoo-startup-") as tmp:
        env = {**os.environ, "CONVZOO_CACHE": str(Path(tmp) / "cache")}

        def train_once(index: int) -> tuple[float, float]:
            out = Path(tmp) / f"run{index}"
            argv = [*_cli(), "train", "--model", "lenet", "--dataset", "mnist", "--data-dir", str(data_dir),
                    "--epochs", "1", "--train-limit", "256", "--quiet", "--out", str(out)]
            start = time.perf_counter()
            done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
            seconds = time.perf_counter() - start
            if done.returncode != 0:
                raise SystemExit(f"{' '.join(argv)} failed with exit code {done.returncode}: {done.stderr[-1000:]}")
            rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
            return seconds, sum(row["epoch_time"] for row in rows)

        train_once(0)  # warm-up: decodes MNIST into the cache
        whole, epochs, floor = [], [], []
        for index in range(1, runs + 1):
            total, epoch = train_once(index)
            whole.append(total)
            epochs.append(epoch)
            floor.append(time_once(floor_argv))
    fixed = [w - e for w, e in zip(whole, epochs, strict=True)]
    return {"whole_s": whole, "epoch_s": epochs, "fixed_s": fixed, "torch_floor_s": floor,
            "median_whole_s": statistics.median(whole), "median_epoch_s": statistics.median(epochs),
            "median_fixed_s": statistics.median(fixed), "median_torch_floor_s": statistics.median(floor),
            "goal_max_s": FIXED_COST_GOAL_S, "passed": statistics.median(fixed) <= FIXED_COST_GOAL_S}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed fresh processes per command (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds before them (default 1)")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--no-train", action="store_true", help="leave out the fixed cost of convzoo train")
    parser.add_argument("--data-dir", type=Path, default=MNIST,
                        help=f"MNIST's four IDX files, for the fixed cost of convzoo train (default {MNIST})")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be >= 1 and --warmup >= 0")
    cases = commands()
    seconds = measure(cases, args.runs, args.warmup)
    medians = {label: statistics.median(times) for label, times in seconds.items()}
    baseline = medians[next(iter(cases))]
    print(f"start-up, median of {args.runs} fresh processes per command ({args.warmup} warm-up round(s)); "
          f"Python {sys.version.split()[0]}, torch {version('torch')}")
    width = max(map(len, cases))
    print(f"{'command':<{width}}  {'seconds':>7}  {'x torch':>7}  goal")
    figures: dict[str, dict[str, object]] = {}
    for label, median in medians.items():
        ratio = median / baseline
        goal = GOALS.get(label)
        verdict = "" if goal is None else f"<= {goal:g}x: {'PASS' if ratio <= goal else 'FAIL'}"
        print(f"{label:<{width}}  {median:>7.2f}  {ratio:>6.2f}x  {verdict}".rstrip())
        figures[label] = {"argv": cases[label], "seconds": seconds[label], "median_s": median, "ratio": ratio,
                          "goal_max_ratio": goal, "passed": None if goal is None else ratio <= goal}
    train: dict[str, object] | None = None
    if not args.no_train and not (args.data_dir / "train-images-idx3-ubyte.gz").exists():
        print(f"fixed cost of convzoo train: skipped, no MNIST in {args.data_dir} (--data-dir)")
    elif not args.no_train:
        train = train_fixed_cost(args.data_dir, args.runs)
        fixed, floor = train["median_fixed_s"], train["median_torch_floor_s"]
        assert isinstance(fixed, float) and isinstance(floor, float)
        print(f"\nfixed cost of convzoo train (LeNet, 1 epoch of 256 MNIST images), median of {args.runs}")
        print(f"whole process                      {train['median_whole_s']:6.2f} s")
        print(f"the epoch (train + evaluate)       {train['median_epoch_s']:6.2f} s")
        print(f"fixed cost (the rest)              {fixed:6.2f} s  goal <= {FIXED_COST_GOAL_S:g} s: "
              f"{'PASS' if train['passed'] else 'FAIL'}")
        print(f"  of which torch's own floor       {floor:6.2f} s  (python -c 'import torch, torch._dynamo')")
        print(f"  convzoo's share                  {fixed - floor:6.2f} s")
    if args.json:
        from convzoo.utils.atomic import write_text_atomic  # (after the timings: it imports the package)

        result = {"runs": args.runs, "warmup": args.warmup, "python": sys.version.split()[0],
                  "torch": version("torch"), "baseline": next(iter(cases)), "commands": figures,
                  "train_fixed_cost": train}
        write_text_atomic(args.json, json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
