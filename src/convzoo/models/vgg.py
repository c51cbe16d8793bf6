"""VGG (Simonyan & Zisserman, 2014) built from notes 000's ``vgg_block``s, torchvision's layout."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from convzoo.models._base import ConvNet
from convzoo.models._registry import FAST_WITHOUT_BATCH_NORM, D2LRecipe, ReportPlan, register_model

__all__ = ["VGG", "VGGHead", "vgg_block"]

SIMONYAN_2014 = "Simonyan & Zisserman, Very Deep Convolutional Networks for Large-Scale Image Recognition"

# (number of 3x3 convolutions, output channels) of each block; every block ends in a 2x2 max pool
CFGS: dict[str, tuple[tuple[int, int], ...]] = {
    "vgg11": ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512)),
    "vgg13": ((2, 64), (2, 128), (2, 256), (2, 512), (2, 512)),
    "vgg16": ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)),
    "vgg19": ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512)),
}


def vgg_block(num_convs: int, in_channels: int, out_channels: int, batch_norm: bool = False) -> nn.Sequential:
    """``num_convs`` 3x3 convolutions (padding 1) with ReLU, then a 2x2 max pool halving height and width."""
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        layers.append(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU())
        in_channels = out_channels
    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


class VGGHead(nn.Sequential):
    """VGG's classifier: ``AdaptiveAvgPool2d(7)``, ``Flatten``, then linear layers; an ``nn.Sequential`` whose
    layers and state_dict keys are torchvision's.

    Below 64 pixels a side VGG's feature map is 1x1 (five 2x2 pools), and the pool's 7x7 output is 49 copies
    of each channel, so the first linear layer sees each of its input channels 49 times. Its output then
    equals ``x @ W'.T + b`` with ``W'`` the weights of each channel's 49 positions summed, and the gradients
    reaching ``W`` through the sum are those of the full product: the same function and the same training,
    for 1/49 of that layer's multiply-adds (the training step of vgg11_small at 32x32 1.97x faster on this
    CPU, of vgg11 1.79x: benchmarks/vgg_head.py). It is taken only when nothing observes the pool, the
    flatten or that layer (no forward hooks on them, as ``convzoo.summary`` and ``convzoo.features`` add), so
    what an inspector sees is always the layers' own work; FX's symbolic trace records the layers too.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # B x C x h x w -> B x classes
        fc = None if isinstance(x, torch.fx.Proxy) or x.shape[-2:] != (1, 1) else self._foldable_linear()
        if fc is None:
            return super().forward(x)
        weight = fc.weight.view(fc.out_features, x.shape[1], -1).sum(-1)  # out x C
        x = F.linear(x.flatten(1), weight, fc.bias)  # B x out, as fc over the pool's 49 copies
        for layer in list(self)[3:]:
            x = layer(x)
        return x

    def _foldable_linear(self) -> nn.Linear | None:
        """The first linear layer, if the shortcut's assumptions hold and nothing observes the layers it skips."""
        pool, flatten, fc = list(self)[:3]
        if not (isinstance(pool, nn.AdaptiveAvgPool2d) and isinstance(flatten, nn.Flatten)
                and isinstance(fc, nn.Linear)):
            return None  # a replaced layer: no assumption holds
        if pool.output_size not in (7, (7, 7)) or fc.in_features % 49 or flatten.start_dim != 1:
            return None
        observed = any(m._forward_hooks or m._forward_pre_hooks for m in (pool, flatten, fc))
        global_hooks = nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks
        return None if observed or global_hooks else fc


