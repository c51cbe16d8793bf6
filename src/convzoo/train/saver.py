"""The checkpoint saver: everything a run persists as it trains (timm's ``CheckpointSaver``).

``CheckpointSaver(run_dir, sidecar, title)`` owns ``RUN_DIR/checkpoints`` and the files rewritten every
epoch:
- ``save``: one checkpoint (weights, sidecar, ``state.pt``) written atomically by
  ``checkpoint.write_checkpoint``, then ``last`` pointed at it;
- ``end_epoch``: that, plus ``best`` when the epoch set a new best validation accuracy, pruning what no
  pointer names, and ``metrics.csv`` / ``metrics.jsonl`` / ``curves.png`` rewritten from the history (and,
  for a run with ``tensorboard = true``, the epoch's TensorBoard events in ``tensorboard/``);
- ``resume``: recovery after a crash (a checkpoint left as ``.old-NAME-PID`` by a kill in a re-save is
  renamed back, ``last`` is pointed at the furthest complete one, ``best`` pointed again if a kill came
  between the checkpoint and the pointer, the metrics files and curves rewritten if a kill came between
  the checkpoint and them), then the checkpoint's weights and ``TrainingState``, validated.

The loop computes (a ``TrainingState``, a metrics row); the saver persists. Neither reaches into the
other's private types.

``data_identity`` is what a run records of its data in every sidecar (the content digest and size of each
split it trained, validated and tested on, and how the validation split was carved), and
``data_changes`` what differs from it: a resume and ``convzoo eval`` refuse data not the run's own, found
by content, wherever the files now are.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from torch import Tensor

from convzoo.data import Split
from convzoo.data.folders import FileSplit, file_digest
from convzoo.errors import ConvzooError
from convzoo.train.checkpoint import checkpoint_name, point, prune, read_checkpoint, restore, write_checkpoint
from convzoo.train.plots import plot_curves
from convzoo.train.report import write_metrics
from convzoo.train.state import TrainingState
from convzoo.train.tensorboard import TensorBoardLog, require_tensorboard

__all__ = ["CheckpointSaver", "data_changes", "data_identity", "split_identity"]


def split_identity(split: Split | FileSplit) -> dict[str, Any]:
    """``{"images": N, "digest": SHA-256}`` of a split's pixels and labels: its own ``digest`` when the data
    set computed one (a whole split, cached with it), else hashed now in the same way (a carved subset). A
    split on disk (the streaming path) is identified by its files' bytes instead (``file_digest``)."""
    digest = split.digest
    if not digest and isinstance(split, FileSplit):
        if split.hashes is None:
            raise ValueError("a FileSplit is identified by its files' hashes: inspect_files it first")
        digest = file_digest(split.hashes, split.labels)
    if not digest:
        assert isinstance(split, Split)
        h = hashlib.sha256()
        h.update(split.images.contiguous().numpy().data)  # uint8 N x C x H x W
        h.update(split.labels.contiguous().numpy().data)  # int64 N
        digest = h.hexdigest()
    return {"images": len(split), "digest": digest}


def data_identity(dataset: str, train: Split | FileSplit, val: Split | FileSplit | None, test: Split | FileSplit | None,
                  *, val_split: float,
                  val_seed: int) -> dict[str, Any]:
    """What a run records of its data: the data set's name, how its validation split was carved
    (``val_split`` of the training images, seed ``val_seed``), and the identity of each split it uses
    (``train`` as trained on, after the carve-out and any limit; ``val``; ``test``), absent ones left out."""
    splits = {name: split_identity(s) for name, s in (("train", train), ("val", val), ("test", test))
              if s is not None}
    return {"dataset": dataset, "val_split": val_split, "val_seed": val_seed, "splits": splits}


def data_changes(recorded: Mapping[str, Any], current: Mapping[str, Any],
                 names: tuple[str, ...] = ("train", "val", "test")) -> list[str]:
    """One phrase per split among ``names`` whose identity in ``current`` differs from ``recorded`` (both
    made by :func:`data_identity`), e.g. ``"val split: 10 images, 9 when the run was trained"``."""
    then, now = recorded.get("splits"), current.get("splits", {})
    if not isinstance(then, dict) or not all(
            isinstance(s, dict) and isinstance(s.get("images"), int) and isinstance(s.get("digest"), str)
            for s in then.values()):  # a forged or damaged sidecar: nothing to compare with
        raise ConvzooError("the checkpoint's record of its data ('data' in model.json) is damaged, so the data "
                           "cannot be checked; use an intact copy of the run")
    changes = []
    for name in names:
        a, b = then.get(name), now.get(name)
        if a == b:
            continue
        if a is None or b is None:
            changes.append(f"{name} split: {_count(b)} now, {_count(a)} when the run was trained")
        elif a["images"] != b["images"]:
            changes.append(f"{name} split: {b['images']:,} images, {a['images']:,} when the run was trained")
        else:
            changes.append(f"{name} split: other images (as many, {b['images']:,}, but different content)")
    return changes


