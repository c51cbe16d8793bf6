"""The ``convzoo`` command line.

Every user error (bad flag, unknown model, impossible size) ends in one line on stderr and exit code 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from convzoo.models import ConvNet

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``convzoo summary: error: ... (see convzoo summary --help)``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


class _UsageError(Exception):
    pass


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    """Fixed-width columns; the last column is left ragged."""
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header) - 1)]

    def line(cells: Sequence[str]) -> str:
        pairs = enumerate(zip(cells[:-1], widths, strict=True))
        padded = [f"{c:>{w}}" if i in right else f"{c:<{w}}" for i, (c, w) in pairs]
        return "  ".join([*padded, cells[-1]]).rstrip()

    return "\n".join([line(header), *(line(r) for r in rows)])


def _cmd_models(args: argparse.Namespace) -> int:
    from convzoo.models import list_models, model_info

    names = list_models(args.pattern)
    if not names:
        raise ValueError(f"no model matches {args.pattern!r}; `convzoo models` lists all")
    rows = []
    for name in names:
        info = model_info(name)
        size = "x".join(map(str, info.default_input_size))
        rows.append((name, f"{info.num_params:,}", size, info.notes or "-", f"{info.paper} ({info.year})"))
    print(_table(("model", "params", "input", "notes", "paper"), rows, right=(1,)))
    return 0


def _build(args: argparse.Namespace, in_channels: int | None) -> ConvNet:
    from convzoo.models import create_model

    kwargs = {}
    if in_channels is not None:
        kwargs["in_channels"] = in_channels
    if args.num_classes is not None:
        kwargs["num_classes"] = args.num_classes
    return create_model(args.name, **kwargs)


def _cmd_summary(args: argparse.Namespace) -> int:
    from convzoo.models import model_info
    from convzoo.summary import summary

    info = model_info(args.name)
    if args.input_size is not None:
        c, h, w = args.input_size
    else:
        c, h, w = info.default_input_size
        c = args.in_channels or c
    net = _build(args, args.in_channels or c)
    print(summary(net, (c, h, w), depth=args.depth, style=args.style))
    return 0


def _cmd_params(args: argparse.Namespace) -> int:
    from convzoo.summary import parameters_table

    print(parameters_table(_build(args, args.in_channels)))
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from convzoo.models import model_info

    info = model_info(args.name)
    fields = {**vars(info), "min_input_size": info.min_input_size, "max_input_size": info.max_input_size}
    for key, value in fields.items():
        print(f"{key:<20} {value}")
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from convzoo.scratch import explain

    result = explain(args.topic, input_size=args.input_size, kernel=args.kernel, padding=args.padding,
                     stride=args.stride, mode=args.mode, value=args.value, seed=args.seed)
    print(result.text)
    return 0 if result.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="convzoo", description="The classic convolutional networks, LeNet to DenseNet.")
    from convzoo import __version__

    parser.add_argument("--version", action="version", version=f"convzoo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands: dict[str, Callable[[argparse.Namespace], int]] = {}

    p = sub.add_parser("models", help="list the zoo: name, parameters, default input, paper")
    p.add_argument("pattern", nargs="?", default="*", help="glob, e.g. 'resnet*' (default: all)")
    commands["models"] = _cmd_models

    p = sub.add_parser("info", help="everything the zoo knows about one model")
    p.add_argument("name")
    commands["info"] = _cmd_info

    p = sub.add_parser("summary", help="layer-by-layer output shape, parameters and multiply-adds")
    p.add_argument("name")
    p.add_argument("--input-size", nargs=3, type=_positive, metavar=("C", "H", "W"),
                   help="input channels, height, width (default: the model's own)")
    p.add_argument("--depth", type=_positive, help="show layers down to this depth (default: all)")
    p.add_argument("--style", choices=("table", "notes"), default="table",
                   help="'table' (default) or the notes' 'Conv2d output shape: ...' lines")
    p.add_argument("--in-channels", type=_positive, help="build the model for this many input channels")
    p.add_argument("--num-classes", type=_positive, help="build the model for this many classes")
    commands["summary"] = _cmd_summary

    p = sub.add_parser("params", help="every named parameter with its shape (notes 003)")
    p.add_argument("name")
    p.add_argument("--in-channels", type=_positive, help="build the model for this many input channels")
    p.add_argument("--num-classes", type=_positive, help="build the model for this many classes")
    commands["params"] = _cmd_params

    p = sub.add_parser("explain", help="a worked example on paper: conv, pad, stride, pool, batchnorm (notes 001)")
    p.add_argument("topic", choices=("conv", "pad", "stride", "pool", "batchnorm"))
    p.add_argument("--input-size", nargs=2, type=_positive, metavar=("H", "W"),
                   help="a random input of this size, whole numbers 0-9 (default: the notes' 5x5 input)")
    p.add_argument("--kernel", type=_positive, metavar="K",
                   help="a random K x K kernel (default: the notes' 3x3 kernel 1..9; 2 for pool)")
    p.add_argument("--padding", type=int, metavar="P", help="pixels added on every side (default 0; 1 for pad)")
    p.add_argument("--stride", type=_positive, metavar="S", help="default 1; 2 for stride; the kernel for pool")
    p.add_argument("--mode", metavar="MODE",
                   help="padding mode zeros|constant|reflect|replicate|circular, or for pool max|avg (default both)")
    p.add_argument("--value", type=int, metavar="V", help="the fill value of --mode constant (default 0)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the random numbers (default 0)")
    commands["explain"] = _cmd_explain

    from convzoo.train.commands import register as register_training

    register_training(sub, commands)

    from convzoo.bench import register as register_bench

    register_bench(sub, commands)

    from convzoo.zoo_report import register as register_report

    register_report(sub, commands)

    parser.set_defaults(_commands=commands)
    return parser


def _one_line(message: str) -> str:
    """An error message as one line: line breaks and other control characters it quotes from the command
    line or from file names are written as escapes (``\\n``)."""
    import unicodedata

    return "".join(c if c == " " or unicodedata.category(c)[0] not in "CZ" else ascii(c)[1:-1] for c in message)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        return args._commands[args.command](args)
    except _UsageError as err:
        print(_one_line(str(err)), file=sys.stderr)
        return 2
    except (ValueError, OSError) as err:  # ConvzooError is a ValueError; disk full, permissions: OSError
        print(_one_line(f"convzoo: error: {err}"), file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as err:  # torch reports a failed allocation as a RuntimeError
        if not isinstance(err, MemoryError) and "allocate" not in str(err) and "out of memory" not in str(err):
            raise
        detail = str(err).split("DefaultCPUAllocator: ")[-1].splitlines()[0] if str(err) else "MemoryError"
        print(f"convzoo: error: not enough memory ({detail}); use a smaller --input-size, --batch-size or "
              "--num-classes", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("convzoo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
