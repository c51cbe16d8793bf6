"""The environment a result was produced in: library versions, git revision, machine."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

__all__ = ["environment", "fused_sgd", "keep_batch_memory", "pick_device"]


def git_revision() -> str | None:
    """The git revision of the convzoo source tree, with ``-dirty`` if it has local changes; None outside git."""
    root = Path(__file__).resolve().parents[3]
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("-dirty" if dirty else "")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _distribution_version(name: str) -> str | None:
    """An installed package's version from its metadata, without importing it (torchvision takes 1-2 s)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def environment(device: torch.device) -> dict[str, Any]:

    from convzoo._version import __version__

    info: dict[str, Any] = {
        "convzoo": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": _distribution_version("torchvision"),
        "git_revision": git_revision(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "command": " ".join(sys.argv),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def pick_device(name: str) -> torch.device:
    """``auto``: cuda, then mps, then cpu; an unavailable device is an error naming what is available."""
    from convzoo.errors import ConvzooError

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConvzooError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConvzooError("--device mps: no Apple GPU is available here; use --device cpu or auto")
    return torch.device(name)


# where torch.optim.SGD has a fused kernel (CUDA since torch 2.3, the CPU since 2.4); TorchVersion compares as versions
_FUSED_SGD_DEVICES = ("cpu", "cuda") if torch.__version__ >= "2.4" else ()


def fused_sgd(parameters: Iterable[torch.Tensor]) -> bool | None:
    """``fused=`` for ``torch.optim.SGD`` over ``parameters``: True where torch has the fused kernel for all of
    them (floating point, on the CPU or CUDA), else None (torch's default). The kernel makes one pass over each
    parameter per step instead of one per operation (decay, momentum, Nesterov, update): the training step of
    vgg11_small, whose update is memory-bound, 1.38x faster on this CPU; models of a few million parameters
    the same within noise (benchmarks/optimizer_step.py). Changes the rounding of the update, not its maths."""
    params = list(parameters)
    ok = bool(params) and all(p.device.type in _FUSED_SGD_DEVICES and p.is_floating_point() for p in params)
    return True if ok else None


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def keep_batch_memory(mib: int = 32) -> bool:
    """Let glibc reuse freed batch-sized blocks instead of mapping and unmapping them every step.

    glibc serves every allocation above its mmap threshold (128 KiB at start, raised only when a larger
    mapped block is freed) with a fresh ``mmap``, so each training step page-faults its activations in
    anew: LeNet at batch 256 takes 15.5 ms a step until an evaluation happens to free a larger block, and
    11 ms after (benchmarks/vs_reference_loop.py). Raising the thresholds to ``mib`` keeps such blocks in
    the heap. Changes speed only, never results. Returns False where the C library is not glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    size = mib * 2**20
    return bool(mallopt(_M_MMAP_THRESHOLD, size)) and bool(mallopt(_M_TRIM_THRESHOLD, 2 * size))
