"""The training loop: ``fit(config)`` runs ``train_one_epoch`` and ``evaluate_batches`` epoch after epoch,
checkpointing as it goes. Plain code, one typed config (``TrainConfig``), saved with every result.

The loop computes; it keeps where the run stands in one ``TrainingState`` (``train/state.py``) and hands
it to the ``CheckpointSaver`` (``train/saver.py``), which persists checkpoints, pointers, metrics files
and curves.

Honest by construction: the best checkpoint and early stopping look at the validation split only;
the test split is evaluated and reported, never chosen on. Reproducible by construction: every random
choice (init, shuffling, augmentation, dropout) is derived from (seed, purpose, epoch, step), so the
same config on the CPU gives the same weights and metrics bit for bit, resumed or not.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import Tensor, nn

from convzoo.errors import DivergenceError
from convzoo.train import optim
from convzoo.train.averaging import WeightAverage
from convzoo.train.checkpoint import RunLock
from convzoo.train.config import TrainConfig
from convzoo.train.data import StreamedData, load_run_data
from convzoo.train.distributed import SINGLE, Dist, local_device, setup, teardown
from convzoo.train.loader import StreamBatches
from convzoo.train.optim import trained_out
from convzoo.train.pipeline import Batches, derive_seed
from convzoo.train.report import EpochTable, Progress
from convzoo.train.run import (
    Interrupted,
    RunResult,
    agreed_signal,
    announce,
    averaged,
    build_run,
    epoch_row,
    finish,
    run_device,
    saved,
    sidecar,
    signals_caught,
    stopped_early,
)
from convzoo.train.run_dir import prepare_run_dir, refuse_existing_run, start_or_resume, what_is_kept
from convzoo.train.saver import CheckpointSaver
from convzoo.train.state import EpochSums

__all__ = ["Interrupted", "RunResult", "fit", "train_one_epoch"]


# ---- the epoch loop ---------------------------------------------------------------------------------------


class _StepTimer:
    """Seconds spent inside training steps: wall clock on the CPU, CUDA events on a GPU (no sync per step)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.seconds = 0.0
        self.events: list[tuple[Any, Any]] = []

    @contextmanager
    def step(self) -> Iterator[None]:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self.events.append((start, end))
        else:
            t0 = time.perf_counter()
            yield
            self.seconds += time.perf_counter() - t0

    def total(self) -> float:
        if self.events:
            torch.cuda.synchronize()
            self.seconds += sum(s.elapsed_time(e) for s, e in self.events) / 1000
            self.events.clear()
        return self.seconds


