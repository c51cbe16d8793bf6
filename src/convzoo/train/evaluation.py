"""Evaluating a model on a split: accuracy, loss, confusion matrix and top-5 accuracy, with optional flip
test-time augmentation. Shared by the training loop (every epoch's validation and test figures) and by
``convzoo.evaluate`` / ``Checkpoint.predict``, so both measure the same way."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from convzoo.errors import ConvzooError
from convzoo.train.config import TTAS
from convzoo.train.pipeline import Batches

__all__ = ["EvalResult", "evaluate_batches", "tta_logits"]


@dataclass
class EvalResult:
    """Accuracy and confusion matrix (true class by row) of a model on one split."""

    accuracy: float
    loss: float
    confusion: Tensor  # K x K, int64
    top5: float | None  # when there are more than 5 classes
    count: int

    @property
    def per_class(self) -> Tensor:
        return self.confusion.diag().double() / self.confusion.sum(dim=1).clamp(min=1).double()


def tta_logits(forward: Callable[[Tensor], Tensor], X: Tensor, tta: str = "none") -> Tensor:
    """The logits of a batch; ``tta="flip"`` averages them with those of its horizontal mirror image."""
    if tta not in TTAS:
        raise ConvzooError(f"tta must be one of {', '.join(TTAS)}, got {tta!r}")
    logits = forward(X).float()  # B x K
    if tta == "flip":
        logits = (logits + forward(X.flip(3)).float()) / 2
    return logits


@torch.no_grad()
def evaluate_batches(forward: Callable[[Tensor], Tensor], net: nn.Module, batches: Batches, num_classes: int,
                     amp: bool = False, tta: str = "none") -> EvalResult:
    """Accuracy, mean loss, confusion matrix and top-5 accuracy over every batch, in evaluation mode.

    ``tta="flip"`` averages the logits of each image and of its horizontal mirror (test-time augmentation).
    """
    net.eval()
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=batches.device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=batches.device)
    top5 = torch.zeros((), dtype=torch.int64, device=batches.device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if amp else nullcontext()
    count = 0
    for _, X, y in batches.epoch():
        with autocast:
            logits = tta_logits(forward, X, tta)  # B x K
        loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").double()
        confusion += torch.bincount(y * num_classes + logits.argmax(dim=1), minlength=num_classes**2)
        if num_classes > 5:
            top5 += (logits.topk(5, dim=1).indices == y[:, None]).any(dim=1).sum()
        count += len(y)
    confusion = confusion.view(num_classes, num_classes).cpu()
    return EvalResult(
        accuracy=float(confusion.diag().sum()) / max(count, 1),
        loss=float(loss_sum) / max(count, 1),
        confusion=confusion,
        top5=float(top5) / max(count, 1) if num_classes > 5 else None,
        count=count,
    )
