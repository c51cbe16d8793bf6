"""The training loop: ``fit(config)`` runs ``train_one_epoch`` and ``evaluate`` epoch after epoch,
checkpointing as it goes. Plain code, one typed config (``TrainConfig``), saved with every result.

Honest by construction: the best checkpoint and early stopping look at the validation split only;
the test split is evaluated and reported, never chosen on. Reproducible by construction: every random
choice (init, shuffling, augmentation, dropout) is derived from (seed, purpose, epoch, step), so the
same config on the CPU gives the same weights and metrics bit for bit, resumed or not.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import Tensor, nn

from convzoo.data import Dataset, check_disjoint, load_dataset, split_train_val, subset
from convzoo.errors import ConvzooError, DivergenceError, RunError
from convzoo.models import ConvNet, create_model
from convzoo.train.checkpoint import (
    CHECKPOINT_FORMAT,
    RunLock,
    checkpoint_name,
    point,
    prune,
    read_checkpoint,
    restore,
    write_checkpoint,
    write_text_atomic,
)
from convzoo.train.config import TTAS, TrainConfig, config_diff, load_config_file, resolve_config, save_config
from convzoo.train.env import environment, keep_batch_memory, pick_device
from convzoo.train.pipeline import Augment, Batches, Preprocess, derive_seed
from convzoo.train.plots import plot_confusion, plot_curves, plot_samples
from convzoo.train.report import EpochTable, Progress, write_metrics

__all__ = ["EvalResult", "Interrupted", "RunResult", "evaluate_batches", "fit", "lr_at", "train_one_epoch",
           "tta_logits"]


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
class EvalResult:
    """Accuracy and confusion matrix (true class by row) of a model on one split."""

    accuracy: float
    loss: float
    confusion: Tensor  # K x K, int64
    top5: float | None  # when there are more than 5 classes
    count: int

    @property
    def per_class(self) -> Tensor:
        return self.confusion.diag().double() / self.confusion.sum(dim=1).clamp(min=1).double()


@dataclass
class RunResult:
    run_dir: Path
    history: list[dict[str, Any]]
    selected_epoch: int  # the epoch whose weights are reported: best by validation, else the last
    selected: dict[str, Any]  # that epoch's metrics (test accuracy measured with its weights)
    stopped: str  # "completed" or "early stopping"


# ---- pieces -----------------------------------------------------------------------------------------


def lr_at(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Learning rate at global step ``step``: linear warm-up, then constant, cosine or linear (one-cycle)
    decay to zero at the last step."""
    total = config.epochs * steps_per_epoch
    warm = config.warmup_epochs * steps_per_epoch
    if step < warm:
        return config.lr * (step + 1) / warm
    progress = (step - warm) / max(1.0, total - warm)
    if config.schedule == "cosine":
        return config.lr * 0.5 * (1 + math.cos(math.pi * progress))
    if config.schedule == "onecycle":
        return config.lr * max(0.0, 1 - progress)
    return config.lr


def make_optimizer(config: TrainConfig, net: nn.Module) -> torch.optim.Optimizer:
    params = net.parameters()
    if config.optimizer in ("sgd", "momentum", "nesterov"):
        momentum = 0.0 if config.optimizer == "sgd" else config.momentum
        return torch.optim.SGD(params, lr=config.lr, momentum=momentum, nesterov=config.optimizer == "nesterov",
                               weight_decay=config.weight_decay)
    betas = (config.momentum, 0.999)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, betas=betas, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, betas=betas, weight_decay=config.weight_decay)


