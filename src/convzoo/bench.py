"""Throughput of zoo models, and this machine's fp32 matmul peak to judge it by (``convzoo bench``).

As timm's ``benchmark.py``: build the model, warm up, then time repeated steps on random data and report
the median images/s with the min and max, beside the parameters, multiply-adds and the fraction of the
machine's fp32 matmul throughput the step reaches.

FLOPs are counted as 2 per multiply-add (``convzoo.summary``: Conv2d and Linear); a training step as one
forward and two forward-sized backward passes (gradients of the inputs and of the weights): 3x.
"""

from __future__ import annotations

import csv
import io
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from convzoo.errors import ConvzooError
from convzoo.utils.atomic import write_text_atomic
from convzoo.utils.table import render_table

__all__ = ["BenchResult", "benchmark_model", "format_table", "matmul_peak", "train_step_seconds", "write_csv"]


def _timed(fn: Callable[[], object], seconds: float, min_runs: int = 3) -> list[float]:
    """Seconds of each call of ``fn``, calling it until ``seconds`` have passed (at least ``min_runs`` times)."""
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def train_step_seconds(net: nn.Module, X: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer,
                       steps: int, warmup: int = 2) -> float:
    """The median seconds of ``steps`` training steps of ``net`` on ``X``, ``y`` (forward, cross-entropy,
    backward, ``optimizer.step()``) after ``warmup`` more; the CPU's clock, so for CPU tensors."""
    loss_fn = nn.CrossEntropyLoss()
    times = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        loss = loss_fn(net(X), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def matmul_peak(seconds: float = 1.0, sizes: tuple[int, ...] = (1024, 2048), device: str = "cpu") -> float:
    """This machine's fp32 matmul throughput in FLOP/s: the best, over ``sizes``, of the median time of
    ``n x n @ n x n`` (2 n^3 FLOPs) after warm-up. The yardstick ``convzoo bench`` reports against."""
    dev = torch.device(device)
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
        sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

        def run(a: torch.Tensor = a, b: torch.Tensor = b, sync: Callable[[], None] = sync) -> None:
            torch.mm(a, b)
            sync()

        for _ in range(2):
            run()
        best = max(best, 2 * n**3 / statistics.median(_timed(run, seconds / len(sizes))))
    return best


@dataclass(frozen=True)
class BenchResult:
    model: str
    mode: str  # "infer" or "train"
    batch_size: int
    input_size: tuple[int, int, int]  # C, H, W
    channels_last: bool
    compiled: bool
    images_per_s: float  # median
    images_per_s_min: float
    images_per_s_max: float
    num_params: int
    macs_per_image: int
    flops_per_s: float  # achieved: images/s x MACs x 2 (x 3 when training)
    fraction_of_peak: float  # flops_per_s / the matmul peak given

    def row(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = "x".join(map(str, self.input_size))
        return d


def benchmark_model(name: str, *, input_size: tuple[int, int, int] | None = None, batch_size: int = 64,
                    mode: str = "infer", channels_last: bool = False, compile: bool = False,
                    seconds: float = 3.0, device: str = "cpu", peak: float | None = None) -> BenchResult:
    """Time ``name``'s inference (eval, no_grad) or training step (forward, cross-entropy, backward, SGD)
    on random data; ``peak`` (FLOP/s) defaults to :func:`matmul_peak` measured now."""
    import convzoo
    from convzoo.train.env import fused_sgd

    if mode not in ("infer", "train"):
        raise ConvzooError(f"mode must be infer or train, got {mode!r}")
    if batch_size < 1:
        raise ConvzooError(f"--batch-size must be a whole number >= 1, got {batch_size}")
    if not seconds > 0:
        raise ConvzooError(f"--seconds must be > 0, got {seconds}")
    info = convzoo.model_info(name)
    size = tuple(input_size) if input_size is not None else info.default_input_size
    C, H, W = size
    dev = torch.device(device)
    torch.manual_seed(0)
    net = convzoo.create_model(name, in_channels=C)
    macs = convzoo.summary(net, (C, H, W)).total_macs  # checks the size too, with the model's own message
    net = net.to(dev)
    X = torch.randn(batch_size, C, H, W, device=dev)
    y = torch.randint(0, net.num_classes, (batch_size,), device=dev)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        X = X.contiguous(memory_format=torch.channels_last)
    net.input_range()  # the input check's one-off probe stays out of the timings
    forward: Callable[[torch.Tensor], torch.Tensor] = torch.compile(net) if compile else net  # type: ignore[assignment]
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if mode == "train":
        net.train()
        # the implementation convzoo train uses, so that the report's epoch estimate matches its runs
        optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, fused=fused_sgd(net.parameters()))
        loss_fn = nn.CrossEntropyLoss()

        def step() -> None:
            loss = loss_fn(forward(X), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sync()
    else:
        net.eval()

        def step() -> None:
            with torch.no_grad():
                forward(X)
            sync()

    for _ in range(2):  # warm-up (and compilation)
        step()
    rates = [batch_size / t for t in _timed(step, seconds)]
    median = statistics.median(rates)
    flops = median * macs * 2 * (3 if mode == "train" else 1)
    peak = peak if peak is not None else matmul_peak(device=device)
    return BenchResult(name, mode, batch_size, (C, H, W), channels_last, compile, median, min(rates), max(rates),
                       sum(p.numel() for p in net.parameters()), macs, flops, flops / peak)


_COLUMNS = ("model", "mode", "batch", "input", "img/s", "min", "max", "params", "MMACs/img", "GFLOP/s", "of peak")


def format_table(results: list[BenchResult]) -> str:
    """The results as ``convzoo bench`` prints them: the first four columns left-aligned, the figures right."""
    rows = [(r.model, r.mode, str(r.batch_size), "x".join(map(str, r.input_size)), f"{r.images_per_s:,.1f}",
             f"{r.images_per_s_min:,.1f}", f"{r.images_per_s_max:,.1f}", f"{r.num_params:,}",
             f"{r.macs_per_image / 1e6:,.1f}", f"{r.flops_per_s / 1e9:.1f}", f"{r.fraction_of_peak:.0%}")
            for r in results]
    return render_table(_COLUMNS, rows, right=range(4, len(_COLUMNS)))


def write_csv(results: list[BenchResult], path: str | os.PathLike[str]) -> None:
    """Every result as a CSV row, written atomically (the old file or the new one, never half)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(results[0].row()))
    writer.writeheader()
    for r in results:
        writer.writerow(r.row())
    write_text_atomic(path, buffer.getvalue())

