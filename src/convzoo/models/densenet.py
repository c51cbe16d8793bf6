"""DenseNet (Huang, Liu, van der Maaten & Weinberger, 2016): d2l's small version (notes 002) and
DenseNet-121 in torchvision's layout."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from convzoo.models._base import ConvNet
from convzoo.models._registry import D2LRecipe, ReportPlan, register_model

__all__ = ["DenseBlock", "DenseNet", "DenseNetSpec"]

HUANG_2016 = "Huang, Liu, van der Maaten & Weinberger, Densely Connected Convolutional Networks"


@dataclass(frozen=True)
class DenseNetSpec:
    num_init_features: int  # channels out of the 7x7 stem
    growth_rate: int  # channels each dense layer adds
    block_config: tuple[int, ...]  # dense layers per block
    bottleneck: bool  # DenseNet-B: BN-ReLU-1x1 (4 x growth) before each 3x3 (torchvision); d2l has none
    bias: bool  # convolutions with bias (d2l) or without (torchvision, each is followed by BN)
    default_size: int


def dense_layer(in_channels: int, growth_rate: int, bottleneck: bool, bias: bool) -> nn.Sequential:
    """BN-ReLU-conv3x3 producing ``growth_rate`` new channels (preceded by a BN-ReLU-1x1 bottleneck)."""
    layers: list[nn.Module] = [nn.BatchNorm2d(in_channels), nn.ReLU()]
    if bottleneck:
        width = 4 * growth_rate
        layers += [nn.Conv2d(in_channels, width, kernel_size=1, bias=bias), nn.BatchNorm2d(width), nn.ReLU()]
        in_channels = width
    layers.append(nn.Conv2d(in_channels, growth_rate, kernel_size=3, padding=1, bias=bias))
    return nn.Sequential(*layers)


class DenseBlock(nn.Module):
    """Dense layers, each fed the concatenation of the block input and every earlier layer's output."""

    def __init__(self, num_layers: int, in_channels: int, growth_rate: int, bottleneck: bool, bias: bool) -> None:
        super().__init__()
        self.net = nn.Sequential(*(
            dense_layer(in_channels + i * growth_rate, growth_rate, bottleneck, bias) for i in range(num_layers)
        ))

    def forward(self, X: Tensor) -> Tensor:
        for layer in self.net:
            X = torch.cat((X, layer(X)), dim=1)  # B x (C + growth) x H x W
        return X


def transition_block(in_channels: int, out_channels: int, bias: bool) -> nn.Sequential:
    """BN-ReLU-1x1 convolution to fewer channels, then 2x2 average pooling halving height and width."""
    return nn.Sequential(
        nn.BatchNorm2d(in_channels), nn.ReLU(),
        nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=bias),
        nn.AvgPool2d(kernel_size=2, stride=2),
    )


class DenseNet(ConvNet):
    """DenseNet (Huang et al., 2016): a 7x7 stem, dense blocks joined by transitions that halve the
    channels, a final BN-ReLU, global average pooling and one dense layer."""

    def __init__(self, spec: DenseNetSpec, *, model_name: str, in_channels: int, num_classes: int) -> None:
        super().__init__(model_name=model_name, in_channels=in_channels, num_classes=num_classes,
                         default_size=spec.default_size)
        channels = spec.num_init_features
        stages: list[nn.Module] = [nn.Sequential(
            nn.Conv2d(in_channels, channels, kernel_size=7, stride=2, padding=3, bias=spec.bias),
            nn.BatchNorm2d(channels), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )]  # B x init x H/4 x W/4
        for i, num_layers in enumerate(spec.block_config):
            stages.append(DenseBlock(num_layers, channels, spec.growth_rate, spec.bottleneck, spec.bias))
            channels += num_layers * spec.growth_rate
            if i != len(spec.block_config) - 1:
                stages.append(transition_block(channels, channels // 2, spec.bias))
                channels //= 2
        stages += [nn.BatchNorm2d(channels), nn.ReLU()]
        self.features = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(channels, num_classes))
        if spec.bottleneck:  # torchvision's initialisation for its layout
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
                elif isinstance(m, nn.Linear):
                    nn.init.zeros_(m.bias)


@register_model(paper=HUANG_2016, year=2016, num_params=758_226, input_size=(1, 96, 96), min_side=29, notes="002",
                d2l=D2LRecipe(table_row=9, resize=96, batch_size=256, lr=0.1, test_acc=0.887),
                report=ReportPlan(cpu_side=48))
def densenet_d2l(*, num_classes: int = 10, in_channels: int = 1) -> DenseNet:
    """d2l's DenseNet(64, 32, [4, 4, 4, 4]) for 1x96x96 Fashion-MNIST (notes 002)."""
    spec = DenseNetSpec(num_init_features=64, growth_rate=32, block_config=(4, 4, 4, 4), bottleneck=False,
                        bias=True, default_size=96)
    return DenseNet(spec, model_name="densenet_d2l", in_channels=in_channels, num_classes=num_classes)


@register_model(paper=HUANG_2016, year=2016, num_params=6_957_834, input_size=(1, 224, 224), min_side=29,
                torchvision_layout=True)
def densenet121(*, num_classes: int = 10, in_channels: int = 1) -> DenseNet:
    """DenseNet-121 (DenseNet-BC, growth 32, blocks 6-12-24-16), torchvision's layout."""
    spec = DenseNetSpec(num_init_features=64, growth_rate=32, block_config=(6, 12, 24, 16), bottleneck=True,
                        bias=False, default_size=224)
    return DenseNet(spec, model_name="densenet121", in_channels=in_channels, num_classes=num_classes)
