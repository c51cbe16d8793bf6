"""Checkpoints that survive crashes, and the run directory's lock.

A checkpoint is a folder ``checkpoints/epoch-0003/`` (``epoch-0003-step-0120`` when saved mid-epoch)
holding
- ``model.safetensors``: the weights (safetensors: no code can hide in it),
- ``model.json``: the sidecar (model name and kwargs, data set, classes, input size and normalisation,
  epoch, metrics, config): everything needed to rebuild the model and use it,
- ``state.pt``: the training state (``convzoo.train.state.TrainingState``: optimizer, schedule position,
  RNG state, history), read back with ``torch.load(weights_only=True)`` (plain tensors and containers
  only, never arbitrary objects).

The folder is written under a temporary name, every file fsynced (``convzoo.utils.atomic``), then renamed
into place; the pointers ``checkpoints/last`` and ``checkpoints/best`` are symbolic links swapped by an
atomic rename. A crash at any moment leaves ``last`` pointing at a complete checkpoint.

Reading a checkpoint trusts nothing in it: the sidecar must describe a zoo model, the weights must be
that model's tensors (checked from the safetensors header before any data is read), and the state must
hold what the loop writes. A damaged or forged checkpoint is one clear error, never a half-loaded model.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shutil
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from convzoo.errors import ConvzooError, RunError
from convzoo.train.state import TrainingState
from convzoo.utils.atomic import fsync_dir, fsync_file

if TYPE_CHECKING:
    from convzoo.models import ConvNet

__all__ = [
    "CHECKPOINT_FORMAT", "RunLock", "checkpoint_name", "find_checkpoint", "latest_intact", "model_from_sidecar",
    "point", "prune", "read_checkpoint", "read_sidecar", "restore", "write_checkpoint",
]

CHECKPOINT_FORMAT = "convzoo-checkpoint/1"


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
    old = root / f".old-{name}-{os.getpid()}"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in weights.items()}
        save_file(tensors, tmp / "model.safetensors", metadata={"format": "pt"})
        (tmp / "model.json").write_text(json.dumps(dict(meta), indent=2, sort_keys=True), encoding="utf-8")
        torch.save(dict(state), tmp / "state.pt")
        for file in tmp.iterdir():
            fsync_file(file)
        fsync_dir(tmp)
        if final.exists():  # the same step saved again (after a resume): swap the old one out first
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        fsync_dir(root)
    except (OSError, SafetensorError, RuntimeError) as err:  # disk full, write errors (torch.save: RuntimeError)
        shutil.rmtree(tmp, ignore_errors=True)
        if old.is_dir() and not final.exists():  # the swap failed half way: put the previous one back
            os.replace(old, final)
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).splitlines()[0]
        raise ConvzooError(f"could not save checkpoint {final}: {reason}; the previous checkpoint is intact") from None
    return final


def point(root: Path, pointer: str, name: str) -> None:
    """Make ``root/pointer`` (``last`` or ``best``) a link to checkpoint ``name``, atomically."""
    tmp = root / f".{pointer}-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(name, tmp)
    os.replace(tmp, root / pointer)
    fsync_dir(root)


def prune(root: Path) -> None:
    """Remove checkpoints no pointer names, and temporary folders left by dead processes."""
    keep = {os.readlink(root / p) for p in ("last", "best") if (root / p).is_symlink()}
    for entry in root.iterdir():
        if entry.name.startswith((".tmp-", ".old-", ".last-", ".best-")):  # (the last two: a pointer being swapped)
            pid = entry.name.rsplit("-", 1)[-1]
            if pid.isdigit() and _alive(int(pid)) and int(pid) != os.getpid():
                continue
            if entry.is_symlink():
                entry.unlink(missing_ok=True)
            else:
                shutil.rmtree(entry, ignore_errors=True)
        elif entry.is_symlink():
            continue
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


@overload
def read_checkpoint(folder: Path, *, state: Literal[True] = ...,
                    net: nn.Module | None = ...) -> tuple[dict[str, Tensor], dict[str, Any], TrainingState]: ...


@overload
def read_checkpoint(folder: Path, *, state: Literal[False],
                    net: nn.Module | None = ...) -> tuple[dict[str, Tensor], dict[str, Any], None]: ...


def read_checkpoint(folder: Path, *, state: bool = True,
                    net: nn.Module | None = None) -> tuple[dict[str, Tensor], dict[str, Any], TrainingState | None]:
    """Weights, sidecar and (if ``state``) training state of a checkpoint folder, each validated: the
    sidecar describes a zoo model, the weights fit that model tensor by tensor (``net`` if given, else the
    model built from the sidecar on the meta device: shapes only, no memory), and the training state is
    what the loop writes, with the optimizer's tensors shaped as the model's parameters
    (``TrainingState.read``). Anything else is a ``ConvzooError`` naming the file: a forged or damaged
    checkpoint is refused, never half loaded."""
    meta = read_sidecar(folder)
    reference = net if net is not None else model_from_sidecar(meta, folder, shapes_only=True)
    weights = _read_weights(folder / "model.safetensors", reference, meta["model"])
    training = TrainingState.read(folder / "state.pt", reference) if state else None
    return weights, meta, training


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_sidecar(folder: Path) -> dict[str, Any]:
    """``model.json`` of a checkpoint folder, checked to hold what using the model needs."""
    path = folder / "model.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConvzooError(f"cannot read {path}: {err}") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise ConvzooError(f"{path} is not a convzoo checkpoint sidecar ({CHECKPOINT_FORMAT})")
    spec = meta.get("input")
    problems = [
        *(["'model' must name a zoo model"] if not isinstance(meta.get("model"), str) else []),
        *(["'model_kwargs' must be an object"] if not isinstance(meta.get("model_kwargs"), dict) else []),
        *(["'dataset' must be a name"] if not isinstance(meta.get("dataset"), str) else []),
        *(["'config' must be an object"] if not isinstance(meta.get("config"), dict) else []),
    ]
    classes = meta.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        problems.append("'classes' must be a list of class names")
    if not isinstance(spec, dict):
        problems.append("'input' must be an object")
    else:
        size = spec.get("size")
        if not _is_int(spec.get("channels")) or spec["channels"] < 1:
            problems.append("'input.channels' must be a whole number >= 1")
        if not isinstance(size, list) or len(size) != 2 or not all(_is_int(v) and v >= 1 for v in size):
            problems.append("'input.size' must be [height, width]")
        for key in ("mean", "std"):
            values = spec.get(key)
            if values is not None and (not isinstance(values, list) or not all(_is_number(v) for v in values)
                                       or len(values) not in (1, spec.get("channels"))):
                problems.append(f"'input.{key}' must be null, one number, or one per channel")
    if problems:
        raise ConvzooError(f"{path} is damaged: {'; '.join(problems)}")
    return meta


def model_from_sidecar(meta: Mapping[str, Any], folder: Path, *, shapes_only: bool = False) -> ConvNet:
    """The zoo model a (validated) sidecar describes, freshly initialised; on the meta device if
    ``shapes_only``. Its classes and input channels must agree with the sidecar's."""
    from convzoo.models import create_model

    path = folder / "model.json"
    try:
        with torch.device("meta") if shapes_only else contextlib.nullcontext():
            net = create_model(meta["model"], **meta["model_kwargs"])
    except (ValueError, TypeError) as err:  # unknown model, impossible arguments
        raise ConvzooError(f"{path} does not describe a zoo model: {err}") from None
    if net.num_classes != len(meta["classes"]) or net.in_channels != meta["input"]["channels"]:
        raise ConvzooError(f"{path} is damaged: {meta['model']} has {net.num_classes} classes and "
                           f"{net.in_channels} input channel(s), the sidecar names {len(meta['classes'])} classes "
                           f"and {meta['input']['channels']} channel(s)")
    return net


