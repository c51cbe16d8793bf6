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
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import Tensor, nn

from convzoo.data import Dataset, Split, check_disjoint, load_dataset, split_train_val
from convzoo.data.datasets import resolve_dataset_name, stratified_subset
from convzoo.errors import ConvzooError, DivergenceError, RunError
from convzoo.models import ConvNet, create_model
from convzoo.models.airbench import Whitening
from convzoo.train.averaging import WeightAverage
from convzoo.train.checkpoint import CHECKPOINT_FORMAT, RunLock
from convzoo.train.config import TrainConfig, config_diff, load_config_file, resolve_config, save_config
from convzoo.train.distributed import SINGLE, Dist, local_device, setup, teardown
from convzoo.train.env import environment, fused_sgd, keep_batch_memory, pick_device
from convzoo.train.evaluation import EvalResult, evaluate_batches, tta_logits
from convzoo.train.pipeline import Augment, Batches, Preprocess, derive_seed, generator
from convzoo.train.plots import plot_confusion, plot_samples
from convzoo.train.report import EpochTable, Progress
from convzoo.train.saver import CheckpointSaver, data_changes, data_identity
from convzoo.train.state import EpochSums, TrainingState
from convzoo.utils.atomic import write_text_atomic

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
class RunResult:
    run_dir: Path
    history: list[dict[str, Any]]
    selected_epoch: int  # the epoch whose weights are reported: best by validation, else the last
    selected: dict[str, Any]  # that epoch's metrics (test accuracy measured with its weights)
    stopped: str  # "completed" or "early stopping"


# ---- pieces -----------------------------------------------------------------------------------------


