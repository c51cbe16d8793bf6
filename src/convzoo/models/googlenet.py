"""GoogLeNet (Szegedy et al., 2014) as in d2l: five stages, nine Inception blocks, a ReLU after
every convolution (notes 002 leaves out the ReLU after two of the 1x1 reductions)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from convzoo.models._base import ConvNet
from convzoo.models._registry import FAST_WITHOUT_BATCH_NORM, D2LRecipe, ReportPlan, register_model

__all__ = ["GoogLeNet", "Inception"]

SZEGEDY_2014 = "Szegedy et al., Going Deeper with Convolutions"


class Inception(nn.Module):
    """Four parallel paths concatenated on channels: 1x1; 1x1 -> 3x3; 1x1 -> 5x5; 3x3 max pool -> 1x1.

    ``c1`` and ``c4`` are output channels, ``c2`` and ``c3`` (reduction, output) pairs.
    """

    def __init__(self, in_channels: int, c1: int, c2: tuple[int, int], c3: tuple[int, int], c4: int) -> None:
        super().__init__()
        self.p1 = nn.Sequential(nn.Conv2d(in_channels, c1, kernel_size=1), nn.ReLU())
        self.p2 = nn.Sequential(
            nn.Conv2d(in_channels, c2[0], kernel_size=1), nn.ReLU(),
            nn.Conv2d(c2[0], c2[1], kernel_size=3, padding=1), nn.ReLU(),
        )
        self.p3 = nn.Sequential(
            nn.Conv2d(in_channels, c3[0], kernel_size=1), nn.ReLU(),
            nn.Conv2d(c3[0], c3[1], kernel_size=5, padding=2), nn.ReLU(),
        )
        self.p4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1),
            nn.Conv2d(in_channels, c4, kernel_size=1), nn.ReLU(),
        )

    def forward(self, X: Tensor) -> Tensor:
        # B x C x H x W -> B x (c1 + c2[1] + c3[1] + c4) x H x W
        return torch.cat((self.p1(X), self.p2(X), self.p3(X), self.p4(X)), dim=1)


class GoogLeNet(ConvNet):
    """GoogLeNet (Szegedy et al., 2014), d2l's version: stages b1..b5, global average pool, one dense layer."""

    def __init__(self, *, model_name: str, in_channels: int, num_classes: int) -> None:
        super().__init__(model_name=model_name, in_channels=in_channels, num_classes=num_classes, default_size=96)
        b1 = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )  # B x 64 x H/4 x W/4
        b2 = nn.Sequential(
            nn.Conv2d(64, 64, kernel_size=1), nn.ReLU(),
            nn.Conv2d(64, 192, kernel_size=3, padding=1), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )  # B x 192 x H/8 x W/8
        b3 = nn.Sequential(
            Inception(192, 64, (96, 128), (16, 32), 32),
            Inception(256, 128, (128, 192), (32, 96), 64),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )  # B x 480 x H/16 x W/16
        b4 = nn.Sequential(
            Inception(480, 192, (96, 208), (16, 48), 64),
            Inception(512, 160, (112, 224), (24, 64), 64),
            Inception(512, 128, (128, 256), (24, 64), 64),
            Inception(512, 112, (144, 288), (32, 64), 64),
            Inception(528, 256, (160, 320), (32, 128), 128),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )  # B x 832 x H/32 x W/32
        b5 = nn.Sequential(
            Inception(832, 256, (160, 320), (32, 128), 128),
            Inception(832, 384, (192, 384), (48, 128), 128),
        )  # B x 1024 x H/32 x W/32
        self.features = nn.Sequential(b1, b2, b3, b4, b5)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(1024, num_classes))


@register_model(paper=SZEGEDY_2014, year=2014, num_params=5_977_530, input_size=(1, 96, 96), min_side=1,
                notes="002", d2l=D2LRecipe(table_row=5, resize=96, batch_size=128, lr=0.1, test_acc=0.888),
                report=ReportPlan(cpu_side=48, fast_overrides=FAST_WITHOUT_BATCH_NORM))
def googlenet(*, num_classes: int = 10, in_channels: int = 1) -> GoogLeNet:
    """d2l's GoogLeNet for 1x96x96 Fashion-MNIST."""
    return GoogLeNet(model_name="googlenet", in_channels=in_channels, num_classes=num_classes)
