"""Using a trained model: ``load(checkpoint)``, ``evaluate(run_or_checkpoint)``, ``Checkpoint.predict``."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from convzoo.data.images import MAX_PIXELS, decode_image
from convzoo.data.presets import DEFAULT_CROP_PCT, eval_transform
from convzoo.errors import ConvzooError
from convzoo.models import ConvNet
from convzoo.train.checkpoint import find_checkpoint, model_from_sidecar, read_checkpoint
from convzoo.train.config import TTAS
from convzoo.train.env import pick_device
from convzoo.train.evaluation import EvalResult, evaluate_batches, tta_logits
from convzoo.train.pipeline import Preprocess

__all__ = ["ACCEPTED_IMAGES", "Checkpoint", "EvalReport", "as_image_batches", "evaluate", "load", "load_pretrained",
           "read_image"]

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
    def transform(self) -> Callable[[Tensor], Tensor]:
        """What :meth:`predict` does to an image, a ``data.presets`` eval pipeline: pretrained weights' own
        (``transforms_for(model)``); a run's, as its evaluation did: a streamed run's (``"resize": "crop"`` in
        its sidecar) the shorter side resized to ``round(S / crop_pct)`` and the centre cut out, an in-memory
        run's whole image resized to its size."""
        if self.model.pretrained_cfg is not None:
            return self.model.pretrained_cfg.transforms()
        spec = self.meta["input"]
        channels = spec["channels"]
        mean, std = spec.get("mean") or (0.0,) * channels, spec.get("std") or (1.0,) * channels
        height, width = spec["size"][0], spec["size"][1]
        if spec.get("resize") == "crop" and height == width:
            return eval_transform(height, mean=mean, std=std, crop_pct=float(spec.get("crop_pct", DEFAULT_CROP_PCT)),
                                  resize_mode="crop", channels=channels)
        return eval_transform((height, width), mean=mean, std=std, resize_mode="squash", channels=channels)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def predict(self, images: ImageInput | Sequence[ImageInput], topk: int = 5) -> list[list[tuple[str, float]]]:
        """Top-k (class, probability) for each image, best first, one list per image in the order given.

        ``images`` is one image or a list of them, each: a path (``str`` or ``Path``) of an image file; a PIL
        image; a uint8 numpy array ``H x W`` or ``H x W x C``; a tensor ``C x H x W`` or a batch
        ``B x C x H x W``, uint8 on the 0..255 scale or floating point on the [0, 1] scale (as torchvision's
        ``ToTensor`` gives). Files and PIL images go through the decoder training read image folders with;
        C = 1 or 3 is converted to the model's channels. Each image then goes through :attr:`transform`, the
        ``data.presets`` pipeline of the weights (``transforms_for``) or of the run. Anything else is one
        :class:`ConvzooError` naming what was given and what is accepted.

        A run trained with ``tta = "flip"`` averages the logits of each image and its mirror image, as its
        evaluation did (``"flip-translate"``: also its one-pixel shifts, see ``tta_logits``).
        """
        batch = as_image_batches(images, self.preprocess.in_channels)  # each 1 x C x H x W, uint8 or on [0, 1]
        transform = self.transform
        k = min(topk, len(self.classes))
        tta = self.meta.get("config", {}).get("tta")
        tta = tta if tta in TTAS else "none"
        results = []
        for X in batch:
            probs = tta_logits(self.model, transform(X.to(self.device)), tta).softmax(dim=1)[0]
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


def load_pretrained(model: str, dataset: bool | str = True, device: str = "cpu") -> Checkpoint:
    """A zoo model with its pretrained weights (``create_model(model, pretrained=dataset)``: ``True`` its
    default data set's), as a :class:`Checkpoint` that predicts with the classes, input size and
    normalisation of those weights; no run directory needed."""
    from convzoo.models import create_model
    from convzoo.models.weights import weights_for

    info = weights_for(model, dataset)
    net = create_model(model, pretrained=info.dataset)
    meta = {"model": model, "dataset": info.dataset, "classes": list(info.classes), "config": {},
            "input": {"channels": info.in_channels, "size": list(info.input_size[1:]),
                      "mean": None if info.mean is None else list(info.mean),
                      "std": None if info.std is None else list(info.std)}}
    return Checkpoint(info.path, net.to(pick_device(device)).eval(), meta)


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


