"""Airbench: the network of Keller Jordan's CIFAR-10 speed records, "94% on CIFAR-10 in 3.29 Seconds on a
Single GPU" (2024, arXiv:2404.00498; its airbench94 script).

A whitening layer (a 2x2 convolution without padding whose kernels are set from the eigenvectors of the
training images' 2x2 patch covariance, then frozen: ``Whitening.whiten_``, which ``convzoo train --whiten``
calls before training), GELU, then three groups of conv-pool-BN-GELU-conv-BN-GELU (``fastcnn.ConvGroup``,
with airbench's batch-norm momentum and epsilon) of widths 64-256-256, each halving the side, global max
pooling and a bias-free dense layer whose logits are scaled by 1/9. airbench94 ends in ``MaxPool2d(3)`` on
its 3x3 map, which is the global max pooling here for 32x32 images; the adaptive one takes any side >= 9.

The rest of airbench's recipe (identity-initialised convolutions, frozen batch-norm scales with a 64x
learning rate on the shifts, lookahead, alternating flips, reflect translation, test-time translations) is
made of ``TrainConfig`` options any run can use; ``--recipe airbench`` sets them all (docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convzoo.models._base import ConvNet
from convzoo.models._registry import register_model
from convzoo.models.fastcnn import JORDAN_2024, ConvGroup, Scale

__all__ = ["Airbench", "AirbenchSpec", "Whitening"]


class Whitening(nn.Conv2d):
    """A k x k convolution without padding, ``C`` channels in, ``2 C k^2`` out, with a bias.

    Built as an ordinary (trainable) convolution; ``whiten_(X)`` turns it into a whitening layer: its first
    ``C k^2`` kernels are the eigenvectors of the covariance of the k x k patches of the images ``X``, largest
    eigenvalue first, each divided by ``sqrt(eigenvalue + eps)``, the other ``C k^2`` their negatives (so that
    the GELU after it keeps both signs), and the bias subtracts the patches' mean. Its output channels are
    then uncorrelated with unit variance over those patches. The kernels are frozen (``requires_grad``
    False); the bias keeps training.
    """

    def __init__(self, in_channels: int, kernel_size: int = 2) -> None:
        super().__init__(in_channels, 2 * in_channels * kernel_size**2, kernel_size, bias=True)

    @torch.no_grad()
    def whiten_(self, X: Tensor, eps: float = 5e-4, chunk: int = 512) -> None:
        """Set the kernels from the images ``X`` (``N x C x H x W``, preprocessed as training sees them) and
        freeze them. The covariance is summed in float64 over chunks of ``chunk`` images (5,000 CIFAR images
        hold 4.8 M patches)."""
        k = self.kernel_size[0]
        d = self.in_channels * k * k  # values in one patch, in the order of a kernel's weights: (c, i, j)
        total = torch.zeros(d, dtype=torch.float64, device=X.device)
        outer = torch.zeros(d, d, dtype=torch.float64, device=X.device)
        count = 0
        for part in X.split(chunk):
            patches = F.unfold(part.double(), k).transpose(1, 2).reshape(-1, d)  # n L x d
            total += patches.sum(dim=0)
            outer += patches.T @ patches
            count += len(patches)
        mean = total / count  # d
        covariance = (outer - count * torch.outer(mean, mean)) / (count - 1)  # d x d
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending; eigenvectors as columns
        kernels = (eigenvectors / (eigenvalues.clamp(min=0) + eps).sqrt()).T.flip(0)  # d x d, largest first
        weight = torch.cat([kernels, -kernels])  # 2d x d
        self.weight.copy_(weight.view_as(self.weight))  # (copy_ keeps the weight's memory format)
        assert self.bias is not None  # (built with one)
        self.bias.copy_(-(weight @ mean))
        self.weight.requires_grad_(False)


@dataclass(frozen=True)
class AirbenchSpec:
    widths: tuple[int, int, int]  # output channels of the three groups
    whiten_kernel: int = 2  # side of the whitening layer's patches, pixels
    bn_momentum: float = 0.4  # torch's convention; airbench's 0.6 is the weight it keeps of the running value
    bn_eps: float = 1e-12
    logit_scale: float = 1 / 9  # logits scaled down: a larger effective learning rate for the last layer
    default_size: int = 32


class Airbench(ConvNet):
    """A ``Whitening`` layer and GELU, three ``ConvGroup``s, global max pooling, a bias-free dense layer with
    scaled logits (airbench94)."""

    def __init__(self, spec: AirbenchSpec, *, model_name: str, in_channels: int, num_classes: int) -> None:
        super().__init__(model_name=model_name, in_channels=in_channels, num_classes=num_classes,
                         default_size=spec.default_size)
        whiten = Whitening(in_channels, spec.whiten_kernel)
        w1, w2, w3 = spec.widths
        bn = {"bn_momentum": spec.bn_momentum, "bn_eps": spec.bn_eps}
        self.features = nn.Sequential(
            nn.Sequential(whiten, nn.GELU()),  # B x 2Ck^2 x H-k+1 x W-k+1
            ConvGroup(whiten.out_channels, w1, **bn),  # B x w1 x (H-1)/2 x (W-1)/2 (k = 2)
            ConvGroup(w1, w2, **bn),  # B x w2 x (H-1)/4 x (W-1)/4
            ConvGroup(w2, w3, **bn),  # B x w3 x (H-1)/8 x (W-1)/8
        )
        self.head = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(w3, num_classes, bias=False),
                                  Scale(spec.logit_scale))


@register_model(paper=JORDAN_2024, year=2024, num_params=1_972_792, input_size=(3, 32, 32), min_side=9)
def airbench_cifar(*, num_classes: int = 10, in_channels: int = 3) -> Airbench:
    """airbench94's network for 32x32 colour images (widths 64-256-256, 118 M multiply-adds per image)."""
    spec = AirbenchSpec(widths=(64, 256, 256))
    return Airbench(spec, model_name="airbench_cifar", in_channels=in_channels, num_classes=num_classes)


@register_model(paper=JORDAN_2024, year=2024, num_params=498_104, input_size=(3, 32, 32), min_side=9)
def airbench_cifar_small(*, num_classes: int = 10, in_channels: int = 3) -> Airbench:
    """``airbench_cifar`` at half its widths (32-128-128; 33 M multiply-adds per image, 0.28x): not in the
    paper, a variant for CPUs, where the training step costs in proportion to the multiply-adds. convzoo's
    CIFAR-10 85% (``benchmarks/time_to_accuracy.py cifar10-85``) is this network with ``--recipe airbench``."""
    spec = AirbenchSpec(widths=(32, 128, 128))
    return Airbench(spec, model_name="airbench_cifar_small", in_channels=in_channels, num_classes=num_classes)