def train_one_epoch(net: nn.Module, forward: Callable[[Tensor], Tensor], batches: Batches | StreamBatches,
                    optimizer: torch.optim.Optimizer, loss_fn: nn.Module, config: TrainConfig, epoch: int, *,
                    start_step: int = 0, sums: EpochSums | None = None, progress: Progress | None = None,
                    should_stop: Callable[[], bool] = lambda: False, dist: Dist = SINGLE,
                    average: WeightAverage | None = None) -> tuple[EpochSums, int]:
    """Train over ``batches`` from ``start_step``; return the epoch's sums and the next step to run
    (``len(batches)`` when the epoch finished, less when ``should_stop()`` asked to stop early).

    ``epoch`` is 0-based. Raises ``DivergenceError`` on a non-finite loss, naming epoch, step and lr.

    Several processes (``dist``): ``forward`` is the ``DistributedDataParallel`` model, which averages the
    gradients over the processes. Each process's loss is its shard's summed loss divided by the global
    batch's count and multiplied by the processes, so that the average is the one-process mean loss
    whatever the shard sizes (the last batch's may differ). The sums, the divergence check and the decision
    to stop are taken over all processes together, so every process makes the same one.

    ``average``: the moving average of the weights (``--ema``), updated after every step.
    """
    sums = sums or EpochSums()
    device = batches.device
    timer = _StepTimer(device)
    # on a GPU, look at the losses without a sync per step; several processes sum them across processes, which
    # also waits for every process: not at every step either
    check_every = 1 if device.type == "cpu" and not dist.active else 25
    pending: list[tuple[int, Tensor, Tensor, int]] = []  # (step, summed loss, correct, images) not yet in the sums
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if config.amp else nullcontext()
    shard_loss = nn.CrossEntropyLoss(reduction="sum", label_smoothing=config.label_smoothing)

    def flush(lr: float) -> bool:
        """Add the pending steps to the sums (over every process); return whether any process asked to stop."""
        counts = torch.stack([torch.stack([loss, correct.double(), torch.tensor(float(size), dtype=torch.float64,
                                                                                 device=loss.device)])
                              for _, loss, correct, size in pending])  # P x 3
        stop = should_stop() if dist.active else False  # (one process looks after the progress update)
        if dist.active:
            flat = dist.sum_(torch.cat([counts.flatten(), torch.tensor([float(stop)], dtype=torch.float64,
                                                                       device=counts.device)]))
            counts, stop = flat[:-1].view(-1, 3), bool(flat[-1] > 0)
        for (step, *_), (loss_sum, correct, size) in zip(pending, counts.cpu().tolist(), strict=True):
            if not math.isfinite(loss_sum):
                raise DivergenceError(
                    f"the loss became {loss_sum / size} at epoch {epoch + 1}, step {step + 1} (lr {lr:.4g}); lower "
                    f"the learning rate (--lr {config.lr / 10:.4g}) or add warm-up (--warmup-epochs 1)"
                )
            sums.loss_sum += loss_sum
            sums.correct += round(correct)
            sums.seen += round(size)
        pending.clear()
        return stop

    net.train()
    done_training = trained_out(net, config, epoch)  # (their gradients dropped before each step)
    t_start = time.perf_counter()
    next_step, lr = len(batches), config.lr
    for step, X, y in batches.epoch(epoch, start_step):
        lr = optim.lr_at(config, epoch * len(batches) + step, len(batches))
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)  # (--bias-lr-scale's group)
        torch.manual_seed(derive_seed(config.seed, "step", epoch, step))  # dropout draws, per step
        with timer.step(), dist.exchanges():  # (the model's forward and backward exchange with the other processes)
            with autocast:
                logits = forward(X)
                if dist.active:
                    summed = shard_loss(logits, y)
                    loss = summed * (dist.world / batches.global_size(step))
                else:
                    loss = loss_fn(logits, y)
                    summed = loss.detach().double() * len(y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for p in done_training:
                p.grad = None  # (the optimizer leaves a parameter without a gradient alone, decay included)
            optimizer.step()
            if average is not None:
                average.update(net, epoch * len(batches) + step)
        pending.append((step, summed.detach().double(), (logits.argmax(dim=1) == y).sum(), len(y)))
        agreed = flush(lr) if len(pending) >= check_every else False
        if progress is not None:
            progress.update(step, sums.loss_sum / sums.seen if device.type == "cpu" and sums.seen else None)
        # several processes stop together, at a flush; one stops at the first step that ends after the signal
        stop = agreed if dist.active else should_stop()
        if stop and step + 1 < len(batches):
            next_step = step + 1
            break
    if pending:
        flush(lr)
    sums.step_seconds += timer.total()
    sums.train_seconds += time.perf_counter() - t_start
    return sums, next_step


# ---- the run: fit, its steps (train/run.py) in the order it takes them ------------------------------------


def fit(config: TrainConfig, *, resume: str | Path | None = None, progress: bool = True,
        out: TextIO | None = None, on_epoch: Callable[[dict[str, Any]], bool] | None = None) -> RunResult:
    """Train ``config.model`` on ``config.dataset``; resume the run in ``resume`` if given.

    Writes the run directory (config.toml, run.json, metrics.csv/jsonl, curves.png, confusion.png,
    samples.png, checkpoints/) and returns its history and the selected epoch's metrics. ``on_epoch``
    sees each epoch's metrics row once its checkpoint is written and may end the run by returning True
    (benchmarks/time_to_accuracy.py stops at its target so).
    """
    out = out or sys.stdout
    device = run_device(config)
    dist = setup(device, config.threads, config.dist_timeout)
    try:
        with ExitStack() as stack:
            if not dist.main:  # one process prints, plots and writes: global rank 0
                out, progress = stack.enter_context(open(os.devnull, "w")), False  # noqa: SIM115
            return _fit(config, resume, progress, out, on_epoch, local_device(device, dist), dist, stack)
    finally:
        teardown(dist)


def _fit(config: TrainConfig, resume: str | Path | None, progress: bool, out: TextIO,
         on_epoch: Callable[[dict[str, Any]], bool] | None, device: torch.device, dist: Dist,
         stack: ExitStack) -> RunResult:
    """``fit``'s steps, in every process of the run (one, or those torchrun started)."""
    run_dir, config, resuming = dist.from_main(lambda: prepare_run_dir(config, resume))
    # all that can refuse the run (device, data, model, batch size) comes before the run directory is made:
    # a refused first try leaves nothing behind that would make the retry need --resume
    data, val_split, data_line = dist.agree(lambda: load_run_data(config))
    if isinstance(data, StreamedData) and not (config.stream or config.cache_resized):  # the path recorded, so that
        # a resume takes it too, whatever the memory of the machine it resumes on
        config = dataclasses.replace(config, cache_resized=True) if data.held else \
            dataclasses.replace(config, stream=True)
    # a resumed run's weights come from its checkpoint: its --init-from source is not read again (it may be gone)
    fresh = not (resuming and (run_dir / "checkpoints" / "last").exists())
    run = dist.agree(lambda: build_run(config, data, val_split, device, dist, init=fresh))

    # every process has the saver (which touches no file when made); rank 0 alone calls it, the others wait
    saver = CheckpointSaver(run_dir, sidecar(config, data, val_split, run, dist),
                            title=f"{config.model} on {data.name}")

    def claim() -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        stack.enter_context(RunLock(run_dir))
        if not resuming:
            refuse_existing_run(run_dir)  # again, under the lock: another process may have started one since

    dist.from_main(claim)
    state = start_or_resume(config, run_dir, run, saver, resuming, out, dist)
    announce(config, run_dir, data, val_split, run, out, data_line)
    table, steps = EpochTable(out), len(run.train_batches)
    stopped = "early stopping" if stopped_early(config, state) else "completed"
    with signals_caught() as caught:
        while state.epoch < config.epochs and not stopped_early(config, state):
            t0, before = time.perf_counter(), state.sums.train_seconds  # (train time before a mid-epoch resume)
            bar = Progress(steps, state.epoch + 1, config.epochs, enabled=progress)
            try:
                state.sums, state.step = train_one_epoch(
                    run.net, run.train_forward, run.train_batches, run.optimizer, run.loss_fn, config, state.epoch,
                    start_step=state.step, sums=state.sums, progress=bar, should_stop=lambda: caught() is not None,
                    dist=dist, average=run.average)
            except DivergenceError as err:
                raise DivergenceError(f"{err}; {what_is_kept(saver)}") from err
            finally:
                bar.close()
            signum = agreed_signal(dist, caught())
            dist.average_buffers_(run.net)  # what is evaluated and saved: every process's statistics
            with averaged(run) as training:  # (--ema: the average evaluated and saved, training's weights kept)
                if signum and state.step < steps:  # stopped inside the epoch: save where it stands
                    raise Interrupted(signum, saved(dist, functools.partial(
                        saver.save, run.net.state_dict(), state.snapshot(run.optimizer, steps, training))))
                state.finish_epoch(epoch_row(config, run, state, data.num_classes, t0, before))
                path = saved(dist, functools.partial(saver.end_epoch, run.net.state_dict(),
                                                      state.snapshot(run.optimizer, steps, training)))
            table.row(state.history[-1])
            signum = agreed_signal(dist, caught())
            if signum:
                raise Interrupted(signum, path)
            if on_epoch is not None and on_epoch(state.history[-1]) and state.epoch < config.epochs:
                stopped = "stopped by the caller"
                break
            if stopped_early(config, state) and state.epoch < config.epochs:
                stopped = "early stopping"
                print(f"early stopping: no better validation accuracy for {state.best.since} epochs", file=out)
                break
    if run.average is not None:  # what the run reports: the average, as evaluated and saved
        run.average.copy_to(run.net)
    return finish(config, run_dir, run, data, saver, state, stopped, out)