ImageInput = Any  # str | os.PathLike | PIL.Image.Image | numpy.ndarray | Tensor: what predict takes per image

ACCEPTED_IMAGES = ("a path (str or Path) or a list of paths, a PIL image, a uint8 numpy array H x W or H x W x C, "
                   "or a tensor C x H x W or B x C x H x W (uint8 0..255, or float on [0, 1] as ToTensor gives), "
                   "or a list of these")


def _describe(item: object) -> str:
    """What was given, for the error: its type, and the dtype and shape of an array or a tensor."""
    shape = getattr(item, "shape", None)
    dtype = getattr(item, "dtype", None)
    if shape is not None and dtype is not None:
        kind = "tensor" if isinstance(item, Tensor) else type(item).__name__
        return f"a {str(dtype).removeprefix('torch.')} {kind} of shape {tuple(shape)}"
    if type(item).__module__ == "builtins":
        return f"{type(item).__name__} {item!r:.60}"
    return f"a {type(item).__module__}.{type(item).__qualname__} object"


def _refused(item: object, why: str = "") -> ConvzooError:
    return ConvzooError(f"predict: cannot read {_describe(item)}{f' ({why})' if why else ''}; "
                        f"it takes {ACCEPTED_IMAGES}")


def _pil_to_tensor(image: Any) -> Tensor:
    """A PIL image as uint8 ``C x H x W`` by the decoder's own rules: written losslessly as TIFF (with its EXIF
    orientation and transparency) and decoded by :func:`decode_image`, so it gives what the file would."""
    import io

    if "transparency" in image.info:  # a transparency key is alpha to the decoder; TIFF keeps no key
        image = image.convert("LA" if image.mode in ("1", "L") else "RGBA")
    buffer = io.BytesIO()
    try:
        image.save(buffer, format="TIFF", exif=image.getexif())
    except (OSError, ValueError):  # a mode TIFF cannot hold (HSV): the decoder's rule for it is convert("RGB")
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="TIFF", exif=image.getexif())
    return decode_image(buffer.getvalue(), name="<PIL image>", max_pixels=MAX_PIXELS)


def _array_to_tensor(array: Any, channels: int) -> Tensor:
    """A uint8 numpy array ``H x W`` or ``H x W x C`` (C = 1, 3 or the model's ``channels``) as uint8
    ``C x H x W``; anything else is refused naming the array's own shape, with what to pass instead."""
    import numpy as np

    if array.dtype != np.uint8:
        raise _refused(array, "numpy arrays must be uint8 on the 0..255 scale; for floats on [0, 1] pass "
                              "torch.from_numpy(a).permute(2, 0, 1)")
    stack = ("a stack of images N x H x W (x C) is many images: pass list(a), or a tensor B x C x H x W such as "
             "torch.from_numpy(a)[:, None] for N x H x W")
    if array.ndim == 2:
        return torch.from_numpy(np.ascontiguousarray(array))[None]  # 1 x H x W
    if array.ndim == 3:
        if array.shape[-1] not in {1, 3, channels}:  # N x H x W or C x H x W: not channels last
            first = ("; for one image C x H x W, move its channels last: a.transpose(1, 2, 0)"
                     if array.shape[0] in {1, 3, channels} else "")
            raise _refused(array, f"a numpy array is one image, H x W or H x W x C with C = 1 or 3, and its last "
                                  f"axis is {array.shape[-1]}; {stack}{first}")
        return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)  # C x H x W
    raise _refused(array, f"a numpy array is one image, H x W or H x W x C; {stack}")


