"""The four small MNIST networks of notes 001's course (a PyTorch tutorial series): a two-convolution
CNN, the three-convolution homework, a net with Inception modules and a net with residual blocks.

Each keeps the notes' layers and their order of activation and pooling; the functional ``F.relu`` calls
of the notes become ``nn.ReLU`` modules so that the inspector can show them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from convzoo.models._base import ConvNet
from convzoo.models._registry import register_model

__all__ = ["CourseCNN", "InceptionModule", "ResidualBlock"]

LECUN_1998 = "LeCun et al., Gradient-Based Learning Applied to Document Recognition"
SZEGEDY_2015 = "Szegedy et al., Rethinking the Inception Architecture for Computer Vision"
HE_2015 = "He, Zhang, Ren & Sun, Deep Residual Learning for Image Recognition"


class InceptionModule(nn.Module):
    """Notes 001's Inception module: 1x1 (16), 1x1 -> 5x5 (24), 1x1 -> 3x3 -> 3x3 (24) and
    3x3 average pool -> 1x1 (24) in parallel, concatenated to 88 channels; no activations inside."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch1x1 = nn.Conv2d(in_channels, 16, kernel_size=1)
        self.branch5x5 = nn.Sequential(
            nn.Conv2d(in_channels, 16, kernel_size=1),
            nn.Conv2d(16, 24, kernel_size=5, padding=2),
        )
        self.branch3x3 = nn.Sequential(
            nn.Conv2d(in_channels, 16, kernel_size=1),
            nn.Conv2d(16, 24, kernel_size=3, padding=1),
            nn.Conv2d(24, 24, kernel_size=3, padding=1),
        )
        self.branch_pool = nn.Sequential(
            nn.AvgPool2d(kernel_size=3, stride=1, padding=1),
            nn.Conv2d(in_channels, 24, kernel_size=1),
        )

    def forward(self, X: Tensor) -> Tensor:
        branches = (self.branch1x1(X), self.branch5x5(X), self.branch3x3(X), self.branch_pool(X))
        return torch.cat(branches, dim=1)  # B x 88 x H x W


class ResidualBlock(nn.Module):
    """Notes 001's residual block: ``relu(x + conv2(relu(conv1(x))))``, two 3x3 convolutions, same shape."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.relu2 = nn.ReLU()

    def forward(self, X: Tensor) -> Tensor:
        return self.relu2(X + self.conv2(self.relu1(self.conv1(X))))


class CourseCNN(ConvNet):
    """A small MNIST network of notes 001: the given feature layers, then flatten and one dense layer.

    The dense layer fixes the input at 28x28 (the notes compute its width, e.g. 1408, by a trial run).
    """

    def __init__(self, features: list[nn.Module], flat_features: int, *, model_name: str, in_channels: int,
                 num_classes: int) -> None:
        super().__init__(model_name=model_name, in_channels=in_channels, num_classes=num_classes, default_size=28)
        self.features = nn.Sequential(*features)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat_features, num_classes))


@register_model(paper=LECUN_1998, year=1998, num_params=8_490, input_size=(1, 28, 28), min_side=28, max_side=31,
                notes="001")
def simple_cnn(*, num_classes: int = 10, in_channels: int = 1) -> CourseCNN:
    """Two 5x5 convolutions (10, 20 channels), each max-pooled then ReLU, dense 320 -> classes."""
    features = [
        nn.Conv2d(in_channels, 10, kernel_size=5), nn.MaxPool2d(2), nn.ReLU(),  # B x 10 x 12 x 12
        nn.Conv2d(10, 20, kernel_size=5), nn.MaxPool2d(2), nn.ReLU(),  # B x 20 x 4 x 4
    ]
    return CourseCNN(features, 320, model_name="simple_cnn", in_channels=in_channels, num_classes=num_classes)


@register_model(paper=LECUN_1998, year=1998, num_params=5_720, input_size=(1, 28, 28), min_side=28, max_side=35,
                notes="001")
def three_conv_cnn(*, num_classes: int = 10, in_channels: int = 1) -> CourseCNN:
    """Homework 1: convolutions 5x5 (10), 3x3 (20), 2x2 (30), each ReLU then max pool, dense 120 -> classes."""
    features = [
        nn.Conv2d(in_channels, 10, kernel_size=5), nn.ReLU(), nn.MaxPool2d(2),  # B x 10 x 12 x 12
        nn.Conv2d(10, 20, kernel_size=3), nn.ReLU(), nn.MaxPool2d(2),  # B x 20 x 5 x 5
        nn.Conv2d(20, 30, kernel_size=2), nn.ReLU(), nn.MaxPool2d(2),  # B x 30 x 2 x 2
    ]
    return CourseCNN(features, 120, model_name="three_conv_cnn", in_channels=in_channels, num_classes=num_classes)


@register_model(paper=SZEGEDY_2015, year=2015, num_params=97_298, input_size=(1, 28, 28), min_side=28, max_side=31,
                notes="001")
def inception_cnn(*, num_classes: int = 10, in_channels: int = 1) -> CourseCNN:
    """Convolution, Inception module, convolution, Inception module, dense 1408 -> classes."""
    features = [
        nn.Conv2d(in_channels, 10, kernel_size=5), nn.MaxPool2d(2), nn.ReLU(),  # B x 10 x 12 x 12
        InceptionModule(10),  # B x 88 x 12 x 12
        nn.Conv2d(88, 20, kernel_size=5), nn.MaxPool2d(2), nn.ReLU(),  # B x 20 x 4 x 4
        InceptionModule(20),  # B x 88 x 4 x 4
    ]
    return CourseCNN(features, 1408, model_name="inception_cnn", in_channels=in_channels, num_classes=num_classes)


@register_model(paper=HE_2015, year=2015, num_params=41_514, input_size=(1, 28, 28), min_side=28, max_side=31,
                notes="001")
def residual_cnn(*, num_classes: int = 10, in_channels: int = 1) -> CourseCNN:
    """Convolution, residual block, convolution, residual block, dense 512 -> classes."""
    features = [
        nn.Conv2d(in_channels, 16, kernel_size=5), nn.ReLU(), nn.MaxPool2d(2),  # B x 16 x 12 x 12
        ResidualBlock(16),
        nn.Conv2d(16, 32, kernel_size=5), nn.ReLU(), nn.MaxPool2d(2),  # B x 32 x 4 x 4
        ResidualBlock(32),
    ]
    return CourseCNN(features, 512, model_name="residual_cnn", in_channels=in_channels, num_classes=num_classes)
