"""torch's three SGD implementations against each other, per model, for the whole training step.

    python benchmarks/optimizer_step.py [MODEL ...] [--steps N] [--repeats N]

The training step (forward, cross-entropy, backward, Nesterov SGD with weight decay 5e-4, as the recipes
train) is timed with ``torch.optim.SGD``'s per-parameter loop (``foreach=False``), its multi-tensor
version (``foreach=True``) and its fused kernel (``fused=True``), in turn, ``--repeats`` times each; the
medians are compared so that a busy machine affects all three alike. The last column is the implementation
``convzoo.train.optim.make_optimizer`` picks.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

import convzoo
from convzoo.bench import train_step_seconds
from convzoo.train.config import TrainConfig
from convzoo.train.env import keep_batch_memory
from convzoo.train.optim import make_optimizer

# (model, input size, batch): the sizes convzoo's recipes train them at
DEFAULT = [("fastcnn_fashion", (1, 28, 28), 256), ("airbench_cifar", (3, 32, 32), 512),
           ("resnet18_cifar", (3, 32, 32), 128), ("vgg11_small", (1, 32, 32), 128)]
IMPLEMENTATIONS = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def step_seconds(name: str, size: tuple[int, int, int], batch: int, options: dict[str, bool], steps: int) -> float:
    """The median seconds of ``steps`` training steps after two of warm-up."""
    torch.manual_seed(0)
    net = convzoo.create_model(name, in_channels=size[0]).train()
    X = torch.randn(batch, *size)
    y = torch.randint(0, net.num_classes, (batch,))
    net.input_range()  # the input check's one-off probe stays out of the timings
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4,
                                **options)
    return train_step_seconds(net, X, y, optimizer, steps)


def picked(name: str, in_channels: int) -> str:
    """The implementation ``make_optimizer`` gives this model on the CPU."""
    optimizer = make_optimizer(TrainConfig(model=name, optimizer="nesterov"),
                               convzoo.create_model(name, in_channels=in_channels))
    group = optimizer.param_groups[0]
    if group.get("fused"):
        return "fused"
    return "foreach" if group.get("foreach") else "torch's default (the loop on the CPU)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="default: " + ", ".join(c[0] for c in DEFAULT))
    parser.add_argument("--steps", type=int, default=5, help="timed steps per timing (default 5)")
    parser.add_argument("--repeats", type=int, default=3, help="timings per implementation (default 3)")
    args = parser.parse_args(argv)
    keep_batch_memory()
    cases = [c for c in DEFAULT if not args.models or c[0] in args.models]
    cases += [(m, convzoo.model_info(m).default_input_size, 64) for m in args.models
              if m not in {c[0] for c in DEFAULT}]
    print(f"training step ms, median of {args.repeats} alternating timings (each the median of {args.steps} steps)")
    print(f"{'model':<16}{'params':>12}{'batch':>6}" + "".join(f"{k:>9}" for k in IMPLEMENTATIONS)
          + f"{'loop/fused':>12}  make_optimizer picks")
    for name, size, batch in cases:
        times: dict[str, list[float]] = {k: [] for k in IMPLEMENTATIONS}
        for _ in range(args.repeats):
            for key, options in IMPLEMENTATIONS.items():
                times[key].append(step_seconds(name, size, batch, options, args.steps))
        ms = {k: 1000 * statistics.median(v) for k, v in times.items()}
        params = sum(p.numel() for p in convzoo.create_model(name, in_channels=size[0]).parameters())
        print(f"{name:<16}{params:>12,}{batch:>6}" + "".join(f"{ms[k]:>9.1f}" for k in IMPLEMENTATIONS)
              + f"{ms['loop'] / ms['fused']:>12.2f}  {picked(name, size[0])}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