def _read_weights(path: Path, net: nn.Module, model: str) -> dict[str, Tensor]:
    """The safetensors weights, which must be exactly ``net``'s tensors: names, shapes and dtypes. The
    header is checked before any tensor is read, so a forged size allocates nothing."""
    expected = net.state_dict()
    try:
        with safe_open(str(path), framework="pt") as f:
            declared = {key: f.get_slice(key) for key in f.keys()}
            missing, unexpected = sorted(set(expected) - set(declared)), sorted(set(declared) - set(expected))
            if missing or unexpected:
                raise ConvzooError(f"{path} does not fit {model}: missing {missing[:3]}, unexpected {unexpected[:3]}")
            for key, tensor in expected.items():
                shape, dtype = tuple(declared[key].get_shape()), declared[key].get_dtype()
                if shape != tuple(tensor.shape) or _SAFETENSORS_DTYPES.get(dtype) != tensor.dtype:
                    raise ConvzooError(f"{path}: {key} has shape {shape} {_SAFETENSORS_DTYPES.get(dtype, dtype)}, "
                                       f"{model} needs {tuple(tensor.shape)} {tensor.dtype}")
        return load_file(path)
    except (OSError, SafetensorError, ValueError) as err:
        if isinstance(err, ConvzooError):
            raise
        raise ConvzooError(f"cannot read {path}: {err}") from None


_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                       "U8": torch.uint8, "BOOL": torch.bool}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """``RUN_DIR/lock`` holding the owner's pid, locked with ``flock`` while the run lives: a second run on
    the same directory is refused; a lock left by a dead process is taken over. The kernel drops the
    ``flock`` when its owner dies, however it dies, so two processes that find the same stale lock cannot
    both take it over. (A lock naming a live process other than this one, written without ``flock``, is
    honoured too.)"""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / "lock"
        self.fd: int | None = None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def acquire(self) -> None:
        for _ in range(5):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._in_use(self._owner()) from None
            try:  # the file locked must still be the one named `lock` (an owner that finishes unlinks it)
                current = os.stat(self.path)
            except FileNotFoundError:
                current = None
            if current is None or not os.path.samestat(os.fstat(fd), current):
                os.close(fd)
                continue
            owner = self._owner()
            if owner is not None and owner != os.getpid() and _alive(owner):
                os.close(fd)
                raise self._in_use(owner)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
            self.fd = fd
            return
        raise RunError(f"could not take the lock {self.path}; another process keeps taking it")

    def _in_use(self, owner: int | None) -> RunError:
        who = f"process {owner}" if owner is not None else "another process"
        return RunError(f"run directory {self.path.parent} is in use by {who}; wait for it to finish or choose "
                        f"another directory")

    def _owner(self) -> int | None:
        try:
            text = self.path.read_text()
        except OSError:
            return None
        first = text.split()[:1]
        return int(first[0]) if first and first[0].isdigit() else None

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            if os.path.samestat(os.fstat(self.fd), os.stat(self.path)):
                self.path.unlink()  # while still locked: a waiting process then finds no file, or a new one
        except FileNotFoundError:
            pass
        finally:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
