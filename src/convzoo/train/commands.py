"""``convzoo train``, ``convzoo eval`` and ``convzoo predict``.

Every ``TrainConfig`` field is a flag (``--batch-size``, ``--no-normalize``); only the flags given
override the recipe and the config file.
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from convzoo.errors import ConvzooError, DivergenceError
from convzoo.train.config import RECIPES, TTAS, TrainConfig

__all__ = ["register"]


def _flag_type(hint: Any) -> Callable[[str], Any]:
    """int, float or str for a field typed ``int``, ``float``, ``str`` or ``X | None``."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return {int: int, float: float}.get(hint, str)


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    hints = typing.get_type_hints(TrainConfig)
    group = parser.add_argument_group("training configuration (defaults < --recipe < --config < these flags)")
    for f in fields(TrainConfig):
        if not f.metadata.get("cli", True):
            continue
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata["help"] + (f" (default: {f.default})" if f.default is not None else "")
        if hints[f.name] is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        else:
            group.add_argument(flag, type=_flag_type(hints[f.name]), choices=f.metadata.get("choices"),
                               default=argparse.SUPPRESS, metavar=f.name.upper(), help=help_text)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = {f.name for f in fields(TrainConfig)}
    return {k: v for k, v in vars(args).items() if k in names}


def _cmd_train(args: argparse.Namespace) -> int:
    from convzoo.train.config import load_config_file, resolve_config
    from convzoo.train.loop import Interrupted, fit

    file_values = load_config_file(args.config) if args.config else {}
    overrides = _overrides(args)
    if args.resume:
        from pathlib import Path

        path = Path(args.resume) / "config.toml"
        saved = load_config_file(path) if path.exists() else {}
        if path.exists() and not {"model", "dataset"} <= saved.keys():  # else the defaults would fill the gaps
            raise ConvzooError(f"{path} is incomplete (empty or cut short: was the run killed as it started?), so "
                               f"the run's settings are unknown; delete {args.resume} and start the run again")
        config = resolve_config(file_values={**saved, **file_values}, overrides=overrides)
    else:
        config = resolve_config(recipe=args.recipe, file_values=file_values, overrides=overrides)
    try:
        fit(config, resume=args.resume, progress=not args.quiet)
    except Interrupted as stop:
        print(f"convzoo: {stop}; continue with: convzoo train --resume {stop.checkpoint.parent.parent}",
              file=sys.stderr)
        return stop.exit_code
    except DivergenceError as err:
        print(f"convzoo: error: {err}", file=sys.stderr)
        return 3
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from convzoo.train.inference import evaluate

    print(evaluate(args.checkpoint, args.split, data_dir=args.data_dir, device=args.device, tta=args.tta))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from convzoo.train.inference import load

    ckpt = load(args.checkpoint, device=args.device)
    for path, top in zip(args.images, ckpt.predict(args.images, topk=args.topk), strict=True):
        print(f"{path}: " + ", ".join(f"{name} {prob:.3f}" for name, prob in top))
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def register(sub: Any, commands: dict[str, Callable[[argparse.Namespace], int]]) -> None:
    """Add train / eval / predict to the ``convzoo`` subcommand parser."""
    p = sub.add_parser("train", help="train a zoo model (checkpoints, metrics, plots in a run directory)",
                       description="Train a zoo model. Exit codes: 0 done, 2 bad input, 3 diverged (non-finite "
                                   "loss), 130/143 interrupted by SIGINT/SIGTERM (state saved; --resume continues).")
    p.add_argument("--config", metavar="FILE.toml", help="read the configuration from a TOML file")
    p.add_argument("--recipe", choices=sorted(RECIPES), help="start from a named recipe: d2l (per-model "
                   "hyperparameters of d2l's train_ch6) or fast (our best CPU recipe)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly where it stopped")
    p.add_argument("--quiet", action="store_true", help="no progress bar or progress lines")
    _add_config_flags(p)
    commands["train"] = _cmd_train

    p = sub.add_parser("eval", help="accuracy, per-class accuracy, confusion matrix and top-5 of a checkpoint")
    p.add_argument("checkpoint", metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument("--tta", choices=TTAS, help="test-time augmentation (default: the run's own)")
    p.add_argument("--data-dir", help="folder holding the data set")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    commands["eval"] = _cmd_eval

    p = sub.add_parser("predict", help="top-k classes of image files")
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--topk", type=_positive, default=5)
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="cpu")
    commands["predict"] = _cmd_predict