def _count(identity: Mapping[str, Any] | None) -> str:
    return "none" if identity is None else f"{identity['images']:,} images"


class CheckpointSaver:
    """Persists one run in ``run_dir``. ``sidecar`` holds the fields every checkpoint's ``model.json``
    shares (format, model and its arguments, data set, classes, input, config); each save adds the epoch,
    step, metrics and time. ``title`` heads ``curves.png``. A sidecar whose config has ``tensorboard`` set
    also gets TensorBoard events; a missing ``tensorboard`` package is an error here, before any file exists."""

    def __init__(self, run_dir: Path, sidecar: Mapping[str, Any], title: str = "") -> None:
        self.run_dir = run_dir
        self.root = run_dir / "checkpoints"
        self.sidecar = dict(sidecar)
        self.title = title
        self.resumed_sidecar: dict[str, Any] | None = None  # the model.json ``resume`` continued from
        self.tensorboard: TensorBoardLog | None = None
        if self.sidecar.get("config", {}).get("tensorboard"):
            require_tensorboard()
            self.tensorboard = TensorBoardLog(run_dir / "tensorboard")

    def save(self, weights: Mapping[str, Tensor], state: TrainingState,
             metrics: dict[str, Any] | None = None) -> Path:
        """Write the checkpoint of ``state`` (a ``TrainingState.snapshot``) and point ``last`` at it; its path.

        It is named after where the run stands: ``epoch-0002`` after epoch 2, ``epoch-0003-step-0005``
        five steps into epoch 3.
        """
        name = checkpoint_name(state.epoch + (1 if state.step else 0), state.step)
        meta = {**self.sidecar, "epoch": state.epoch, "step": state.step, "metrics": metrics,
                "saved": datetime.now().isoformat(timespec="seconds")}
        path = write_checkpoint(self.root, name, weights, meta, state.to_dict())
        point(self.root, "last", name)
        return path

    def end_epoch(self, weights: Mapping[str, Tensor], state: TrainingState) -> Path:
        """Persist the end of epoch ``state.epoch``: its checkpoint (``best`` too if this epoch is the best
        so far), pruning, the metrics files and the curves; the checkpoint's path."""
        path = self.save(weights, state, state.history[-1])
        if state.best.epoch == state.epoch:  # a new best this epoch
            point(self.root, "best", path.name)
        prune(self.root)
        self.write_metrics(state.history)
        return path

    def write_metrics(self, history: list[dict[str, Any]]) -> None:
        """Rewrite ``metrics.csv``, ``metrics.jsonl`` and ``curves.png`` from the whole history; write the
        TensorBoard events of the epochs not written yet."""
        write_metrics(self.run_dir, history)
        plot_curves(history, self.run_dir / "curves.png", title=self.title)
        if self.tensorboard is not None:
            self.tensorboard.write(history)

    def resume(self) -> tuple[dict[str, Tensor], TrainingState] | None:
        """Make the run resumable after whatever ended it, and return the weights and training state to
        continue from (None when it died before its first checkpoint). Weights, sidecar and state are
        validated against the model the sidecar describes."""
        folder = restore(self.root)
        if folder is None:
            return None
        weights, self.resumed_sidecar, state = read_checkpoint(folder)
        # a kill after the checkpoint but before the metrics files leaves them a row short: rewrite them
        if state.history:
            self.write_metrics(state.history)
        # a kill between writing a checkpoint and moving the pointers leaves `best` behind: set it again
        if state.best.epoch is not None and (self.root / checkpoint_name(state.best.epoch)).is_dir():
            point(self.root, "best", checkpoint_name(state.best.epoch))
        return weights, state

    def read_weights(self, pointer: str = "best") -> dict[str, Tensor]:
        """The validated weights of the checkpoint ``pointer`` (``best`` or ``last``) names."""
        weights, _, _ = read_checkpoint(self.root / pointer, state=False)
        return weights
