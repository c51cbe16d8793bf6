"""What a pretrained model carries: ``net.pretrained_cfg`` and :func:`transforms_for` (torchvision's
``Weights.transforms()``, timm's ``pretrained_cfg`` + ``create_transform``).

    net = convzoo.create_model("lenet_bn", pretrained=True)      # or torch.hub.load(..., pretrained=True)
    preprocess = convzoo.transforms_for(net)                     # a transforms.v2 pipeline
    logits = net(preprocess(image)[None])                        # image: a PIL image or a uint8 C x H x W tensor

A model whose weights were loaded (shipped, or torchvision's ImageNet file) holds a :class:`PretrainedCfg`:
the data set, the class names, the input size, the mean and std, how images are resized to the input size
(interpolation, ``resize_mode``, ``crop_pct``), the accuracy the weights reached and on which split, the file
and the command that built it. :meth:`PretrainedCfg.transforms` is the evaluation preset of
:mod:`convzoo.data.presets` those values name, the same pipeline ``convzoo predict`` runs: for the shipped
weights (MNIST, Fashion-MNIST, CIFAR-10, data sets of one native size) the images squashed to the input size
in float, as training evaluated them, so their accuracy is reproduced from the decoded test images alone;
for ImageNet weights torchvision's resize of the shorter side and centre crop (``crop_pct``).

A model built without weights has ``pretrained_cfg = None`` and :func:`transforms_for` refuses it. timm gives
such a model the cfg of its architecture's default weights anyway (mostly ImageNet's mean and std at 224
pixels), since nearly all of timm's weights share that data set; here the preprocessing belongs to the data
set the weights learnt, not to the architecture (LeNet-BN's Fashion-MNIST mean and std are not LeNet's), so a default
for an untrained model would be invented, and silently wrong for the data it is then trained on: the very
mistake the cfg is here to prevent (LeNet-BN's Fashion-MNIST test accuracy: 0.1320 from plain [0, 1] pixels,
0.8507 normalised as ImageNet is, 0.8851 with its own mean and std).

A model adapted to other classes or input channels (``num_classes=``, ``in_channels=``) keeps the cfg of its
weights, changed to what is true of the model: a new classifier has no class names and no measured accuracy;
other input channels take the weights' mean and std repeated (from 1 channel) or averaged (to 1 channel, the
first convolution's kernels being summed), and no measured accuracy either.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from convzoo.errors import ModelError

if TYPE_CHECKING:
    from torchvision.transforms import v2

# (convzoo.data.presets is imported where it is used: it brings torchvision and Pillow, which building a zoo
# model does not need; ``import convzoo.models`` stays torch only)

__all__ = ["PretrainedCfg", "transforms_for"]


@dataclass(frozen=True)
class PretrainedCfg:
    """The preprocessing and provenance of a pretrained model's weights (timm's ``pretrained_cfg``)."""

    model: str  # the zoo model the weights are for
    dataset: str  # the data set they were trained on: mnist, fashion-mnist, cifar10, imagenet
    classes: tuple[str, ...] | None  # the name of each logit, in order; None: a new (untrained) classifier
    input_size: tuple[int, int, int]  # C x H x W the model is given
    mean: tuple[float, ...]  # per channel, on the [0, 1] scale (0 and 1 for weights trained on plain [0, 1])
    std: tuple[float, ...]
    interpolation: str  # of the resize: bilinear, bicubic or nearest
    resize_mode: str  # "squash": both sides to H x W; "crop": the shorter side to H / crop_pct, the centre cut
    crop_pct: float  # the part of the resized image kept (1.0 for squash)
    accuracy: float | None  # top-1 the weights reached on ``split``; None where this model differs from them
    split: str  # where: "test", "val" (held out of the training images), ImageNet's "val"
    split_size: int  # images in that split
    file: str  # the weights' file name (shipped: under convzoo/models/weights; ImageNet: torch.hub's cache)
    command: str  # what built the weights: the ``convzoo train`` command, or torchvision's weights enum
    license: str  # the data set's

    def __post_init__(self) -> None:
        from convzoo.data.presets import INTERPOLATIONS, RESIZE_MODES

        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation {self.interpolation!r} is not one of {', '.join(INTERPOLATIONS)}")
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode {self.resize_mode!r} is not one of {', '.join(RESIZE_MODES)}")
        if not 0 < self.crop_pct <= 1 or (self.resize_mode == "squash" and self.crop_pct != 1):
            raise ValueError(f"crop_pct {self.crop_pct} must be in (0, 1], and 1 for squash")
        if not len(self.mean) == len(self.std) == self.input_size[0]:
            raise ValueError(f"mean {self.mean} and std {self.std} must have one value per channel of "
                             f"{self.input_size}")
        if self.classes is not None and not self.classes:
            raise ValueError("classes is None (a new classifier) or the name of every class")

    @property
    def num_classes(self) -> int | None:
        return None if self.classes is None else len(self.classes)

    @property
    def in_channels(self) -> int:
        return self.input_size[0]

    def transforms(self) -> v2.Compose:
        """The evaluation transform: a PIL image or a uint8 ``C x H x W`` tensor (or float on [0, 1]) in,
        float32 ``input_size`` normalised out, 1 or 3 channels converted to the model's
        (:func:`convzoo.data.presets.eval_transform`)."""
        from convzoo.data.presets import eval_transform

        size: int | tuple[int, int] = self.input_size[1] if self.resize_mode == "crop" else \
            (self.input_size[1], self.input_size[2])
        return eval_transform(size, mean=self.mean, std=self.std, crop_pct=self.crop_pct,
                              interpolation=self.interpolation, resize_mode=self.resize_mode,  # type: ignore[arg-type]
                              channels=self.in_channels)

    def adapted(self, num_classes: int, in_channels: int) -> PretrainedCfg:
        """This cfg for the model built from the weights with ``num_classes`` and ``in_channels`` (see the
        module's docstring); itself when both are the weights'."""
        changes: dict[str, Any] = {}
        if self.classes is not None and num_classes != len(self.classes):
            changes.update(classes=None, accuracy=None)
        channels = self.in_channels
        if in_channels != channels:
            mean: tuple[float, ...]
            std: tuple[float, ...]
            if in_channels == 1:  # the first convolution's kernels summed: one mean and std for all
                mean, std = (sum(self.mean) / channels,), (sum(self.std) / channels,)
            else:  # repeated (and cut), as the kernels are
                mean = tuple(self.mean[i % channels] for i in range(in_channels))
                std = tuple(self.std[i % channels] for i in range(in_channels))
            changes.update(input_size=(in_channels, *self.input_size[1:]), mean=mean, std=std, accuracy=None)
        return dataclasses.replace(self, **changes) if changes else self


def transforms_for(model: Any) -> v2.Compose:
    """The evaluation transform of a pretrained model (``model.pretrained_cfg.transforms()``): a
    ``torchvision.transforms.v2`` pipeline from a PIL image or a uint8 ``C x H x W`` tensor to the model's
    input, ``net(transforms_for(net)(image)[None])``. A model without a cfg is a :class:`ModelError` saying
    how to preprocess for it."""
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, PretrainedCfg):
        return cfg.transforms()
    name = getattr(model, "model_name", None)
    what = f"{name} was built without pretrained weights" if name else \
        f"a {type(model).__name__} is not a convzoo model with pretrained weights"
    raise ModelError(f"{what}, so it carries no preprocessing (pretrained_cfg is None); build it with "
                     "pretrained=True (`convzoo models --pretrained` lists the weights), or preprocess as you "
                     "trained it: convzoo.data.presets.eval_transform(size, mean=..., std=..., "
                     "resize_mode='squash' or 'crop')")
