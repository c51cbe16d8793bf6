"""What the commands share: the parser with one-line errors, the argument types, the ``--device`` option.

One definition each, so that ``convzoo bench --batch-size 0`` and ``convzoo summary --depth 0`` refuse
with the same words, and every command that takes ``--device`` takes the same values.
"""

from __future__ import annotations

import argparse
import difflib
import itertools
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from convzoo.errors import OutOfMemory, UsageError

if TYPE_CHECKING:
    from torch import Tensor

    from convzoo.models import ConvNet

__all__ = ["ModelSource", "Parser", "Subcommands", "add_build_arguments", "add_device_argument",
           "add_source_arguments", "build_model", "check_values", "open_source", "positive_float", "positive_int"]

Subcommands = argparse._SubParsersAction  # what ``add_subparsers`` returns; each command's ``register`` takes it
Options = argparse.ArgumentParser | argparse._ArgumentGroup  # what ``add_argument`` can be called on

# the largest count a flag takes, far above any real size or class count: a classifier of MAX_COUNT classes
# is still a size torch can compute (and fail to allocate, an out-of-memory error); 2**63 classes would reach
# torch as an overflow (a TypeError, like a bug's)
MAX_COUNT = 2**40
# the most values one tensor built from flags may hold (4 TiB of float32, more than any machine's memory):
# above it torch's size arithmetic overflows (a RuntimeError) before any allocation could fail
MAX_VALUES = 2**40


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``convzoo summary: error: ... (see convzoo summary --help)``.

    argparse prints usage and exits; this raises :class:`~convzoo.errors.UsageError` instead, so that the
    error boundary prints it as every other user error.
    """

    def error(self, message: str) -> NoReturn:
        raise UsageError(self.prog, message)

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        """argparse's parse, with an unknown argument charged to the subcommand it was given to: ``convzoo
        predict --top-kk 3`` is "unrecognized arguments: --top-kk 3 (did you mean --top-k?) (see convzoo
        predict --help)", not a pointer at the top-level help (argparse reports a subcommand's leftovers
        from the top-level parser)."""
        parsed, extras = self.parse_known_args(args, namespace)
        if not extras:
            return parsed
        parser: argparse.ArgumentParser = self
        for action in self._actions:
            if isinstance(action, Subcommands):
                command = getattr(parsed, action.dest, None)
                parser = action.choices.get(command, parser) if isinstance(command, str) else parser
        options = [o for action in parser._actions for o in action.option_strings if o.startswith("--")]
        close = [match for extra in extras if extra.startswith("--")
                 for match in difflib.get_close_matches(extra.partition("=")[0], options, n=1)]
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise UsageError(parser.prog, f"unrecognized arguments: {' '.join(extras)}{hint}")

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        """argparse's parse, refusing a value given to a flag (``--channels-last false``,
        ``--compile=0``) with the flags to write instead; argparse would take ``false`` for a stray
        argument and say only that it is unrecognised."""
        tokens = list(sys.argv[1:] if args is None else args)
        tokens = tokens[:tokens.index("--")] if "--" in tokens else tokens
        flags = {option: action for action in self._actions if action.nargs == 0 for option in action.option_strings}
        for token in tokens:
            option, equals, value = token.partition("=")
            if equals and option in flags:
                self._refuse_value(flags[option], option, value)
        parsed, extras = super().parse_known_args(args, namespace)
        for before, token in itertools.pairwise(tokens):
            # (a flag consumes nothing: a stray word or number after it was meant as its value; an unknown
            # option after it is argparse's "unrecognized arguments")
            if before in flags and token in extras and (not token.startswith("-") or _is_number(token)):
                self._refuse_value(flags[before], before, token)
        return parsed, extras

    def _refuse_value(self, action: argparse.Action, option: str, value: str) -> NoReturn:
        """The error for ``value`` given to the flag ``option``."""
        if isinstance(action, argparse.BooleanOptionalAction):
            on, off = action.option_strings[:2]
            how = f"write {on} to turn it on or {off} to turn it off"
        else:
            how = f"write {option} alone"
        raise UsageError(self.prog, f"{option} is a flag and takes no value, got {value!r}; {how}")


def _is_number(text: str) -> bool:
    """Whether ``text`` reads as a number (``-1``, ``1e9``, ``nan``)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def positive_int(text: str) -> int:
    """A whole number from 1 to ``MAX_COUNT`` (sizes, counts, depths)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    if value > MAX_COUNT:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to {MAX_COUNT}, got {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (seconds, minutes): ``inf`` would never end, ``nan`` compares false."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {value}")
    return value


def add_device_argument(parser: Options, default: str, *, note: str = "",
                        override: bool = False) -> None:
    """Add ``--device`` to ``parser`` (a parser or an argument group): the training configuration's
    devices (auto: cuda, then mps, then cpu; ``convzoo.train.env.pick_device`` resolves them).

    ``default`` is the command's own default, shown in the help, ``note`` what the device changes for
    the command. With ``override`` the namespace gets no ``device`` unless the flag is given (``convzoo
    train``: only the flags given override the recipe and the config file).
    """
    from convzoo.train.config import DEVICES

    parser.add_argument("--device", choices=DEVICES, metavar="DEVICE",
                        default=argparse.SUPPRESS if override else default,
                        help=f"{', '.join(DEVICES[:-1])} or {DEVICES[-1]} (default: {default})"
                             + (f"; {note}" if note else ""))


def add_build_arguments(parser: Options) -> None:
    """``--in-channels`` and ``--num-classes``: build the named model for other inputs or classes."""
    parser.add_argument("--in-channels", type=positive_int, help="build the model for this many input channels")
    parser.add_argument("--num-classes", type=positive_int, help="build the model for this many classes")


def build_model(args: argparse.Namespace, in_channels: int | None) -> ConvNet:
    """The model ``args.name``, for ``in_channels`` (None: its own) and ``args.num_classes`` (None: its own)."""
    from convzoo.models import create_model

    kwargs: dict[str, Any] = {}
    if in_channels is not None:
        kwargs["in_channels"] = in_channels
    if args.num_classes is not None:
        kwargs["num_classes"] = args.num_classes
    return create_model(args.name, **kwargs)


def check_values(shape: tuple[int, ...], flags: str) -> None:
    """Refuse a tensor of ``shape`` (made from ``flags``) holding more than ``MAX_VALUES`` values, as the
    out-of-memory error it would be, before torch is asked for it."""
    values = math.prod(shape)
    if values > MAX_VALUES:
        size = " x ".join(map(str, shape))
        raise OutOfMemory(f"not enough memory for a tensor of {size} = {values:.3g} values, more than any machine "
                          f"holds; use a smaller {flags}")


def add_source_arguments(parser: argparse.ArgumentParser, use: str) -> None:
    """The model a command works on (``convzoo export``, ``convzoo features``): ``RUN_DIR`` (a run or a
    checkpoint folder), or ``--model NAME`` with random weights or ``--pretrained DATASET``'s; ``use`` says
    what the command does with it."""
    parser.add_argument("run", nargs="?", metavar="RUN_DIR", help=f"a run directory or a checkpoint folder: the "
                        f"model to {use} (or --model)")
    parser.add_argument("--model", metavar="NAME", help="a zoo model instead of a run, with random weights unless "
                        "--pretrained is given")
    parser.add_argument("--pretrained", metavar="DATASET", help="with --model: the weights convzoo ships for it "
                        "trained on DATASET (`convzoo models --pretrained` lists them; imagenet: torchvision's, "
                        "from torch.hub's cache)")


@dataclass(frozen=True)
class ModelSource:
    """The model ``add_source_arguments``' options chose, with what using it needs."""

    net: ConvNet  # in evaluation mode, on the CPU
    name: str  # for default file names: the model, and its data set if it has one (``lenet_bn-fashion-mnist``)
    description: str  # for messages: "run runs/a (checkpoint epoch-0002)", "lenet_bn with random weights"
    meta: dict[str, Any]  # model, dataset, classes (None: unknown), input: channels, size, mean, std (None: none)

    @property
    def preprocess(self) -> Callable[[Tensor], Tensor]:
        """uint8 images to the model's input as ``convzoo predict`` gives them (a ``data.presets`` eval
        pipeline): pretrained weights' own (``transforms_for``), else the channels and size, normalised as it
        was trained."""
        from convzoo.data.presets import eval_transform

        if self.net.pretrained_cfg is not None:
            return self.net.pretrained_cfg.transforms()
        spec = self.meta["input"]
        channels = spec["channels"]
        return eval_transform((spec["size"][0], spec["size"][1]), mean=spec["mean"] or (0.0,) * channels,
                              std=spec["std"] or (1.0,) * channels, resize_mode="squash", channels=channels)


