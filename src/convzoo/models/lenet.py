"""LeNet (LeCun et al., 1998) in the forms the notes use, and d2l's batch-normalised LeNet.

Every variant is two 5x5 convolutions (6 and 16 channels) each followed by a 2x2 pooling, then a
dense block 400-120-84-classes. The variants differ only in what the spec below says.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import nn

from convzoo.models._base import ConvNet
from convzoo.models._registry import D2LRecipe, ReportPlan, register_model
from convzoo.scratch import BatchNorm, output_size

__all__ = ["LeNet", "LeNetSpec"]

LECUN_1998 = "LeCun et al., Gradient-Based Learning Applied to Document Recognition"
IOFFE_2015 = "Ioffe & Szegedy, Batch Normalization: Accelerating Deep Network Training"


@dataclass(frozen=True)
class LeNetSpec:
    input_size: int  # side of the square input the dense block is sized for
    padding: int  # padding of the first convolution
    pool: type[nn.Module]  # nn.AvgPool2d (d2l) or nn.MaxPool2d (notes 002-004)
    conv_act: type[nn.Module] | None  # activation after each convolution; None: none (notes 002, 004)
    dense_act: type[nn.Module]  # activation after each hidden dense layer
    norm: str = "none"  # "none", "torch" (nn.BatchNorm2d/1d) or "scratch" (convzoo.scratch.BatchNorm)


class LeNet(ConvNet):
    """LeNet-5: conv(6) -> pool -> conv(16) -> pool -> dense 120 -> 84 -> classes (LeCun et al., 1998)."""

    def __init__(self, spec: LeNetSpec, *, model_name: str, in_channels: int, num_classes: int) -> None:
        super().__init__(
            model_name=model_name, in_channels=in_channels, num_classes=num_classes, default_size=spec.input_size
        )

        def norm(channels: int, dims: int) -> list[nn.Module]:
            if spec.norm == "torch":
                return [nn.BatchNorm2d(channels) if dims == 4 else nn.BatchNorm1d(channels)]
            if spec.norm == "scratch":
                return [BatchNorm(channels)]
            return []

        def conv_unit(c_in: int, c_out: int, padding: int) -> list[nn.Module]:
            act = [spec.conv_act()] if spec.conv_act else []
            return [nn.Conv2d(c_in, c_out, kernel_size=5, padding=padding), *norm(c_out, 4), *act,
                    spec.pool(kernel_size=2, stride=2)]

        def dense_unit(d_in: int, d_out: int) -> list[nn.Module]:
            return [nn.Linear(d_in, d_out), *norm(d_out, 2), spec.dense_act()]

        # the side of the last feature map, by the output-size rule: conv 5 -> pool 2 -> conv 5 -> pool 2
        side = output_size(output_size(spec.input_size, 5, padding=spec.padding), 2, stride=2)
        side = output_size(output_size(side, 5), 2, stride=2)
        self.features = nn.Sequential(*conv_unit(in_channels, 6, spec.padding), *conv_unit(6, 16, 0))
        self.head = nn.Sequential(
            nn.Flatten(),  # B x 16 x side x side -> B x 16*side*side
            *dense_unit(16 * side * side, 120),
            *dense_unit(120, 84),
            nn.Linear(84, num_classes),
        )


D2L = LeNetSpec(input_size=28, padding=2, pool=nn.AvgPool2d, conv_act=nn.Sigmoid, dense_act=nn.Sigmoid)


# convzoo report trains it with d2l's recipe: measured, d2l's sigmoid LeNet reaches 0.814 after 10 epochs with
# d2l's recipe, 0.771 with fast's
@register_model(paper=LECUN_1998, year=1998, num_params=61_706, input_size=(1, 28, 28), min_side=28, max_side=31,
                notes="000", d2l=D2LRecipe(table_row=1, resize=28, batch_size=256, lr=0.9, test_acc=0.804),
                report=ReportPlan(recipe="d2l"))
def lenet(*, num_classes: int = 10, in_channels: int = 1) -> LeNet:
    """d2l's LeNet for 28x28: padding 2 on the first convolution, sigmoid, average pooling."""
    return LeNet(D2L, model_name="lenet", in_channels=in_channels, num_classes=num_classes)


@register_model(paper=LECUN_1998, year=1998, num_params=61_706, input_size=(1, 32, 32), min_side=32, max_side=35,
                notes="002/003")
def lenet_relu(*, num_classes: int = 10, in_channels: int = 1, conv_relu: bool = False) -> LeNet:
    """The 32x32 LeNet of notes 002: no padding, max pooling, ReLU in the dense part.

    ``conv_relu=True`` adds a ReLU after each convolution, as notes 003's ``Net`` does.
    """
    spec = LeNetSpec(input_size=32, padding=0, pool=nn.MaxPool2d, conv_act=nn.ReLU if conv_relu else None,
                     dense_act=nn.ReLU)
    return LeNet(spec, model_name="lenet_relu", in_channels=in_channels, num_classes=num_classes)


@register_model(paper=LECUN_1998, year=1998, num_params=62_006, input_size=(3, 32, 32), min_side=32, max_side=35,
                notes="004")
def lenet5_cifar(*, num_classes: int = 10, in_channels: int = 3) -> LeNet:
    """Notes 004's LeNet-5 for 3x32x32 CIFAR-10 images (no activation between the convolutions)."""
    spec = LeNetSpec(input_size=32, padding=0, pool=nn.MaxPool2d, conv_act=None, dense_act=nn.ReLU)
    return LeNet(spec, model_name="lenet5_cifar", in_channels=in_channels, num_classes=num_classes)


D2L_BN = LeNetSpec(input_size=28, padding=0, pool=nn.AvgPool2d, conv_act=nn.Sigmoid, dense_act=nn.Sigmoid,
                   norm="torch")


@register_model(paper=IOFFE_2015, year=2015, num_params=44_878, input_size=(1, 28, 28), min_side=28, max_side=31,
                notes="000", d2l=D2LRecipe(table_row=7, resize=28, batch_size=256, lr=1.0, test_acc=0.845))
def lenet_bn(*, num_classes: int = 10, in_channels: int = 1) -> LeNet:
    """d2l's BN-LeNet: batch norm (nn.BatchNorm2d/1d) after every convolution and hidden dense layer."""
    return LeNet(D2L_BN, model_name="lenet_bn", in_channels=in_channels, num_classes=num_classes)


@register_model(paper=IOFFE_2015, year=2015, num_params=44_878, input_size=(1, 28, 28), min_side=28, max_side=31,
                notes="000", d2l=D2LRecipe(table_row=6, resize=28, batch_size=256, lr=1.0, test_acc=0.859))
def lenet_bn_scratch(*, num_classes: int = 10, in_channels: int = 1) -> LeNet:
    """BN-LeNet with the hand-written ``convzoo.scratch.BatchNorm`` (momentum 0.1, eps 1e-5)."""
    return LeNet(replace(D2L_BN, norm="scratch"), model_name="lenet_bn_scratch", in_channels=in_channels,
                 num_classes=num_classes)
