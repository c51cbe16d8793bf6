"""Evaluating a model on a split: accuracy, loss, confusion matrix and top-5 accuracy, with optional flip
test-time augmentation. Shared by the training loop (every epoch's validation and test figures) and by
``convzoo.evaluate`` / ``Checkpoint.predict``, so both measure the same way."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convzoo.errors import ConvzooError
from convzoo.train.config import TTAS
from convzoo.train.distributed import SINGLE, Dist
from convzoo.train.loader import StreamBatches
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
    """The logits of a batch; ``tta="flip"`` averages them with those of its horizontal mirror image;
    ``tta="flip-translate"`` takes half of that and half the mean over the batch shifted by one pixel
    up-left and down-right (reflect-padded), each with its mirror image (airbench's test-time augmentation:
    six views, the unshifted pair weighted 1/4 each, the four shifted views 1/8 each)."""
    if tta not in TTAS:
        raise ConvzooError(f"tta must be one of {', '.join(TTAS)}, got {tta!r}")

    def with_mirror(X: Tensor) -> Tensor:  # B x K
        return (forward(X).float() + forward(X.flip(3)).float()) / 2

    if tta == "none":
        return forward(X).float()  # B x K
    logits = with_mirror(X)
    if tta == "flip-translate":
        H, W = X.shape[-2:]
        padded = F.pad(X, (1, 1, 1, 1), mode="reflect")  # B x C x H+2 x W+2
        shifted = (with_mirror(padded[..., :H, :W]) + with_mirror(padded[..., 2:, 2:])) / 2
        logits = (logits + shifted) / 2
    return logits


@torch.no_grad()
def evaluate_batches(forward: Callable[[Tensor], Tensor], net: nn.Module, batches: Batches | StreamBatches,
                     num_classes: int,
                     amp: bool = False, tta: str = "none", dist: Dist = SINGLE) -> EvalResult:
    """Accuracy, mean loss, confusion matrix and top-5 accuracy over every batch, in evaluation mode.

    ``tta="flip"`` averages the logits of each image and of its horizontal mirror (test-time augmentation).
    In a run of several processes each evaluates its shard (``batches.shard``) and the counts are summed
    over ``dist``: every image counted once, so the accuracy is the one-process accuracy.
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
    if dist.active:
        counts = dist.sum_(torch.cat([confusion.double(), loss_sum.view(1), top5.double().view(1),
                                      torch.tensor([float(count)], dtype=torch.float64, device=confusion.device)]))
        confusion, loss_sum = counts[:num_classes**2].round().long(), counts[num_classes**2]
        top5, count = counts[num_classes**2 + 1].round().long(), int(counts[-1].item())
    confusion = confusion.view(num_classes, num_classes).cpu()
    return EvalResult(
        accuracy=float(confusion.diag().sum()) / max(count, 1),
        loss=float(loss_sum) / max(count, 1),
        confusion=confusion,
        top5=float(top5) / max(count, 1) if num_classes > 5 else None,
        count=count,
    )
