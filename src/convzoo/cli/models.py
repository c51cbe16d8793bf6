"""``convzoo models [PATTERN]``: the zoo, one row per model (name, parameters, default input, notes, paper).

``convzoo models --pretrained [PATTERN]``: the weights convzoo ships, one row per entry (model, data set, the
accuracy its training run measured and on which split, parameters, file size).
"""

from __future__ import annotations

import argparse

from convzoo.cli.args import Subcommands
from convzoo.errors import ConvzooError
from convzoo.utils.table import render_table

__all__ = ["register", "run"]


def register(sub: Subcommands) -> None:
    p = sub.add_parser("models", help="list the zoo: name, parameters, default input, paper")
    p.add_argument("pattern", nargs="?", default="*", help="glob, e.g. 'resnet*' (default: all)")
    p.add_argument("--pretrained", action="store_true", help="list the shipped pretrained weights instead")
    p.set_defaults(_run=run)


def _size(nbytes: int) -> str:
    return f"{nbytes / 1e6:.2f} MB" if nbytes >= 1e6 else f"{nbytes / 1e3:.1f} kB"


def _pretrained(pattern: str) -> int:
    from convzoo.models import list_weights, torchvision_models

    entries = list_weights(pattern)
    if not entries:
        raise ConvzooError(f"no shipped weights for a model matching {pattern!r}; `convzoo models --pretrained` "
                           "lists them all")
    rows = [(w.model, w.dataset, f"{w.accuracy:.4f}", f"{w.split} ({w.split_size:,})", f"{w.num_params:,}",
             _size(w.file_size)) for w in entries]
    print(render_table(("model", "dataset", "accuracy", "on split", "params", "size"), rows, right=(2, 4, 5)))
    print(f"{len(entries)} weights, {_size(sum(w.file_size for w in entries))} in all; "
          "create_model(NAME, pretrained=True) loads them")
    print(f"ImageNet: {', '.join(torchvision_models())} take pretrained='imagenet' (torchvision's file, read "
          "from torch.hub's cache)")
    return 0


def run(args: argparse.Namespace) -> int:
    from convzoo.models import list_models, model_info

    if args.pretrained:
        return _pretrained(args.pattern)
    names = list_models(args.pattern)
    if not names:
        raise ConvzooError(f"no model matches {args.pattern!r}; `convzoo models` lists all")
    rows = []
    for name in names:
        info = model_info(name)
        size = "x".join(map(str, info.default_input_size))
        rows.append((name, f"{info.num_params:,}", size, info.notes or "-", f"{info.paper} ({info.year})"))
    print(render_table(("model", "params", "input", "notes", "paper"), rows, right=(1,), ragged_last=True))
    return 0
