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

Two rules keep these pipelines equal to the in-memory path (``train.pipeline.Preprocess``) where it applies:

- a PIL image is read by the decoder's rules (:func:`convzoo.data.images.pil_to_tensor`: palettes, alpha,
  16-bit and EXIF orientation as for a file), not by ``v2.ToImage``'s (a palette image's indices, 4 channels
  for RGBA), so a PIL image gives what its file gives to ``convzoo train`` and ``convzoo predict``;
- ``resize_mode="squash"`` with a normalised output works in float32 from the start: channels converted,
  resized and normalised with no rounding to uint8 in between, as the in-memory path's batches are. (The crop
  mode resizes and crops uint8 first, then converts, as torchvision's reference recipe does.)

``channels`` converts 1 <-> 3 channels to the model's (:func:`convert_channels`: repetition, or ITU-R 601-2
luminance as PIL's ``convert("L")`` and the in-memory path compute it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from PIL import Image
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2

from convzoo.data.images import pil_to_tensor
from convzoo.errors import ConvzooError

__all__ = ["DEFAULT_CROP_PCT", "INTERPOLATIONS", "RESIZE_MODES", "ToChannels", "ToImage", "convert_channels",
           "eval_transform", "interpolation_mode", "train_transform"]

DEFAULT_CROP_PCT = 0.875
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
RESIZE_MODES = ("crop", "squash")
ResizeMode = Literal["crop", "squash"]
LUMINANCE = (0.299, 0.587, 0.114)  # ITU-R 601-2, PIL's convert("L")


def convert_channels(X: Tensor, channels: int) -> Tensor:
    """``... x C x H x W`` images with ``channels`` channels: gray to RGB by repetition, RGB to gray by ITU-R
    601-2 luminance (as PIL's ``convert("L")``), computed in X's float type (uint8: rounded back to uint8);
    the same count returns X itself."""
    have = X.shape[-3]
    if have == channels:
        return X
    if have == 1:
        return X.expand(*X.shape[:-3], channels, *X.shape[-2:])
    if have == 3 and channels == 1:
        dtype = X.dtype if X.is_floating_point() else torch.float32
        weights = torch.tensor(LUMINANCE, dtype=dtype, device=X.device).view(3, 1, 1)
        gray = (X.to(dtype) * weights).sum(dim=-3, keepdim=True)  # ... x 1 x H x W
        return gray if X.is_floating_point() else gray.round_().clamp_(0, 255).to(X.dtype)
    raise ConvzooError(f"cannot convert {have}-channel images to {channels} channels")


class ToImage(v2.ToImage):
    """``v2.ToImage``, except that a PIL image is read by the decoder's rules
    (:func:`convzoo.data.images.pil_to_tensor`), as its file would be."""

    def transform(self, inpt: Any, params: dict[str, Any]) -> tv_tensors.Image:
        if isinstance(inpt, Image.Image):
            return tv_tensors.Image(pil_to_tensor(inpt))  # C x H x W uint8, C = 1 or 3
        return super().transform(inpt, params)


class ToChannels(v2.Transform):
    """Images converted to ``channels`` channels by :func:`convert_channels` (1 <-> 3)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, tv_tensors.Image):
            return inpt  # (a label, a box: nothing to convert)
        return tv_tensors.wrap(convert_channels(inpt.as_subclass(Tensor), self.channels), like=inpt)

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


def interpolation_mode(name: str) -> v2.InterpolationMode:
    """``"bilinear"`` -> ``InterpolationMode.BILINEAR``; an unknown name is a ``ValueError`` naming the choices."""
    if name not in INTERPOLATIONS:
        raise ValueError(f"interpolation {name!r} is not one of {', '.join(INTERPOLATIONS)}")
    return v2.InterpolationMode(name)


def _size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"image size must be a positive whole number of pixels, got {size!r}")
    return size


def _sides(size: int | tuple[int, int]) -> tuple[int, int]:
    """``S`` -> ``(S, S)``; ``(H, W)`` checked."""
    if isinstance(size, tuple) and len(size) == 2:
        return _size(size[0]), _size(size[1])
    side = _size(size)  # type: ignore[arg-type]
    return side, side


def _check_normalisation(mean: Sequence[float] | None, std: Sequence[float] | None, channels: int | None) -> None:
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std (a normalised float output) or neither (uint8 output)")
    if mean is not None and std is not None:
        if len(mean) != len(std):
            raise ValueError(f"mean has {len(mean)} channels and std {len(std)}; they must match")
        if channels is not None and len(mean) != channels:
            raise ValueError(f"mean and std have {len(mean)} channels and the output {channels}; they must match")


def _finish(steps: list[v2.Transform], mean: Sequence[float] | None, std: Sequence[float] | None) -> v2.Compose:
    _check_normalisation(mean, std, None)
    if mean is not None and std is not None:
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(steps)


def train_transform(size: int, *, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                    scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
                    hflip: float = 0.5, interpolation: str = "bilinear") -> v2.Compose:
    """Training's preset: a random crop of ``scale`` of the area and ``ratio`` of aspect, resized to ``size``
    square, flipped with probability ``hflip``. Random draws come from torch's global generator, so a loader
    that seeds it per sample (``torch.manual_seed``) makes every draw a function of that seed."""
    steps: list[v2.Transform] = [
        ToImage(),
        v2.RandomResizedCrop(_size(size), scale=scale, ratio=ratio, interpolation=interpolation_mode(interpolation),
                             antialias=True),
    ]
    if hflip > 0:
        steps.append(v2.RandomHorizontalFlip(hflip))
    return _finish(steps, mean, std)


def eval_transform(size: int | tuple[int, int], *, mean: Sequence[float] | None = None,
                   std: Sequence[float] | None = None, crop_pct: float = DEFAULT_CROP_PCT,
                   interpolation: str = "bilinear", resize_mode: ResizeMode = "crop",
                   channels: int | None = None) -> v2.Compose:
    """Evaluation's preset: the shorter side resized to ``round(size / crop_pct)`` and the centre ``size``
    square cut out (aspect ratio kept), or with ``resize_mode="squash"`` both sides resized to ``size``
    (``S`` or ``(H, W)``; ``crop_pct`` unused). ``channels``: converted to that many channels (1 <-> 3)."""
    height, width = _sides(size)
    mode = interpolation_mode(interpolation)
    _check_normalisation(mean, std, channels)
    if resize_mode == "crop":
        if height != width:
            raise ValueError(f"the crop mode cuts a square: give one side, not {height}x{width}")
        if not 0 < crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
        resize: list[v2.Transform] = [v2.Resize(round(height / crop_pct), interpolation=mode, antialias=True),
                                      v2.CenterCrop(height)]
    elif resize_mode == "squash":
        resize = [v2.Resize((height, width), interpolation=mode, antialias=True)]
    else:
        raise ValueError(f"resize_mode {resize_mode!r} is not 'crop' or 'squash'")
    convert: list[v2.Transform] = [] if channels is None else [ToChannels(_size(channels))]
    if mean is None or std is None:  # uint8 out: converted and resized in uint8
        return v2.Compose([ToImage(), *convert, *resize])
    to_float = v2.ToDtype(torch.float32, scale=True)  # (a float input, on [0, 1], is only cast to float32)
    normalize = v2.Normalize(list(mean), list(std))
    if resize_mode == "squash":  # in float32 throughout, as the in-memory path's batches
        return v2.Compose([ToImage(), to_float, *convert, *resize, normalize])
    return v2.Compose([ToImage(), *resize, to_float, *convert, normalize])  # torchvision's reference order
