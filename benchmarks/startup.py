"""Start-up cost: how long a fresh process takes to import convzoo and to run its lightest commands, as
ratios to ``python -c "import torch"`` measured in the same run (issue 12's goals: ``import convzoo``
<= 1.3x, ``convzoo models`` <= 1.5x).

    python benchmarks/startup.py [--runs N] [--warmup W] [--json FILE]

Each command runs W untimed rounds first (default 1: the files are in the page cache for every command
alike), then N timed rounds (default 5), the commands taking turns within each round so that a busy
machine slows all of them alike. A figure is the median wall time of one process, start to exit. The
exit code is 0 either way; each goal prints PASS or FAIL.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path


def _cli() -> list[str]:
    """The ``convzoo`` console script installed beside this interpreter (what a user runs), else ``-m``."""
    script = shutil.which("convzoo", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "convzoo.cli"]


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed fresh processes per command (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds before them (default 1)")
    parser.add_argument("--json", help="also write the figures to this file")
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
    if args.json:
        from convzoo.utils.atomic import write_text_atomic  # (after the timings: it imports the package)

        result = {"runs": args.runs, "warmup": args.warmup, "python": sys.version.split()[0],
                  "torch": version("torch"), "baseline": next(iter(cases)), "commands": figures}
        write_text_atomic(args.json, json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
