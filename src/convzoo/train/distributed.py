"""Several processes, one run: ``torch.distributed`` with ``DistributedDataParallel``, launched by ``torchrun``.

convzoo adds no engine of its own. ``torchrun`` starts the processes and sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`setup` reads them, joins the
process group (gloo on a CPU, nccl on CUDA) with a timeout, so that a missing peer fails the run in seconds,
and sets the threads per process. Without those variables a run is one process and nothing here does
anything (:data:`SINGLE`).

What the loop needs beyond ``DistributedDataParallel``'s gradient averaging is here, each a no-op for one
process: sums across processes (the epoch's loss and accuracy, the evaluation's confusion matrix), the
average of the batch-norm running statistics, an agreement on errors (a user error raised by one process
stops every process with that message, printed once, by rank 0) and an object sent from rank 0 to all
(the run directory's name, a checkpoint read from rank 0's disk).

An exchange that fails because a peer ended (killed, or stopped by its own error) raises ``PeerLostError``,
which the command line turns into a silent exit 4 (the launcher names the process that ended); any other
failed exchange (a timeout) is a ``RunError`` that says so. The run's own exchanges are wrapped here; the
gradients' exchange inside ``DistributedDataParallel``'s backward is :func:`average_gradients`, the comm hook
registered where the model is wrapped, and the training step runs inside :meth:`Dist.exchanges`.
"""

from __future__ import annotations

import gc
import importlib
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from convzoo.errors import ConvzooError, PeerLostError, RunError

__all__ = ["SINGLE", "Dist", "PeerLostError", "average_gradients", "from_environment", "setup"]

T = TypeVar("T")


@dataclass(frozen=True)
class Dist:
    """Where this process stands in the run: its global rank among ``world`` processes, and its rank among
    the ``local_world`` processes on this machine."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    backend: str | None = None  # "gloo" or "nccl" once joined; None for one process
    # what average_gradients saw fail (the gradients' exchange, in a thread of the backend), for exchanges()
    _failed: list[ConvzooError] = field(default_factory=list, compare=False, repr=False)

    @property
    def main(self) -> bool:
        """Global rank 0: the one process that prints, plots and writes files."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    # ---- exchanges: each a no-op for one process -------------------------------------------------

    def sum_(self, tensor: Tensor) -> Tensor:
        """Sum ``tensor`` over every process, in place; returns it."""
        if self.active:
            with self._peers():
                torch.distributed.all_reduce(tensor)
        return tensor

    def max_(self, tensor: Tensor) -> Tensor:
        if self.active:
            with self._peers():
                torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
        return tensor

    def barrier(self) -> None:
        if self.active:
            with self._peers():
                torch.distributed.barrier()

    def from_main(self, make: Callable[[], T]) -> T:
        """``make()`` computed by rank 0 and sent to every process (as a pickled object: small things only,
        and a checkpoint of the zoo's sizes); the other processes do not call ``make``."""
        if not self.active:
            return make()
        box: list[Any] = [None]
        error: ConvzooError | None = None
        if self.main:
            try:
                box = [("ok", make())]
            except ConvzooError as err:  # sent too, so that every process stops with it
                box, error = [("error", str(err))], err
        with self._peers():
            torch.distributed.broadcast_object_list(box, src=0)
        kind, value = box[0]
        if kind == "error":
            if error is not None:
                raise error
            raise _EchoError(value)
        result: T = value
        return result

    def agree(self, work: Callable[[], T]) -> T:
        """Run ``work()`` on every process; if it raised a user error on any of them, raise on every one (the
        lowest failing rank's message on rank 0, which prints it; the others stay silent). Without this a
        process left waiting for a peer that gave up would wait out the timeout."""
        if not self.active:
            return work()
        try:
            result, failure = work(), None
        except ConvzooError as err:
            result, failure = None, err
        failures: list[Any] = [None] * self.world
        with self._peers():
            torch.distributed.all_gather_object(failures, None if failure is None else str(failure))
        first = next(((rank, message) for rank, message in enumerate(failures) if message is not None), None)
        if first is not None:
            if failure is not None and (first[0] == self.rank or not self.main):
                raise failure
            raise _EchoError(first[1] if first[0] == 0 else f"rank {first[0]}: {first[1]}")
        assert result is not None or failure is None
        return result  # type: ignore[return-value]

    def average_buffers_(self, net: nn.Module) -> None:
        """Average the batch-norm running statistics (float buffers) over the processes, so that what is
        evaluated and saved does not depend on rank 0's shards alone (each process normalised its own)."""
        if not self.active:
            return
        floats = [b for b in net.buffers() if b.is_floating_point()]
        if not floats:
            return
        flat = torch.cat([b.detach().reshape(-1).double() for b in floats])
        self.sum_(flat).div_(self.world)
        offset = 0
        for b in floats:
            b.copy_(flat[offset:offset + b.numel()].view_as(b))
            offset += b.numel()

    @contextmanager
    def exchanges(self) -> Iterator[None]:
        """Around work that exchanges with the other processes among other things (the training step: the
        ``DistributedDataParallel`` model's forward and backward, whose gradients :func:`average_gradients`
        exchanges): a failure of the exchange raises its user-facing error (``PeerLostError`` for a lost peer);
        any other error goes on as it was (a bug in the model stays a bug)."""
        if not self.active:
            yield
            return
        try:
            yield
        except RuntimeError as err:
            if self._failed:  # the backward's error is the hook's, wrapped in torch's text
                failed = self._failed[0]
                self._failed.clear()
                raise failed from err
            if lost_peer(err):  # (an exchange of DistributedDataParallel's own: the parameters' broadcast)
                raise self._failure(err) from err
            raise

    @contextmanager
    def _peers(self) -> Iterator[None]:
        """Around one exchange: its failure means a peer is gone or silent, a run error, not a bug."""
        try:
            yield
        except RuntimeError as err:
            raise self._failure(err) from err

    def _failure(self, err: RuntimeError) -> ConvzooError:
        """A failed exchange as the error to raise: ``PeerLostError`` when the connection to a peer is gone
        (it ended), else a ``RunError`` naming what the exchange said (a peer that stopped answering)."""
        if lost_peer(err):
            return PeerLostError(f"rank {self.rank} of {self.world} lost its peers ({_gist(err)}): another process "
                                 "ended (killed, or stopped by its own error; torchrun names the rank); the last "
                                 "checkpoint is intact, continue with --resume RUN_DIR")
        return RunError(f"rank {self.rank} of {self.world} lost its peers ({_gist(err)}): another process was "
                        "killed, failed or timed out (see its message; torchrun names the rank); the last "
                        "checkpoint is intact, continue with --resume RUN_DIR")


