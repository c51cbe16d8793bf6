"""The zoo: every network of the notes plus the standard variants, behind one registry.

Importing this package registers every model family (the first import below).
"""

from convzoo.models import alexnet, course, densenet, fastcnn, googlenet, lenet, nin, resnet, vgg  # noqa: F401
from convzoo.models._base import ConvNet, InputRange
from convzoo.models._registry import ModelInfo, create_model, list_models, model_info, register_model
from convzoo.models.torchvision_weights import load_torchvision_weights

__all__ = [
    "ConvNet",
    "InputRange",
    "ModelInfo",
    "create_model",
    "list_models",
    "load_torchvision_weights",
    "model_info",
    "register_model",
]
