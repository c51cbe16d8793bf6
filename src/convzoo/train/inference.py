"""Using a trained model: ``load(checkpoint)``, ``evaluate(run_or_checkpoint)``, ``Checkpoint.predict``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from convzoo.data import load_dataset, split_train_val
from convzoo.data.images import MAX_PIXELS, decode_image
from convzoo.errors import ConvzooError
from convzoo.models import ConvNet
from convzoo.train.checkpoint import find_checkpoint, model_from_sidecar, read_checkpoint
from convzoo.train.config import TTAS
from convzoo.train.env import pick_device
from convzoo.train.evaluation import EvalResult, evaluate_batches, tta_logits
from convzoo.train.pipeline import Batches, Preprocess

__all__ = ["Checkpoint", "EvalReport", "evaluate", "load", "read_image"]

MIN_SIDE = 4  # smaller images cannot show anything worth classifying


@dataclass
class Checkpoint:
    """A trained model and everything needed to use it, as saved beside its weights."""

    path: Path
    model: ConvNet  # in evaluation mode
    meta: dict[str, Any] = field(repr=False)

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def preprocess(self) -> Preprocess:
        spec = self.meta["input"]
        mean, std = spec.get("mean"), spec.get("std")
        return Preprocess(spec["channels"], tuple(spec["size"]), tuple(mean) if mean else None,
                          tuple(std) if std else None)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def predict(self, images: Sequence[str | os.PathLike[str]] | Tensor,
                topk: int = 5) -> list[list[tuple[str, float]]]:
        """Top-k (class, probability) for each image: paths of image files, or a uint8 ``N x C x H x W`` batch.

        A run trained with ``tta = "flip"`` averages the logits of each image and its mirror image, as its
        evaluation did.
        """
        if isinstance(images, Tensor):
            batch = [images[i : i + 1] for i in range(len(images))]
        else:
            batch = [read_image(p)[None] for p in images]
        k = min(topk, len(self.classes))
        tta = "flip" if self.meta.get("config", {}).get("tta") == "flip" else "none"
        results = []
        for X in batch:
            probs = tta_logits(self.model, self.preprocess(X.to(self.device)), tta).softmax(dim=1)[0]
            values, indices = probs.topk(k)
            results.append([(self.classes[int(i)], float(v)) for v, i in zip(values, indices, strict=True)])
        return results


def load(checkpoint: str | os.PathLike[str], device: str = "cpu") -> Checkpoint:
    """Load a checkpoint folder (or a run directory: its best checkpoint, else its last) for use.

    Reads the safetensors weights and the JSON sidecar only (nothing that can run code); the weights
    must fit the model the sidecar names, tensor by tensor, which is checked on the meta device before the
    model is built (a forged sidecar cannot make it allocate more than the weights file holds).
    """
    folder = find_checkpoint(checkpoint)
    weights, meta, _ = read_checkpoint(folder, state=False)
    net = model_from_sidecar(meta, folder)
    net.load_state_dict(weights)
    return Checkpoint(folder, net.to(pick_device(device)).eval(), meta)


def read_image(path: str | os.PathLike[str]) -> Tensor:
    """An image file as uint8 ``C x H x W`` (C = 1 or 3), decoded by :func:`convzoo.data.images.decode_image`,
    the decoder training reads image folders with, so a model is given the pixels it was trained on (its
    module docstring lists the rule for each Pillow mode). Images declaring more than ``MAX_PIXELS`` pixels
    are refused before decoding, images smaller than ``MIN_SIDE`` on a side after it."""
    X = decode_image(path, max_pixels=MAX_PIXELS)  # C x H x W
    height, width = X.shape[-2:]
    if min(width, height) < MIN_SIDE:
        raise ConvzooError(f"{path} is {width}x{height} pixels: too small to classify "
                           f"(at least {MIN_SIDE}x{MIN_SIDE})")
    return X


@dataclass
class EvalReport:
    """What ``convzoo eval`` prints: accuracy, top-5, per-class accuracy and the confusion matrix."""

    checkpoint: Path
    split: str
    classes: list[str]
    result: EvalResult

    def __str__(self) -> str:
        r = self.result
        lines = [f"checkpoint {self.checkpoint}", f"{self.split} split: {r.count:,} images",
                 f"accuracy {r.accuracy:.4f}"]
        if r.top5 is not None:
            lines.append(f"top-5 accuracy {r.top5:.4f}")
        from convzoo.utils.table import format_row

        width = max(len(c) for c in self.classes)  # the class column: as wide as the names, not "class"
        lines.append("")
        lines.append(format_row(("class", "accuracy", "images"), (width, 8, 6), right=(1, 2)))
        for name, acc, n in zip(self.classes, r.per_class.tolist(), r.confusion.sum(dim=1).tolist(), strict=True):
            lines.append(format_row((name, f"{acc:.4f}", str(n)), (width, 8, 6), right=(1, 2)))
        lines.append("")
        lines.append("confusion matrix (true class by row, predicted by column):")
        k = len(self.classes)
        cell = max(5, len(str(int(r.confusion.max()))) + 1)  # each count right-aligned, one space at least
        widths, counts = (width, *[cell] * k), range(1, k + 1)
        lines.append(format_row(("", *map(str, range(k))), widths, right=counts, sep=""))
        for i, name in enumerate(self.classes):
            row = (name, *(str(int(v)) for v in r.confusion[i].tolist()))
            lines.append(format_row(row, widths, right=counts, sep=""))
        return "\n".join(lines)


def evaluate(checkpoint: str | os.PathLike[str], split: str = "test", *, data_dir: str | None = None,
             device: str = "auto", batch_size: int = 1024, tta: str | None = None) -> EvalReport:
    """Evaluate a run's selected checkpoint (or a given checkpoint) on its data set's test or validation split.

    ``tta`` (none or flip) defaults to the run's own ``tta`` setting.
    """
    if split not in ("test", "val"):
        raise ConvzooError(f"--split must be test or val, got {split!r}")
    if tta is not None and tta not in TTAS:  # before loading anything
        raise ConvzooError(f"--tta must be {' or '.join(TTAS)}, got {tta!r}")
    ckpt = load(checkpoint, device=str(pick_device(device)))
    meta = ckpt.meta
    if data_dir is None:  # where the run found its data
        data_dir = meta["config"].get("data_dir")
    data = load_dataset(meta["dataset"], data_dir=data_dir)
    if split == "test":
        if data.test is None:
            raise ConvzooError(f"{data.name} has no test split here; evaluate on the validation split: --split val")
        chosen = data.test
    else:
        fraction = meta["config"].get("val_split", 0.0)
        if not fraction:
            raise ConvzooError("this run held out no validation split (--val-split); use --split test")
        chosen = split_train_val(data.train, fraction, meta["config"].get("val_seed", 0))[1]
    batches = Batches(chosen, batch_size, device=ckpt.device, preprocess=ckpt.preprocess)
    result = evaluate_batches(ckpt.model, ckpt.model, batches, len(ckpt.classes),
                              tta=tta or meta["config"].get("tta", "none"))
    return EvalReport(ckpt.path, split, ckpt.classes, result)