# What a gloo exchange (torch 2.14, gloo/transport/tcp/pair.cc) says when the other side's socket is gone: the
# peer process ended. "Read error [ADDR]: Connection reset by peer", "Connection closed by peer [ADDR]",
# "writev [ADDR]: Broken pipe", "Socket closed [ADDR]".
_LOST_PEER = ("connection reset by peer", "connection closed by peer", "broken pipe", "socket closed")


def lost_peer(err: BaseException) -> bool:
    """Whether ``err``, raised by an exchange, says that the connection to a peer is gone (the peer ended).

    torch gives a lost peer no type of its own: gloo's failures are all a plain ``RuntimeError`` (a timeout
    too, which is not a lost peer: the peer may still be there), so the text is read, here alone, and only
    for an error an exchange raised."""
    return isinstance(err, RuntimeError) and any(words in str(err).lower() for words in _LOST_PEER)


def average_gradients(dist: Dist, bucket: torch.distributed.GradBucket) -> torch.futures.Future[Tensor]:
    """``DistributedDataParallel``'s comm hook (``register_comm_hook(dist, average_gradients)``, where the model
    is wrapped): one bucket of gradients averaged over the processes as torch's default does (each divided by
    the processes, then summed). A failure is recorded in ``dist`` for :meth:`Dist.exchanges`: it reaches the
    backward's caller as a ``RuntimeError`` in torch's words, whose type says nothing."""

    def failed(err: RuntimeError) -> None:
        dist._failed.append(dist._failure(err))

    tensor = bucket.buffer().div_(dist.world)
    try:
        future = torch.distributed.all_reduce(tensor, async_op=True).get_future()  # type: ignore[union-attr]
    except RuntimeError as err:  # (gloo may refuse to start it, its connection already closed)
        failed(err)
        raise

    def summed(done: torch.futures.Future[list[Tensor]]) -> Tensor:
        try:
            return done.value()[0]
        except RuntimeError as err:
            failed(err)
            raise

    return future.then(summed)


# DistributedDataParallel checks a hook's annotations as objects; with postponed annotations they are strings
average_gradients.__annotations__["bucket"] = torch.distributed.GradBucket
average_gradients.__annotations__["return"] = torch.futures.Future[Tensor]


