"""Residual networks: He et al. (2015) in torchvision's layout, the CIFAR variants, pre-activation
units (He et al., 2016) and notes 004's small residual net with its shortcut bug fixed."""

from __future__ import annotations

from torch import Tensor, nn

from convzoo.errors import ModelError
from convzoo.models._base import ConvNet
from convzoo.models._registry import D2LRecipe, ReportPlan, register_model

__all__ = ["BasicBlock", "Bottleneck", "PreActBlock", "ResBlk", "ResNet", "ResNetMini"]

HE_2015 = "He, Zhang, Ren & Sun, Deep Residual Learning for Image Recognition"
HE_2016 = "He, Zhang, Ren & Sun, Identity Mappings in Deep Residual Networks"


def _projection(in_channels: int, out_channels: int, stride: int, norm: bool = True) -> nn.Module | None:
    """1x1 convolution for the shortcut when the stride or the channel count changes, else None."""
    if stride == 1 and in_channels == out_channels:
        return None
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out_channels)) if norm else conv


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm, added to the (projected) input, then ReLU."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _projection(in_channels, planes, stride)
        self.relu2 = nn.ReLU()

    def forward(self, X: Tensor) -> Tensor:
        Y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(X)))))  # B x planes x H/stride x W/stride
        shortcut = X if self.downsample is None else self.downsample(X)
        return self.relu2(Y + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride, torchvision's "v1.5"), 1x1 expand by 4, plus shortcut."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(planes, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample = _projection(in_channels, out_channels, stride)
        self.relu3 = nn.ReLU()

    def forward(self, X: Tensor) -> Tensor:
        Y = self.relu1(self.bn1(self.conv1(X)))  # B x planes x H x W
        Y = self.relu2(self.bn2(self.conv2(Y)))  # B x planes x H/stride x W/stride
        Y = self.bn3(self.conv3(Y))  # B x 4*planes x H/stride x W/stride
        shortcut = X if self.downsample is None else self.downsample(X)
        return self.relu3(Y + shortcut)


class PreActBlock(nn.Module):
    """Pre-activation unit (He et al., 2016): BN-ReLU-conv twice; the shortcut adds the raw input, or a
    1x1 projection of the pre-activated input when the shape changes."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=1, bias=False)
        self.shortcut = _projection(in_channels, planes, stride, norm=False)

    def forward(self, X: Tensor) -> Tensor:
        A = self.relu1(self.bn1(X))
        Y = self.conv2(self.relu2(self.bn2(self.conv1(A))))  # B x planes x H/stride x W/stride
        return Y + (X if self.shortcut is None else self.shortcut(A))


Block = type[BasicBlock] | type[Bottleneck] | type[PreActBlock]


class ResNet(ConvNet):
    """ResNet (He et al., 2015): a stem, four stages of residual blocks (64-128-256-512 planes, stride 2
    from the second stage on), global average pooling and one dense layer; torchvision's layout and init.

    ``stem="imagenet"``: 7x7 stride-2 convolution, BN, ReLU, 3x3 stride-2 max pool (224x224 inputs).
    ``stem="cifar"``: one 3x3 convolution, no max pool (32x32 inputs). Pre-activation blocks take the
    CIFAR stem without its BN-ReLU, and a final BN-ReLU after the last stage.
    """

    def __init__(self, block: Block, layers: tuple[int, int, int, int], *, stem: str, model_name: str,
                 in_channels: int, num_classes: int, default_size: int) -> None:
        super().__init__(model_name=model_name, in_channels=in_channels, num_classes=num_classes,
                         default_size=default_size)
        preact = block is PreActBlock
        if stem == "imagenet":
            stem_layers: list[nn.Module] = [
                nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False),
                nn.BatchNorm2d(64), nn.ReLU(),
                nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            ]  # B x 64 x H/4 x W/4
        elif stem == "cifar":
            stem_layers = [nn.Conv2d(in_channels, 64, kernel_size=3, padding=1, bias=False)]
            if not preact:
                stem_layers += [nn.BatchNorm2d(64), nn.ReLU()]
        else:
            raise ModelError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        stages: list[nn.Module] = [nn.Sequential(*stem_layers)]
        channels = 64
        for index, (planes, count) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            stride = 1 if index == 0 else 2
            blocks = []
            for i in range(count):
                blocks.append(block(channels, planes, stride if i == 0 else 1))
                channels = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        if preact:
            stages.append(nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU()))
        self.features = nn.Sequential(*stages)  # B x 512*expansion x H/32 x W/32 (imagenet stem)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(channels, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


@register_model(paper=HE_2015, year=2015, num_params=11_175_370, input_size=(1, 224, 224), min_side=1,
                torchvision_layout=True,
                d2l=D2LRecipe(table_row=8, resize=96, batch_size=256, lr=0.05, test_acc=0.909),
                report=ReportPlan(cpu_side=48))
def resnet18(*, num_classes: int = 10, in_channels: int = 1) -> ResNet:
    """ResNet-18: basic blocks [2, 2, 2, 2], ImageNet stem."""
    return ResNet(BasicBlock, (2, 2, 2, 2), stem="imagenet", model_name="resnet18", in_channels=in_channels,
                  num_classes=num_classes, default_size=224)


@register_model(paper=HE_2015, year=2015, num_params=21_283_530, input_size=(1, 224, 224), min_side=1,
                torchvision_layout=True)
def resnet34(*, num_classes: int = 10, in_channels: int = 1) -> ResNet:
    """ResNet-34: basic blocks [3, 4, 6, 3], ImageNet stem."""
    return ResNet(BasicBlock, (3, 4, 6, 3), stem="imagenet", model_name="resnet34", in_channels=in_channels,
                  num_classes=num_classes, default_size=224)


@register_model(paper=HE_2015, year=2015, num_params=23_522_250, input_size=(1, 224, 224), min_side=1,
                torchvision_layout=True)
def resnet50(*, num_classes: int = 10, in_channels: int = 1) -> ResNet:
    """ResNet-50: bottleneck blocks [3, 4, 6, 3], ImageNet stem."""
    return ResNet(Bottleneck, (3, 4, 6, 3), stem="imagenet", model_name="resnet50", in_channels=in_channels,
                  num_classes=num_classes, default_size=224)


@register_model(paper=HE_2015, year=2015, num_params=11_173_962, input_size=(3, 32, 32), min_side=1)
def resnet18_cifar(*, num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """ResNet-18 for 32x32 images: 3x3 stem, no max pool."""
    return ResNet(BasicBlock, (2, 2, 2, 2), stem="cifar", model_name="resnet18_cifar", in_channels=in_channels,
                  num_classes=num_classes, default_size=32)


@register_model(paper=HE_2016, year=2016, num_params=11_172_170, input_size=(3, 32, 32), min_side=1, notes="001")
def preact_resnet18(*, num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """Pre-activation ResNet-18 for 32x32 images (notes 001's homework reading)."""
    return ResNet(PreActBlock, (2, 2, 2, 2), stem="cifar", model_name="preact_resnet18",
                  in_channels=in_channels, num_classes=num_classes, default_size=32)


class ResBlk(nn.Module):
    """Notes 004's residual block: two 3x3 convolutions (with bias) and BN, no ReLU after the sum.

    Fixed: the shortcut is projected whenever the stride or the channel count changes (the notes project
    only on a channel change, and broadcasting hides the mismatch of their last, stride-2 block).
    """

    def __init__(self, chan_in: int, chan_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(chan_in, chan_out, kernel_size=3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm2d(chan_out)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(chan_out, chan_out, kernel_size=3, stride=1, padding=1)
        self.bn2 = nn.BatchNorm2d(chan_out)
        self.extra = None
        if stride != 1 or chan_in != chan_out:
            self.extra = nn.Sequential(nn.Conv2d(chan_in, chan_out, kernel_size=1, stride=stride),
                                       nn.BatchNorm2d(chan_out))

    def forward(self, X: Tensor) -> Tensor:
        Y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(X)))))  # B x chan_out x H/stride x W/stride
        return (X if self.extra is None else self.extra(X)) + Y


