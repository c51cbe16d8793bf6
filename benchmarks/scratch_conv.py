"""Time convzoo.scratch.conv2d against torch.nn.functional.conv2d, forward and forward + backward.

    PYTHONPATH=src python benchmarks/scratch_conv.py            # (64, 16, 28, 28) input, 32 3x3 kernels
    PYTHONPATH=src python benchmarks/scratch_conv.py --repeats 50 --padding 0

Prints the median over ``--repeats`` timings (after ``--warmup`` untimed runs) and the ratio
scratch / PyTorch. Uses torch's default thread count; the machine should be otherwise idle.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from convzoo.scratch import conv2d


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--in-channels", type=int, default=16)
    parser.add_argument("--size", type=int, default=28, help="input height and width")
    parser.add_argument("--out-channels", type=int, default=32)
    parser.add_argument("--kernel", type=int, default=3)
    parser.add_argument("--padding", type=int, default=1)
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30, help="timed runs; the median is reported")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs first")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    g = torch.Generator().manual_seed(args.seed)
    X = torch.randn(args.batch, args.in_channels, args.size, args.size, generator=g, requires_grad=True)
    W = torch.randn(args.out_channels, args.in_channels, args.kernel, args.kernel, generator=g, requires_grad=True)
    b = torch.randn(args.out_channels, generator=g, requires_grad=True)
    convs = {
        "scratch": lambda: conv2d(X, W, b, stride=args.stride, padding=args.padding),
        "torch": lambda: F.conv2d(X, W, b, stride=args.stride, padding=args.padding),
    }
    Y = convs["torch"]()
    dY = torch.randn(Y.shape, generator=g)  # one upstream gradient for both

    def forward(conv: Callable[[], torch.Tensor]) -> Callable[[], object]:
        def run() -> object:
            with torch.no_grad():
                return conv()
        return run

    def forward_backward(conv: Callable[[], torch.Tensor]) -> Callable[[], object]:
        return lambda: torch.autograd.grad(conv(), (X, W, b), dY)

    torch.testing.assert_close(convs["scratch"](), Y, rtol=1e-5, atol=1e-4)  # time the right thing
    print(f"conv2d: input {tuple(X.shape)}, weight {tuple(W.shape)}, padding {args.padding}, "
          f"stride {args.stride}; {torch.get_num_threads()} threads, median of {args.repeats} (ms)")
    print(f"{'pass':<18}{'scratch':>10}{'torch':>10}{'ratio':>8}")
    for name, wrap in (("forward", forward), ("forward+backward", forward_backward)):
        ours = median_seconds(wrap(convs["scratch"]), args.repeats, args.warmup)
        theirs = median_seconds(wrap(convs["torch"]), args.repeats, args.warmup)
        print(f"{name:<18}{ours * 1e3:>10.2f}{theirs * 1e3:>10.2f}{ours / theirs:>7.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
