"""Run ``convzoo`` in a child process that can be made to fail at a chosen moment. Test-only: the library
has no such hook.

    python driver.py [--at HOOK:N:ACTION]... [--count FILE] -- convzoo arguments...
    python driver.py --zygote

``--at checkpoint.save_file:2:KILL`` sends SIGKILL to the process itself on the 2nd call of ``save_file``
inside convzoo's checkpoint module, so the kill lands while a checkpoint is half written. A HOOK is one of
``HOOKS``: ``MODULE.NAME`` with MODULE one of ``checkpoint``, ``saver``, ``run``, ``run_dir``, ``optim``
(``convzoo.train.*``) or ``atomic`` (``convzoo.utils.atomic``, the one atomic writer), NAME the name as that
module sees it (``checkpoint.os.replace`` counts the checkpoint module's renames only, not matplotlib's). The ``atomic``
hooks count the calls made for the run's own files only (metrics, curves, config, run.json, the final
figures: a caller in ``convzoo.train``), not those of the data cache, which only the first run on a data
set writes. ACTION is
- ``KILL``: SIGKILL before the call runs,
- ``INT`` / ``TERM``: send SIGINT / SIGTERM, then let the call run (the run should save and stop),
- ``TRUNCATE_KILL``: create the file named by the call's path argument empty, then SIGKILL (what a kill
  between ``open(path, "w")`` and the write leaves behind a writer that is not atomic).
``--at open:FRAGMENT`` sends SIGKILL right after a file whose path contains FRAGMENT is opened for writing.

``--count FILE`` writes the hooks in the order they were called (a JSON list) when the run returns.

``--zygote`` imports torch and convzoo once, then reads one JSON request a line on stdin,
``{"args": [...], "at": [...], "count": FILE|null, "stdout": FILE, "stderr": FILE}``, forks a child that
runs it, answers ``{"pid": PID}``, waits for the child and answers ``{"returncode": CODE}`` (negative: the
signal that ended it, as ``subprocess`` reports it). A forked child is a process like any other to kill;
it only skips the two seconds of imports, which makes many kill trials affordable.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

# every point of the checkpoint write sequence and of an epoch's end
HOOKS = (
    "checkpoint.save_file", "checkpoint.torch.save", "checkpoint.fsync_file", "checkpoint.fsync_dir",
    "checkpoint.os.replace", "checkpoint.os.symlink", "checkpoint.shutil.rmtree",
    "atomic.fsync_file", "atomic.os.replace", "atomic.fsync_dir",
    "saver.write_metrics", "saver.plot_curves",
    "run.evaluate_batches", "optim.lr_at", "run_dir.save_config",
)
ACTIONS = ("KILL", "INT", "TERM", "TRUNCATE_KILL")
sequence: list[str] = []  # the hooks in the order they were called


def _module(name: str) -> types.ModuleType:
    from convzoo.train import checkpoint, optim, run, run_dir, saver
    from convzoo.utils import atomic

    return {"checkpoint": checkpoint, "saver": saver, "run": run, "run_dir": run_dir, "optim": optim,
            "atomic": atomic}[name]


def _for_the_run(frame: types.FrameType | None) -> bool:
    """Whether the atomic writer's step called from ``frame`` writes one of the run's files: the first
    caller outside the writer (and ``contextlib``, which runs ``atomic_path``'s end) is in ``convzoo.train``."""
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name not in ("convzoo.utils.atomic", "contextlib"):
            return name.startswith("convzoo.train.")
        frame = frame.f_back
    return False


def _wrap(hook: str, original: Callable[..., Any], triggers: dict[int, str]) -> Callable[..., Any]:
    count = {"n": 0}

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if hook.startswith("atomic.") and not _for_the_run(sys._getframe(1)):
            return original(*args, **kwargs)
        count["n"] += 1
        sequence.append(hook)
        action = triggers.get(count["n"])
        if action == "TRUNCATE_KILL":
            next(Path(a) for a in args if isinstance(a, (str, os.PathLike))).write_bytes(b"")
            os.kill(os.getpid(), signal.SIGKILL)
        elif action == "KILL":
            os.kill(os.getpid(), signal.SIGKILL)
        elif action in ("INT", "TERM"):
            os.kill(os.getpid(), signal.SIGINT if action == "INT" else signal.SIGTERM)
        return original(*args, **kwargs)

    return wrapped


class _Namespace(types.SimpleNamespace):
    """A module (``os``, ``torch``, ``shutil``) as one convzoo module sees it: some attributes wrapped,
    the rest from the real module."""

    def __init__(self, real: types.ModuleType, **wrapped: Any) -> None:
        super().__init__(**wrapped)
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def install(at: list[str]) -> None:
    """Wrap every hook (to log it) and arm the triggers ``HOOK:N:ACTION`` of ``at``."""
    plan: dict[str, dict[int, str]] = {}
    for spec in at:
        hook, nth, action = spec.rsplit(":", 2)
        if hook not in HOOKS or action not in ACTIONS:
            raise SystemExit(f"driver: unknown hook or action in {spec}")
        plan.setdefault(hook, {})[int(nth)] = action
    for hook in HOOKS:
        module_name, *attrs = hook.split(".")
        module = _module(module_name)
        if len(attrs) == 1:
            setattr(module, attrs[0], _wrap(hook, getattr(module, attrs[0]), plan.get(hook, {})))
            continue
        owner, name = attrs
        current = getattr(module, owner)
        if isinstance(current, _Namespace):
            real, wrapped = current._real, {k: v for k, v in vars(current).items() if k != "_real"}
        else:
            real, wrapped = current, {}
        wrapped[name] = _wrap(hook, getattr(real, name), plan.get(hook, {}))
        setattr(module, owner, _Namespace(real, **wrapped))


def kill_after_open(fragment: str) -> None:
    """SIGKILL right after a file whose name contains ``fragment`` is opened for writing: whatever writer
    is used, a kill between its ``open`` and its write."""
    import builtins
    import io

    original = io.open

    def opened(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = original(file, mode, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)) and fragment in os.fspath(file) and ("w" in mode or "x" in mode):
            os.kill(os.getpid(), signal.SIGKILL)
        return handle

    io.open = builtins.open = opened


def run(args: list[str], at: list[str], count: str | None) -> int:
    for spec in [a for a in at if a.startswith("open:")]:
        kill_after_open(spec.split(":", 1)[1])
    install([a for a in at if not a.startswith("open:")])
    from convzoo.cli import main as convzoo_main

    try:
        return convzoo_main(args)
    finally:
        if count is not None:
            Path(count).write_text(json.dumps(sequence))


def _prepare() -> None:
    import torch

    torch.set_num_threads(1)


def zygote() -> None:
    _prepare()
    import torch

    import convzoo.cli
    import convzoo.train.loop  # noqa: F401  (and with it every module of convzoo.train)
    import convzoo.train.plots
    from convzoo.models import create_model

    convzoo.cli.build_parser()  # every command's module, imported once here, inherited by every child
    convzoo.train.plots._figure()  # matplotlib's Agg canvas
    create_model("lenet").check_input(torch.empty(1, 1, 28, 28, device="meta"))  # the meta-device checks
    torch.optim.SGD(create_model("lenet").parameters(), lr=0.1)  # torch.optim's first use imports torch._dynamo (2 s)
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for fd, name in ((1, "stdout"), (2, "stderr")):
                    target = os.open(request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    os.dup2(target, fd)
                    os.close(target)
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, 0)  # the requests are the zygote's, not the child's
                code = run(request["args"], request.get("at", []), request.get("count"))
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)}),
              flush=True)


def main() -> int:
    argv = sys.argv[1:]
    if argv == ["--zygote"]:
        zygote()
        return 0
    at: list[str] = []
    count = None
    while argv and argv[0] in ("--at", "--count"):
        if argv[0] == "--count":
            count = argv[1]
        else:
            at.append(argv[1])
        argv = argv[2:]
    if argv and argv[0] == "--":
        argv = argv[1:]
    _prepare()
    return run(argv, at, count)


if __name__ == "__main__":
    sys.exit(main())
