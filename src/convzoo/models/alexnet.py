"""AlexNet (Krizhevsky, Sutskever & Hinton, 2012) as in d2l / notes 000, and notes 002's BN variant."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from convzoo.models._base import ConvNet
from convzoo.models._registry import FAST_WITHOUT_BATCH_NORM, D2LRecipe, ReportPlan, register_model

__all__ = ["AlexNet", "AlexNetSpec"]

KRIZHEVSKY_2012 = "Krizhevsky, Sutskever & Hinton, ImageNet Classification with Deep Convolutional Neural Networks"


@dataclass(frozen=True)
class AlexNetSpec:
    first_padding: int  # padding of the 11x11 stride-4 convolution: 1 in d2l, 0 in notes 002
    batch_norm: bool  # notes 002: BatchNorm2d after the ReLU of the first two convolutions


class AlexNet(ConvNet):
    """Five convolutions 96-256-384-384-256 with overlapping max pooling, then 6400-4096-4096-classes
    with dropout 0.5 (Krizhevsky et al., 2012; one tower, d2l's widths).

    A parameter-free ``AdaptiveAvgPool2d(5)`` before the classifier is the identity at 224x224 (as in
    torchvision) and lets any input at or above the minimum size through.
    """

    def __init__(self, spec: AlexNetSpec, *, model_name: str, in_channels: int, num_classes: int) -> None:
        super().__init__(model_name=model_name, in_channels=in_channels, num_classes=num_classes, default_size=224)

        def conv(c_in: int, c_out: int, kernel: int, stride: int, padding: int, norm: bool) -> list[nn.Module]:
            bn = [nn.BatchNorm2d(c_out)] if norm else []
            return [nn.Conv2d(c_in, c_out, kernel_size=kernel, stride=stride, padding=padding), nn.ReLU(), *bn]

        bn = spec.batch_norm
        self.features = nn.Sequential(
            *conv(in_channels, 96, 11, 4, spec.first_padding, bn),  # B x 96 x 54 x 54
            nn.MaxPool2d(kernel_size=3, stride=2),  # B x 96 x 26 x 26
            *conv(96, 256, 5, 1, 2, bn),
            nn.MaxPool2d(kernel_size=3, stride=2),  # B x 256 x 12 x 12
            *conv(256, 384, 3, 1, 1, False),
            *conv(384, 384, 3, 1, 1, False),
            *conv(384, 256, 3, 1, 1, False),
            nn.MaxPool2d(kernel_size=3, stride=2),  # B x 256 x 5 x 5
        )
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(5),
            nn.Flatten(),  # B x 6400
            nn.Linear(256 * 5 * 5, 4096), nn.ReLU(), nn.Dropout(p=0.5),
            nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(p=0.5),
            nn.Linear(4096, num_classes),
        )


# on a CPU the report trains it at 72x72: it takes 65 at the least, and 72 still reaches about d2l's accuracy
@register_model(paper=KRIZHEVSKY_2012, year=2012, num_params=46_764_746, input_size=(1, 224, 224), min_side=65,
                notes="000", d2l=D2LRecipe(table_row=2, resize=224, batch_size=128, lr=0.01, test_acc=0.881),
                report=ReportPlan(cpu_side=72, fast_overrides=FAST_WITHOUT_BATCH_NORM))
def alexnet(*, num_classes: int = 10, in_channels: int = 1) -> AlexNet:
    """d2l's AlexNet for 1x224x224 Fashion-MNIST (first convolution padded by 1)."""
    return AlexNet(AlexNetSpec(first_padding=1, batch_norm=False), model_name="alexnet",
                   in_channels=in_channels, num_classes=num_classes)


@register_model(paper=KRIZHEVSKY_2012, year=2012, num_params=46_765_450, input_size=(1, 224, 224), min_side=67,
                notes="002")
def alexnet_bn(*, num_classes: int = 10, in_channels: int = 1) -> AlexNet:
    """Notes 002's AlexNet: no padding on the first convolution, BatchNorm2d after the first two ReLUs.

    The notes use ``nn.Dropout1d`` on the B x 4096 activations, which PyTorch reads as one unbatched
    4096-long signal of B channels and so drops whole images; this uses ``nn.Dropout`` as intended
    (identical in evaluation mode).
    """
    return AlexNet(AlexNetSpec(first_padding=0, batch_norm=True), model_name="alexnet_bn",
                   in_channels=in_channels, num_classes=num_classes)
