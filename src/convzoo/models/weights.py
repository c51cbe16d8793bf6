"""Pretrained weights: those convzoo ships, and torchvision's ImageNet weights from torch.hub's cache.

    create_model("lenet_bn", pretrained=True)              # the model's shipped weights (its default data set)
    create_model("lenet_bn", pretrained="fashion-mnist")   # the entry for that data set
    create_model("lenet_bn", pretrained=True, num_classes=5)         # a new classifier, with a warning
    create_model("resnet18", pretrained="imagenet")        # torchvision's file, if torch.hub has it cached

**Shipped weights** (torchvision's ``Weights`` and timm's ``pretrained_cfg`` are the models) live beside this
module in ``weights/``: one safetensors file per entry, named ``<model>-<dataset>-<sha256[:8]>.safetensors``,
and ``index.json``, which records for each entry its data set, class names, input size, the mean and std
``predict`` normalises with, the ``convzoo train`` command that produced it, the accuracy that run measured
(on the test split; CIFAR-10's official 10,000 test images, from its lossless copy),
the parameter count, the file's size and sha256, the data's license, and how the images were resized for that
accuracy (interpolation, resize mode, crop_pct). A model holding weights carries them as ``net.pretrained_cfg``
(:class:`convzoo.models.pretrained_cfg.PretrainedCfg`), whose ``transforms()`` is the evaluation transform.
``benchmarks/build_weights.py`` reruns an entry's command and rewrites its file and its record. Every load
checks the file's size and sha256 against the index: a changed or truncated file is a :class:`WeightsError`
naming it and the command that rebuilds it.

**ImageNet weights** of the torchvision-layout models (``resnet18/34/50``, ``vgg*``, ``densenet121``):
``pretrained="imagenet"`` reads torchvision's published file from torch.hub's cache,
``torch.hub.get_dir()/checkpoints/<its file name>`` (``$TORCH_HOME/hub/checkpoints``), where
``torchvision.models.resnet18(weights="DEFAULT")`` leaves it. Nothing is downloaded: when the file is not
there, the error names it and the folder to put it in.

**Adaptation** (timm's rules, for a model built with other ``num_classes`` or ``in_channels`` than the
weights'): the classifier (the head's last layer) is new, freshly initialised, which a warning says; the
first convolution's kernels are summed over their input channels for 1 channel, or repeated and scaled by
C / ``in_channels`` for another count (C the weights' channels), so that a gray image repeated on every
channel gives the same first feature map. Any other difference is an error. ``convzoo train --init-from``
adapts a run's weights the same way (:func:`adapt_state_dict`).

The registry does not import this module (this module reads the registry, so that would be an import cycle):
this module registers its loader with the registry when the zoo package is imported, as each model family
registers its builders.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from convzoo.errors import WeightsError
from convzoo.models._base import ConvNet
from convzoo.models._registry import register_weights_loader
from convzoo.models.pretrained_cfg import PretrainedCfg
from convzoo.models.torchvision_weights import read_state_dict, torchvision_models, zoo_names

__all__ = [
    "IMAGENET", "INDEX", "WEIGHTS_DIR", "WEIGHTS_FORMAT", "WeightsInfo", "adapt_state_dict", "file_name",
    "imagenet_file", "imagenet_info", "list_weights", "load_pretrained", "read_weights", "weights_for",
]

WEIGHTS_FORMAT = "convzoo-weights/1"
WEIGHTS_DIR = Path(__file__).with_name("weights")
INDEX = WEIGHTS_DIR / "index.json"
IMAGENET = "imagenet"
REBUILD = "python benchmarks/build_weights.py"  # in a clone of convzoo; with the model's name


@dataclass(frozen=True)
class WeightsInfo:
    """One set of pretrained weights and everything needed to use them (an entry of ``weights/index.json``)."""

    model: str
    dataset: str
    file: str  # under WEIGHTS_DIR: <model>-<dataset>-<sha256[:8]>.safetensors
    sha256: str
    file_size: int  # bytes
    num_params: int
    classes: tuple[str, ...]
    input_size: tuple[int, int, int]  # C x H x W the images are resized to
    mean: tuple[float, ...] | None  # per channel, on the [0, 1] scale; None: not normalised
    std: tuple[float, ...] | None
    accuracy: float  # measured by the training run itself, on ``split``
    split: str  # "test", or "val": held out of the training split (--val-split) when there is no test split
    split_size: int  # images in it
    split_digest: str  # the sha256 of its pixels and labels, as runs record it (``train.saver.split_identity``)
    command: str  # the ``convzoo train`` command that produced the weights (--data-dir and --out aside)
    license: str  # the data set's
    default: bool = True  # the entry ``pretrained=True`` picks for its model
    # how the images were resized to input_size when the accuracy was measured (``data.presets.eval_transform``):
    # the in-memory path squashes bilinear (train.pipeline.Preprocess); ImageNet's is torchvision's crop
    interpolation: str = "bilinear"
    resize_mode: str = "squash"  # or "crop": the shorter side to H / crop_pct, the centre H x W cut out
    crop_pct: float = 1.0

    @property
    def path(self) -> Path:
        """Where the file is: WEIGHTS_DIR for shipped weights, torch.hub's cache for ImageNet ones."""
        return (_hub_checkpoints() if self.dataset == IMAGENET else WEIGHTS_DIR) / self.file

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return self.input_size[0]

    def pretrained_cfg(self) -> PretrainedCfg:
        """What a model holding these weights carries as ``pretrained_cfg`` (unnormalised weights: mean 0,
        std 1, the pixels on [0, 1] as they were trained)."""
        channels = self.in_channels
        return PretrainedCfg(model=self.model, dataset=self.dataset, classes=self.classes, input_size=self.input_size,
                             mean=self.mean if self.mean is not None else (0.0,) * channels,
                             std=self.std if self.std is not None else (1.0,) * channels,
                             interpolation=self.interpolation, resize_mode=self.resize_mode, crop_pct=self.crop_pct,
                             accuracy=self.accuracy, split=self.split, split_size=self.split_size, file=self.file,
                             command=self.command, license=self.license)

    def to_json(self) -> dict[str, Any]:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> WeightsInfo:
        def floats(key: str) -> tuple[float, ...] | None:
            return None if values.get(key) is None else tuple(float(v) for v in values[key])

        return cls(**{**values, "classes": tuple(values["classes"]), "input_size": tuple(values["input_size"]),
                      "mean": floats("mean"), "std": floats("std")})