def lr_at(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Learning rate at global step ``step``: linear warm-up from ``warmup_start`` x lr, then constant, or a
    cosine or linear (one-cycle) decay to ``final_lr_fraction`` x lr at the last step."""
    total = config.epochs * steps_per_epoch
    warm = config.warmup_epochs * steps_per_epoch
    if step < warm:
        start = config.warmup_start
        return config.lr * (start + (1 - start) * (step + 1) / warm)
    progress = (step - warm) / max(1.0, total - warm)
    end = config.final_lr_fraction
    if config.schedule == "cosine":
        return config.lr * (end + (1 - end) * 0.5 * (1 + math.cos(math.pi * progress)))
    if config.schedule == "onecycle":
        return config.lr * (end + (1 - end) * max(0.0, 1 - progress))
    return config.lr


def make_optimizer(config: TrainConfig, net: nn.Module) -> torch.optim.Optimizer:
    """The optimizer of ``config``. With ``--bias-lr-scale S`` the batch-norm shifts are a parameter group of
    their own whose lr is S times the others' (``lr_scale``, which the loop's schedule keeps) and whose weight
    decay is divided by S, so that their decay per step is the others' (airbench's BN-bias lr)."""
    params: Any = net.parameters()
    if config.bias_lr_scale != 1:
        shifts = {id(m.bias) for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                  and m.bias is not None}
        if not shifts:
            raise ConvzooError(f"--bias-lr-scale scales the learning rate of batch-norm shifts, and {config.model} "
                               "has no batch norm; drop --bias-lr-scale")
        scale, named = config.bias_lr_scale, list(net.named_parameters())  # (named: state.pt maps them by name)
        params = [{"params": [(n, p) for n, p in named if id(p) not in shifts], "lr_scale": 1.0},
                  {"params": [(n, p) for n, p in named if id(p) in shifts], "lr_scale": scale,
                   "lr": config.lr * scale, "weight_decay": config.weight_decay / scale}]
    if config.optimizer in ("sgd", "momentum", "nesterov"):
        momentum = 0.0 if config.optimizer == "sgd" else config.momentum
        return torch.optim.SGD(params, lr=config.lr, momentum=momentum, nesterov=config.optimizer == "nesterov",
                               weight_decay=config.weight_decay, fused=fused_sgd(net.parameters()))
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


CLASS_BIAS = 2.0  # kaiming-identity's start of the class convolution's biases (NiN: no class starts dead)


def kaiming_identity_init_(net: nn.Module) -> None:
    """``--init kaiming-identity``, for networks whose logits come out of a ReLU (d2l's NiN): He init, then
    every 1x1 convolution with as many outputs as inputs starts as the identity (zero bias), and the first
    convolution of the model's head (NiN's class convolution) starts with biases of ``CLASS_BIAS``.

    With random 1x1 filters between ReLUs, a channel's weighted sum of non-negative, alike inputs has the
    same sign for nearly every image: at He init 1 to 6 of NiN's 10 class logits are 0 for every image, get
    no gradient, and are never predicted (docs/benchmarks.md). The identity keeps each class channel the
    ReLU of the class convolution, which the bias starts positive."""
    square = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)
              and m.in_channels == m.out_channels and m.groups == 1]
    head = getattr(net, "head", None)
    first = next((m for m in head.modules() if isinstance(m, nn.Conv2d)), None) if isinstance(head, nn.Module) \
        else None
    if not square or first is None:
        raise ConvzooError(f"--init kaiming-identity sets square 1x1 convolutions and a convolution in the head, "
                           f"and {_name(net)} lacks them (nin has both); choose another --init")
    kaiming_init_(net)
    for m in square:
        nn.init.dirac_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    if first.bias is not None:
        nn.init.constant_(first.bias, CLASS_BIAS)


def _name(net: nn.Module) -> str:
    return str(getattr(net, "model_name", type(net).__name__))


def dirac_init_(net: nn.Module) -> None:
    """Identity init (airbench): in every 3x3 convolution after the network's first, the first
    ``in_channels`` filters pass their input channel through unchanged (a Dirac delta at the centre, zero
    bias); the other filters keep their init. A network of such layers starts close to the identity map on
    what its first layer extracts."""
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)][1:]
    convs = [m for m in convs if m.kernel_size == (3, 3) and m.groups == 1]
    if not convs:
        raise ConvzooError(f"--init dirac sets 3x3 convolutions after the first, and {_name(net)} has none; "
                           "choose another --init")
    for m in convs:
        nn.init.dirac_(m.weight[: m.in_channels])  # (out x in x 3 x 3: filters i < in pick channel i)
        if m.bias is not None:
            nn.init.zeros_(m.bias[: m.in_channels])


def freeze_bn_scales_(net: nn.Module) -> None:
    """``--bn-frozen-scale``: every batch norm's scale set to 1 and left out of training (airbench); the shift
    still trains."""
    layers = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None]
    if not layers:
        raise ConvzooError(f"--bn-frozen-scale freezes batch-norm scales, and {_name(net)} has no batch norm; "
                           "drop --bn-frozen-scale")
    for m in layers:
        nn.init.ones_(m.weight)
        m.weight.requires_grad_(False)


def trained_out(net: nn.Module, config: TrainConfig, epoch: int) -> list[Tensor]:
    """The parameters whose training has ended by epoch ``epoch`` (0-based): the whitening layer's bias after
    ``--whiten-bias-epochs`` epochs (airbench). They keep ``requires_grad`` (so that several processes'
    ``DistributedDataParallel`` sees the same parameters throughout); the loop drops their gradients."""
    if not config.whiten_bias_epochs or epoch < config.whiten_bias_epochs:
        return []
    return [m.bias for m in net.modules() if isinstance(m, Whitening) and m.bias is not None]


WHITEN_IMAGES = 5000  # training images whose patches set the whitening layer (airbench's count)


def whiten_(net: nn.Module, split: Split, preprocess: Preprocess, seed: int) -> None:
    """``--whiten``: set the model's first whitening layer (``models.airbench.Whitening``) from the patches of
    ``WHITEN_IMAGES`` training images drawn from ``seed`` (all of them when there are fewer), preprocessed as
    training sees them, before any augmentation; its kernels are frozen from then on."""
    layer = next((m for m in net.modules() if isinstance(m, Whitening)), None)
    if layer is None:
        raise ConvzooError(f"--whiten sets a whitening layer, and {_name(net)} has none (airbench_cifar has); "
                           "drop --whiten")
    pick = torch.randperm(len(split), generator=generator(seed, "whiten"))[:WHITEN_IMAGES]
    X = preprocess(split.images.index_select(0, pick.to(split.images.device)))  # N x C x H x W
    layer.whiten_(X.to(layer.weight.device))


def build_model(config: TrainConfig, data: Dataset) -> ConvNet:
    """The zoo model for this data set: its classes, its channels (unless the config says otherwise)."""
    kwargs = {"num_classes": data.num_classes, "in_channels": data.channels, **config.model_kwargs}
    torch.manual_seed(derive_seed(config.seed, "init"))
    net = create_model(config.model, **kwargs)
    if config.init == "xavier":
        xavier_init_(net)
    elif config.init == "kaiming":
        kaiming_init_(net)
    elif config.init == "dirac":
        dirac_init_(net)
    elif config.init == "kaiming-identity":
        kaiming_identity_init_(net)
    if config.bn_frozen_scale:
        freeze_bn_scales_(net)
    side = (config.resize, config.resize) if config.resize else data.image_size
    net.check_input(torch.empty(1, net.in_channels, *side, device="meta"))  # too small? say so now
    return net


def _check_batch_norm(net: ConvNet, config: TrainConfig, data: Dataset, processes: int = 1) -> None:
    """Refuse ``--batch-size 1`` for a model with a batch-norm layer that would then normalise one value
    per channel (BN-LeNet's BatchNorm1d after the flatten; a BatchNorm2d on 1 x 1 maps), which torch
    refuses in training mode, at the first step. (A batch of two or more always has enough values, and
    the loader drops a final batch of one.) Found by one evaluation-mode forward of one image, whose
    batch-norm layers neither update their statistics nor check."""
    layers = {name: m for name, m in net.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    if config.batch_size // processes > 1 or not layers:  # (each process normalises its own shard)
        return
    seen: dict[str, int] = {}  # layer -> values its input holds for the batch of one

    def record(name: str) -> Callable[[nn.Module, tuple[Tensor, ...]], None]:
        def hook(module: nn.Module, args: tuple[Tensor, ...]) -> None:  # (returns None: the input is unchanged)
            seen.setdefault(name, args[0].numel())
        return hook

    hooks = [m.register_forward_pre_hook(record(name)) for name, m in layers.items()]
    side = (config.resize, config.resize) if config.resize else data.image_size
    was_training = net.training
    try:
        net.eval()
        with torch.no_grad():
            net(torch.zeros(1, net.in_channels, *side, device=next(net.parameters()).device))  # 1 x C x H x W
    finally:
        net.train(was_training)
        for hook in hooks:
            hook.remove()
    single = [name for name, m in layers.items() if seen.get(name, 2) // m.num_features <= 1]
    if single:
        per = f" ({processes} processes: {config.batch_size // processes} image per process)" if processes > 1 else ""
        raise ConvzooError(f"--batch-size {config.batch_size}{per} cannot train {config.model}: its batch norm layer "
                           f"{single[0]} would normalise a single value per channel, which training mode cannot; "
                           f"use --batch-size {2 * processes} or more")


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


def auto_channels_last(net: nn.Module, device: torch.device) -> bool:
    """The memory format ``--channels-last`` left unset picks: NHWC on a CPU, where the training step runs
    1.1-1.4x faster in it for every zoo model measured (benchmarks/channels_last.py), except when a
    BatchNorm2d normalises fewer than 16 channels (BN-LeNet, whose first batch norm has 6: 0.38-0.66x; batch
    norm over so few channels vectorises badly in NHWC). FastCNN-MNIST, whose narrowest has 16, is 1.73x faster.
    NCHW on accelerators. Deterministic for a model, so a resumed run makes the same choice."""
    if device.type != "cpu":
        return False
    return not any(isinstance(m, nn.BatchNorm2d) and m.num_features < 16 for m in net.modules())


def train_one_epoch(net: nn.Module, forward: Callable[[Tensor], Tensor], batches: Batches,
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
        lr = lr_at(config, epoch * len(batches) + step, len(batches))
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)  # (--bias-lr-scale's group)
        torch.manual_seed(derive_seed(config.seed, "step", epoch, step))  # dropout draws, per step
        with timer.step():
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


# ---- the run: fit, then its steps in the order it takes them -----------------------------------------


def fit(config: TrainConfig, *, resume: str | Path | None = None, progress: bool = True,
        out: TextIO | None = None, on_epoch: Callable[[dict[str, Any]], bool] | None = None) -> RunResult:
    """Train ``config.model`` on ``config.dataset``; resume the run in ``resume`` if given.

    Writes the run directory (config.toml, run.json, metrics.csv/jsonl, curves.png, confusion.png,
    samples.png, checkpoints/) and returns its history and the selected epoch's metrics. ``on_epoch``
    sees each epoch's metrics row once its checkpoint is written and may end the run by returning True
    (benchmarks/time_to_accuracy.py stops at its target so).
    """
    out = out or sys.stdout
    device = _device(config)
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
    run_dir, config, resuming = dist.from_main(lambda: _prepare_run_dir(config, resume))
    # all that can refuse the run (device, data, model, batch size) comes before the run directory is made:
    # a refused first try leaves nothing behind that would make the retry need --resume
    data, val_split = dist.agree(lambda: _load_splits(config))
    # a resumed run's weights come from its checkpoint: its --init-from source is not read again (it may be gone)
    fresh = not (resuming and (run_dir / "checkpoints" / "last").exists())
    run = dist.agree(lambda: _build(config, data, val_split, device, dist, init=fresh))

    # every process has the saver (which touches no file when made); rank 0 alone calls it, the others wait
    saver = CheckpointSaver(run_dir, _sidecar(config, data, val_split, run, dist),
                            title=f"{config.model} on {data.name}")

    def claim() -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        stack.enter_context(RunLock(run_dir))
        if not resuming:
            _refuse_existing_run(run_dir)  # again, under the lock: another process may have started one since

    dist.from_main(claim)
    state = _start_or_resume(config, run_dir, run, saver, resuming, out, dist)
    _announce(config, run_dir, data, val_split, run, out)
    table, steps = EpochTable(out), len(run.train_batches)
    stopped = "early stopping" if _stopped_early(config, state) else "completed"
    with _signals_caught() as caught:
        while state.epoch < config.epochs and not _stopped_early(config, state):
            t0, before = time.perf_counter(), state.sums.train_seconds  # (train time before a mid-epoch resume)
            bar = Progress(steps, state.epoch + 1, config.epochs, enabled=progress)
            try:
                state.sums, state.step = train_one_epoch(
                    run.net, run.train_forward, run.train_batches, run.optimizer, run.loss_fn, config, state.epoch,
                    start_step=state.step, sums=state.sums, progress=bar, should_stop=lambda: caught() is not None,
                    dist=dist, average=run.average)
            except DivergenceError as err:
                raise DivergenceError(f"{err}; {_what_is_kept(saver)}") from err
            finally:
                bar.close()
            signum = _agreed_signal(dist, caught())
            dist.average_buffers_(run.net)  # what is evaluated and saved: every process's statistics
            with _averaged(run) as training:  # (--ema: the average evaluated and saved, training's weights kept)
                if signum and state.step < steps:  # stopped inside the epoch: save where it stands
                    raise Interrupted(signum, _saved(dist, functools.partial(
                        saver.save, run.net.state_dict(), state.snapshot(run.optimizer, steps, training))))
                state.finish_epoch(_epoch_row(config, run, state, data.num_classes, t0, before))
                path = _saved(dist, functools.partial(saver.end_epoch, run.net.state_dict(),
                                                      state.snapshot(run.optimizer, steps, training)))
            table.row(state.history[-1])
            signum = _agreed_signal(dist, caught())
            if signum:
                raise Interrupted(signum, path)
            if on_epoch is not None and on_epoch(state.history[-1]) and state.epoch < config.epochs:
                stopped = "stopped by the caller"
                break
            if _stopped_early(config, state) and state.epoch < config.epochs:
                stopped = "early stopping"
                print(f"early stopping: no better validation accuracy for {state.best.since} epochs", file=out)
                break
    if run.average is not None:  # what the run reports: the average, as evaluated and saved
        run.average.copy_to(run.net)
    return _finish(config, run_dir, run, data, saver, state, stopped, out)


@contextmanager
def _averaged(run: _Run) -> Iterator[dict[str, Tensor] | None]:
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


def _agreed_signal(dist: Dist, signum: int | None) -> int:
    """The signal any process of the run caught (0: none), the same in every process."""
    if not dist.active:
        return signum or 0
    return int(dist.max_(torch.tensor([signum or 0], dtype=torch.int64)).item())


def _saved(dist: Dist, save: Callable[[], Path]) -> Path:
    """A checkpoint written by rank 0 (``save`` on its saver), every process waiting until it is on disk."""
    return dist.from_main(save)


def _stopped_early(config: TrainConfig, state: TrainingState) -> bool:
    """Early stopping's rule: ``config.early_stopping`` epochs without a better validation accuracy (a
    resumed run that had stopped so stays stopped)."""
    return bool(config.early_stopping) and state.best.since >= config.early_stopping


def _default_run_dir(config: TrainConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    dataset = config.dataset.replace(":", "-").replace("/", "_")
    return Path("runs") / f"{config.model}-{dataset}-{stamp}"


def _prepare_run_dir(config: TrainConfig, resume: str | Path | None) -> tuple[Path, TrainConfig, bool]:
    """The run directory, the config to use, and whether this resumes a run. An ``imagefolder:`` path is
    stored resolved (absolute), so the run finds its data from any folder."""
    if resume is None:
        run_dir = Path(config.out) if config.out else _default_run_dir(config)  # named as typed
        _refuse_existing_run(run_dir)
        return run_dir, dataclasses.replace(config, dataset=resolve_dataset_name(config.dataset)), False
    run_dir = Path(resume)
    if not (run_dir / "config.toml").is_file():
        raise RunError(f"--resume {run_dir}: no run there (config.toml missing)")
    saved_values = load_config_file(run_dir / "config.toml")
    missing = [key for key in ("model", "dataset") if key not in saved_values]
    if missing:
        raise RunError(f"--resume {run_dir}: config.toml lacks {', '.join(missing)} (cut short?); "
                       "it cannot be resumed, start it again with --out")
    saved = resolve_config(file_values=saved_values)
    saved = dataclasses.replace(saved, dataset=resolve_dataset_name(saved.dataset))  # older runs: as typed
    config = dataclasses.replace(config, dataset=resolve_dataset_name(config.dataset))
    differences = config_diff(saved, config)
    if differences:
        raise RunError(f"--resume {run_dir}: the command's config differs from the run's: {'; '.join(differences)}")
    machine = {k: getattr(config, k) for k in ("data_dir", "download", "device")}
    return run_dir, dataclasses.replace(saved, **machine, out=str(run_dir)), True


def _refuse_existing_run(run_dir: Path) -> None:
    """Refuse to start a new run in ``run_dir`` when it holds one (its config or checkpoints)."""
    if (run_dir / "config.toml").exists() or (run_dir / "checkpoints").exists():
        raise RunError(f"run directory {run_dir} already holds a run; continue it with --resume {run_dir} "
                       f"or choose another --out")


def _what_is_kept(saver: CheckpointSaver) -> str:
    """What a diverged run leaves: its last checkpoint (written before the loss went bad), or none yet."""
    last = saver.root / "last"
    if last.is_symlink() and last.is_dir():
        return f"its last good checkpoint is kept ({saver.root / last.readlink()})"
    return (f"no checkpoint was written before it, so none is kept; start again with --out elsewhere (or delete "
            f"{saver.run_dir})")


def _device(config: TrainConfig) -> torch.device:
    """The device to train on, with the allocator set up for it; ``--amp`` only where it pays."""
    device = pick_device(config.device)
    keep_batch_memory()
    if config.amp and device.type != "cuda":
        raise ConvzooError("--amp is for CUDA devices only (bfloat16 on this CPU is 5-8x slower than float32)")
    return device


def _load_splits(config: TrainConfig) -> tuple[Dataset, Split | None]:
    """The data set with ``train`` the split the run trains on (the validation split carved out, then
    ``--train-limit``), and the validation split (None without ``--val-split``). Refuses evaluating on
    training images, and a run with nothing to evaluate on."""
    data = load_dataset(config.dataset, data_dir=config.data_dir, download=config.download)
    if data.test is not None:
        check_disjoint(data.train, data.test)
    train_split, val_split = data.train, None
    if config.val_split:
        train_split, val_split = split_train_val(data.train, config.val_split, config.val_seed)
    if config.train_limit:
        train_split = stratified_subset(train_split, config.train_limit, derive_seed(config.seed, "train_limit"))
    evaluation = [s for s in (val_split, data.test) if s is not None]
    check_disjoint(train_split, *evaluation)
    if not evaluation:
        raise ConvzooError(f"{data.name} has no test split; hold out a validation split with --val-split 0.1")
    # hold the training images once: the carved splits are copies, so let the full split go
    return dataclasses.replace(data, train=train_split), val_split


@dataclass
class _Run:
    """What training runs on: the model and its (maybe compiled) forward, the batches, optimizer and loss."""

    device: torch.device
    net: ConvNet
    forward: Callable[[Tensor], Tensor]
    channels_last: bool
    preprocess: Preprocess
    train_batches: Batches
    eval_batches: dict[str, Batches]  # "val" and/or "test"
    optimizer: torch.optim.Optimizer
    loss_fn: nn.Module
    train_forward: Callable[[Tensor], Tensor]  # ``forward``, or the DistributedDataParallel model of several processes
    dist: Dist = SINGLE
    evaluated: tuple[int, dict[str, EvalResult]] | None = None  # the last epoch evaluated here, and its results
    average: WeightAverage | None = None  # --ema: the moving average of the weights


def _build(config: TrainConfig, data: Dataset, val_split: Split | None, device: torch.device,
           dist: Dist = SINGLE, init: bool = True) -> _Run:
    """Model (seeded init, memory format, ``torch.compile``), preprocessing, batches, optimizer and loss;
    for several processes the model wrapped in ``DistributedDataParallel`` and the batches sharded.
    ``init``: load ``--init-from`` (not for a run resumed from its checkpoint)."""
    net = build_model(config, data).to(device)
    if config.init_from and init:  # fine-tuning: trained weights instead of the fresh init (train/init_from.py)
        from convzoo.train.init_from import init_from

        notes = init_from(net, config.init_from)
        for note in notes if dist.main else ():  # (one process prints)
            print(f"note: --init-from: {note}", file=sys.stderr, flush=True)
    _check_batch_norm(net, config, data, dist.world)
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
    if config.whiten:  # (before DistributedDataParallel, which must see the frozen kernels as frozen)
        whiten_(net, data.train, preprocess, config.seed)
    train_module: nn.Module = net
    if dist.active:  # the gradients averaged over the processes; batch-norm statistics stay each process's own
        train_module = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None, forward_sync_buffers=False,
            gradient_as_bucket_view=True)
    forward: Callable[[Tensor], Tensor] = net
    train_forward: Callable[[Tensor], Tensor] = train_module
    if config.compile:
        net.input_range()  # derive the input check's range outside the compiled graph
        forward = torch.compile(net)  # type: ignore[assignment]
        train_forward = forward if train_module is net else torch.compile(train_module)  # type: ignore[assignment]
    shard = (dist.rank, dist.world)
    train_batches = Batches(data.train, config.batch_size, device=device, preprocess=preprocess, shuffle=True,
                            augment=Augment.from_name(config.augment, config.crop_padding, config.crop_mode),
                            seed=config.seed,
                            shard=shard)
    eval_batches = {name: Batches(split, config.eval_batch_size, device=device, preprocess=preprocess, shard=shard)
                    for name, split in (("val", val_split), ("test", data.test)) if split is not None}
    average = None
    if config.ema:
        average = WeightAverage(net, decay=config.ema, every=config.ema_every, lookahead=config.lookahead,
                                total_steps=config.epochs * len(train_batches))
    return _Run(device, net, forward, channels_last, preprocess, train_batches, eval_batches,
                make_optimizer(config, net), nn.CrossEntropyLoss(label_smoothing=config.label_smoothing),
                train_forward, dist, average=average)


def _sidecar(config: TrainConfig, data: Dataset, val_split: Split | None, run: _Run,
             dist: Dist = SINGLE) -> dict[str, Any]:
    """The ``model.json`` fields every checkpoint of the run shares: what rebuilding and using it needs, and
    the identity of the data it was trained on (``data_identity``: what a resume and ``convzoo eval`` check)."""
    net, pre = run.net, run.preprocess
    return {
        "format": CHECKPOINT_FORMAT,
        "model": config.model,
        "model_kwargs": {"num_classes": net.num_classes, "in_channels": net.in_channels, **config.model_kwargs},
        "dataset": data.name,
        "classes": list(data.classes),
        "input": {"channels": net.in_channels, "size": list(pre.size or data.image_size),
                  "mean": list(pre.mean) if pre.mean else None, "std": list(pre.std) if pre.std else None},
        "config": dataclasses.asdict(config),
        "data": data_identity(data.name, data.train, val_split, data.test, val_split=config.val_split,
                              val_seed=config.val_seed),
        "processes": dist.world,  # that trained it (the result does not depend on it, batch norm aside)
    }


def _start_or_resume(config: TrainConfig, run_dir: Path, run: _Run, saver: CheckpointSaver, resuming: bool,
                     out: TextIO, dist: Dist = SINGLE) -> TrainingState:
    """The state to train from: when resuming, the last checkpoint's (weights, optimizer and RNG restored
    into ``run``); else a fresh one, with ``config.toml`` and ``run.json`` written (also for a run killed
    before its first checkpoint, which starts again from the beginning). Rank 0 reads and writes the files;
    what it read is sent to the other processes."""

    def on_main() -> tuple[dict[str, Tensor], TrainingState] | None:
        if resuming:
            resumed = saver.resume()
            if resumed is not None:
                _check_resumed_data(run_dir, saver, config, out)
                _say_where_it_resumes(config, run_dir, saver, resumed[1], dist, out)
                return resumed
            print(f"{run_dir} has no checkpoint yet; starting it from the beginning", file=out, flush=True)
        save_config(config, run_dir / "config.toml")
        write_text_atomic(run_dir / "run.json", json.dumps(
            {"started": datetime.now().isoformat(timespec="seconds"), "seed": config.seed,
             "channels_last": run.channels_last, "processes": dist.world,
             "environment": environment(run.device)}, indent=2))
        return None

    resumed = dist.from_main(on_main)
    if resumed is None:
        return TrainingState()
    weights, state = resumed
    run.net.load_state_dict(weights)
    if run.average is not None:  # the checkpoint holds the average; training goes on from its own weights
        run.average.load_(weights)
        if state.train_weights:
            run.net.load_state_dict(state.train_weights)
    run.optimizer.load_state_dict(state.optimizer)
    torch.set_rng_state(state.rng["torch"])
    return state


def _say_where_it_resumes(config: TrainConfig, run_dir: Path, saver: CheckpointSaver, state: TrainingState,
                          dist: Dist, out: TextIO) -> None:
    """Where the resumed run goes on from (or that it is finished), and a note when it was trained by
    another number of processes."""
    if state.epoch >= config.epochs:
        print(f"{run_dir} is finished ({state.epoch} of {config.epochs} epochs trained): nothing left to "
              f"train, its reports are written again; to train longer, start a new run with a larger "
              f"--epochs and another --out, or one that starts from its weights (--init-from {run_dir})",
              file=out, flush=True)
    elif _stopped_early(config, state):
        print(f"{run_dir} is finished: early stopping ended it after epoch {state.epoch} (no better "
              f"validation accuracy for {state.best.since} epochs); its reports are written again",
              file=out, flush=True)
    else:
        print(f"resuming {run_dir} at epoch {state.epoch + 1}, step {state.step}", file=out, flush=True)
    before = (saver.resumed_sidecar or {}).get("processes", 1)
    if before != dist.world:
        print(f"note: {run_dir} was trained by {before} process(es) and continues with {dist.world}: the global "
              f"batch ({config.batch_size}), the order of the images and their augmentations stay the same; "
              "batch norm now normalises over shards of another size", file=out, flush=True)


def _check_resumed_data(run_dir: Path, saver: CheckpointSaver, config: TrainConfig, out: TextIO) -> None:
    """Refuse to continue a run on data other than its own, by content (a copy of the same files elsewhere
    is the same data); a checkpoint written before runs recorded their data is continued unchecked, with a
    note."""
    recorded = (saver.resumed_sidecar or {}).get("data")
    if not isinstance(recorded, dict):
        print(f"note: {run_dir} records no identity of its data (written by an older convzoo); not checking "
              "that this is the data it was trained on", file=out, flush=True)
        return
    changes = data_changes(recorded, saver.sidecar["data"])
    if changes:
        where = f"--data-dir {config.data_dir}" if config.data_dir else "the data found"
        raise RunError(f"--resume {run_dir}: {where} is not the data the run was trained on ({'; '.join(changes)}); "
                       f"point --data-dir at the run's own data (a copy anywhere will do)")


def _announce(config: TrainConfig, run_dir: Path, data: Dataset, val_split: Split | None, run: _Run,
              out: TextIO) -> None:
    """The run's first line (model, parameters, split sizes, device, directory), and a warning when the
    training split lacks classes that the evaluation splits have."""
    print(f"training {config.model} ({sum(p.numel() for p in run.net.parameters()):,} parameters) on {data.name} "
          f"[{len(data.train):,} train" + (f", {len(val_split):,} val" if val_split is not None else "")
          + (f", {len(data.test):,} test" if data.test is not None else "") + f"] on {run.device}; run {run_dir}",
          file=out, flush=True)
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


def _epoch_row(config: TrainConfig, run: _Run, state: TrainingState, num_classes: int, t0: float,
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
        "lr": lr_at(config, (state.epoch + 1) * steps - 1, steps),
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


def _finish(config: TrainConfig, run_dir: Path, run: _Run, data: Dataset, saver: CheckpointSaver,
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


def _plot_results(config: TrainConfig, run_dir: Path, run: _Run, data: Dataset, result: EvalResult, name: str,
                  selected_epoch: int) -> None:
    """``confusion.png`` and ``samples.png`` (the first 32 images of split ``name``) of the selected weights."""
    batches, net, forward = run.eval_batches[name], run.net, run.forward
    plot_confusion(result.confusion, data.classes, run_dir / "confusion.png",
                   title=f"{config.model}, epoch {selected_epoch}, {name} accuracy {result.accuracy:.4f}")
    images, labels = batches.images[:32], batches.labels[:32]
    with torch.no_grad():
        net.eval()
        predicted = forward(batches.preprocess(images)).argmax(dim=1)
    plot_samples(images.cpu(), labels.cpu(), predicted.cpu(), data.classes, run_dir / "samples.png")
