"""Faults survived: kill -9 at random moments (checkpoint writes included), SIGINT/SIGTERM, a full disk.

A short run on a toy data set is the reference; every faulty run is resumed until it completes and must
end with the reference's weights and metrics, bit for bit (CPU, one thread).
"""

from __future__ import annotations

import csv
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from convzoo.train.checkpoint import latest_intact, read_checkpoint
from train_fixtures import make_toy_mnist

DRIVER = Path(__file__).with_name("driver.py")
TRIALS = 20
KILL_POINTS = ("save_file", "torch_save", "fsync_file", "fsync_dir", "replace", "symlink")
TIMING = {"step_img_s", "e2e_img_s", "epoch_time"}


def train_args(toy: Path, run: Path) -> list[str]:
    return ["train", "--model", "lenet", "--dataset", "mnist", "--data-dir", str(toy), "--epochs", "3",
            "--batch-size", "16", "--val-split", "0.25", "--recipe", "fast", "--out", str(run), "--quiet"]


def launch(args: list[str], kill_in: str | None = None) -> subprocess.Popen:
    prefix = ["--kill-in", kill_in] if kill_in else []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(DRIVER), *prefix, "--", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def finish(toy: Path, run: Path) -> None:
    """Resume (or start, if the kill came before the run existed) until the run completes."""
    for _ in range(3):
        args = ["train", "--resume", str(run), "--data-dir", str(toy), "--quiet"] \
            if (run / "config.toml").exists() else train_args(toy, run)
        p = launch(args)
        out, err = p.communicate(timeout=120)
        if p.returncode == 0:
            return
        raise AssertionError(f"resume failed ({p.returncode}): {err[-1500:]}")


def outcome(run: Path) -> tuple[dict[str, torch.Tensor], list[dict[str, str]]]:
    weights = load_file(run / "checkpoints" / "last" / "model.safetensors")
    with open(run / "metrics.csv") as f:
        rows = [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]
    return weights, rows


def assert_same(a: tuple, b: tuple) -> None:
    assert a[0].keys() == b[0].keys() and all(torch.equal(a[0][k], b[0][k]) for k in a[0])
    assert a[1] == b[1]


def assert_resumable(run: Path) -> None:
    """Never a torn checkpoint: what a resume would start from reads completely (or there is none yet)."""
    folder = latest_intact(run / "checkpoints")
    if folder is not None:
        read_checkpoint(folder)


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    return make_toy_mnist(tmp_path_factory.mktemp("toy"), 256, 64)


@pytest.fixture(scope="module")
def reference(toy, tmp_path_factory) -> tuple[tuple, float]:
    run = tmp_path_factory.mktemp("reference") / "run"
    start = time.perf_counter()
    p = launch(train_args(toy, run))
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    return outcome(run), time.perf_counter() - start


def test_kill_9_at_random_moments_never_loses_or_tears_anything(toy, reference, tmp_path, record_counts):
    """TRIALS seeded trials, two at a time: half SIGKILL after a random delay, half from inside the
    checkpoint writer (the k-th call of one of its steps); then resume to the end and compare."""
    expected, duration = reference
    plans = []
    for trial in range(TRIALS):
        rng = random.Random(trial)
        if trial % 2:
            plans.append((trial, None, rng.uniform(0.3, duration)))
        else:
            plans.append((trial, f"{rng.choice(KILL_POINTS)}:{rng.randint(1, 4)}", None))
    killed = 0
    for pair in (plans[i:i + 2] for i in range(0, TRIALS, 2)):
        procs = []
        for trial, kill_in, delay in pair:
            run = tmp_path / f"trial-{trial}"
            procs.append((run, launch(train_args(toy, run), kill_in), delay, time.perf_counter()))
        for run, p, delay, started in procs:
            if delay is not None:
                try:
                    p.wait(timeout=max(0.0, delay - (time.perf_counter() - started)))
                except subprocess.TimeoutExpired:
                    p.send_signal(signal.SIGKILL)
            p.communicate(timeout=120)
            killed += p.returncode == -signal.SIGKILL
            assert_resumable(run)
        for run, *_ in procs:
            finish(toy, run)
            assert_same(outcome(run), expected)
    record_counts("faults", "kill -9 trials", TRIALS, TRIALS)
    assert killed >= TRIALS // 2  # most kills landed before the run ended on its own


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_sigint_and_sigterm_save_and_resume(toy, reference, tmp_path, signum, code, record_counts):
    run = tmp_path / "run"
    p = launch(train_args(toy, run))
    deadline = time.time() + 60
    while not (run / "config.toml").exists() and time.time() < deadline:  # training has started
        time.sleep(0.05)
    time.sleep(0.4)
    p.send_signal(signum)
    _, err = p.communicate(timeout=60)
    if p.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert p.returncode == code, err
    assert "continue with: convzoo train --resume" in err
    assert latest_intact(run / "checkpoints") is not None
    finish(toy, run)
    assert_same(outcome(run), reference[0])
    record_counts("faults", f"signal {signum.name}", 1, 1)


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))  # the checkpoint's weights need ~250 kB
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead


