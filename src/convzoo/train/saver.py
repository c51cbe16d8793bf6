"""The checkpoint saver: everything a run persists as it trains (timm's ``CheckpointSaver``).

``CheckpointSaver(run_dir, sidecar, title)`` owns ``RUN_DIR/checkpoints`` and the files rewritten every
epoch:
- ``save``: one checkpoint (weights, sidecar, ``state.pt``) written atomically by
  ``checkpoint.write_checkpoint``, then ``last`` pointed at it;
- ``end_epoch``: that, plus ``best`` when the epoch set a new best validation accuracy, pruning what no
  pointer names, and ``metrics.csv`` / ``metrics.jsonl`` / ``curves.png`` rewritten from the history;
- ``resume``: recovery after a crash (a checkpoint left as ``.old-NAME-PID`` by a kill in a re-save is
  renamed back, ``last`` is pointed at the furthest complete one, ``best`` pointed again if a kill came
  between the checkpoint and the pointer, the metrics files and curves rewritten if a kill came between
  the checkpoint and them), then the checkpoint's weights and ``TrainingState``, validated.

The loop computes (a ``TrainingState``, a metrics row); the saver persists. Neither reaches into the
other's private types.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from torch import Tensor

from convzoo.train.checkpoint import checkpoint_name, point, prune, read_checkpoint, restore, write_checkpoint
from convzoo.train.plots import plot_curves
from convzoo.train.report import write_metrics
from convzoo.train.state import TrainingState

__all__ = ["CheckpointSaver"]


class CheckpointSaver:
    """Persists one run in ``run_dir``. ``sidecar`` holds the fields every checkpoint's ``model.json``
    shares (format, model and its arguments, data set, classes, input, config); each save adds the epoch,
    step, metrics and time. ``title`` heads ``curves.png``."""

    def __init__(self, run_dir: Path, sidecar: Mapping[str, Any], title: str = "") -> None:
        self.run_dir = run_dir
        self.root = run_dir / "checkpoints"
        self.sidecar = dict(sidecar)
        self.title = title

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
        """Rewrite ``metrics.csv``, ``metrics.jsonl`` and ``curves.png`` from the whole history."""
        write_metrics(self.run_dir, history)
        plot_curves(history, self.run_dir / "curves.png", title=self.title)

    def resume(self) -> tuple[dict[str, Tensor], TrainingState] | None:
        """Make the run resumable after whatever ended it, and return the weights and training state to
        continue from (None when it died before its first checkpoint). Weights, sidecar and state are
        validated against the model the sidecar describes."""
        folder = restore(self.root)
        if folder is None:
            return None
        weights, _, state = read_checkpoint(folder)
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
