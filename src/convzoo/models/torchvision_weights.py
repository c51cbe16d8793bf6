"""Load a torchvision state_dict (ImageNet weights the user saved, say) into the matching zoo model.

The models registered with ``torchvision_layout=True`` register their tensors in the same order as
torchvision's model of the same name does, so the two state_dicts pair up one to one; each pair must agree
in kind (weight, bias, running statistics) and shape. Nothing is loaded unless every tensor pairs up.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import Tensor

from convzoo.errors import WeightsError
from convzoo.models._base import ConvNet
from convzoo.models._registry import list_models, model_info

__all__ = ["load_torchvision_weights", "torchvision_models"]


def torchvision_models() -> list[str]:
    """The zoo models in torchvision's layout (registered with ``torchvision_layout=True``), sorted; each
    pairs with torchvision's builder of the same name."""
    return [name for name in list_models() if model_info(name).torchvision_layout]


def load_torchvision_weights(model: ConvNet, state_dict: Mapping[str, Tensor] | str | os.PathLike[str]) -> None:
    """Copy torchvision's tensors into ``model`` (built with ``in_channels=3, num_classes=1000`` for
    ImageNet weights). ``state_dict`` may be a path to a file saved with ``torch.save``; it is read with
    ``weights_only=True``. Strict: every tensor is used and every shape checked, else ``WeightsError`` (a
    ``ValueError``).
    """
    name = getattr(model, "model_name", type(model).__name__)
    layouts = torchvision_models()
    if name not in layouts:
        raise WeightsError(
            f"{name} does not follow torchvision's layout; torchvision weights load into {', '.join(layouts)}"
        )
    if not isinstance(state_dict, Mapping):
        state_dict = torch.load(state_dict, map_location="cpu", weights_only=True)
        if not isinstance(state_dict, Mapping):
            raise WeightsError(f"the file holds a {type(state_dict).__name__}, not a state_dict")
    ours = model.state_dict()
    if len(ours) != len(state_dict):
        raise WeightsError(
            f"{name}: torchvision's state_dict has {len(state_dict)} tensors, the model has {len(ours)}; "
            f"is it torchvision's {name}?"
        )
    loaded = {}
    for (key, mine), (tv_key, theirs) in zip(ours.items(), state_dict.items(), strict=True):
        if key.rsplit(".", 1)[-1] != tv_key.rsplit(".", 1)[-1]:
            raise WeightsError(
                f"{name}: torchvision's {tv_key!r} does not pair with {key!r}; is it torchvision's {name}?"
            )
        if mine.shape != theirs.shape:
            raise WeightsError(
                f"{name}: torchvision's {tv_key!r} has shape {tuple(theirs.shape)} but {key!r} has "
                f"{tuple(mine.shape)}; build the model with the checkpoint's in_channels and num_classes "
                f"(ImageNet weights: in_channels=3, num_classes=1000)"
            )
        loaded[key] = theirs
    model.load_state_dict(loaded, strict=True)
