"""How close a large model's training step comes to this machine's fp32 matmul throughput (issue 4).

    python benchmarks/train_step_peak.py [--model resnet18_cifar] [--batch-size 128] [--no-compile] [--json FILE]

In one process: the fp32 matmul peak (median of square matmuls at a few sizes, the best size taken),
then the training step (forward, cross-entropy, backward, SGD with momentum) of the model on random data
in NCHW, in channels_last, and channels_last with torch.compile; images/s are medians of timed steps after
warm-up. Achieved FLOP/s = images/s x multiply-adds per image (convzoo.summary) x 2 x 3: a training step
is counted as one forward and two forward-sized backward passes (input and weight gradients).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

import convzoo
from convzoo.bench import matmul_peak
from convzoo.train.env import keep_batch_memory


def step_rate(model: str, batch_size: int, channels_last: bool, compile: bool, steps: int) -> tuple[float, float]:
    """(median images/s, seconds of the first step: compilation included)."""
    torch.manual_seed(0)
    info = convzoo.model_info(model)
    net = convzoo.create_model(model)
    X = torch.randn(batch_size, *info.default_input_size)
    y = torch.randint(0, 10, (batch_size,))
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        X = X.contiguous(memory_format=torch.channels_last)
    net.input_range()  # the input check's probe, outside the timings
    forward = torch.compile(net) if compile else net
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> float:
        t = time.perf_counter()
        loss = loss_fn(forward(X), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - t

    first = step()
    step()  # warm-up
    return batch_size / statistics.median(step() for _ in range(steps)), first


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18_cifar")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=7, help="timed steps per variant (median)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant (20-40 s)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    keep_batch_memory()
    peak = matmul_peak()
    info = convzoo.model_info(args.model)
    macs = convzoo.summary(convzoo.create_model(args.model), info.default_input_size).total_macs
    flops_per_image = 6 * macs
    print(f"{torch.get_num_threads()} threads; fp32 matmul peak {peak / 1e9:.1f} GFLOP/s")
    print(f"{args.model} at {'x'.join(map(str, info.default_input_size))}, batch {args.batch_size}: "
          f"{macs / 1e6:.1f} M multiply-adds per image, {flops_per_image / 1e9:.2f} GFLOP per trained image")
    print(f"{'variant':<28}{'img/s':>8}{'GFLOP/s':>10}{'of peak':>9}{'first step (s)':>16}")
    rows = []
    variants = [("NCHW", False, False), ("channels_last", True, False)]
    if not args.no_compile:
        variants.append(("channels_last + compile", True, True))
    for name, channels_last, compile in variants:
        rate, first = step_rate(args.model, args.batch_size, channels_last, compile, args.steps)
        achieved = rate * flops_per_image
        rows.append({"variant": name, "images_per_s": rate, "gflops": achieved / 1e9, "fraction": achieved / peak,
                     "first_step_s": first})
        print(f"{name:<28}{rate:>8.1f}{achieved / 1e9:>10.1f}{achieved / peak:>8.0%}{first:>16.1f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "batch_size": args.batch_size, "peak_flops": peak,
                                         "macs_per_image": macs, "rows": rows,
                                         "threads": torch.get_num_threads(), "torch": torch.__version__}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