def _tensor_to_batches(X: Tensor, channels: int) -> list[Tensor]:
    """A tensor ``C x H x W`` or ``B x C x H x W`` as 1 x C x H x W images: uint8, or float32 on [0, 1]."""
    if X.dim() == 3:
        X = X[None]
    if X.dim() != 4:
        raise _refused(X, "a tensor is C x H x W or B x C x H x W")
    if X.shape[1] not in {1, 3, channels}:
        hint = ": channels first, e.g. X.permute(2, 0, 1)" if X.shape[-1] in {1, 3, channels} else ""
        raise _refused(X, f"{X.shape[1]} channels; the model reads 1 or 3 (converted) or {channels}{hint}")
    if X.dtype == torch.uint8:
        pass
    elif X.is_floating_point():
        if X.numel() and not bool(((X >= 0) & (X <= 1)).all()):  # NaN fails both comparisons
            low, high = float(X.nan_to_num(nan=-1.0).min()), float(X.nan_to_num(nan=2.0).max())
            raise _refused(X, f"float values must lie in [0, 1], these span {low:g}..{high:g}; divide 0..255 "
                              "values by 255 or pass a uint8 tensor")
        X = X.to(torch.float32)  # on [0, 1], as the presets read floats
    else:
        raise _refused(X, "tensors are uint8 (0..255) or floating point ([0, 1])")
    height, width = X.shape[-2:]
    if min(height, width) < MIN_SIDE:
        raise ConvzooError(f"predict: an image of {width}x{height} pixels is too small to classify "
                           f"(at least {MIN_SIDE}x{MIN_SIDE})")
    return [X[i : i + 1] for i in range(len(X))]


def as_image_batches(images: ImageInput | Sequence[ImageInput], channels: int) -> list[Tensor]:
    """What :meth:`Checkpoint.predict` was given, as ``1 x C x H x W`` tensors: uint8 on the 0..255 scale, or
    float32 on [0, 1] from a float input; ``channels`` is the model's. Raises one :class:`ConvzooError` otherwise."""
    from PIL import Image

    def kind(item: object) -> str:
        if isinstance(item, str | os.PathLike):
            return "path"
        if isinstance(item, Image.Image):
            return "pil"
        if isinstance(item, Tensor):
            return "tensor"
        if type(item).__module__ == "numpy" and hasattr(item, "ndim"):
            return "array"
        raise _refused(item)

    def one(item: object, what: str) -> list[Tensor]:
        if what == "path":
            return [read_image(item)[None]]  # type: ignore[arg-type]
        if what == "pil":
            return _tensor_to_batches(_pil_to_tensor(item), channels)
        if what == "array":
            return _tensor_to_batches(_array_to_tensor(item, channels), channels)
        return _tensor_to_batches(item, channels)  # type: ignore[arg-type]

    items = list(images) if isinstance(images, list | tuple) else [images]
    kinds = [kind(item) for item in items]  # every item's type checked before any file is read
    return [X for item, what in zip(items, kinds, strict=True) for X in one(item, what)]


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


def evaluate(checkpoint: str | os.PathLike[str], split: str | None = None, *, data_dir: str | None = None,
             device: str = "auto", batch_size: int = 1024, tta: str | None = None,
             dataset: str | None = None) -> EvalReport:
    """Evaluate a run's selected checkpoint (or a given checkpoint) on its data set's test or validation split
    (``split``, default test), or with ``dataset="imagefolder:DIR"`` on any labelled folder whose classes are
    among the run's (its ``split`` of a train/ + val/ or test/ layout, default test, else val; or the whole
    folder of class folders), preprocessed as the run's evaluation was (train/eval_data.py).

    ``tta`` (none, flip or flip-translate) defaults to the run's own ``tta`` setting. The run's own split must
    be the one the run recorded (``data_identity`` in its sidecar, by content): a ``DataError`` names what
    changed; a run saved before runs recorded it is evaluated unchecked, with a ``UserWarning`` saying so.
    """
    from convzoo.train.eval_data import eval_batches

    if split not in (None, "test", "val"):
        raise ConvzooError(f"--split must be test or val, got {split!r}")
    if tta is not None and tta not in TTAS:  # before loading anything
        raise ConvzooError(f"--tta must be one of {', '.join(TTAS)}, got {tta!r}")
    ckpt = load(checkpoint, device=str(pick_device(device)))
    meta = ckpt.meta
    batches, name = eval_batches(ckpt.path, meta, split, dataset=dataset, data_dir=data_dir, device=ckpt.device,
                                 batch_size=batch_size, preprocess=ckpt.preprocess)
    result = evaluate_batches(ckpt.model, ckpt.model, batches, len(ckpt.classes),
                              tta=tta or meta["config"].get("tta", "none"))
    return EvalReport(ckpt.path, name, ckpt.classes, result)
