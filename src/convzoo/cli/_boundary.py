"""The command line's one error boundary: what a command raised becomes an exit code, by its type.

- ``ConvzooError`` (every user error, ``UsageError`` from argparse and ``OutOfMemory`` among them): one
  line ``convzoo: error: ...`` naming the fix, exit 2; ``DivergenceError``: the same line, exit 3.
- ``OSError`` the user can fix (disk full, quota, permissions, read-only file system, too many open files,
  a named file or folder that is missing or of the wrong kind): one line naming the file and the problem,
  exit 2. Any other ``OSError`` is a bug.
- In a run of several processes (torchrun), a user error or an interrupt reaches every process together and
  rank 0 alone prints its line; the other processes exit with the same code, silently.
- ``PeerLostError``: another process of the run ended while this one exchanged with it. This process has
  nothing to say (it is not its error, and no bug): exit 4, silently; ``convzoo train --nproc-per-node``'s
  launcher prints the one line naming the process that ended (torchrun's own launcher lists the exit codes).
- ``KeyboardInterrupt``: ``convzoo: interrupted``, exit 130. The trainer's ``Interrupted`` (SIGINT or
  SIGTERM caught inside a run, whose state it saved; ``convzoo report`` lets it through): its one line, which
  names the checkpoint, exit 130 or 143.
- ``BrokenPipeError`` on stdout (``convzoo models | head -1``): the reader has stopped reading, which is no
  error: exit 0 without a word, as ripgrep does.
- Anything else is a bug in convzoo: one line saying so, with the exception, and the path of a file
  holding the traceback to report; exit 1. ``convzoo --debug`` or ``CONVZOO_DEBUG=1`` prints the traceback.

Nothing here reads an exception's message to decide what it is; the two places torch forces that (its
CPU allocator's failure and gloo's lost connection are each a plain ``RuntimeError``) are
:func:`convzoo.errors.as_out_of_memory` and :func:`convzoo.train.distributed.lost_peer`.
"""

from __future__ import annotations

import errno
import os
import sys
import time
import traceback
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path

from convzoo.errors import ConvzooError, DivergenceError, PeerLostError, UsageError, as_out_of_memory

__all__ = ["EXIT_BUG", "EXIT_DIVERGED", "EXIT_INTERRUPTED", "EXIT_PEER_LOST", "EXIT_USER_ERROR", "guarded", "one_line"]

EXIT_BUG = 1
EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3
EXIT_PEER_LOST = 4  # another process of the run ended: this one stops, silently
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a process that SIGINT ended

# errno -> what to tell the user; ENOENT, ENOTDIR and EISDIR only count when the error names its file (a
# missing file nobody named is convzoo's own mistake)
_ENVIRONMENT = {
    errno.ENOSPC: "no space left on the device; free some space or write elsewhere",
    errno.EDQUOT: "disk quota exceeded; free some space or write elsewhere",
    errno.EACCES: "permission denied; change the permissions or choose another path",
    errno.EPERM: "operation not permitted; change the permissions or choose another path",
    errno.EROFS: "read-only file system; choose a writable path",
    errno.EMFILE: "too many open files in this process; raise the limit (ulimit -n)",
    errno.ENFILE: "too many open files on this system; close some programs or raise the system's limit",
}
_NAMED_ONLY = {
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.EISDIR: "is a folder, not a file",
}


def one_line(message: str) -> str:
    """An error message as one line: line breaks and other control characters it quotes from the command
    line or from file names are written as escapes (``\\n``)."""
    return "".join(c if c == " " or unicodedata.category(c)[0] not in "CZ" else ascii(c)[1:-1] for c in message)


def environment_problem(err: OSError) -> str | None:
    """What is wrong and how to fix it, when ``err`` is a problem of the machine or the files the user gave
    (see ``_ENVIRONMENT``); None when it is not, which makes it a bug."""
    names = [f for f in (err.filename, err.filename2) if f is not None]
    named = " -> ".join(os.fsdecode(f) if isinstance(f, (str, bytes, os.PathLike)) else str(f) for f in names)
    problem = _ENVIRONMENT.get(err.errno) if err.errno is not None else None
    if problem is None and named:
        problem = _NAMED_ONLY.get(err.errno) if err.errno is not None else None
    if problem is None:
        return None
    return f"{named}: {problem}" if named else problem


def debug_requested(argv: Sequence[str]) -> bool:
    """``CONVZOO_DEBUG`` set (to anything but 0) or ``--debug`` before the command's name (the top-level
    flag; read from ``argv`` itself so that it holds for a bug in parsing too)."""
    if os.environ.get("CONVZOO_DEBUG", "0") not in ("", "0"):
        return True
    for token in argv:
        if token == "--debug":
            return True
        if not token.startswith("-"):
            return False
    return False


