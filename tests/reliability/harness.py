"""Processes to kill and runs to compare: the pieces test_faults.py is built from."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

DRIVER = Path(__file__).with_name("driver.py")
TIMING = {"step_img_s", "e2e_img_s", "epoch_time"}  # wall-clock figures: the only fields that may differ
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def train_args(toy: Path, run: Path, *extra: str) -> list[str]:
    """A short run: 3 epochs of 12 steps of LeNet on the toy MNIST, a checkpoint at every epoch's end."""
    return ["train", "--model", "lenet", "--dataset", "mnist", "--data-dir", str(toy), "--epochs", "3",
            "--batch-size", "16", "--val-split", "0.25", "--recipe", "fast", "--out", str(run), "--quiet", *extra]


def resume_args(toy: Path, run: Path) -> list[str]:
    return ["train", "--resume", str(run), "--data-dir", str(toy), "--quiet"]


def launch(args: list[str], at: list[str] | tuple[str, ...] = (), count: Path | None = None,
           **popen: Any) -> subprocess.Popen[str]:
    """``python driver.py [--at ...] -- args``: a fresh Python process running the convzoo CLI."""
    prefix = [x for spec in at for x in ("--at", spec)] + (["--count", str(count)] if count else [])
    return subprocess.Popen([sys.executable, str(DRIVER), *prefix, "--", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, **popen)


class Zygote:
    """``driver.py --zygote``: forks a child per run, with torch and convzoo already imported."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.runs = 0
        self.proc = subprocess.Popen([sys.executable, str(DRIVER), "--zygote"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=ENV)
        self.answers: queue.Queue[dict[str, int]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.answers.put(json.loads(line))

    def start(self, args: list[str], at: list[str] | tuple[str, ...] = ()) -> int:
        """Fork a child running ``convzoo args``; its pid."""
        assert self.proc.stdin is not None
        self.runs += 1
        self.stdout, self.stderr = self.logs / f"{self.runs}.out", self.logs / f"{self.runs}.err"
        self.proc.stdin.write(json.dumps({"args": args, "at": list(at), "stdout": str(self.stdout),
                                          "stderr": str(self.stderr)}) + "\n")
        self.proc.stdin.flush()
        self.pid = self.answers.get(timeout=60)["pid"]
        return self.pid

    def wait(self, timeout: float = 120) -> int:
        """The child's exit code (negative: the signal that ended it); queue.Empty after ``timeout``."""
        return self.answers.get(timeout=timeout)["returncode"]

    def kill_after(self, delay: float) -> int:
        """SIGKILL the child after ``delay`` seconds unless it ended before; its exit code."""
        try:
            return self.wait(timeout=delay)
        except queue.Empty:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return self.wait()

    def run(self, args: list[str], at: list[str] | tuple[str, ...] = ()) -> int:
        self.start(args, at)
        return self.wait()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def outcome(run: Path) -> dict[str, Any]:
    """What a run leaves that must not depend on interruptions: the bytes of the last and best weights,
    and every metrics row (the wall-clock columns left out)."""
    checkpoints = run / "checkpoints"
    with open(run / "metrics.csv") as f:
        rows = [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]
    jsonl = [{k: v for k, v in json.loads(line).items() if k not in TIMING}
             for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {"last": (checkpoints / "last").resolve().name, "best": (checkpoints / "best").resolve().name,
            "last_weights": (checkpoints / "last" / "model.safetensors").read_bytes(),
            "best_weights": (checkpoints / "best" / "model.safetensors").read_bytes(),
            "metrics.csv": rows, "metrics.jsonl": jsonl}


def history_rows(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (links not followed) with a digest of its bytes."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            files[str(path)] = "-> " + os.readlink(path)
        elif path.is_file():
            try:
                files[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            except PermissionError:
                files[str(path)] = "unreadable"
    return files


def assert_nothing_written(run: Path) -> None:
    """A refused run leaves no run behind: at most the empty folder it was going to fill."""
    assert not run.exists() or not any(run.iterdir()), sorted(p.name for p in run.iterdir())
