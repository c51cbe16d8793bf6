"""convzoo: the classic convolutional networks, LeNet to DenseNet.

A zoo behind one registry (``list_models``, ``create_model``, ``model_info``), an inspector
(``summary``, ``parameters_table``), convolution from first principles (``convzoo.scratch``), and
training that is fast on a laptop CPU (``fit``, ``evaluate``, ``load``).
"""

from convzoo.models import (
    ConvNet,
    InputRange,
    ModelInfo,
    create_model,
    list_models,
    load_torchvision_weights,
    model_info,
)
from convzoo.summary import ModelSummary, ParameterTable, parameters_table, summary
from convzoo.train import TrainConfig, evaluate, fit, load

__version__ = "0.1.0"

__all__ = [
    "ConvNet",
    "InputRange",
    "ModelInfo",
    "ModelSummary",
    "ParameterTable",
    "TrainConfig",
    "__version__",
    "create_model",
    "evaluate",
    "fit",
    "list_models",
    "load",
    "load_torchvision_weights",
    "model_info",
    "parameters_table",
    "summary",
]
