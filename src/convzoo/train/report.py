"""What a run shows while it trains: a fixed-width table per epoch (airbench's), a progress bar
within the epoch (plain periodic lines when stderr is not a terminal), and the same rows in
``metrics.csv`` and ``metrics.jsonl``."""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from convzoo.utils.atomic import write_text_atomic

__all__ = ["COLUMNS", "EpochTable", "Progress", "write_metrics"]

# (key in an epoch's metrics, header, width, format); the order of metrics.csv's columns too
COLUMNS: tuple[tuple[str, str, int, str], ...] = (
    ("epoch", "epoch", 5, "d"),
    ("lr", "lr", 8, ".4g"),
    ("train_loss", "train loss", 10, ".4f"),
    ("train_acc", "train acc", 9, ".4f"),
    ("val_acc", "val acc", 7, ".4f"),
    ("test_acc", "test acc", 8, ".4f"),
    ("step_img_s", "step img/s", 10, ",.0f"),
    ("e2e_img_s", "e2e img/s", 9, ",.0f"),
    ("epoch_time", "time (s)", 8, ".1f"),
)


class EpochTable:
    """Prints the header once, then one aligned row per epoch."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.started = False

    def _line(self, cells: Sequence[str]) -> str:
        return "  ".join(f"{c:>{w}}" for c, (_, _, w, _) in zip(cells, COLUMNS, strict=True))

    def header(self) -> None:
        print(self._line([h for _, h, _, _ in COLUMNS]), file=self.out, flush=True)
        self.started = True

    def row(self, metrics: dict[str, Any]) -> None:
        if not self.started:
            self.header()
        cells = []
        for key, _, _, fmt in COLUMNS:
            value = metrics.get(key)
            cells.append("-" if value is None else format(value, fmt))
        print(self._line(cells), file=self.out, flush=True)


class Progress:
    """Progress within an epoch: a tqdm bar on a terminal, else a plain line every ``every`` seconds."""

    def __init__(self, total: int, epoch: int, epochs: int, *, enabled: bool = True, every: float = 10.0,
                 out: TextIO | None = None) -> None:
        self.out = out or sys.stderr
        self.total, self.epoch, self.epochs = total, epoch, epochs
        self.enabled = enabled
        self.every = every
        self.bar = None
        self.last = time.perf_counter()
        self.start = self.last
        if enabled and self.out.isatty():
            self.bar = tqdm(total=total, desc=f"epoch {epoch}/{epochs}", leave=False, file=self.out,
                            dynamic_ncols=True, unit="batch")

    def update(self, step: int, loss: float | None = None) -> None:
        """Called after step ``step`` (0-based) finished."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(step + 1 - self.bar.n)
            if loss is not None:
                self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            return
        now = time.perf_counter()
        if now - self.last >= self.every:
            self.last = now
            rate = f"  {(step + 1) / (now - self.start):.1f} batch/s"
            tail = f"  loss {loss:.4f}" if loss is not None else ""
            print(f"epoch {self.epoch}/{self.epochs}  step {step + 1}/{self.total}{tail}{rate}", file=self.out,
                  flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite ``metrics.csv`` and ``metrics.jsonl`` from the whole history (atomically, so a resumed run's
    files are exactly the uninterrupted run's)."""
    keys = [k for k, _, _, _ in COLUMNS] + sorted({k for row in history for k in row} - {k for k, *_ in COLUMNS})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in keys})
    write_text_atomic(run_dir / "metrics.csv", buffer.getvalue())
    write_text_atomic(run_dir / "metrics.jsonl", "".join(json.dumps(row, sort_keys=True) + "\n" for row in history))
