"""``convzoo features RUN_DIR | --model NAME [--pretrained D] IMAGE [--layers a,b] [--out DIR]``.

Runs the model on one image, decoded and preprocessed as ``convzoo predict`` does (the same decoder; the
run's or the weights' input size and normalisation), and writes one PNG per layer, ``LAYER.png``, with a
grid of its channels (a title naming the layer and its shape), and ``filters.png`` with the first
convolution's kernels (:mod:`convzoo.features`). The default layers are the blocks of the model's
``forward_features``; ``--layers`` takes any layer names ``convzoo summary`` shows, as dotted paths
(``features.1.0``). The default ``--out`` is ``features-IMAGE`` (the image's name without its extension).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from convzoo.cli.args import Subcommands, add_source_arguments, positive_int

__all__ = ["register", "run"]


def register(sub: Subcommands) -> None:
    p = sub.add_parser("features", help="pictures of a model's feature maps on an image, and of its first filters",
                       description="Draw the feature maps a model computes on one image (one PNG per layer, a "
                                   "grid of its channels) and its first convolution's kernels (filters.png).")
    add_source_arguments(p, "look inside")
    p.add_argument("image", metavar="IMAGE", help="an image file, read as convzoo predict reads it")
    p.add_argument("--layers", metavar="A,B", help="comma-separated layer names (default: every block of the "
                   "model's features: features.0, features.1, ...)")
    p.add_argument("--max-channels", type=positive_int, default=64, metavar="N",
                   help="channels (and kernels) drawn per picture, the first ones (default: 64)")
    p.add_argument("--out", metavar="DIR", help="folder for the pictures (default: features-IMAGE)")
    p.set_defaults(_run=run, _prog=p.prog)


def run(args: argparse.Namespace) -> int:
    import torch

    from convzoo.cli.args import open_source
    from convzoo.errors import UsageError
    from convzoo.features import check_drawable, feature_maps, first_conv, plot_feature_maps, plot_filters
    from convzoo.train.inference import read_image

    layers = None
    if args.layers is not None:
        layers = [name.strip() for name in args.layers.split(",") if name.strip()]
        if not layers:
            raise UsageError(args._prog, f"--layers {args.layers!r} names no layer; give names like features.0,"
                                         "features.1")
    source = open_source(args, args._prog)
    X = source.preprocess(read_image(args.image)[None])  # 1 x C x H x W, as predict gives it to the model
    with torch.no_grad():
        maps = feature_maps(source.net, X, layers)
    for name, tensor in maps.items():  # all checked before any picture is written
        check_drawable(name, tensor)
    out = Path(args.out or f"features-{Path(args.image).stem}")
    out.mkdir(parents=True, exist_ok=True)
    print(f"{source.description}, on {args.image} as {' x '.join(map(str, X.shape))}")
    for name, tensor in maps.items():
        path = out / f"{name}.png"
        grid = plot_feature_maps(name, tensor, path, args.max_channels)
        print(f"{path}: {name} {' x '.join(map(str, tensor.shape))}, {grid.shown} of {grid.total} channels in a "
              f"{grid.rows} x {grid.columns} grid")
    conv = first_conv(source.net)
    grid = plot_filters(conv, out / "filters.png", args.max_channels)
    print(f"{out / 'filters.png'}: first convolution {' x '.join(map(str, conv.weight.shape))}, {grid.shown} of "
          f"{grid.total} kernels in a {grid.rows} x {grid.columns} grid")
    return 0
