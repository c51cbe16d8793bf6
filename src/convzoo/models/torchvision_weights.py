"""Load a torchvision state_dict (ImageNet weights the user saved, say) into the matching zoo model.

The models registered with ``torchvision_layout=True`` register their tensors in the same order as
torchvision's model of the same name does, so torchvision's tensor names, in its own order, pair one to one
with the zoo model's. The given state_dict is matched **by name** against torchvision's names (torchvision's
model is built on the meta device to read them: shapes only, no memory), so its order does not matter
(safetensors stores tensors sorted by name) and a missing ``num_batches_tracked`` counter is set to 0, as
``nn.Module.load_state_dict`` does for such a state_dict. Only when none of the names is torchvision's (names
changed systematically: a ``module.`` prefix of ``DataParallel``, say) are the tensors paired by position,
each pair agreeing in kind (weight, bias, running statistics). Either way every tensor must be used and
every shape must agree, or nothing is loaded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from convzoo.errors import WeightsError
from convzoo.models._base import ConvNet
from convzoo.models._registry import create_model, list_models, model_info

__all__ = ["load_torchvision_weights", "read_state_dict", "torchvision_models", "zoo_names"]

_COUNTER = "num_batches_tracked"  # batch norm's step counter: torch loads a state_dict without it


def torchvision_models() -> list[str]:
    """The zoo models in torchvision's layout (registered with ``torchvision_layout=True``), sorted; each
    pairs with torchvision's builder of the same name."""
    return [name for name in list_models() if model_info(name).torchvision_layout]


def read_state_dict(path: str | os.PathLike[str]) -> Mapping[str, Tensor]:
    """A state_dict file: safetensors by its suffix, else ``torch.save``'s format read with ``weights_only``."""
    if Path(path).suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(os.fspath(path), device="cpu")
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state_dict, Mapping):
        raise WeightsError(f"the file holds a {type(state_dict).__name__}, not a state_dict")
    return state_dict


def _torchvision_names(name: str) -> list[str]:
    """torchvision's tensor names of its model ``name`` (ImageNet-sized), in its registration order."""
    import torchvision

    with torch.device("meta"):  # shapes only: no memory, no initialisation worth the name
        return list(getattr(torchvision.models, name)(weights=None).state_dict())


def _kind(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _by_name(name: str, ours: list[str], theirs: list[str], given: Mapping[str, Tensor]) -> dict[str, str | None]:
    """Our key -> the given key, matched through torchvision's names (``theirs``, paired with ``ours`` by
    position); ``None`` for a missing step counter, anything else missing or left over is an error."""
    known = set(theirs)
    unknown = [key for key in given if key not in known]
    if unknown:
        raise WeightsError(
            f"{name}: torchvision's {unknown[0]!r} does not pair with any tensor of {name}"
            f"{f' ({len(unknown)} such tensors)' if len(unknown) > 1 else ''}; is it torchvision's {name}?"
        )
    missing = [key for key in theirs if key not in given and _kind(key) != _COUNTER]
    if missing:
        raise WeightsError(
            f"{name}: the state_dict lacks {len(missing)} of torchvision's {len(theirs)} tensors "
            f"({', '.join(map(repr, missing[:3]))}{', ...' if len(missing) > 3 else ''}); is it torchvision's {name}?"
        )
    return {mine: (tv_key if tv_key in given else None) for mine, tv_key in zip(ours, theirs, strict=True)}


def _by_position(name: str, ours: list[str], given: Mapping[str, Tensor]) -> dict[str, str | None]:
    """Our key -> the given key, paired by position (the names differ throughout); each pair must agree in
    kind. A state_dict without any step counter pairs with our tensors less the counters (``None``)."""
    paired = ours if any(_kind(key) == _COUNTER for key in given) else [k for k in ours if _kind(k) != _COUNTER]
    if len(paired) != len(given):
        raise WeightsError(
            f"{name}: torchvision's state_dict has {len(given)} tensors, the model has {len(paired)}; "
            f"is it torchvision's {name}?"
        )
    for key, tv_key in zip(paired, given, strict=True):
        if _kind(key) != _kind(tv_key):
            raise WeightsError(
                f"{name}: torchvision's {tv_key!r} does not pair with {key!r}; is it torchvision's {name}?"
            )
    chosen = dict(zip(paired, given, strict=True))
    return {key: chosen.get(key) for key in ours}


def load_torchvision_weights(model: ConvNet, state_dict: Mapping[str, Tensor] | str | os.PathLike[str]) -> None:
    """Copy torchvision's tensors into ``model`` (built with ``in_channels=3, num_classes=1000`` for
    ImageNet weights). ``state_dict`` may be a path: a ``.safetensors`` file, or a file saved with
    ``torch.save`` (read with ``weights_only=True``). Tensors are matched by torchvision's names, in any
    order (the module docstring says when by position). Strict: every tensor is used and every shape
    checked, else ``WeightsError`` (a ``ValueError``) and the model is left untouched.
    """
    name = getattr(model, "model_name", type(model).__name__)
    layouts = torchvision_models()
    if name not in layouts:
        raise WeightsError(
            f"{name} does not follow torchvision's layout; torchvision weights load into {', '.join(layouts)}"
        )
    given = state_dict if isinstance(state_dict, Mapping) else read_state_dict(state_dict)
    current = model.state_dict()
    source = _pairing(name, list(current), given)
    loaded = {}
    for key, tv_key in source.items():
        if tv_key is None:  # a step counter the state_dict lacks
            loaded[key] = torch.zeros_like(current[key], device="cpu")
            continue
        tensor = given[tv_key]
        if current[key].shape != tensor.shape:
            raise WeightsError(
                f"{name}: torchvision's {tv_key!r} has shape {tuple(tensor.shape)} but {key!r} has "
                f"{tuple(current[key].shape)}; build the model with the checkpoint's in_channels and "
                f"num_classes (ImageNet weights: in_channels=3, num_classes=1000)"
            )
        loaded[key] = tensor
    model.load_state_dict(loaded, strict=True)


def _pairing(name: str, ours: list[str], given: Mapping[str, Tensor]) -> dict[str, str | None]:
    """Our key -> torchvision's key in ``given`` (None: a step counter it lacks), by name or by position."""
    theirs = _torchvision_names(name)
    if len(ours) != len(theirs):  # a bug of the registration, not of the user's file
        raise RuntimeError(f"{name}: {len(ours)} tensors, torchvision's has {len(theirs)}; the layouts differ")
    known = set(theirs)
    return _by_name(name, ours, theirs, given) if any(k in known for k in given) else _by_position(name, ours, given)


def zoo_names(name: str, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """torchvision's state_dict of its model ``name``, renamed to the zoo model's tensor names (paired as
    :func:`load_torchvision_weights` pairs them; a missing step counter is 0). The shapes are left as they
    are, for a model built with other classes or input channels to adapt (``convzoo.models.weights``)."""
    with torch.device("meta"):  # the names only
        ours = list(create_model(name).state_dict())
    return {key: state_dict[tv_key] if tv_key is not None else torch.tensor(0)
            for key, tv_key in _pairing(name, ours, state_dict).items()}
