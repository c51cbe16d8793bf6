"""``convzoo train``: train a zoo model; checkpoints, metrics and plots go to a run directory.

Every ``TrainConfig`` field is a flag (``--batch-size``, ``--no-normalize``); only the flags given
override the recipe and the config file. Exit codes: 0 done, 2 bad input, 3 diverged (the error boundary:
``DivergenceError``), 4 another process of the run ended (``PeerLostError``: this one stops silently, the
launcher names that process), 130/143 interrupted by SIGINT/SIGTERM with the state saved (here: the run's
``Interrupted``, with the command that resumes it).
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from convzoo.cli.args import Subcommands, add_device_argument, positive_int
from convzoo.errors import ConvzooError, RunError

__all__ = ["register", "run"]


def _base_type(hint: Any) -> Any:
    """``X`` for a field typed ``X`` or ``X | None``."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def _flag_type(hint: Any) -> Callable[[str], Any]:
    """int, float or str for a field typed ``int``, ``float``, ``str`` or ``X | None``."""
    return {int: int, float: float}.get(_base_type(hint), str)


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per ``TrainConfig`` field (not those marked ``cli=False``), absent from the namespace unless
    given; ``--device`` is the commands' shared definition."""
    from convzoo.train.config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    group = parser.add_argument_group("training configuration (defaults < --recipe < --config < these flags)")
    for f in fields(TrainConfig):
        if not f.metadata.get("cli", True):
            continue
        if f.name == "device":
            add_device_argument(group, default=str(f.default), override=True)
            continue
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata["help"] + (f" (default: {f.default})" if f.default is not None else "")
        if _base_type(hints[f.name]) is bool:  # a flag pair (--compile / --no-compile); for ``bool | None``
            # neither flag leaves the field unset (--channels-last: auto)
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        else:
            group.add_argument(flag, type=_flag_type(hints[f.name]), choices=f.metadata.get("choices"),
                               default=argparse.SUPPRESS, metavar=f.name.upper(), help=help_text)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from convzoo.train.config import TrainConfig

    names = {f.name for f in fields(TrainConfig)}
    return {k: v for k, v in vars(args).items() if k in names}


def register(sub: Subcommands) -> None:
    from convzoo.train.config import RECIPES

    p = sub.add_parser("train", help="train a zoo model (checkpoints, metrics, plots in a run directory)",
                       description="Train a zoo model. Exit codes: 0 done, 2 bad input, 3 diverged (non-finite "
                                   "loss), 4 another process of the run ended (this one stops silently; "
                                   "--nproc-per-node names the process), 130/143 interrupted by SIGINT/SIGTERM "
                                   "(state saved; --resume continues).")
    p.add_argument("--config", metavar="FILE.toml", help="read the configuration from a TOML file")
    p.add_argument("--recipe", choices=sorted(RECIPES), help="start from a named recipe: d2l (per-model "
                   "hyperparameters of d2l's train_ch6), fast (our best CPU recipe) or airbench (airbench94's "
                   "network, hyperparameters and techniques, on CIFAR-10: docs/benchmarks.md)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly where it stopped")
    p.add_argument("--quiet", action="store_true", help="no progress bar or progress lines")
    p.add_argument("--nproc-per-node", type=positive_int, metavar="N",
                   help="train with N processes on this machine: starts torchrun's launcher (torchrun --standalone "
                        "--nproc-per-node N -m convzoo train ...); for several machines run torchrun yourself "
                        "(see the README)")
    _add_config_flags(p)
    p.set_defaults(_run=run)


