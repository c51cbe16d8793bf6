"""Checkpoints that survive crashes, and the run directory's lock.

A checkpoint is a folder ``checkpoints/epoch-0003/`` (``epoch-0003-step-0120`` when saved mid-epoch)
holding
- ``model.safetensors``: the weights (safetensors: no code can hide in it),
- ``model.json``: the sidecar (model name and kwargs, data set, classes, input size and normalisation,
  epoch, metrics, config): everything needed to rebuild the model and use it,
- ``state.pt``: optimizer, schedule position, RNG state and history, read back with
  ``torch.load(weights_only=True)`` (plain tensors and containers only, never arbitrary objects).

The folder is written under a temporary name, every file fsynced, then renamed into place; the
pointers ``checkpoints/last`` and ``checkpoints/best`` are symbolic links swapped by an atomic rename.
A crash at any moment leaves ``last`` pointing at a complete checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from convzoo.errors import ConvzooError, RunError

__all__ = [
    "CHECKPOINT_FORMAT", "RunLock", "checkpoint_name", "find_checkpoint", "point", "prune", "read_checkpoint",
    "write_checkpoint", "write_text_atomic",
]

CHECKPOINT_FORMAT = "convzoo-checkpoint/1"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, fsync, rename over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def checkpoint_name(epoch: int, step: int = 0) -> str:
    """``epoch-0003`` for the end of epoch 3 (1-based), ``epoch-0004-step-0120`` inside epoch 4."""
    return f"epoch-{epoch:04d}" if step == 0 else f"epoch-{epoch:04d}-step-{step:04d}"


def write_checkpoint(root: Path, name: str, weights: Mapping[str, Tensor], meta: Mapping[str, Any],
                     state: Mapping[str, Any]) -> Path:
    """Write a complete checkpoint folder ``root/name`` atomically; return its path.

    On any failure (disk full, write error) the temporary folder is removed, nothing named as a
    checkpoint is left half-written, and a ``ConvzooError`` says what happened.
    """
    root.mkdir(parents=True, exist_ok=True)
    final = root / name
    tmp = root / f".tmp-{name}-{os.getpid()}"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in weights.items()}
        save_file(tensors, tmp / "model.safetensors", metadata={"format": "pt"})
        (tmp / "model.json").write_text(json.dumps(dict(meta), indent=2, sort_keys=True), encoding="utf-8")
        torch.save(dict(state), tmp / "state.pt")
        for file in tmp.iterdir():
            _fsync_file(file)
        _fsync_dir(tmp)
        if final.exists():  # the same step saved again (after a resume): swap the old one out first
            old = root / f".old-{name}-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(root)
    except (OSError, SafetensorError, RuntimeError) as err:  # disk full, write errors (torch.save: RuntimeError)
        shutil.rmtree(tmp, ignore_errors=True)
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).splitlines()[0]
        raise ConvzooError(f"could not save checkpoint {final}: {reason}; the previous checkpoint is intact") from None
    return final


def point(root: Path, pointer: str, name: str) -> None:
    """Make ``root/pointer`` (``last`` or ``best``) a link to checkpoint ``name``, atomically."""
    tmp = root / f".{pointer}-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(name, tmp)
    os.replace(tmp, root / pointer)
    _fsync_dir(root)


def prune(root: Path) -> None:
    """Remove checkpoints no pointer names, and temporary folders left by dead processes."""
    keep = {os.readlink(root / p) for p in ("last", "best") if (root / p).is_symlink()}
    for entry in root.iterdir():
        if entry.is_symlink():
            continue
        if entry.name.startswith((".tmp-", ".old-")):
            pid = entry.name.rsplit("-", 1)[-1]
            if pid.isdigit() and _alive(int(pid)) and int(pid) != os.getpid():
                continue
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.is_dir() and entry.name.startswith("epoch-") and entry.name not in keep:
            shutil.rmtree(entry, ignore_errors=True)


def _order(name: str) -> tuple[int, float]:
    """Training progress a checkpoint name stands for: epoch-0003-step-0010 (during epoch 3) comes
    before epoch-0003 (after it)."""
    parts = name.split("-")
    epoch, step = int(parts[1]), (int(parts[3]) if len(parts) >= 4 else math.inf)
    return epoch, step


def latest_intact(root: Path) -> Path | None:
    """The checkpoint to resume from: the one ``last`` names if it is complete, else the furthest complete
    one in ``root`` (a kill between the two renames of a re-save leaves it as ``.old-NAME-PID``); None if
    there is none."""
    def complete(folder: Path) -> bool:
        return all((folder / f).is_file() for f in ("model.safetensors", "model.json", "state.pt"))

    last = root / "last"
    if last.exists() and complete(last):
        return last
    candidates: list[tuple[tuple[int, float], Path]] = []
    for entry in root.iterdir() if root.is_dir() else ():
        name = entry.name[len(".old-"):].rsplit("-", 1)[0] if entry.name.startswith(".old-") else entry.name
        if name.startswith("epoch-") and not entry.is_symlink() and entry.is_dir() and complete(entry):
            candidates.append((_order(name), entry))
    return max(candidates)[1] if candidates else None


def restore(root: Path) -> Path | None:
    """Make ``root`` resumable after a crash and return the checkpoint to resume from (None if there is
    none): the furthest complete checkpoint, renamed back if a kill left it as ``.old-NAME-PID``, with
    ``last`` pointing at it."""
    folder = latest_intact(root)
    if folder is None:
        return None
    if folder.name.startswith(".old-"):
        target = root / folder.name[len(".old-"):].rsplit("-", 1)[0]
        shutil.rmtree(target, ignore_errors=True)  # the incomplete re-save that replaced it
        os.replace(folder, target)
        folder = target
    folder = folder.resolve()
    point(root, "last", folder.name)
    return root / folder.name


def find_checkpoint(path: str | os.PathLike[str]) -> Path:
    """The checkpoint folder ``path`` names: a checkpoint folder, its ``model.safetensors``, or a run
    directory (its best checkpoint if it has one, else its last)."""
    path = Path(path)
    if not path.exists():
        raise ConvzooError(f"{path} does not exist; give a run directory or a checkpoint folder")
    if path.is_file() and path.name in ("model.safetensors", "model.json", "state.pt"):
        path = path.parent
    if (path / "checkpoints").is_dir():
        for pointer in ("best", "last"):
            target = path / "checkpoints" / pointer
            if target.exists():
                return target.resolve()
        raise ConvzooError(f"run directory {path} has no checkpoint yet")
    if (path / "model.json").is_file() and (path / "model.safetensors").is_file():
        return path.resolve()
    raise ConvzooError(f"{path} is neither a run directory nor a checkpoint folder (model.safetensors + model.json)")


def read_checkpoint(folder: Path, *, state: bool = True) -> tuple[dict[str, Tensor], dict[str, Any], dict[str, Any]]:
    """Weights, sidecar and (if ``state``) training state of a checkpoint folder, each validated."""
    try:
        meta = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConvzooError(f"cannot read {folder / 'model.json'}: {err}") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise ConvzooError(f"{folder / 'model.json'} is not a convzoo checkpoint sidecar ({CHECKPOINT_FORMAT})")
    try:
        weights = load_file(folder / "model.safetensors")
    except (OSError, SafetensorError, ValueError) as err:
        raise ConvzooError(f"cannot read {folder / 'model.safetensors'}: {err}") from None
    training: dict[str, Any] = {}
    if state:
        try:
            training = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001  (an unpickling refusal is reported, never executed)
            raise ConvzooError(f"refusing to load {folder / 'state.pt'}: {str(err).splitlines()[0]}") from None
    return weights, meta, training


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """``RUN_DIR/lock`` holding the owner's pid: a second run on the same directory is refused; a lock
    left by a dead process is taken over."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / "lock"
        self.held = False

    def acquire(self) -> None:
        me = f"{os.getpid()} {socket.gethostname()}\n"
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is not None and owner != os.getpid() and _alive(owner):
                    raise RunError(
                        f"run directory {self.path.parent} is in use by process {owner}; wait for it to finish "
                        f"or choose another directory"
                    ) from None
                self.path.unlink(missing_ok=True)  # stale: its owner is gone
                continue
            with os.fdopen(fd, "w") as f:
                f.write(me)
            self.held = True
            return
        raise RunError(f"could not take the lock {self.path}; another process keeps taking it")

    def _owner(self) -> int | None:
        try:
            text = self.path.read_text()
        except OSError:
            return None
        first = text.split()[:1]
        return int(first[0]) if first and first[0].isdigit() else None

    def release(self) -> None:
        if self.held and self._owner() == os.getpid():
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