class ResNetMini(ConvNet):
    """Notes 004's small "ResNet18" for CIFAR-10: a 3x3 stride-3 stem, four stride-2 ``ResBlk``s
    (64-128-256-512-512), global max pooling, one dense layer."""

    def __init__(self, *, model_name: str, in_channels: int, num_classes: int) -> None:
        super().__init__(model_name=model_name, in_channels=in_channels, num_classes=num_classes, default_size=32)
        self.features = nn.Sequential(
            nn.Sequential(nn.Conv2d(in_channels, 64, kernel_size=3, stride=3, padding=0), nn.BatchNorm2d(64),
                          nn.ReLU()),  # B x 64 x 10 x 10 at 32x32
            ResBlk(64, 128, stride=2),  # B x 128 x 5 x 5
            ResBlk(128, 256, stride=2),  # B x 256 x 3 x 3
            ResBlk(256, 512, stride=2),  # B x 512 x 2 x 2
            ResBlk(512, 512, stride=2),  # B x 512 x 1 x 1
        )
        self.head = nn.Sequential(nn.AdaptiveMaxPool2d((1, 1)), nn.Flatten(), nn.Linear(512, num_classes))


@register_model(paper=HE_2015, year=2015, num_params=9_817_354, input_size=(3, 32, 32), min_side=3, notes="004")
def resnet_mini_cifar(*, num_classes: int = 10, in_channels: int = 3) -> ResNetMini:
    """Notes 004's small residual net for 3x32x32, shortcut bug fixed."""
    return ResNetMini(model_name="resnet_mini_cifar", in_channels=in_channels, num_classes=num_classes)