def _gist(err: BaseException) -> str:
    """The exception's type and first sentence, without the C++ source location gloo puts before it."""
    text = re.sub(r"^\[[^\]]*\] ", "", str(err).strip().splitlines()[0] if str(err).strip() else "")
    return f"{type(err).__name__}: {text.split('. ')[0]}" if text else type(err).__name__


class _EchoError(ConvzooError):
    """Another process's user error, raised here with its message so that every process stops with it."""


SINGLE = Dist()


def from_environment() -> Dist:
    """The layout torchrun's variables describe (``SINGLE`` without them), before joining any group."""
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        return SINGLE
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    except ValueError as err:
        raise RunError(f"torchrun's RANK/WORLD_SIZE/LOCAL_RANK/LOCAL_WORLD_SIZE must be whole numbers ({err}); "
                       "start the run with torchrun, or unset them") from err
    if not 0 <= rank < world or not 0 <= local_rank < local_world:
        raise RunError(f"RANK={rank} of WORLD_SIZE={world} (LOCAL_RANK={local_rank} of {local_world}) is not a "
                       "valid layout; start the run with torchrun, or unset them")
    return Dist(rank, world, local_rank, local_world)


def default_threads(dist: Dist) -> int:
    """The machine's cores (those this process may run on) shared among the processes on it."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // dist.local_world)


def setup(device: torch.device, threads: int | None, timeout_s: float) -> Dist:
    """Join the run's process group when torchrun started this process (gloo on a CPU, nccl on CUDA, this
    process's GPU ``cuda:LOCAL_RANK``), and set the threads per process; returns the layout. One process:
    only the threads are set (when asked)."""
    dist = from_environment()
    if threads is not None or dist.active:
        torch.set_num_threads(threads or default_threads(dist))
    if not dist.active:
        return dist
    if device.type not in ("cpu", "cuda"):
        raise ConvzooError(f"several processes need --device cpu or cuda, not {device.type}")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not torch.distributed.is_initialized():
        # Import torch._dynamo before the group exists (DistributedDataParallel imports it on construction):
        # imported while a group exists, it keeps references to that group (torch 2.14), so that
        # destroy_process_group no longer frees it. Its gloo worker threads then live on into the interpreter's
        # shutdown, and one that releases a finished collective's tensors there needs the GIL it can no longer
        # take: the process aborts after a successful run ("terminate called without an active exception";
        # about 1 run in 30 of two processes on a loaded 2-core machine). tests/test_distributed.py checks that
        # teardown frees the group.
        importlib.import_module("torch._dynamo")
        kwargs: dict[str, Any] = {}
        if device.type == "cuda":
            torch.cuda.set_device(dist.local_rank)
            kwargs["device_id"] = torch.device("cuda", dist.local_rank)
        try:
            torch.distributed.init_process_group(backend, timeout=timedelta(seconds=timeout_s), rank=dist.rank,
                                                 world_size=dist.world, **kwargs)
        except (torch.distributed.DistError, RuntimeError, ValueError) as err:
            raise RunError(f"rank {dist.rank} could not join the other {dist.world - 1} process(es) within "
                           f"{timeout_s:g} s at {os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')} "
                           f"({type(err).__name__}); start every process (or raise --dist-timeout)") from err
    return Dist(dist.rank, dist.world, dist.local_rank, dist.local_world, backend)


def teardown(dist: Dist) -> None:
    """Leave the process group (``destroy_process_group``) if this run joined one, on every way out of the run
    (done, a user error, a bug, an interrupt), and free it there, while the interpreter is whole.

    What still refers to the group (``DistributedDataParallel`` and its reducer, the collectives' work) goes
    first: an exception on its way out keeps its frames, and a frame that holds the exception itself (``agree``,
    ``from_main``) is a reference cycle that only the garbage collector frees; left to the interpreter's
    shutdown, the group's gloo threads outlive the threads' runtime, and the process aborts after printing its
    error ("terminate called without an active exception", exit 134 where the error's is 2)."""
    if dist.active and torch.distributed.is_initialized():
        gc.collect()
        torch.distributed.destroy_process_group()
        gc.collect()


def local_device(device: torch.device, dist: Dist) -> torch.device:
    """This process's device: its own GPU (``cuda:LOCAL_RANK``) when the run uses CUDA."""
    if device.type == "cuda" and dist.active:
        return torch.device("cuda", dist.local_rank)
    return device
