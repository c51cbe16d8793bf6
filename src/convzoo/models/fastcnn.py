"""FastCNN: small networks for time-to-accuracy on a CPU, in the style of the CIFAR-10 speed records
(Keller Jordan's airbench; Page's ResNet-9 "DAWNBench" net): a 2x2 stem convolution, three groups of
conv-pool-BN-GELU-conv-BN-GELU each halving the side, global max pooling and one bias-free dense layer
with scaled-down logits. Small enough to train to MNIST's 99% and Fashion-MNIST's 91% in under a minute,
and CIFAR-10's 85% in about ten, on two CPU cores (benchmarks/time_to_accuracy.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from convzoo.models._base import ConvNet
from convzoo.models._registry import register_model

__all__ = ["ConvGroup", "FastCNN", "FastCNNSpec", "Scale"]

JORDAN_2024 = "Jordan, 94% on CIFAR-10 in 3.29 Seconds on a Single GPU (airbench)"


@dataclass(frozen=True)
class FastCNNSpec:
    stem: int  # output channels of the 2x2 stem convolution
    widths: tuple[int, int, int]  # output channels of the three groups
    default_size: int  # 28 for MNIST-like images, 32 for CIFAR
    logit_scale: float = 1 / 9  # logits are scaled down: a larger effective learning rate for the last layer


class ConvGroup(nn.Module):
    """3x3 conv, 2x2 max pool, BN, GELU, 3x3 conv, BN, GELU: halves the side, changes the width.
    ``bn_momentum`` and ``bn_eps`` are the batch norms' (torch's convention: the weight of the new batch)."""

    def __init__(self, in_channels: int, out_channels: int, *, bn_momentum: float = 0.1, bn_eps: float = 1e-5
                 ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.bn1 = nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum)
        self.act1 = nn.GELU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum)
        self.act2 = nn.GELU()

    def forward(self, X: Tensor) -> Tensor:
        X = self.act1(self.bn1(self.pool(self.conv1(X))))  # B x out x H/2 x W/2
        return self.act2(self.bn2(self.conv2(X)))


class Scale(nn.Module):
    """Multiplies by a constant (no parameters)."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, X: Tensor) -> Tensor:
        return X * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor:.4g}"


class FastCNN(ConvNet):
    """A 2x2 stem, three ``ConvGroup``s, global max pooling, a bias-free dense layer with scaled logits."""

    def __init__(self, spec: FastCNNSpec, *, model_name: str, in_channels: int, num_classes: int) -> None:
        super().__init__(model_name=model_name, in_channels=in_channels, num_classes=num_classes,
                         default_size=spec.default_size)
        w1, w2, w3 = spec.widths
        self.features = nn.Sequential(
            nn.Sequential(nn.Conv2d(in_channels, spec.stem, kernel_size=2, bias=True), nn.GELU()),  # H-1
            ConvGroup(spec.stem, w1),  # B x w1 x (H-1)/2
            ConvGroup(w1, w2),  # B x w2 x (H-1)/4
            ConvGroup(w2, w3),  # B x w3 x (H-1)/8
        )
        self.head = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(w3, num_classes, bias=False),
                                  Scale(spec.logit_scale))


@register_model(paper=JORDAN_2024, year=2024, num_params=73_704, input_size=(1, 28, 28), min_side=9)
def fastcnn_mnist(*, num_classes: int = 10, in_channels: int = 1) -> FastCNN:
    """FastCNN sized for MNIST-like 28x28 gray images on a CPU (widths 16-32-64)."""
    spec = FastCNNSpec(stem=8, widths=(16, 32, 64), default_size=28)
    return FastCNN(spec, model_name="fastcnn_mnist", in_channels=in_channels, num_classes=num_classes)


@register_model(paper=JORDAN_2024, year=2024, num_params=292_560, input_size=(1, 28, 28), min_side=9)
def fastcnn_fashion(*, num_classes: int = 10, in_channels: int = 1) -> FastCNN:
    """FastCNN for 28x28 gray images, twice as wide as ``fastcnn_mnist`` (widths 32-64-128)."""
    spec = FastCNNSpec(stem=16, widths=(32, 64, 128), default_size=28)
    return FastCNN(spec, model_name="fastcnn_fashion", in_channels=in_channels, num_classes=num_classes)


@register_model(paper=JORDAN_2024, year=2024, num_params=1_161_272, input_size=(3, 32, 32), min_side=9)
def fastcnn_cifar(*, num_classes: int = 10, in_channels: int = 3) -> FastCNN:
    """FastCNN sized for 32x32 colour images on a CPU (widths 64-128-256)."""
    spec = FastCNNSpec(stem=24, widths=(64, 128, 256), default_size=32)
    return FastCNN(spec, model_name="fastcnn_cifar", in_channels=in_channels, num_classes=num_classes)


@register_model(paper=JORDAN_2024, year=2024, num_params=656_760, input_size=(3, 32, 32), min_side=9)
def fastcnn_cifar_small(*, num_classes: int = 10, in_channels: int = 3) -> FastCNN:
    """FastCNN for 32x32 colour images at three quarters of ``fastcnn_cifar``'s widths (48-96-192): about
    1.6x its training speed on two CPU cores (convzoo bench, batch 512) and CIFAR-10's 85% in 8 epochs."""
    spec = FastCNNSpec(stem=24, widths=(48, 96, 192), default_size=32)
    return FastCNN(spec, model_name="fastcnn_cifar_small", in_channels=in_channels, num_classes=num_classes)
