"""What the site's tests share: a toy run directory, and a site built from it and one model with weights."""

from __future__ import annotations

import io
import re
from pathlib import Path

from convzoo.site import SiteReport, build_site
from convzoo.train import TrainConfig, fit
from train_fixtures import make_toy_mnist

GRID_LINE = re.compile(r"^\s+-?\d")


def toy_run(root: Path) -> tuple[Path, Path]:
    """(the data folder holding mnist/, a run directory of simple_cnn trained two epochs on the toy MNIST)."""
    data = root / "data"
    make_toy_mnist(data / "mnist", n_train=400, n_test=120)
    run_dir = root / "runs" / "toy"
    config = TrainConfig(model="simple_cnn", dataset="mnist", data_dir=str(data / "mnist"), epochs=2, batch_size=64,
                         optimizer="momentum", lr=0.05, out=str(run_dir), eval_batch_size=128, val_split=0.1)
    fit(config, progress=False, out=io.StringIO())
    return data, run_dir


def build(root: Path, models: str, run_dir: Path, data: Path, cache: Path, try_it: bool = True) -> SiteReport:
    """The site of ``models`` and the run, with no npm (the runtime only where ``cache`` already holds it)."""
    return build_site(root, models=models, runs=[run_dir], data_dir=data, cache_dir=cache, npm=None, try_it=try_it)


def printed_grid(text: str, heading: str) -> list[list[float]]:
    """The numbers of the grid ``explain`` prints under the line starting with ``heading`` (the first lines of
    numbers after it: a line in words may come between, as ``(zeros: 0 in every new pixel)``)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    grid: list[list[float]] = []
    for line in lines[start + 1:]:
        if GRID_LINE.match(line):
            grid.append([float(v) for v in line.split()])
        elif grid or not line.startswith("("):
            break
    return grid
