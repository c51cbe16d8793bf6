"""User-facing errors: each message is one line saying what is wrong and how to fix it.

The command line prints them as ``convzoo: error: ...`` and exits with code 2, without a traceback
(``DivergenceError`` 3; ``PeerLostError`` 4, silently); anything else reaching it is a bug
(``convzoo.cli._boundary``).
"""

from __future__ import annotations

import sys


class ConvzooError(ValueError):
    """A user-facing error: the message is one line saying what is wrong and how to fix it."""


class DataError(ConvzooError):
    """A data set is missing, malformed or unsafe to read."""


class RunError(ConvzooError):
    """A run directory cannot be used: locked, already holding a run, or resumed with another config."""


class PeerLostError(RunError):
    """Another process of the run ended (killed, or stopped by its own error) while this one was exchanging
    with it: nothing wrong in this process, which has nothing to add. The command line exits 4 without a word;
    ``convzoo train --nproc-per-node`` (torchrun, for its own launches) names the process that ended first, and
    the last checkpoint is intact for ``--resume``."""


class DivergenceError(ConvzooError):
    """Training produced a non-finite loss; the message says which checkpoint, if any, is kept."""


class ModelError(ConvzooError):
    """A model cannot be built as asked: an unknown name or builder argument, a bad class or channel count."""


class InputShapeError(ModelError):
    """A batch the model cannot take: not B x C x H x W, the wrong channel count, or a side out of range."""


class WeightsError(ModelError):
    """A state_dict that does not pair with the model it is loaded into (another layout, shapes or size)."""


class UsageError(ConvzooError):
    """The command line itself is wrong: an unknown flag, a missing or malformed argument (argparse's errors).

    ``prog`` is the command it belongs to (``convzoo summary``); it starts the printed line, and the message
    ends by pointing at that command's ``--help``.
    """

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(f"{message} (see {prog} --help)")
        self.prog = prog


class OutOfMemory(ConvzooError, MemoryError):  # noqa: N818  (named as MemoryError is)
    """A tensor did not fit in memory: the sizes asked for (input, batch, classes) are too large here."""


_CPU_ALLOCATOR_FAILURE = "DefaultCPUAllocator: can't allocate memory"


def as_out_of_memory(err: BaseException) -> OutOfMemory | None:
    """``err`` as an :class:`OutOfMemory` (a user error) when it reports a failed allocation, else None.

    Python's ``MemoryError`` and torch's ``torch.cuda.OutOfMemoryError`` (``torch.OutOfMemoryError``: CUDA,
    MPS) say so by their type. torch's CPU allocator does not: it raises a plain ``RuntimeError``
    ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried
    to allocate N bytes ...", torch 2.14), the type torch raises for most other failures too. torch gives
    that case no type of its own, so it is recognised by its text: here, and nowhere else, so that the
    command line's error boundary dispatches on types alone.
    """
    if isinstance(err, OutOfMemory):
        return err
    torch = sys.modules.get("torch")  # torch not imported: it allocated nothing, so raised nothing
    typed = isinstance(err, MemoryError) or (torch is not None and isinstance(err, torch.cuda.OutOfMemoryError))
    if not typed and not (type(err) is RuntimeError and _CPU_ALLOCATOR_FAILURE in str(err)):
        return None
    text = str(err)
    detail = text.split("DefaultCPUAllocator: ")[-1].splitlines()[0] if text.strip() else type(err).__name__
    oom = OutOfMemory(f"not enough memory ({detail}); use a smaller --input-size, --batch-size or --num-classes")
    oom.__cause__ = err
    return oom
