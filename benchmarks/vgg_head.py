"""VGG's classifier shortcut at small inputs against the full product, for the whole training step.

    python benchmarks/vgg_head.py [--models vgg11_small,vgg11] [--sides 32,48] [--batch-size 256] [--steps N]
        [--repeats N]

Below 64 pixels VGG's feature map is 1x1 and ``VGGHead`` computes its first linear layer from the channels'
summed weights instead of over the pool's 49 copies (``convzoo.models.vgg.VGGHead``). A forward hook on
that layer makes the head take the full product, as it does for an inspector; both are timed in turn,
``--repeats`` times each (Nesterov SGD, weight decay 5e-4, the optimizer ``convzoo train`` builds), and
the medians compared. The last column is the largest difference of the logits between the two (eval mode).
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

import convzoo
from convzoo.bench import train_step_seconds
from convzoo.train.env import fused_sgd, keep_batch_memory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="vgg11_small,vgg11")
    parser.add_argument("--sides", default="32,48", help="input sides, each in 32..63 (default 32,48)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per timing (default 5)")
    parser.add_argument("--repeats", type=int, default=3, help="timings per variant (default 3)")
    args = parser.parse_args(argv)
    keep_batch_memory()
    print(f"training step ms at batch {args.batch_size}, median of {args.repeats} alternating timings "
          f"(each the median of {args.steps} steps)")
    print(f"{'model':<14}{'side':>5}{'full':>10}{'shortcut':>10}{'ratio':>7}{'max |logit diff|':>18}")
    for name in args.models.split(","):
        for side in map(int, args.sides.split(",")):
            torch.manual_seed(0)
            net = convzoo.create_model(name).train()
            X = torch.randn(args.batch_size, 1, side, side)
            y = torch.randint(0, net.num_classes, (args.batch_size,))
            net.input_range()
            optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4,
                                        fused=fused_sgd(net.parameters()))
            times: dict[str, list[float]] = {"full": [], "shortcut": []}
            for _ in range(args.repeats):
                for variant in times:
                    hook = net.head[2].register_forward_hook(lambda *_: None) if variant == "full" else None
                    times[variant].append(train_step_seconds(net, X, y, optimizer, args.steps))
                    if hook is not None:
                        hook.remove()
            net.eval()
            with torch.no_grad():
                short = net(X[:16])
                hook = net.head[2].register_forward_hook(lambda *_: None)
                full = net(X[:16])
                hook.remove()
            full_ms, short_ms = (1000 * statistics.median(times[k]) for k in ("full", "shortcut"))
            print(f"{name:<14}{side:>5}{full_ms:>10.1f}{short_ms:>10.1f}{full_ms / short_ms:>7.2f}"
                  f"{(short - full).abs().max().item():>18.2e}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