class VGG(ConvNet):
    """VGG: ``vgg_block``s from a config, then 512x7x7-4096-4096-classes with dropout 0.5
    (Simonyan & Zisserman, 2014).

    A parameter-free ``AdaptiveAvgPool2d(7)`` before the classifier is the identity at 224x224, as in
    torchvision. Initialised as torchvision does (Kaiming-normal convolutions, N(0, 0.01) linear layers).
    """

    def __init__(self, arch: tuple[tuple[int, int], ...], *, batch_norm: bool, model_name: str,
                 in_channels: int, num_classes: int) -> None:
        super().__init__(model_name=model_name, in_channels=in_channels, num_classes=num_classes, default_size=224)
        blocks = []
        channels = in_channels
        for num_convs, out_channels in arch:  # each block: B x C x H x W -> B x C' x H/2 x W/2
            blocks.append(vgg_block(num_convs, channels, out_channels, batch_norm))
            channels = out_channels
        self.features = nn.Sequential(*blocks)  # B x 512 x 7 x 7 at 224x224
        self.head = VGGHead(  # B x C x h x w -> B x classes
            nn.AdaptiveAvgPool2d(7),
            nn.Flatten(),
            nn.Linear(channels * 7 * 7, 4096), nn.ReLU(), nn.Dropout(p=0.5),
            nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(p=0.5),
            nn.Linear(4096, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)


def _vgg(name: str, cfg: str, batch_norm: bool, in_channels: int, num_classes: int) -> VGG:
    return VGG(CFGS[cfg], batch_norm=batch_norm, model_name=name, in_channels=in_channels, num_classes=num_classes)


@register_model(paper=SIMONYAN_2014, year=2014, num_params=128_806_154, input_size=(1, 224, 224), min_side=32,
                torchvision_layout=True, notes="000")
def vgg11(*, num_classes: int = 10, in_channels: int = 1) -> VGG:
    """VGG-11 (configuration A), notes 000's ``conv_arch``."""
    return _vgg("vgg11", "vgg11", False, in_channels, num_classes)


@register_model(paper=SIMONYAN_2014, year=2014, num_params=128_990_666, input_size=(1, 224, 224), min_side=32,
                torchvision_layout=True)
def vgg13(*, num_classes: int = 10, in_channels: int = 1) -> VGG:
    """VGG-13 (configuration B)."""
    return _vgg("vgg13", "vgg13", False, in_channels, num_classes)


@register_model(paper=SIMONYAN_2014, year=2014, num_params=134_300_362, input_size=(1, 224, 224), min_side=32,
                torchvision_layout=True)
def vgg16(*, num_classes: int = 10, in_channels: int = 1) -> VGG:
    """VGG-16 (configuration D)."""
    return _vgg("vgg16", "vgg16", False, in_channels, num_classes)


@register_model(paper=SIMONYAN_2014, year=2014, num_params=139_610_058, input_size=(1, 224, 224), min_side=32,
                torchvision_layout=True)
def vgg19(*, num_classes: int = 10, in_channels: int = 1) -> VGG:
    """VGG-19 (configuration E)."""
    return _vgg("vgg19", "vgg19", False, in_channels, num_classes)


@register_model(paper=SIMONYAN_2014, year=2014, num_params=128_811_658, input_size=(1, 224, 224), min_side=32,
                torchvision_layout=True)
def vgg11_bn(*, num_classes: int = 10, in_channels: int = 1) -> VGG:
    """VGG-11 with batch norm after every convolution."""
    return _vgg("vgg11_bn", "vgg11", True, in_channels, num_classes)


@register_model(paper=SIMONYAN_2014, year=2014, num_params=128_996_554, input_size=(1, 224, 224), min_side=32,
                torchvision_layout=True)
def vgg13_bn(*, num_classes: int = 10, in_channels: int = 1) -> VGG:
    """VGG-13 with batch norm after every convolution."""
    return _vgg("vgg13_bn", "vgg13", True, in_channels, num_classes)


@register_model(paper=SIMONYAN_2014, year=2014, num_params=134_308_810, input_size=(1, 224, 224), min_side=32,
                torchvision_layout=True)
def vgg16_bn(*, num_classes: int = 10, in_channels: int = 1) -> VGG:
    """VGG-16 with batch norm after every convolution."""
    return _vgg("vgg16_bn", "vgg16", True, in_channels, num_classes)


@register_model(paper=SIMONYAN_2014, year=2014, num_params=139_621_066, input_size=(1, 224, 224), min_side=32,
                torchvision_layout=True)
def vgg19_bn(*, num_classes: int = 10, in_channels: int = 1) -> VGG:
    """VGG-19 with batch norm after every convolution."""
    return _vgg("vgg19_bn", "vgg19", True, in_channels, num_classes)


# on a CPU the report trains it at 32x32, its smallest side, where VGGHead's shortcut takes 48/49 of its first
# linear layer's work away (0.9030 after 7 epochs in 15 minutes at best, docs/benchmarks.md); 48x48 for the same
# time, or crops and flips, level off no higher on a validation split (2026-12-06)
@register_model(paper=SIMONYAN_2014, year=2014, num_params=43_093_322, input_size=(1, 224, 224), min_side=32,
                notes="000", d2l=D2LRecipe(table_row=3, resize=224, batch_size=128, lr=0.05, test_acc=0.919),
                report=ReportPlan(cpu_side=32, fast_overrides=FAST_WITHOUT_BATCH_NORM))
def vgg11_small(*, num_classes: int = 10, in_channels: int = 1) -> VGG:
    """Notes 000's VGG-11 with every block a quarter as wide (``small_conv_arch``, ratio 4)."""
    arch = tuple((num_convs, width // 4) for num_convs, width in CFGS["vgg11"])
    return VGG(arch, batch_norm=False, model_name="vgg11_small", in_channels=in_channels, num_classes=num_classes)