def _stdout_is_gone() -> bool:
    """Whether stdout is a pipe nobody reads any more (Linux and macOS report POLLERR on its write end)."""
    import select

    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by an object without a descriptor
        return False
    if not hasattr(select, "poll"):  # Windows: a broken pipe there is stdout's
        return True
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def _drop_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush, at exit, has nowhere to fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _crash_folder() -> Path:
    """``crash/`` in convzoo's cache folder (``$CONVZOO_CACHE``, ...), else in the temporary folder."""
    try:
        from convzoo.data.datasets import default_cache_dir

        return default_cache_dir() / "crash"
    except Exception:  # the bug may be in importing that very module
        import tempfile

        return Path(tempfile.gettempdir()) / "convzoo-crash"


def write_crash_report(err: BaseException, argv: Sequence[str]) -> Path | None:
    """Write what a bug report needs (versions, the command line, the traceback) to a new file; its path,
    or None when it could not be written."""
    import platform

    from convzoo._version import __version__

    torch = sys.modules.get("torch")
    lines = [f"convzoo {__version__}, Python {platform.python_version()}, "
             f"torch {getattr(torch, '__version__', 'not imported')}, {platform.platform()}",
             f"command: convzoo {' '.join(argv)}", "", *traceback.format_exception(err)]
    try:
        from convzoo.utils.atomic import write_text_atomic

        folder = _crash_folder()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
        write_text_atomic(path, "".join(line if line.endswith("\n") else line + "\n" for line in lines))
    except Exception:
        return None
    return path


def report_bug(err: BaseException, argv: Sequence[str]) -> int:
    """One line saying convzoo has a bug, naming the exception and where its traceback is; exit 1."""
    what = one_line(f"{type(err).__name__}: {err}" if str(err) else type(err).__name__)
    what = what if len(what) <= 300 else what[:297] + "..."
    path = None if debug_requested(argv) else write_crash_report(err, argv)
    if path is None:
        traceback.print_exception(err, file=sys.stderr)
        where = "the traceback above"
    else:
        where = f"the traceback in {path}"
    print(f"convzoo: bug: {what} (a bug in convzoo, not in your input); please report it with {where}",
          file=sys.stderr)
    return EXIT_BUG


def _interrupted_run(err: BaseException) -> int | None:
    """The exit code (128 + the signal's number) when ``err`` is the trainer's ``Interrupted``, else None.
    Looked up among the loaded modules, not imported: with the trainer not loaded, no run was interrupted
    (and the boundary stays free of torch)."""
    run = sys.modules.get("convzoo.train.run")
    if run is not None and isinstance(err, run.Interrupted):
        code: int = err.exit_code
        return code
    return None


def echoed_by_rank_0() -> bool:
    """Whether this process is a rank other than 0 of a run torchrun started: a user error or an interrupt
    reaches every process of the run together, and rank 0 alone says so (one message, not one per process).
    Bugs are still reported by each process."""
    return os.environ.get("RANK", "0") != "0" and os.environ.get("WORLD_SIZE", "1") not in ("", "1")


def guarded(command: Callable[[], int], argv: Sequence[str]) -> int:
    """Run ``command`` (build the parser, parse ``argv``, run the chosen command) and return its exit code,
    or the code and one line on stderr for what it raised (the module docstring lists them)."""
    try:
        try:
            code = command()
        except SystemExit:  # argparse's --help and --version: flush their output here, where a pipe is handled
            sys.stdout.flush()
            raise
        sys.stdout.flush()  # a closed pipe shows here when the output was buffered
        return code
    except KeyboardInterrupt:
        if not echoed_by_rank_0():
            print("convzoo: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError as err:
        if not _stdout_is_gone():
            return report_bug(err, argv)
        _drop_stdout()
        return 0
    except Exception as raised:
        if (signal_code := _interrupted_run(raised)) is not None:
            if not echoed_by_rank_0():
                print(one_line(f"convzoo: {raised}"), file=sys.stderr)
            return signal_code
        error = as_out_of_memory(raised) or raised
        if isinstance(error, PeerLostError):
            return EXIT_PEER_LOST
        if isinstance(error, ConvzooError):
            prog = error.prog if isinstance(error, UsageError) else "convzoo"
            if not echoed_by_rank_0():
                print(one_line(f"{prog}: error: {error}"), file=sys.stderr)
            else:  # give rank 0 the time to say it before torchrun, seeing this process end, stops the others
                time.sleep(0.5)
            return EXIT_DIVERGED if isinstance(error, DivergenceError) else EXIT_USER_ERROR
        if isinstance(error, OSError) and (problem := environment_problem(error)) is not None:
            print(one_line(f"convzoo: error: {problem}"), file=sys.stderr)
            return EXIT_USER_ERROR
        return report_bug(error, argv)
