"""The run's steps around ``fit`` (train/loop.py), in the order it takes them: the splits loaded and checked,
the model, batches and optimizer built (``Run``), the checkpoint's shared fields, the first lines, the signals
caught, each epoch's metrics row, and the selected checkpoint reported at the end. ``Interrupted`` and
``RunResult`` are what a run ends with. Its directory, new or resumed, is train/run_dir.py's."""

from __future__ import annotations

import dataclasses
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import Tensor, nn

from convzoo.data import Split
from convzoo.data.folders import FileSplit
from convzoo.data.presets import DEFAULT_CROP_PCT, eval_transform, train_transform
from convzoo.errors import ConvzooError
from convzoo.models import ConvNet
from convzoo.train import optim
from convzoo.train.averaging import WeightAverage
from convzoo.train.checkpoint import CHECKPOINT_FORMAT
from convzoo.train.config import TrainConfig
from convzoo.train.data import RunData, StreamedData, load_splits
from convzoo.train.distributed import SINGLE, Dist, average_gradients
from convzoo.train.env import keep_batch_memory, pick_device
from convzoo.train.evaluation import EvalResult, evaluate_batches
from convzoo.train.init import whiten_
from convzoo.train.loader import StreamBatches, default_workers
from convzoo.train.model import auto_channels_last, build_model, check_batch_norm
from convzoo.train.optim import make_optimizer
from convzoo.train.pipeline import Augment, Batches, Preprocess
from convzoo.train.plots import plot_confusion, plot_samples
from convzoo.train.saver import CheckpointSaver, data_identity
from convzoo.train.state import TrainingState

__all__ = ["Interrupted", "Run", "RunResult", "agreed_signal", "announce", "averaged", "build_run", "epoch_row",
           "finish", "load_splits", "run_device", "saved", "sidecar", "signals_caught", "stopped_early"]


class Interrupted(Exception):  # noqa: N818  (a signal, not an error)
    """SIGINT or SIGTERM arrived; the state was saved and the run can be resumed."""

    def __init__(self, signum: int, checkpoint: Path) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}; saved {checkpoint}")
        self.signum = signum
        self.checkpoint = checkpoint

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # 130 for SIGINT, 143 for SIGTERM


@dataclass
class RunResult:
    run_dir: Path
    history: list[dict[str, Any]]
    selected_epoch: int  # the epoch whose weights are reported: best by validation, else the last
    selected: dict[str, Any]  # that epoch's metrics (test accuracy measured with its weights)
    stopped: str  # "completed" or "early stopping"


@contextmanager
def averaged(run: Run) -> Iterator[dict[str, Tensor] | None]:
    """For a run that keeps a moving average of its weights (``--ema``): while inside, the model holds the
    average (its batch-norm statistics averaged over the processes), to be evaluated and saved; yields the
    training weights, which it holds again on leaving. Without one: nothing changes, yields None."""
    if run.average is None:
        yield None
        return
    training = {name: value.clone() for name, value in run.net.state_dict().items()}
    run.average.copy_to(run.net)
    run.dist.average_buffers_(run.net)
    run.average.load_(run.net.state_dict())  # (those statistics, the same in every process)
    try:
        yield training
    finally:
        run.net.load_state_dict(training)


def agreed_signal(dist: Dist, signum: int | None) -> int:
    """The signal any process of the run caught (0: none), the same in every process."""
    if not dist.active:
        return signum or 0
    return int(dist.max_(torch.tensor([signum or 0], dtype=torch.int64)).item())


def saved(dist: Dist, save: Callable[[], Path]) -> Path:
    """A checkpoint written by rank 0 (``save`` on its saver), every process waiting until it is on disk."""
    return dist.from_main(save)


def stopped_early(config: TrainConfig, state: TrainingState) -> bool:
    """Early stopping's rule: ``config.early_stopping`` epochs without a better validation accuracy (a
    resumed run that had stopped so stays stopped)."""
    return bool(config.early_stopping) and state.best.since >= config.early_stopping


def run_device(config: TrainConfig) -> torch.device:
    """The device to train on, with the allocator set up for it; ``--amp`` only where it pays."""
    device = pick_device(config.device)
    keep_batch_memory()
    if config.amp and device.type != "cuda":
        raise ConvzooError("--amp is for CUDA devices only (bfloat16 on this CPU is 5-8x slower than float32)")
    return device