def test_disk_full_while_saving_is_a_clear_error_and_leaves_the_previous_checkpoint(toy, tmp_path, record_counts):
    run = tmp_path / "run"
    first = subprocess.run([sys.executable, str(DRIVER), "--", *train_args(toy, run)[:-1], "--epochs", "1"],
                           capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    before = {p: p.read_bytes() for p in (run / "checkpoints" / "last").iterdir()}
    config = (run / "config.toml").read_text().replace("epochs = 1", "epochs = 2")
    (run / "config.toml").write_text(config)
    full = subprocess.run([sys.executable, str(DRIVER), "--", "train", "--resume", str(run), "--data-dir", str(toy),
                           "--quiet"], capture_output=True, text=True, timeout=120, preexec_fn=_limit_file_size)
    assert full.returncode == 2, full.stderr
    lines = full.stderr.strip().splitlines()
    assert len(lines) == 1 and "could not save checkpoint" in lines[0] and "previous checkpoint is intact" in lines[0]
    assert "Traceback" not in full.stderr
    after = {p: p.read_bytes() for p in (run / "checkpoints" / "last").iterdir()}
    assert before == after  # the previous checkpoint, byte for byte
    leftovers = [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".tmp-")]
    assert not leftovers and all(p.name in ("last", "best") or (p / "state.pt").exists()
                                 for p in (run / "checkpoints").iterdir())
    record_counts("faults", "disk full while saving", 1, 1)


def test_two_runs_on_one_directory(toy, tmp_path, record_counts):
    """The second process is refused while the first trains (the lock names its pid)."""
    run = tmp_path / "run"
    first = launch(train_args(toy, run) + ["--epochs", "200"])  # long enough to outlive the second's start
    try:
        deadline = time.time() + 60
        while not (run / "lock").exists() and time.time() < deadline:
            time.sleep(0.02)
        second = subprocess.run([sys.executable, str(DRIVER), "--", "train", "--resume", str(run), "--data-dir",
                                 str(toy)], capture_output=True, text=True, timeout=120)
        assert first.poll() is None, "the first run ended before the second started; lengthen it"
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert second.returncode == 2 and f"in use by process {first.pid}" in second.stderr, second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    assert first.returncode == 143 and not (run / "lock").exists()  # the first saved, exited, unlocked
    record_counts("faults", "second run on a locked directory", 1, 1)


def test_resume_with_a_different_config_lists_the_fields(toy, tmp_path, capsys, record_counts):
    from convzoo.cli import main

    run = tmp_path / "run"
    assert main(train_args(toy, run)[:-1] + ["--epochs", "1"]) == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    code = main(["train", "--resume", str(run), "--data-dir", str(toy), "--lr", "0.5", "--batch-size", "32"])
    err = capsys.readouterr().err
    assert code == 2 and "differs from the run's" in err and "lr:" in err and "batch_size: 16 -> 32" in err, err
    assert before == {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    record_counts("faults", "resume with a different config", 1, 1)
