"""channels_last against NCHW, per model, for the training step; and what ``convzoo train`` picks by itself.

    python benchmarks/channels_last.py [MODEL ...] [--seconds S] [--repeats N]

Both layouts are timed alternately, ``--repeats`` times each, and the medians compared, so a busy machine
affects both alike. The last column checks ``auto_channels_last`` (the choice when ``--channels-last`` is
not given) against the measurement.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

import convzoo
from convzoo.bench import benchmark_model, matmul_peak
from convzoo.train.env import keep_batch_memory
from convzoo.train.model import auto_channels_last

# (model, input size, batch): the sizes convzoo's recipes train them at
DEFAULT = [("lenet", (1, 28, 28), 256), ("lenet_bn", (1, 28, 28), 256), ("simple_cnn", (1, 28, 28), 64),
           ("fastcnn_mnist", (1, 28, 28), 256),
           ("resnet18_cifar", (3, 32, 32), 128), ("googlenet", (1, 96, 96), 64), ("densenet_d2l", (1, 96, 96), 64),
           ("nin", (1, 224, 224), 32)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="default: a spread of the zoo")
    parser.add_argument("--seconds", type=float, default=2.0, help="per timing")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    keep_batch_memory()
    cases = [c for c in DEFAULT if not args.models or c[0] in args.models]
    cases += [(m, convzoo.model_info(m).default_input_size, 64) for m in args.models
              if m not in {c[0] for c in DEFAULT}]
    peak = matmul_peak()
    print(f"training step images/s, median of {args.repeats} alternating timings of {args.seconds:g} s each")
    print(f"{'model':<16}{'input':>10}{'batch':>6}{'NCHW':>9}{'NHWC':>9}{'ratio':>7}  faster   auto picks")
    for name, size, batch in cases:
        rates: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.repeats):
            for layout in (False, True):
                r = benchmark_model(name, input_size=size, batch_size=batch, mode="train", channels_last=layout,
                                    seconds=args.seconds, peak=peak)
                rates[layout].append(r.images_per_s)
        nchw, nhwc = statistics.median(rates[False]), statistics.median(rates[True])
        auto = auto_channels_last(convzoo.create_model(name, in_channels=size[0]), torch.device("cpu"))
        faster = nhwc > nchw
        verdict = "agrees" if auto == faster or abs(nhwc / nchw - 1) < 0.05 else "DISAGREES"
        print(f"{name:<16}{'x'.join(map(str, size)):>10}{batch:>6}{nchw:>9.1f}{nhwc:>9.1f}{nhwc / nchw:>7.2f}  "
              f"{'NHWC' if faster else 'NCHW':<8} {'NHWC' if auto else 'NCHW'} ({verdict})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