def file_name(model: str, dataset: str, sha256: str) -> str:
    """The shipped file's name: ``<model>-<dataset>-<sha256[:8]>.safetensors``."""
    return f"{model}-{dataset}-{sha256[:8]}.safetensors"


# ---- the shipped weights ----------------------------------------------------------------------------


@functools.cache
def _index() -> tuple[WeightsInfo, ...]:
    """The entries of ``weights/index.json`` (read once per process)."""
    try:
        values = json.loads(INDEX.read_text(encoding="utf-8"))
        if values.get("format") != WEIGHTS_FORMAT:
            raise ValueError(f"format {values.get('format')!r}, expected {WEIGHTS_FORMAT!r}")
        return tuple(WeightsInfo.from_json(entry) for entry in values["weights"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise WeightsError(f"the weights index {INDEX} cannot be read ({err}); reinstall convzoo, or rebuild "
                           f"the weights with `{REBUILD} --all`") from None


def list_weights(pattern: str = "*") -> list[WeightsInfo]:
    """The shipped weights of the models matching a glob pattern (``"lenet*"``), by model and data set.
    (Every torchvision-layout model also takes ``pretrained="imagenet"``, from torch.hub's cache.)"""
    return sorted((w for w in _index() if fnmatch.fnmatchcase(w.model, pattern)), key=lambda w: (w.model, w.dataset))


def weights_for(model: str, pretrained: bool | str = True) -> WeightsInfo:
    """The entry ``create_model(model, pretrained=...)`` loads: ``True`` the model's default one, a data set's
    name that data set's (``"imagenet"``: torchvision's file, :func:`imagenet_info`)."""
    if pretrained == IMAGENET:
        return imagenet_info(model)
    entries = [w for w in _index() if w.model == model]
    chosen = [w for w in entries if (w.default if pretrained is True else w.dataset == pretrained)]
    if chosen:
        return chosen[0]
    have = ", ".join(repr(w.dataset) for w in entries) or "none"
    if isinstance(pretrained, str) and entries:
        raise WeightsError(f"{model} has no pretrained weights for {pretrained!r}; it has {have} "
                           f"(`convzoo models --pretrained` lists them all)")
    raise WeightsError(f"{model} has no pretrained weights: convzoo ships weights for the models of at most 5 MB "
                       f"(`convzoo models --pretrained` lists them)"
                       + (f"; torchvision's ImageNet weights load with pretrained={IMAGENET!r}"
                          if model in torchvision_models() else ""))


def read_weights(info: WeightsInfo) -> dict[str, Tensor]:
    """The tensors of a shipped entry, after checking the file's size and sha256 against the index."""
    if info.dataset == IMAGENET:
        return _read_imagenet(info)
    path = info.path
    rebuild = f"rebuild it with `{REBUILD} {info.model}` in a clone of convzoo, or reinstall convzoo"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise WeightsError(f"{path}: the weights file of {info.model} ({info.dataset}) is missing; {rebuild}") from None
    if len(data) != info.file_size:
        state = "truncated" if len(data) < info.file_size else "longer than shipped"
        raise WeightsError(f"{path} is {state} ({len(data):,} bytes, the index records {info.file_size:,}); {rebuild}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != info.sha256:
        raise WeightsError(f"{path} has changed: its sha256 is {digest[:16]}..., the index records "
                           f"{info.sha256[:16]}...; {rebuild}")
    from safetensors.torch import load

    return load(data)


# ---- torchvision's ImageNet weights, from torch.hub's cache ------------------------------------------


def _hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _imagenet_weights(model: str) -> list[Any]:
    """torchvision's weight enums of ``model`` (``DEFAULT`` first), each naming its published file."""
    import torchvision

    enum = torchvision.models.get_model_weights(model)
    default = enum.DEFAULT
    return [default, *(w for w in enum if w is not default)]


def imagenet_file(model: str) -> Path:
    """The file torch.hub's cache holds for ``model``'s ImageNet weights: torchvision's default file if it is
    there, else another of its published files that is; the default file's path when none is."""
    files = [_hub_checkpoints() / w.url.rsplit("/", 1)[-1] for w in _imagenet_weights(model)]
    return next((f for f in files if f.is_file()), files[0])


def imagenet_info(model: str) -> WeightsInfo:
    """torchvision's ImageNet weights of a torchvision-layout model, described as a shipped entry is (their
    accuracy is torchvision's published acc@1, not measured here; the file is not checked for presence)."""
    if model not in torchvision_models():
        raise WeightsError(f"{model} does not follow torchvision's layout, so torchvision's ImageNet weights do not "
                           f"fit it; pretrained={IMAGENET!r} takes {', '.join(torchvision_models())}")
    path = imagenet_file(model)
    weights = next(w for w in _imagenet_weights(model) if w.url.endswith("/" + path.name))
    transforms = weights.transforms()  # torchvision's ImageClassification preset
    size, resized = int(transforms.crop_size[0]), int(transforms.resize_size[0])
    return WeightsInfo(model=model, dataset=IMAGENET, file=path.name, sha256="", file_size=0,
                       num_params=int(weights.meta["num_params"]), classes=tuple(weights.meta["categories"]),
                       input_size=(3, size, size), mean=tuple(transforms.mean), std=tuple(transforms.std),
                       accuracy=float(weights.meta["_metrics"]["ImageNet-1K"]["acc@1"]) / 100, split="val",
                       split_size=50_000, split_digest="", command=f"torchvision.models.{model}(weights={weights})",
                       license="ImageNet's terms of access (non-commercial research)",
                       interpolation=transforms.interpolation.value, resize_mode="crop", crop_pct=size / resized)


# torchvision's published DenseNet files predate its current names: ``denselayer1.norm.1.weight`` is today's
# ``denselayer1.norm1.weight`` (torchvision renames them as it loads them; so do we)
_OLD_DENSENET = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")


def _read_imagenet(info: WeightsInfo) -> dict[str, Tensor]:
    """torchvision's state_dict for ``info.model`` from torch.hub's cache, in the zoo model's names."""
    path = info.path
    if not path.is_file():
        raise WeightsError(f"torchvision's ImageNet weights of {info.model} are not in torch.hub's cache: put "
                           f"{path.name} in {path.parent} (it is what torchvision.models.{info.model}(weights="
                           f"\"DEFAULT\") downloads there; $TORCH_HOME moves the folder); convzoo downloads nothing")
    given = read_state_dict(path)
    renamed = {(m.group(1) + m.group(2) if (m := _OLD_DENSENET.match(key)) else key): value
               for key, value in given.items()}
    return zoo_names(info.model, renamed)


# ---- adaptation and loading -------------------------------------------------------------------------


def _module_name(net: ConvNet, module: torch.nn.Module | None) -> str | None:
    return next((name for name, m in net.named_modules() if m is module), None) if module is not None else None


def adapt_input_conv(weight: Tensor, in_channels: int) -> Tensor:
    """A convolution's kernels ``out x C x k x k`` for ``in_channels`` inputs: summed over C for one channel,
    else repeated and scaled by C / ``in_channels`` (timm's rule): a gray image repeated on every channel
    then gives what the original kernels give on the gray image."""
    channels = weight.shape[1]
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)  # out x 1 x k x k
    repeats = -(-in_channels // channels)  # ceil
    return weight.repeat(1, repeats, 1, 1)[:, :in_channels] * (channels / in_channels)  # out x in x k x k


def adapt_state_dict(state_dict: Mapping[str, Tensor], net: ConvNet, *,
                     source: str) -> tuple[dict[str, Tensor], list[str]]:
    """``state_dict`` made to fit ``net`` (the same model, maybe built for other classes or input channels),
    and one note per adaptation: the classifier (the head's last layer) kept as ``net`` has it, freshly
    initialised, when the class count differs; the first convolution's kernels adapted
    (:func:`adapt_input_conv`) when the channel count does. Any other missing, extra or differently shaped
    tensor is a :class:`WeightsError` naming ``source``."""
    current = net.state_dict()
    missing, unexpected = sorted(set(current) - set(state_dict)), sorted(set(state_dict) - set(current))
    if missing or unexpected:
        raise WeightsError(
            f"{source} does not hold {net.model_name}'s tensors: "
            + "; ".join(f"{what} {', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''} ({len(keys)})"
                        for what, keys in (("missing", missing), ("unexpected", unexpected)) if keys)
            + f"; are they weights of {net.model_name}?")
    stem, classifier = _module_name(net, net._stem()), _module_name(net, net._last_layer())
    adapted: dict[str, Tensor] = {}
    notes: list[str] = []
    for key, want in current.items():
        given = state_dict[key]
        if given.shape == want.shape:
            adapted[key] = given
        elif key == f"{stem}.weight" and given.dim() == 4 and given.shape[0] == want.shape[0] \
                and given.shape[2:] == want.shape[2:]:
            adapted[key] = adapt_input_conv(given, want.shape[1])
            how = "summed" if want.shape[1] == 1 else f"repeated and scaled by {given.shape[1]}/{want.shape[1]}"
            notes.append(f"the first convolution {stem} takes {want.shape[1]} input channel(s), the weights "
                         f"{given.shape[1]}: its kernels are {how}")
        elif classifier is not None and key.startswith(f"{classifier}.") and given.shape[1:] == want.shape[1:]:
            adapted[key] = want  # the new classifier keeps its fresh init
            if key == f"{classifier}.weight":
                notes.append(f"the weights have {given.shape[0]} classes, the model {want.shape[0]}: its classifier "
                             f"{classifier} is new (freshly initialised, untrained); train it before use")
        else:
            raise WeightsError(f"{source}: {key} has shape {tuple(given.shape)}, {net.model_name} needs "
                               f"{tuple(want.shape)}; only the classes and the input channels may differ")
    return adapted, notes


def load_pretrained(net: ConvNet, info: WeightsInfo) -> None:
    """Load ``info``'s weights into ``net`` (adapted to its classes and input channels, with a warning for
    each adaptation) and set ``net.pretrained_cfg`` (:class:`PretrainedCfg`, adapted likewise); ``net`` is left
    untouched if they do not fit."""
    state_dict, notes = adapt_state_dict(read_weights(info), net, source=f"{info.path}")
    net.load_state_dict(state_dict, strict=True)
    net.pretrained_cfg = info.pretrained_cfg().adapted(net.num_classes, net.in_channels)
    for note in notes:
        warnings.warn(f"{info.model} pretrained on {info.dataset}: {note}", UserWarning, stacklevel=4)


def _resolve(model: str, pretrained: bool | str) -> tuple[dict[str, int], Callable[[ConvNet], None]]:
    """What ``create_model(model, pretrained=...)`` asks: the builder arguments the weights were trained with
    (the caller's own override them) and the function loading them into the model built."""
    if not isinstance(pretrained, bool | str) or pretrained == "":
        raise WeightsError(f"pretrained must be True, False or a data set's name, got {pretrained!r}")
    info = weights_for(model, pretrained)
    return ({"num_classes": info.num_classes, "in_channels": info.in_channels},
            lambda net: load_pretrained(net, info))


register_weights_loader(_resolve)
