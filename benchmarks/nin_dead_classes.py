"""How many of NiN's classes start dead: their logit is 0 for every image, so they get no gradient and are
never predicted. NiN's logits are the output of a ReLU averaged over the map (d2l's code, notes 000).

    python benchmarks/nin_dead_classes.py [--images 512] [--seeds 5] [--side 72] [--data-dir DIR]

For each ``--init`` of ``convzoo train`` and each seed: NiN built and initialised as training does, then run
in evaluation mode on the first ``--images`` Fashion-MNIST training images, preprocessed as training does
(resized to ``--side``, normalised). The count of classes whose logit is 0 for all of them, per seed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from torch import nn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--side", type=int, default=72, help="input side (the zoo report's 72 on a CPU)")
    parser.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    args = parser.parse_args(argv)

    import convzoo
    from convzoo.data import load_dataset
    from convzoo.train.init import kaiming_identity_init_, kaiming_init_, xavier_init_
    from convzoo.train.pipeline import Preprocess

    data = load_dataset("fashion-mnist", data_dir=args.data_dir)
    preprocess = Preprocess(1, (args.side, args.side), data.mean, data.std)
    X = preprocess(data.train.images[: args.images])  # N x 1 x side x side
    inits: dict[str, Callable[[nn.Module], None] | None] = {
        "default": None, "xavier": xavier_init_, "kaiming": kaiming_init_, "kaiming-identity": kaiming_identity_init_}
    print(f"NiN at {args.side}x{args.side}, {len(X)} Fashion-MNIST training images: classes whose logit is 0 for "
          f"every image, seeds 0..{args.seeds - 1}")
    for name, init in inits.items():
        dead = []
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            net = convzoo.create_model("nin").eval()
            if init is not None:
                init(net)
            with torch.no_grad():
                logits = net(X)  # N x 10, each >= 0
            dead.append(int(((logits > 0).sum(dim=0) == 0).sum()))
        print(f"  --init {name:<17} {', '.join(map(str, dead))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