def xavier_init_(net: nn.Module) -> None:
    """d2l's ``init_weights``: Xavier-uniform weights for every Conv2d and Linear (biases untouched)."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)


def kaiming_init_(net: nn.Module) -> None:
    """He et al. 2015's init for ReLU networks: normal weights of variance 2 / fan-in for every Conv2d and
    Linear, zero biases. It keeps the activations' scale through depth, which deep networks without batch
    norm (d2l's VGG, NiN, GoogLeNet) need to leave chance quickly; Xavier's halves it at every ReLU."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def build_model(config: TrainConfig, data: Dataset) -> ConvNet:
    """The zoo model for this data set: its classes, its channels (unless the config says otherwise)."""
    kwargs = {"num_classes": data.num_classes, "in_channels": data.channels, **config.model_kwargs}
    torch.manual_seed(derive_seed(config.seed, "init"))
    net = create_model(config.model, **kwargs)
    if config.init == "xavier":
        xavier_init_(net)
    elif config.init == "kaiming":
        kaiming_init_(net)
    side = (config.resize, config.resize) if config.resize else data.image_size
    net.check_input(torch.empty(1, net.in_channels, *side, device="meta"))  # too small? say so now
    return net


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


@dataclass
class _EpochState:
    """Sums over the steps of the epoch so far (saved with a mid-epoch checkpoint)."""

    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    step_seconds: float = 0.0
    train_seconds: float = 0.0


def auto_channels_last(net: nn.Module, device: torch.device) -> bool:
    """The memory format ``--channels-last`` left unset picks: NHWC on a CPU, where the training step runs
    1.1-1.4x faster in it for every zoo model measured (benchmarks/channels_last.py), except when a
    BatchNorm2d normalises fewer than 32 channels (BN-LeNet: 2.6x slower; batch norm over 6 channels
    vectorises badly in NHWC).
    NCHW on accelerators. Deterministic for a model, so a resumed run makes the same choice."""
    if device.type != "cpu":
        return False
    return not any(isinstance(m, nn.BatchNorm2d) and m.num_features < 32 for m in net.modules())


def train_one_epoch(net: nn.Module, forward: Callable[[Tensor], Tensor], batches: Batches,
                    optimizer: torch.optim.Optimizer, loss_fn: nn.Module, config: TrainConfig, epoch: int, *,
                    start_step: int = 0, sums: _EpochState | None = None, progress: Progress | None = None,
                    should_stop: Callable[[], bool] = lambda: False) -> tuple[_EpochState, int]:
    """Train over ``batches`` from ``start_step``; return the epoch's sums and the next step to run
    (``len(batches)`` when the epoch finished, less when ``should_stop()`` asked to stop early).

    ``epoch`` is 0-based. Raises ``DivergenceError`` on a non-finite loss, naming epoch, step and lr.
    """
    sums = sums or _EpochState()
    device = batches.device
    timer = _StepTimer(device)
    check_every = 1 if device.type == "cpu" else 25  # on a GPU, look at the losses without a sync per step
    pending: list[tuple[int, Tensor, int]] = []  # (step, loss, batch size) not yet added to the sums
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if config.amp else nullcontext()

    def flush(lr: float) -> None:
        values = torch.stack([loss for _, loss, _ in pending]).double().cpu().tolist()
        for (step, _, size), value in zip(pending, values, strict=True):
            if not math.isfinite(value):
                raise DivergenceError(
                    f"the loss became {value} at epoch {epoch + 1}, step {step + 1} (lr {lr:.4g}); lower the "
                    f"learning rate (--lr {config.lr / 10:.4g}) or add warm-up (--warmup-epochs 1); the last good "
                    f"checkpoint is kept"
                )
            sums.loss_sum += value * size
        pending.clear()

    net.train()
    t_start = time.perf_counter()
    next_step, lr = len(batches), config.lr
    for step, X, y in batches.epoch(epoch, start_step):
        lr = lr_at(config, epoch * len(batches) + step, len(batches))
        for group in optimizer.param_groups:
            group["lr"] = lr
        torch.manual_seed(derive_seed(config.seed, "step", epoch, step))  # dropout draws, per step
        with timer.step():
            with autocast:
                logits = forward(X)
                loss = loss_fn(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        pending.append((step, loss.detach(), len(y)))
        sums.correct += int((logits.argmax(dim=1) == y).sum())
        sums.seen += len(y)
        if len(pending) >= check_every:
            flush(lr)
        if progress is not None:
            progress.update(step, sums.loss_sum / sums.seen if device.type == "cpu" else None)
        if should_stop() and step + 1 < len(batches):
            next_step = step + 1
            break
    if pending:
        flush(lr)
    sums.step_seconds += timer.total()
    sums.train_seconds += time.perf_counter() - t_start
    return sums, next_step


def tta_logits(forward: Callable[[Tensor], Tensor], X: Tensor, tta: str = "none") -> Tensor:
    """The logits of a batch; ``tta="flip"`` averages them with those of its horizontal mirror image."""
    if tta not in TTAS:
        raise ConvzooError(f"tta must be one of {', '.join(TTAS)}, got {tta!r}")
    logits = forward(X).float()
    if tta == "flip":
        logits = (logits + forward(X.flip(3)).float()) / 2
    return logits


@torch.no_grad()
def evaluate_batches(forward: Callable[[Tensor], Tensor], net: nn.Module, batches: Batches, num_classes: int,
                     amp: bool = False, tta: str = "none") -> EvalResult:
    """Accuracy, mean loss, confusion matrix and top-5 accuracy over every batch, in evaluation mode.

    ``tta="flip"`` averages the logits of each image and of its horizontal mirror (test-time augmentation).
    """
    net.eval()
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=batches.device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=batches.device)
    top5 = torch.zeros((), dtype=torch.int64, device=batches.device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if amp else nullcontext()
    count = 0
    for _, X, y in batches.epoch():
        with autocast:
            logits = tta_logits(forward, X, tta)
        loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").double()
        confusion += torch.bincount(y * num_classes + logits.argmax(dim=1), minlength=num_classes**2)
        if num_classes > 5:
            top5 += (logits.topk(5, dim=1).indices == y[:, None]).any(dim=1).sum()
        count += len(y)
    confusion = confusion.view(num_classes, num_classes).cpu()
    return EvalResult(
        accuracy=float(confusion.diag().sum()) / max(count, 1),
        loss=float(loss_sum) / max(count, 1),
        confusion=confusion,
        top5=float(top5) / max(count, 1) if num_classes > 5 else None,
        count=count,
    )


# ---- the run ----------------------------------------------------------------------------------------


def _default_run_dir(config: TrainConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    dataset = config.dataset.replace(":", "-").replace("/", "_")
    return Path("runs") / f"{config.model}-{dataset}-{stamp}"


def _prepare_run_dir(config: TrainConfig, resume: str | Path | None) -> tuple[Path, TrainConfig, bool]:
    """The run directory, the config to use, and whether this resumes a run."""
    if resume is None:
        run_dir = Path(config.out) if config.out else _default_run_dir(config)
        if (run_dir / "config.toml").exists() or (run_dir / "checkpoints").exists():
            raise RunError(f"run directory {run_dir} already holds a run; continue it with --resume {run_dir} "
                           f"or choose another --out")
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir, config, False
    run_dir = Path(resume)
    if not (run_dir / "config.toml").is_file():
        raise RunError(f"--resume {run_dir}: no run there (config.toml missing)")
    saved_values = load_config_file(run_dir / "config.toml")
    missing = [key for key in ("model", "dataset") if key not in saved_values]
    if missing:
        raise RunError(f"--resume {run_dir}: config.toml lacks {', '.join(missing)} (cut short?); "
                       "it cannot be resumed, start it again with --out")
    saved = resolve_config(file_values=saved_values)
    differences = config_diff(saved, config)
    if differences:
        raise RunError(f"--resume {run_dir}: the command's config differs from the run's: {'; '.join(differences)}")
    machine = {k: getattr(config, k) for k in ("data_dir", "download", "device")}
    return run_dir, dataclasses.replace(saved, **machine, out=str(run_dir)), True


@contextmanager
def _signals_caught() -> Iterator[Callable[[], int | None]]:
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


def fit(config: TrainConfig, *, resume: str | Path | None = None, progress: bool = True,
        out: TextIO | None = None, on_epoch: Callable[[dict[str, Any]], bool] | None = None) -> RunResult:
    """Train ``config.model`` on ``config.dataset``; resume the run in ``resume`` if given.

    Writes the run directory (config.toml, run.json, metrics.csv/jsonl, curves.png, confusion.png,
    samples.png, checkpoints/) and returns its history and the selected epoch's metrics. ``on_epoch``
    sees each epoch's metrics row once its checkpoint is written and may end the run by returning True
    (benchmarks/time_to_accuracy.py stops at its target so).
    """
    out = out or sys.stdout
    run_dir, config, resuming = _prepare_run_dir(config, resume)
    with RunLock(run_dir):
        return _fit_locked(config, run_dir, resuming, progress, out, on_epoch)


def _fit_locked(config: TrainConfig, run_dir: Path, resuming: bool, show_progress: bool, out: TextIO,
                on_epoch: Callable[[dict[str, Any]], bool] | None = None) -> RunResult:
    device = pick_device(config.device)
    keep_batch_memory()
    if config.amp and device.type != "cuda":
        raise ConvzooError("--amp is for CUDA devices only (bfloat16 on this CPU is 5-8x slower than float32)")
    data = load_dataset(config.dataset, data_dir=config.data_dir, download=config.download)
    if data.test is not None:
        check_disjoint(data.train, data.test)
    train_split, val_split = data.train, None
    if config.val_split:
        train_split, val_split = split_train_val(data.train, config.val_split, config.val_seed)
    if config.train_limit:
        train_split = subset(train_split, torch.arange(min(config.train_limit, len(train_split))))
    evaluation = [s for s in (val_split, data.test) if s is not None]
    check_disjoint(train_split, *evaluation)
    # hold the training images once: the carved splits are copies, so let the full split go
    data = dataclasses.replace(data, train=train_split)
    if not evaluation:
        raise ConvzooError(f"{data.name} has no test split; hold out a validation split with --val-split 0.1")

    net = build_model(config, data).to(device)
    channels_last = config.channels_last if config.channels_last is not None else auto_channels_last(net, device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    forward: Callable[[Tensor], Tensor] = net
    if config.compile:
        net.input_range()  # derive the input check's range outside the compiled graph
        forward = torch.compile(net)  # type: ignore[assignment]
    size = (config.resize, config.resize) if config.resize else None
    mean, std = (data.mean, data.std) if config.normalize else (None, None)
    preprocess = Preprocess(net.in_channels, size, mean, std, channels_last)
    train_batches = Batches(train_split, config.batch_size, device=device, preprocess=preprocess, shuffle=True,
                            augment=Augment.from_name(config.augment, config.crop_padding), seed=config.seed)
    eval_batches = {name: Batches(split, config.eval_batch_size, device=device, preprocess=preprocess)
                    for name, split in (("val", val_split), ("test", data.test)) if split is not None}
    optimizer = make_optimizer(config, net)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    meta_base = {
        "format": CHECKPOINT_FORMAT,
        "model": config.model,
        "model_kwargs": {"num_classes": net.num_classes, "in_channels": net.in_channels, **config.model_kwargs},
        "dataset": data.name,
        "classes": list(data.classes),
        "input": {"channels": net.in_channels, "size": list(size or data.image_size),
                  "mean": list(mean) if mean else None, "std": list(std) if std else None},
        "config": {k: v for k, v in dataclasses.asdict(config).items()},
    }
    ckpt_root = run_dir / "checkpoints"
    history: list[dict[str, Any]] = []
    epoch, start_step, sums = 0, 0, _EpochState()
    best_val, since_best, best_epoch = -1.0, 0, None
    resume_from = restore(ckpt_root) if resuming else None
    if resuming and resume_from is None:  # killed before its first checkpoint: the same run from the start
        print(f"{run_dir} has no checkpoint yet; starting it from the beginning", file=out, flush=True)
        resuming = False
    if resuming and resume_from is not None:
        weights, meta, state = read_checkpoint(resume_from)  # sidecar, weights and state all validated
        net.load_state_dict(weights)
        optimizer.load_state_dict(state["optimizer"])
        history = list(state["history"])
        # a kill after the checkpoint but before the metrics files leaves them a row short: rewrite them
        if history:
            write_metrics(run_dir, history)
            plot_curves(history, run_dir / "curves.png", title=f"{config.model} on {data.name}")
        epoch, start_step = int(state["epoch"]), int(state["step"])
        sums = _EpochState(**state["sums"])
        best_val, since_best, best_epoch = float(state["best_val"]), int(state["since_best"]), state["best_epoch"]
        # a kill between writing a checkpoint and moving the pointers leaves `best` behind: set it again
        if best_epoch is not None and (ckpt_root / checkpoint_name(best_epoch)).is_dir():
            point(ckpt_root, "best", checkpoint_name(best_epoch))
        print(f"resuming {run_dir} at epoch {epoch + 1}, step {start_step}", file=out, flush=True)
    else:
        save_config(config, run_dir / "config.toml")
        write_text_atomic(run_dir / "run.json", json.dumps(
            {"started": datetime.now().isoformat(timespec="seconds"), "seed": config.seed,
             "channels_last": channels_last, "environment": environment(device)}, indent=2))

    def save(name: str, epoch_index: int, step: int, metrics: dict[str, Any] | None) -> Path:
        meta = {**meta_base, "epoch": epoch_index + (1 if step == 0 else 0), "step": step,
                "metrics": metrics, "saved": datetime.now().isoformat(timespec="seconds")}
        state = {"optimizer": optimizer.state_dict(), "schedule": {"step": epoch_index * len(train_batches) + step},
                 "rng": {"torch": torch.get_rng_state()}, "epoch": epoch_index if step else epoch_index + 1,
                 "step": step, "sums": dataclasses.asdict(sums) if step else dataclasses.asdict(_EpochState()),
                 "history": history, "best_val": best_val, "since_best": since_best, "best_epoch": best_epoch}
        path = write_checkpoint(ckpt_root, name, net.state_dict(), meta, state)
        point(ckpt_root, "last", name)
        return path

    table = EpochTable(out)
    stopped = "completed"
    print(f"training {config.model} ({sum(p.numel() for p in net.parameters()):,} parameters) on {data.name} "
          f"[{len(train_split):,} train" + (f", {len(val_split):,} val" if val_split is not None else "")
          + (f", {len(data.test):,} test" if data.test is not None else "") + f"] on {device}; run {run_dir}",
          file=out, flush=True)
    missing = sorted(set(torch.cat([s.labels for s in evaluation]).unique().tolist())
                     - set(train_split.labels.unique().tolist()))
    if missing:  # the first N of a split ordered by class (an image folder) hold only its first classes
        print(f"warning: the training split has no image of class(es) {', '.join(map(str, missing))} that the "
              f"evaluation split has" + (f"; --train-limit {config.train_limit} keeps the first images only, "
                                         "raise it or drop it" if config.train_limit else ""), file=out, flush=True)
    with _signals_caught() as caught:
        while epoch < config.epochs:
            t0, before = time.perf_counter(), sums.train_seconds  # (train time before a mid-epoch resume)
            progress = Progress(len(train_batches), epoch + 1, config.epochs, enabled=show_progress)
            try:
                sums, step = train_one_epoch(net, forward, train_batches, optimizer, loss_fn, config, epoch,
                                             start_step=start_step, sums=sums, progress=progress,
                                             should_stop=lambda: caught() is not None)
            finally:
                progress.close()
            signum = caught()
            if signum is not None and step < len(train_batches):
                path = save(checkpoint_name(epoch + 1, step), epoch, step, None)
                raise Interrupted(signum, path)
            results = {name: evaluate_batches(forward, net, b, data.num_classes, config.amp, config.tta)
                       for name, b in eval_batches.items()}
            elapsed = time.perf_counter() - t0 + before
            row = {
                "epoch": epoch + 1,
                "lr": lr_at(config, (epoch + 1) * len(train_batches) - 1, len(train_batches)),
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
            history.append(row)
            val_acc = results["val"].accuracy if "val" in results else None
            improved = val_acc is not None and val_acc > best_val
            if improved and val_acc is not None:
                best_val, since_best, best_epoch = val_acc, 0, epoch + 1
            elif val_acc is not None:
                since_best += 1
            sums = _EpochState()
            name = checkpoint_name(epoch + 1)
            save(name, epoch, 0, row)
            if improved:
                point(ckpt_root, "best", name)
            prune(ckpt_root)
            write_metrics(run_dir, history)
            plot_curves(history, run_dir / "curves.png", title=f"{config.model} on {data.name}")
            table.row(row)
            epoch, start_step = epoch + 1, 0
            if caught() is not None:
                raise Interrupted(caught() or signal.SIGINT, ckpt_root / name)
            if on_epoch is not None and on_epoch(row) and epoch < config.epochs:
                stopped = "stopped by the caller"
                break
            if config.early_stopping and since_best >= config.early_stopping and epoch < config.epochs:
                stopped = "early stopping"
                print(f"early stopping: no better validation accuracy for {since_best} epochs", file=out)
                break
    return _finish(config, run_dir, net, forward, data, eval_batches, history, best_epoch, stopped, out)


def _finish(config: TrainConfig, run_dir: Path, net: ConvNet, forward: Callable[[Tensor], Tensor], data: Dataset,
            eval_batches: dict[str, Batches], history: list[dict[str, Any]], best_epoch: int | None, stopped: str,
            out: TextIO) -> RunResult:
    """Report the selected checkpoint (best by validation, else the last) on the evaluation split, with
    its confusion matrix and sample predictions."""
    selected_epoch = best_epoch or history[-1]["epoch"]
    ckpt_root = run_dir / "checkpoints"
    if best_epoch is not None and best_epoch != history[-1]["epoch"]:
        weights, _, _ = read_checkpoint(ckpt_root / "best", state=False)
        net.load_state_dict(weights)
    name = "test" if "test" in eval_batches else "val"
    batches = eval_batches[name]
    result = evaluate_batches(forward, net, batches, data.num_classes, config.amp, config.tta)
    plot_confusion(result.confusion, data.classes, run_dir / "confusion.png",
                   title=f"{config.model}, epoch {selected_epoch}, {name} accuracy {result.accuracy:.4f}")
    images, labels = batches.images[:32], batches.labels[:32]
    with torch.no_grad():
        net.eval()
        predicted = forward(batches.preprocess(images)).argmax(dim=1)
    plot_samples(images.cpu(), labels.cpu(), predicted.cpu(), data.classes, run_dir / "samples.png")
    selected = dict(next(row for row in history if row["epoch"] == selected_epoch))
    selected[f"{name}_acc"] = result.accuracy
    how = "best validation accuracy" if best_epoch is not None else "last epoch"
    print(f"{config.model} on {data.name}: {name} accuracy {result.accuracy:.4f} at epoch {selected_epoch} "
          f"({how}); run directory {run_dir}", file=out, flush=True)
    return RunResult(run_dir, history, selected_epoch, selected, stopped)
