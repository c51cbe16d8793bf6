"""A run's metrics as TensorBoard events (``convzoo train --tensorboard``), beside ``metrics.csv``.

``TensorBoardLog(RUN_DIR / "tensorboard").write(history)`` writes each epoch's metrics row as scalars at
step = the epoch, through ``torch.utils.tensorboard.SummaryWriter``: accuracy and loss per split
(``accuracy/val``, ``loss/train``, ...), the learning rate (``lr``), throughput and the epoch's time. The
saver calls it wherever it writes the metrics files, with the whole history: a process writes the rows it
has not written yet. The first write of a process (a new run, or a resumed one) starts a new events file
with ``purge_step=1`` and writes the whole history again, so TensorBoard (and ``EventAccumulator``) drop what
an earlier, interrupted process wrote: every epoch appears once, however often the run was resumed.

The writer is made on the first write (the saver touches no file when made) and closed when the log is
garbage collected (the run's end). It needs the ``tensorboard`` package: ``pip install 'convzoo[tensorboard]'``;
:func:`require_tensorboard` says so before a run starts.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convzoo.utils.extras import require_extra

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

__all__ = ["TAGS", "TensorBoardLog", "require_tensorboard"]

# metrics row key -> TensorBoard tag (the part before "/" is the section TensorBoard groups it in); a key
# not listed here is written under its own name
TAGS = {
    "train_acc": "accuracy/train", "val_acc": "accuracy/val", "test_acc": "accuracy/test",
    "train_loss": "loss/train", "val_loss": "loss/val", "test_loss": "loss/test",
    "lr": "lr",
    "step_img_s": "throughput/step_img_s", "e2e_img_s": "throughput/e2e_img_s",
    "epoch_time": "time/epoch_s",
}


def require_tensorboard() -> None:
    """Raise a ``ConvzooError`` naming the install command when TensorBoard's event writer cannot be imported."""
    require_extra("tensorboard", ("tensorboard", "torch.utils.tensorboard"), "--tensorboard")


class TensorBoardLog:
    """Writes a run's metrics rows as TensorBoard scalars in ``folder`` (module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._writer: SummaryWriter | None = None
        self._written = 0  # epochs this process has written

    def write(self, history: Sequence[dict[str, Any]]) -> None:
        """Write the rows of ``history`` (one per epoch, in order) not written by this process yet."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.folder), purge_step=1)  # drops earlier processes' epochs
            weakref.finalize(self, self._writer.close)
        for row in history[self._written:]:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, int | float) and not isinstance(value, bool):
                    self._writer.add_scalar(TAGS.get(key, key), value, global_step=row["epoch"])
        self._written = len(history)
        self._writer.flush()
