"""Throughput of zoo models, and this machine's fp32 matmul peak to judge it by (``convzoo bench``).

As timm's ``benchmark.py``: build the model, warm up, then time repeated steps on random data and report
the median images/s with the min and max, beside the parameters, multiply-adds and the fraction of the
machine's fp32 matmul throughput the step reaches.

FLOPs are counted as 2 per multiply-add (``convzoo.summary``: Conv2d and Linear); a training step as one
forward and two forward-sized backward passes (gradients of the inputs and of the weights): 3x.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["BenchResult", "benchmark_model", "matmul_peak", "register"]


def _timed(fn: Callable[[], object], seconds: float, min_runs: int = 3) -> list[float]:
    """Seconds of each call of ``fn``, calling it until ``seconds`` have passed (at least ``min_runs`` times)."""
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


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

    if mode not in ("infer", "train"):
        raise ValueError(f"mode must be infer or train, got {mode!r}")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be a whole number >= 1, got {batch_size}")
    if not seconds > 0:
        raise ValueError(f"--seconds must be > 0, got {seconds}")
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
        optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
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
    rows = [(r.model, r.mode, str(r.batch_size), "x".join(map(str, r.input_size)), f"{r.images_per_s:,.1f}",
             f"{r.images_per_s_min:,.1f}", f"{r.images_per_s_max:,.1f}", f"{r.num_params:,}",
             f"{r.macs_per_image / 1e6:,.1f}", f"{r.flops_per_s / 1e9:.1f}", f"{r.fraction_of_peak:.0%}")
            for r in results]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(_COLUMNS)]
    lines = ["  ".join(c.ljust(w) if i < 4 else c.rjust(w) for i, (c, w) in enumerate(zip(_COLUMNS, widths,
                                                                                          strict=True)))]
    for row in rows:
        lines.append("  ".join(v.ljust(w) if i < 4 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths,
                                                                                               strict=True))))
    return "\n".join(lines)


def write_csv(results: list[BenchResult], path: str | os.PathLike[str]) -> None:
    """Every result as a CSV row, written to a temporary file and renamed into place."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(results[0].row()))
    writer.writeheader()
    for r in results:
        writer.writerow(r.row())
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(buffer.getvalue())
    os.replace(tmp, target)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _cmd_bench(args: argparse.Namespace) -> int:
    import convzoo

    names: list[str] = []
    for pattern in args.models:
        matched = convzoo.list_models(pattern) if any(ch in pattern for ch in "*?[") else [pattern]
        if not matched:
            raise ValueError(f"no model matches {pattern!r}; see convzoo models")
        names += [n for n in matched if n not in names]
    for name in names:  # unknown names and too-small sizes fail now, before any timing
        info = convzoo.model_info(name)
        C, H, W = args.input_size or info.default_input_size
        convzoo.create_model(name, in_channels=C).check_input(torch.empty(1, C, H, W, device="meta"))
    if args.threads:
        torch.set_num_threads(args.threads)
    peak = matmul_peak(device=args.device)
    print(f"{torch.get_num_threads()} threads; fp32 matmul peak {peak / 1e9:.1f} GFLOP/s ({args.device})", flush=True)
    modes = ("infer", "train") if args.mode == "both" else (args.mode,)
    results = [benchmark_model(name, input_size=tuple(args.input_size) if args.input_size else None,
                               batch_size=args.batch_size, mode=mode, channels_last=args.channels_last,
                               compile=args.compile, seconds=args.seconds, device=args.device, peak=peak)
               for name in names for mode in modes]
    print(format_table(results))
    if args.csv:
        write_csv(results, args.csv)
        print(f"wrote {args.csv}")
    return 0


def register(sub: Any, commands: dict[str, Callable[[argparse.Namespace], int]]) -> None:
    """Add ``convzoo bench`` to the CLI's subparsers."""
    from convzoo.cli import _positive as _positive_int
    p = sub.add_parser("bench", help="images/s, MACs and the fraction of the fp32 matmul peak, per model")
    p.add_argument("models", nargs="+", metavar="MODEL", help="model names or globs (resnet*)")
    p.add_argument("--input-size", nargs=3, type=_positive_int, metavar=("C", "H", "W"),
                   help="input size (default: the model's)")
    p.add_argument("--batch-size", type=_positive_int, default=64, help="default 64")
    p.add_argument("--mode", choices=("infer", "train", "both"), default="infer", help="default infer")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (20-40 s up front)")
    p.add_argument("--seconds", type=_positive_float, default=3.0, help="timing per model and mode (default 3)")
    p.add_argument("--threads", type=_positive_int, help="intra-op threads (default: torch's)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--csv", metavar="FILE", help="also write the rows to this CSV file")
    commands["bench"] = _cmd_bench