def _launch(args: argparse.Namespace) -> int:
    """``convzoo train --nproc-per-node N ...``: the same command line (less ``--nproc-per-node``) in N processes
    started by torchrun's launcher for one machine (``torchrun --standalone``), in this process. A user error
    is said once, by rank 0; a process that was killed or crashed is named in one line (those that stopped because
    it ended, exit 4, say nothing and are never the first). The exit code is the first failed process's (128 +
    the signal for one killed by a signal), 0 when all finished."""
    import os
    import signal
    import uuid

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from convzoo.cli._boundary import EXIT_DIVERGED, EXIT_INTERRUPTED, EXIT_PEER_LOST, EXIT_USER_ERROR

    argv, rest, skip = list(getattr(args, "_argv", sys.argv[1:])), [], False
    for token in argv:  # the command line as typed, less --nproc-per-node
        if skip:
            skip = False
        elif token == "--nproc-per-node":
            skip = True
        elif not token.startswith("--nproc-per-node="):
            rest.append(token)
    from convzoo.train.distributed import Dist, default_threads

    n = args.nproc_per_node
    # (torchrun's own default would be 1)
    os.environ.setdefault("OMP_NUM_THREADS", str(default_threads(Dist(local_world=n))))
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=n, run_id=str(uuid.uuid4()), rdzv_backend="c10d",
                          rdzv_endpoint="localhost:0", max_restarts=0)
    try:
        elastic_launch(config, entrypoint=sys.executable)("-m", "convzoo", *rest)
    except ChildFailedError as failed:
        said = {EXIT_USER_ERROR, EXIT_DIVERGED, EXIT_INTERRUPTED, 128 + signal.SIGTERM}  # rank 0 said why
        # the first to fail: not one that stopped because another ended (the failures' times are whole seconds);
        # at the same second, not one the launcher itself stopped with SIGTERM
        first_rank, first = min(failed.failures.items(),
                                key=lambda item: (item[1].exitcode == EXIT_PEER_LOST, item[1].timestamp,
                                                  item[1].exitcode == -signal.SIGTERM, item[0]))
        codes = {f.exitcode for f in failed.failures.values()} - {-signal.SIGTERM}  # (the launcher stopped those)
        if not codes or not codes <= said:
            def what(rank: int, code: int) -> str:
                how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
                return f"rank {rank} {'stopped, its peers lost' if code == EXIT_PEER_LOST else how}"
            others = [what(r, f.exitcode) for r, f in sorted(failed.failures.items()) if r != first_rank]
            print(f"convzoo: error: the run of {n} processes failed: {what(first_rank, first.exitcode)} first"
                  + (f" ({'; '.join(others)})" if others else "") + "; the last checkpoint is intact (continue "
                  "with --resume RUN_DIR)", file=sys.stderr)
        return first.exitcode if first.exitcode > 0 else 128 - first.exitcode
    return 0


def run(args: argparse.Namespace) -> int:
    import os

    from convzoo.cli._boundary import echoed_by_rank_0
    from convzoo.train import Interrupted, fit
    from convzoo.train.config import load_config_file, resolve_config

    file_values = load_config_file(args.config) if args.config else {}
    overrides = _overrides(args)
    if args.resume:
        if args.recipe:
            raise RunError(f"--recipe does not apply to --resume: {args.resume} keeps the settings it started "
                           "with; drop --recipe")
        given_out = overrides.get("out", file_values.get("out"))
        if given_out is not None and Path(given_out).resolve() != Path(args.resume).resolve():
            raise RunError(f"--out {given_out} does not apply to --resume: the run continues in {args.resume}; "
                           "drop --out (or start a new run there without --resume)")
        path = Path(args.resume) / "config.toml"
        saved = load_config_file(path) if path.exists() else {}
        if path.exists() and not {"model", "dataset"} <= saved.keys():  # else the defaults would fill the gaps
            raise ConvzooError(f"{path} is incomplete (empty or cut short: was the run killed as it started?), so "
                               f"the run's settings are unknown; delete {args.resume} and start the run again")
        config = resolve_config(file_values={**saved, **file_values}, overrides=overrides)
    else:
        config = resolve_config(recipe=args.recipe, file_values=file_values, overrides=overrides)
    if args.nproc_per_node and args.nproc_per_node > 1 and "RANK" not in os.environ:
        from convzoo.train.pipeline import check_global_batch

        check_global_batch(config.batch_size, args.nproc_per_node)  # before any process starts or file is written
        return _launch(args)
    try:
        fit(config, resume=args.resume, progress=not args.quiet)
    except Interrupted as stop:
        if not echoed_by_rank_0():
            print(f"convzoo: {stop}; continue with: convzoo train --resume {stop.checkpoint.parent.parent}",
                  file=sys.stderr)
        return stop.exit_code
    return 0
