"""``convzoo predict CHECKPOINT IMAGE...``: the top-k classes of each image, with probabilities.

``convzoo predict --model NAME [--pretrained DATASET] IMAGE...`` predicts with the weights convzoo ships for
the model (``--pretrained``: those for that data set, else its default ones; ``imagenet``: torchvision's,
from torch.hub's cache), with their classes and normalisation: no run directory, no training.

An IMAGE is an image file, a folder (every image file under it, as an image folder is read) or a glob
pattern (``'photos/*.jpg'``, quoted so that the shell leaves it; ``**`` descends into folders). An image that
cannot be read is reported on stderr, one line each, and the rest are still predicted; the exit code is then
2. ``--json`` prints one JSON list instead of the lines: ``{"image", "top": [{"class", "probability"}]}`` per
image, ``{"image", "error"}`` for one that could not be read.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

from convzoo.cli.args import Subcommands, add_device_argument, positive_int

__all__ = ["expand_images", "register", "run"]


def register(sub: Subcommands) -> None:
    p = sub.add_parser("predict", help="top-k classes of image files, folders or glob patterns")
    p.add_argument("checkpoint", nargs="?", metavar="CHECKPOINT", help="a run directory or a checkpoint folder "
                   "(none with --model)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="an image file, a folder of them, or a glob pattern")
    p.add_argument("--model", metavar="NAME", help="predict with this zoo model's pretrained weights instead of a "
                   "checkpoint (`convzoo models --pretrained` lists them)")
    p.add_argument("--pretrained", metavar="DATASET", help="with --model: the weights trained on DATASET "
                   "(default: the model's default ones; imagenet: torchvision's, from torch.hub's cache)")
    p.add_argument("--topk", "--top-k", dest="topk", type=positive_int, default=5, metavar="K",
                   help="how many classes to print per image (default 5)")
    p.add_argument("--json", action="store_true", help="print one JSON list instead of a line per image")
    add_device_argument(p, default="cpu")
    p.set_defaults(_run=run)


def expand_images(arguments: list[str]) -> list[tuple[str, str | None]]:
    """``(image, error)`` pairs in the order given: a folder's image files (as :func:`walk_images` lists them),
    a glob pattern's matches (sorted), a file as typed; ``error`` is the one-line reason an argument gave no
    image (an empty folder, a pattern matching nothing), else None."""
    from convzoo.data.images import IMAGE_EXTENSIONS, walk_images
    from convzoo.errors import ConvzooError

    found: list[tuple[str, str | None]] = []
    for argument in arguments:
        path = Path(argument)
        if not path.exists() and any(c in argument for c in "*?["):
            matches = sorted(glob.glob(argument, recursive=True))
            if not matches:
                found.append((argument, f"{argument}: no file matches this pattern"))
            candidates = matches
        else:
            candidates = [argument]
        for candidate in candidates:
            if not Path(candidate).is_dir():
                found.append((candidate, None))
                continue
            try:
                files = walk_images(candidate)
            except ConvzooError as err:
                found.append((candidate, str(err)))
                continue
            if not files:
                found.append((candidate, f"{candidate}: is a folder with no image files in it "
                                         f"(by extension: {', '.join(IMAGE_EXTENSIONS)})"))
            found += [(str(file), None) for file in files]
    return found


def run(args: argparse.Namespace) -> int:
    from convzoo.cli._boundary import one_line
    from convzoo.errors import ConvzooError, UsageError
    from convzoo.train.inference import load, load_pretrained, read_image

    images = list(args.images)
    if args.model is not None:  # every positional argument is an image
        images = [args.checkpoint, *images] if args.checkpoint is not None else images
        ckpt = load_pretrained(args.model, args.pretrained or True, device=args.device)
    elif args.pretrained is not None:
        raise UsageError("convzoo predict", f"--pretrained {args.pretrained} needs --model NAME (the model whose "
                                            "weights to use)")
    elif args.checkpoint is None:
        raise UsageError("convzoo predict", "give a CHECKPOINT (a run directory) before the images, or --model "
                                            "NAME [--pretrained DATASET] for shipped weights")
    else:
        ckpt = load(args.checkpoint, device=args.device)
    failed = 0
    records: list[dict[str, object]] = []
    for image, error in expand_images(images):
        top = None
        if error is None:
            try:
                X = read_image(image)  # C x H x W uint8
            except ConvzooError as err:  # this image only: the others are still predicted
                error = str(err)
            else:
                (top,) = ckpt.predict(X[None], topk=args.topk)
        if top is None:
            failed += 1
            print(one_line(f"convzoo: error: {error}"), file=sys.stderr)
            records.append({"image": image, "error": error})
        elif args.json:
            records.append({"image": image, "top": [{"class": name, "probability": prob} for name, prob in top]})
        else:
            print(f"{image}: " + ", ".join(f"{name} {prob:.3f}" for name, prob in top))
    if args.json:
        print(json.dumps(records, indent=2))
    return 2 if failed else 0