def open_source(args: argparse.Namespace, prog: str) -> ModelSource:
    """The model ``args.run`` / ``args.model`` / ``args.pretrained`` name (``add_source_arguments``); a wrong
    combination is a ``UsageError`` of ``prog`` (``convzoo export``)."""
    if args.run is not None and args.model is not None:
        raise UsageError(prog, f"give RUN_DIR or --model, not both (got {args.run} and --model {args.model})")
    if args.pretrained is not None and args.model is None:
        raise UsageError(prog, f"--pretrained {args.pretrained} needs --model NAME (the model whose weights to use)")
    if args.run is None and args.model is None:
        raise UsageError(prog, "give a RUN_DIR (a run directory or a checkpoint folder) or --model NAME "
                               "[--pretrained DATASET]")
    if args.model is None:
        from convzoo.train.inference import load

        ckpt = load(args.run)
        return ModelSource(ckpt.model, f"{ckpt.meta['model']}-{ckpt.meta['dataset']}".replace(":", "-").replace(
            "/", "_"), f"run {args.run} (checkpoint {ckpt.path.name})", _source_meta(ckpt.meta))
    if args.pretrained is not None:
        from convzoo.train.inference import load_pretrained

        ckpt = load_pretrained(args.model, args.pretrained)
        return ModelSource(ckpt.model, f"{args.model}-{ckpt.meta['dataset']}",
                           f"{args.model} with its {ckpt.meta['dataset']} weights", _source_meta(ckpt.meta))
    from convzoo.models import create_model

    net = create_model(args.model).eval()
    meta = {"model": args.model, "dataset": None, "classes": None,
            "input": {"channels": net.in_channels, "size": [net.default_size] * 2, "mean": None, "std": None}}
    return ModelSource(net, args.model, f"{args.model} with random weights (no --pretrained)", meta)


def _source_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """What a ``ModelSource`` keeps of a checkpoint's sidecar."""
    spec = meta["input"]
    return {"model": meta["model"], "dataset": meta.get("dataset"), "classes": list(meta["classes"]),
            "input": {key: spec.get(key) for key in ("channels", "size", "mean", "std")}}