@dataclass
class Run:
    """What training runs on: the model and its (maybe compiled) forward, the batches, optimizer and loss."""

    device: torch.device
    net: ConvNet
    forward: Callable[[Tensor], Tensor]
    channels_last: bool
    preprocess: Preprocess
    train_batches: Batches | StreamBatches
    eval_batches: dict[str, Batches | StreamBatches]  # "val" and/or "test"
    optimizer: torch.optim.Optimizer
    loss_fn: nn.Module
    train_forward: Callable[[Tensor], Tensor]  # ``forward``, or the DistributedDataParallel model of several processes
    dist: Dist = SINGLE
    evaluated: tuple[int, dict[str, EvalResult]] | None = None  # the last epoch evaluated here, and its results
    average: WeightAverage | None = None  # --ema: the moving average of the weights


def build_run(config: TrainConfig, data: RunData, val_split: Split | FileSplit | None, device: torch.device,
           dist: Dist = SINGLE, init: bool = True) -> Run:
    """Model (seeded init, memory format, ``torch.compile``), preprocessing, batches, optimizer and loss;
    for several processes the model wrapped in ``DistributedDataParallel`` and the batches sharded.
    ``init``: load ``--init-from`` (not for a run resumed from its checkpoint)."""
    net = build_model(config, data).to(device)
    if config.init_from and init:  # fine-tuning: trained weights instead of the fresh init (train/init_from.py)
        from convzoo.train.init_from import init_from

        notes = init_from(net, config.init_from)
        for note in notes if dist.main else ():  # (one process prints)
            print(f"note: --init-from: {note}", file=sys.stderr, flush=True)
    check_batch_norm(net, config, data, dist.world)
    if config.sync_bn and device.type != "cuda":
        raise ConvzooError("--sync-bn needs CUDA: PyTorch's SyncBatchNorm runs on GPUs only; on CPUs each "
                           "process normalises over its own shard of the global batch (drop --sync-bn)")
    if config.sync_bn and dist.active:  # (one process: its batch norm already sees the whole batch)
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)  # type: ignore[assignment]
    channels_last = config.channels_last if config.channels_last is not None else auto_channels_last(net, device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    size = (config.resize, config.resize) if config.resize else None
    mean, std = (data.mean, data.std) if config.normalize else (None, None)
    preprocess = Preprocess(net.in_channels, size, mean, std, channels_last)
    if config.whiten and not isinstance(data, StreamedData):  # (before DistributedDataParallel, which must
        whiten_(net, data.train, preprocess, config.seed)  # see the frozen kernels as frozen)
    train_module: nn.Module = net
    if dist.active:  # the gradients averaged over the processes; batch-norm statistics stay each process's own
        with dist.exchanges():  # (it broadcasts rank 0's parameters)
            train_module = nn.parallel.DistributedDataParallel(
                net, device_ids=[device.index] if device.type == "cuda" else None, forward_sync_buffers=False,
                gradient_as_bucket_view=True)
        train_module.register_comm_hook(dist, average_gradients)  # (a lost peer is known as one: Dist.exchanges)
    forward: Callable[[Tensor], Tensor] = net
    train_forward: Callable[[Tensor], Tensor] = train_module
    if config.compile:
        net.input_range()  # derive the input check's range outside the compiled graph
        forward = torch.compile(net)  # type: ignore[assignment]
        train_forward = forward if train_module is net else torch.compile(train_module)  # type: ignore[assignment]
    shard = (dist.rank, dist.world)
    train_batches: Batches | StreamBatches
    eval_batches: dict[str, Batches | StreamBatches]
    if isinstance(data, StreamedData):  # the streaming path (train/data.py): files decoded by loader workers
        # held images are cropped in this process by default: a crop costs well under a millisecond, and workers
        # would take cores from the training step
        default = 0 if data.held else default_workers(dist.local_world)
        workers = config.workers if config.workers is not None else default
        train_batches = StreamBatches(data.train, config.batch_size, device=device, preprocess=preprocess,
                                      transform=train_transform(data.size), channels=data.channels, shuffle=True,
                                      seed=config.seed, shard=shard, workers=workers, held=data.held.get("train"))
        # evaluation in batches of at most --batch-size: the default --eval-batch-size, 1024, is sized for 32-pixel
        # images, and the activations of 1024 images at 224 pixels take gigabytes
        eval_size = min(config.eval_batch_size, config.batch_size)
        eval_batches = {name: StreamBatches(split, eval_size, device=device, preprocess=preprocess,
                                            transform=eval_transform(data.size), channels=data.channels,
                                            shard=shard, workers=min(workers, 2), held=data.held.get(name))
                        for name, split in (("val", val_split), ("test", data.test)) if isinstance(split, FileSplit)}
    else:
        train_batches = Batches(data.train, config.batch_size, device=device, preprocess=preprocess, shuffle=True,
                                augment=Augment.from_name(config.augment, config.crop_padding, config.crop_mode),
                                seed=config.seed, shard=shard)
        eval_batches = {name: Batches(split, config.eval_batch_size, device=device, preprocess=preprocess,
                                      shard=shard)
                        for name, split in (("val", val_split), ("test", data.test)) if isinstance(split, Split)}
    average = None
    if config.ema:
        average = WeightAverage(net, decay=config.ema, every=config.ema_every, lookahead=config.lookahead,
                                total_steps=config.epochs * len(train_batches))
    return Run(device, net, forward, channels_last, preprocess, train_batches, eval_batches,
                make_optimizer(config, net), nn.CrossEntropyLoss(label_smoothing=config.label_smoothing),
                train_forward, dist, average=average)


def sidecar(config: TrainConfig, data: RunData, val_split: Split | FileSplit | None, run: Run,
             dist: Dist = SINGLE) -> dict[str, Any]:
    """The ``model.json`` fields every checkpoint of the run shares: what rebuilding and using it needs, and
    the identity of the data it was trained on (``data_identity``: what a resume and ``convzoo eval`` check)."""
    net, pre = run.net, run.preprocess
    streamed = isinstance(data, StreamedData)  # its evaluation: the shorter side resized, the centre cropped
    crop = {"resize": "crop", "crop_pct": DEFAULT_CROP_PCT} if streamed else {}
    return {
        "format": CHECKPOINT_FORMAT,
        "model": config.model,
        "model_kwargs": {"num_classes": net.num_classes, "in_channels": net.in_channels, **config.model_kwargs},
        "dataset": data.name,
        "classes": list(data.classes),
        "input": {"channels": net.in_channels, "size": list(pre.size or data.image_size),
                  "mean": list(pre.mean) if pre.mean else None, "std": list(pre.std) if pre.std else None, **crop},
        "pipeline": ("held" if isinstance(data, StreamedData) and data.held else "stream") if streamed else "memory",
        "config": dataclasses.asdict(config),
        "data": data_identity(data.name, data.train, val_split, data.test, val_split=config.val_split,
                              val_seed=config.val_seed),
        "processes": dist.world,  # that trained it (the result does not depend on it, batch norm aside)
    }


def announce(config: TrainConfig, run_dir: Path, data: RunData, val_split: Split | FileSplit | None, run: Run,
              out: TextIO, data_line: str | None = None) -> None:
    """The run's first line (model, parameters, split sizes, device, directory), then ``data_line`` (an image
    folder's: which path its images take, and why), and a warning when the training split lacks classes that
    the evaluation splits have."""
    print(f"training {config.model} ({sum(p.numel() for p in run.net.parameters()):,} parameters) on {data.name} "
          f"[{len(data.train):,} train" + (f", {len(val_split):,} val" if val_split is not None else "")
          + (f", {len(data.test):,} test" if data.test is not None else "") + f"] on {run.device}; run {run_dir}",
          file=out, flush=True)
    if data_line:
        print(data_line, file=out, flush=True)
    dist = run.dist
    if dist.active:
        print(f"distributed: {dist.world} processes ({dist.backend}), {dist.local_world} on this machine, "
              f"{torch.get_num_threads()} thread(s) each; global batch {config.batch_size} = {dist.world} x "
              f"{config.batch_size // dist.world}", file=out, flush=True)
    evaluation = [s for s in (val_split, data.test) if s is not None]
    missing = sorted(set(torch.cat([s.labels for s in evaluation]).unique().tolist())
                     - set(data.train.labels.unique().tolist()))
    if missing:  # e.g. a --train-limit below the number of classes: some classes' quotas round to 0
        print(f"warning: the training split has no image of class(es) {', '.join(map(str, missing))} that the "
              f"evaluation split has" + (f"; --train-limit {config.train_limit} draws too few images to hold every "
                                         "class in proportion, raise it" if config.train_limit else ""),
              file=out, flush=True)


@contextmanager
def signals_caught() -> Iterator[Callable[[], int | None]]:
    """While inside, SIGINT and SIGTERM are recorded instead of killing; yields a probe for the signal."""
    caught: list[int] = []

    def handler(signum: int, frame: object) -> None:
        caught.append(signum)

    installed = []
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            installed.append((signum, signal.signal(signum, handler)))
    except ValueError:  # not the main thread: leave the signals alone
        installed.clear()
    try:
        yield lambda: caught[0] if caught else None
    finally:
        for signum, previous in installed:
            signal.signal(signum, previous)


def epoch_row(config: TrainConfig, run: Run, state: TrainingState, num_classes: int, t0: float,
               before: float) -> dict[str, Any]:
    """The metrics row of epoch ``state.epoch + 1``, whose training just ended: the training sums, and
    the validation and test splits evaluated now. ``t0`` is when this process began the epoch, ``before``
    the training seconds an interrupted process had already spent on it."""
    results = {name: evaluate_batches(run.forward, run.net, b, num_classes, config.amp, config.tta, run.dist)
               for name, b in run.eval_batches.items()}
    run.evaluated = (state.epoch + 1, results)
    elapsed = time.perf_counter() - t0 + before
    sums, steps = state.sums, len(run.train_batches)
    return {
        "epoch": state.epoch + 1,
        "lr": optim.lr_at(config, (state.epoch + 1) * steps - 1, steps),
        "train_loss": sums.loss_sum / sums.seen,
        "train_acc": sums.correct / sums.seen,
        "val_acc": results["val"].accuracy if "val" in results else None,
        "test_acc": results["test"].accuracy if "test" in results else None,
        "step_img_s": sums.seen / sums.step_seconds if sums.step_seconds else None,
        "e2e_img_s": sums.seen / elapsed if elapsed else None,
        "epoch_time": elapsed,
        "val_loss": results["val"].loss if "val" in results else None,
        "test_loss": results["test"].loss if "test" in results else None,
    }


def finish(config: TrainConfig, run_dir: Path, run: Run, data: RunData, saver: CheckpointSaver,
            state: TrainingState, stopped: str, out: TextIO) -> RunResult:
    """Report the selected checkpoint (best by validation, else the last) on the evaluation split, with
    its confusion matrix and sample predictions."""
    history, best_epoch, net, forward = state.history, state.best.epoch, run.net, run.forward
    selected_epoch = best_epoch or history[-1]["epoch"]
    dist = run.dist
    if best_epoch is not None and best_epoch != history[-1]["epoch"]:
        net.load_state_dict(dist.from_main(lambda: saver.read_weights("best")))
    name = "test" if "test" in run.eval_batches else "val"
    batches = run.eval_batches[name]
    if run.evaluated is not None and run.evaluated[0] == selected_epoch and name in run.evaluated[1]:
        result = run.evaluated[1][name]  # these weights were evaluated at the end of their epoch, in this process
    else:
        result = evaluate_batches(forward, net, batches, data.num_classes, config.amp, config.tta, dist)
    selected = dict(next(row for row in history if row["epoch"] == selected_epoch))
    selected[f"{name}_acc"] = result.accuracy
    if dist.main:
        _plot_results(config, run_dir, run, data, result, name, selected_epoch)
    dist.barrier()  # the plots are written before any process returns
    how = "best validation accuracy" if best_epoch is not None else "last epoch"
    print(f"{config.model} on {data.name}: {name} accuracy {result.accuracy:.4f} at epoch {selected_epoch} "
          f"({how}); run directory {run_dir}", file=out, flush=True)
    return RunResult(run_dir, history, selected_epoch, selected, stopped)


def _plot_results(config: TrainConfig, run_dir: Path, run: Run, data: RunData, result: EvalResult, name: str,
                  selected_epoch: int) -> None:
    """``confusion.png`` and ``samples.png`` (the first 32 images of split ``name``) of the selected weights."""
    batches, net, forward = run.eval_batches[name], run.net, run.forward
    plot_confusion(result.confusion, data.classes, run_dir / "confusion.png",
                   title=f"{config.model}, epoch {selected_epoch}, {name} accuracy {result.accuracy:.4f}")
    images, labels = batches.first(32)
    with torch.no_grad():
        net.eval()
        predicted = forward(batches.preprocess(images.to(run.device))).argmax(dim=1)
    plot_samples(images.cpu(), labels.cpu(), predicted.cpu(), data.classes, run_dir / "samples.png")
