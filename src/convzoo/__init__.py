"""convzoo: the classic convolutional networks, LeNet to DenseNet.

A zoo behind one registry (``list_models``, ``create_model``, ``model_info``), pretrained models that carry
their preprocessing (``net.pretrained_cfg``, ``transforms_for(net)``), an inspector
(``summary``, ``parameters_table``), convolution from first principles (``convzoo.scratch``), and
training that is fast on a laptop CPU (``fit``, ``evaluate``, ``load``).

``import convzoo`` imports nothing heavy, not even torch: every public name is imported on its first use
(PEP 562 module ``__getattr__``). ``create_model`` brings the zoo (torch), ``fit`` the training stack
(Pillow, tqdm, matplotlib, torchvision). So the command line, whose console script imports the package
first, is inside its error boundary before torch loads (a Ctrl-C then is one line, exit 130), and scripts
that only build or inspect models do not pay for the trainer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from convzoo._version import __version__

if TYPE_CHECKING:  # what the lazy names below resolve to, for type checkers
    from convzoo.features import feature_maps
    from convzoo.inspector import ModelSummary, ParameterTable, parameters_table, summary
    from convzoo.models import (
        ConvNet,
        InputRange,
        ModelInfo,
        PretrainedCfg,
        create_model,
        list_models,
        list_weights,
        load_torchvision_weights,
        model_info,
        transforms_for,
    )
    from convzoo.train import TrainConfig, evaluate, fit, load

__all__ = [
    "ConvNet",
    "InputRange",
    "ModelInfo",
    "ModelSummary",
    "ParameterTable",
    "PretrainedCfg",
    "TrainConfig",
    "__version__",
    "create_model",
    "evaluate",
    "feature_maps",
    "fit",
    "list_models",
    "list_weights",
    "load",
    "load_torchvision_weights",
    "model_info",
    "parameters_table",
    "summary",
    "transforms_for",
]

# public names imported on first access -> the module that defines them
_LAZY = {
    **dict.fromkeys(("ConvNet", "InputRange", "ModelInfo", "PretrainedCfg", "create_model", "list_models",
                     "list_weights", "load_torchvision_weights", "model_info", "transforms_for"), "convzoo.models"),
    **dict.fromkeys(("ModelSummary", "ParameterTable", "parameters_table", "summary"), "convzoo.inspector"),
    "TrainConfig": "convzoo.train", "evaluate": "convzoo.train", "fit": "convzoo.train",
    "load": "convzoo.train",
    "feature_maps": "convzoo.features",
}
# subpackages reachable as attributes without importing them first (``convzoo.train.read_image``)
_SUBMODULES = frozenset({"data", "inspector", "models", "scratch", "train"})


def __getattr__(name: str) -> Any:
    """Import a lazy name's module on first access and keep the name, so later accesses skip this."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_SUBMODULES})
