"""Load a torchvision state_dict (ImageNet weights the user saved, say) into the matching zoo model.

The families that follow torchvision's layout register their tensors in the same order as torchvision
does, so the two state_dicts pair up one to one; each pair must agree in kind (weight, bias, running
statistics) and shape. Nothing is loaded unless every tensor pairs up.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import Tensor

from convzoo.models._base import ConvNet

__all__ = ["TORCHVISION_LAYOUT", "load_torchvision_weights"]

# zoo models whose layout is torchvision's; the torchvision builder has the same name
TORCHVISION_LAYOUT = frozenset({
    "resnet18", "resnet34", "resnet50",
    "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
    "densenet121",
})


def load_torchvision_weights(model: ConvNet, state_dict: Mapping[str, Tensor] | str | os.PathLike[str]) -> None:
    """Copy torchvision's tensors into ``model`` (built with ``in_channels=3, num_classes=1000`` for
    ImageNet weights). ``state_dict`` may be a path to a file saved with ``torch.save``; it is read with
    ``weights_only=True``. Strict: every tensor is used and every shape checked, else ``ValueError``.
    """
    name = getattr(model, "model_name", type(model).__name__)
    if name not in TORCHVISION_LAYOUT:
        raise ValueError(
            f"{name} does not follow torchvision's layout; torchvision weights load into "
            f"{', '.join(sorted(TORCHVISION_LAYOUT))}"
        )
    if not isinstance(state_dict, Mapping):
        state_dict = torch.load(state_dict, map_location="cpu", weights_only=True)
        if not isinstance(state_dict, Mapping):
            raise ValueError(f"the file holds a {type(state_dict).__name__}, not a state_dict")
    ours = model.state_dict()
    if len(ours) != len(state_dict):
        raise ValueError(
            f"{name}: torchvision's state_dict has {len(state_dict)} tensors, the model has {len(ours)}; "
            f"is it torchvision's {name}?"
        )
    loaded = {}
    for (key, mine), (tv_key, theirs) in zip(ours.items(), state_dict.items(), strict=True):
        if key.rsplit(".", 1)[-1] != tv_key.rsplit(".", 1)[-1]:
            raise ValueError(
                f"{name}: torchvision's {tv_key!r} does not pair with {key!r}; is it torchvision's {name}?"
            )
        if mine.shape != theirs.shape:
            raise ValueError(
                f"{name}: torchvision's {tv_key!r} has shape {tuple(theirs.shape)} but {key!r} has "
                f"{tuple(mine.shape)}; build the model with the checkpoint's in_channels and num_classes "
                f"(ImageNet weights: in_channels=3, num_classes=1000)"
            )
        loaded[key] = theirs
    model.load_state_dict(loaded, strict=True)
