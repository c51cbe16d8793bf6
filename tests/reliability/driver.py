"""Run ``convzoo`` in a child process that can be made to die by SIGKILL at a chosen moment.

    python driver.py [--kill-in FUNCTION:N] -- convzoo arguments...

``--kill-in save_file:2`` sends SIGKILL to the process itself on the 2nd call of ``save_file`` inside
convzoo's checkpoint writer (also ``torch_save``, ``fsync_file``, ``fsync_dir``, ``replace``, ``symlink``),
so the kill lands while a checkpoint is half written. Test-only: the library has no such hook.
"""

from __future__ import annotations

import os
import signal
import sys


def _arm(function: str, nth: int) -> None:
    from convzoo.train import checkpoint

    calls = {"n": 0}

    def killer(original):
        def wrapped(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == nth:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(*args, **kwargs)
        return wrapped

    if function == "save_file":
        checkpoint.save_file = killer(checkpoint.save_file)
    elif function == "torch_save":
        checkpoint.torch.save = killer(checkpoint.torch.save)
    elif function == "fsync_file":
        checkpoint._fsync_file = killer(checkpoint._fsync_file)
    elif function == "fsync_dir":
        checkpoint._fsync_dir = killer(checkpoint._fsync_dir)
    elif function == "replace":
        checkpoint.os.replace = killer(checkpoint.os.replace)
    elif function == "symlink":
        checkpoint.os.symlink = killer(checkpoint.os.symlink)
    else:
        raise SystemExit(f"unknown function {function}")


def main() -> int:
    argv = sys.argv[1:]
    if argv and argv[0] == "--kill-in":
        function, nth = argv[1].split(":")
        _arm(function, int(nth))
        argv = argv[2:]
    if argv and argv[0] == "--":
        argv = argv[1:]
    import torch

    torch.set_num_threads(1)
    from convzoo.cli import main as convzoo_main

    return convzoo_main(argv)


if __name__ == "__main__":
    sys.exit(main())
