"""The preprocessing an image goes through on its way to a model: the presets of torchvision's classification
reference recipe and timm, as ``torchvision.transforms.v2`` pipelines.

- training: ``RandomResizedCrop(S)`` then a horizontal flip (aspect ratio kept inside the crop);
- evaluation: ``Resize(round(S / crop_pct))`` of the shorter side then ``CenterCrop(S)``, ``crop_pct`` 0.875
  by default (256 -> 224), or ``resize_mode="squash"`` (both sides to S, the in-memory path's rule for data
  sets of one size such as MNIST and CIFAR-10, where it is the identity).

Each takes a PIL image or a uint8 ``C x H x W`` tensor. With ``mean`` and ``std`` given it ends with float32
normalised as the model expects; without them it stops at uint8 ``C x S x S``, for a loader whose batches are
normalised later, on the device (``train.pipeline``). Training and evaluation, ``predict``, the hub and
:func:`convzoo.transforms_for` all build their transforms here, so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torchvision.transforms import v2

__all__ = ["DEFAULT_CROP_PCT", "INTERPOLATIONS", "eval_transform", "interpolation_mode", "train_transform"]

DEFAULT_CROP_PCT = 0.875
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
ResizeMode = Literal["crop", "squash"]


def interpolation_mode(name: str) -> v2.InterpolationMode:
    """``"bilinear"`` -> ``InterpolationMode.BILINEAR``; an unknown name is a ``ValueError`` naming the choices."""
    if name not in INTERPOLATIONS:
        raise ValueError(f"interpolation {name!r} is not one of {', '.join(INTERPOLATIONS)}")
    return v2.InterpolationMode(name)


def _size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"image size must be a positive whole number of pixels, got {size!r}")
    return size


def _finish(steps: list[v2.Transform], mean: Sequence[float] | None, std: Sequence[float] | None) -> v2.Compose:
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std (a normalised float output) or neither (uint8 output)")
    if mean is not None and std is not None:
        if len(mean) != len(std):
            raise ValueError(f"mean has {len(mean)} channels and std {len(std)}; they must match")
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(steps)


def train_transform(size: int, *, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                    scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
                    hflip: float = 0.5, interpolation: str = "bilinear") -> v2.Compose:
    """Training's preset: a random crop of ``scale`` of the area and ``ratio`` of aspect, resized to ``size``
    square, flipped with probability ``hflip``. Random draws come from torch's global generator, so a loader
    that seeds it per sample (``torch.manual_seed``) makes every draw a function of that seed."""
    steps: list[v2.Transform] = [
        v2.ToImage(),
        v2.RandomResizedCrop(_size(size), scale=scale, ratio=ratio, interpolation=interpolation_mode(interpolation),
                             antialias=True),
    ]
    if hflip > 0:
        steps.append(v2.RandomHorizontalFlip(hflip))
    return _finish(steps, mean, std)


def eval_transform(size: int, *, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                   crop_pct: float = DEFAULT_CROP_PCT, interpolation: str = "bilinear",
                   resize_mode: ResizeMode = "crop") -> v2.Compose:
    """Evaluation's preset: the shorter side resized to ``round(size / crop_pct)`` and the centre ``size``
    square cut out (aspect ratio kept), or with ``resize_mode="squash"`` both sides resized to ``size``."""
    size = _size(size)
    mode = interpolation_mode(interpolation)
    steps: list[v2.Transform] = [v2.ToImage()]
    if resize_mode == "crop":
        if not 0 < crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
        steps += [v2.Resize(round(size / crop_pct), interpolation=mode, antialias=True), v2.CenterCrop(size)]
    elif resize_mode == "squash":
        steps.append(v2.Resize((size, size), interpolation=mode, antialias=True))
    else:
        raise ValueError(f"resize_mode {resize_mode!r} is not 'crop' or 'squash'")
    return _finish(steps, mean, std)
