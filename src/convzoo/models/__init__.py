"""The zoo: every network of the notes plus the standard variants, behind one registry.

Importing this package registers every model family (the first import below); a new family is one file
here plus its name on that line.
"""

from convzoo.models import airbench, alexnet, course, densenet, fastcnn, googlenet, lenet, nin, resnet, vgg  # noqa: F401
from convzoo.models._base import ConvNet, InputRange
from convzoo.models._registry import (
    D2LRecipe,
    ModelInfo,
    ReportPlan,
    create_model,
    d2l_models,
    list_models,
    model_info,
    register_model,
)
from convzoo.models.pretrained_cfg import PretrainedCfg, transforms_for
from convzoo.models.torchvision_weights import load_torchvision_weights, torchvision_models
from convzoo.models.weights import WeightsInfo, list_weights  # (registers create_model's pretrained loader)

__all__ = [
    "ConvNet",
    "D2LRecipe",
    "InputRange",
    "ModelInfo",
    "PretrainedCfg",
    "ReportPlan",
    "WeightsInfo",
    "create_model",
    "d2l_models",
    "list_models",
    "list_weights",
    "load_torchvision_weights",
    "model_info",
    "register_model",
    "torchvision_models",
    "transforms_for",
]
