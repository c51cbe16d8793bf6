"""``convzoo export RUN_DIR | --model NAME [--pretrained D] --format onnx|exported-program [--out FILE]``.

Writes the model as ONNX (``torch.onnx.export``, dynamic batch axis, class names and normalisation in its
metadata) or as a ``torch.export`` program (``torch.export.save``), checks the file against the PyTorch
model on a batch of 2 and prints the largest absolute difference (:mod:`convzoo.export`). The default
``--out`` is ``NAME.onnx`` / ``NAME.pt2`` in the current folder, NAME the model (and its data set). An existing
file is replaced only with ``--force`` (as a run directory keeps its run); a folder that does not exist is a
user error, not made.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from convzoo.cli.args import Subcommands, add_source_arguments
from convzoo.errors import ConvzooError
from convzoo.export import FORMATS  # (convzoo.export imports torch on first use only)

__all__ = ["register", "run"]


def register(sub: Subcommands) -> None:
    p = sub.add_parser("export", help="write a model as ONNX or a torch.export program, checked against PyTorch",
                       description="Export a run's model, or a zoo model, as ONNX or as a torch.export program; "
                                   "the file is checked against the PyTorch model on a batch of 2 (largest "
                                   "absolute difference at most 1e-4) before it is written. ONNX needs "
                                   "pip install 'convzoo[export]'.")
    add_source_arguments(p, "export")
    p.add_argument("--format", choices=FORMATS, default="onnx", help="onnx (default) or exported-program (.pt2)")
    p.add_argument("--out", metavar="FILE", help="where to write it (default: NAME.onnx or NAME.pt2 here); its folder "
                   "must exist")
    p.add_argument("--force", action="store_true", help="replace the file at --out if there is one")
    p.set_defaults(_run=run, _prog=p.prog)


def _check_out(out: Path, force: bool) -> None:
    """Refuse to write ``out`` over an existing file (without ``force``) or into a folder that does not exist."""
    parent = out.parent
    if not parent.is_dir():
        raise ConvzooError(f"--out {out}: the folder {parent} does not exist; create it (mkdir -p {parent}) or "
                           "choose another --out")
    if out.is_dir():
        raise ConvzooError(f"--out {out} is a folder; give a file name in it")
    if out.exists() and not force:
        raise ConvzooError(f"{out} already exists; add --force to replace it, or choose another --out")


def run(args: argparse.Namespace) -> int:
    from convzoo._version import __version__
    from convzoo.cli.args import open_source
    from convzoo.export import SUFFIXES, TOLERANCE, example_batch, export_model

    source = open_source(args, args._prog)
    out = args.out or f"{source.name}{SUFFIXES[args.format]}"
    _check_out(Path(out), args.force)
    spec = source.meta["input"]
    metadata = {"convzoo_version": __version__, "model": source.meta["model"], "dataset": source.meta["dataset"],
                "classes": source.meta["classes"], "input_size": [spec["channels"], *spec["size"]],
                "mean": spec["mean"], "std": spec["std"], "source": source.description}
    example = example_batch(source.net, size=(spec["size"][0], spec["size"][1]))
    result = export_model(source.net, out, args.format, example=example, metadata=metadata)
    print(f"wrote {result.path} ({args.format}, {result.size / 1e6:.1f} MB) from {source.description}")
    print(f"checked against PyTorch on a batch of {result.batch}: max abs difference {result.max_abs_diff:.3g} "
          f"(limit {TOLERANCE:g})")
    return 0
