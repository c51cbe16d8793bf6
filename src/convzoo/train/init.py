"""Weight-initialisation schemes, set on a freshly built model before training: d2l's Xavier init, He
init, ``kaiming-identity`` (NiN), ``dirac`` (airbench), the frozen batch-norm scales and airbench's whitening
layer set from the training images."""

from __future__ import annotations

import torch
from torch import nn

from convzoo.data import Split
from convzoo.errors import ConvzooError
from convzoo.models.airbench import Whitening
from convzoo.train.pipeline import Preprocess, generator

__all__ = ["CLASS_BIAS", "WHITEN_IMAGES", "dirac_init_", "freeze_bn_scales_", "kaiming_identity_init_",
           "kaiming_init_", "whiten_", "xavier_init_"]


def xavier_init_(net: nn.Module) -> None:
    """d2l's ``init_weights``: Xavier-uniform weights for every Conv2d and Linear (biases untouched)."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)


def kaiming_init_(net: nn.Module) -> None:
    """He et al. 2015's init for ReLU networks: normal weights of variance 2 / fan-in for every Conv2d and
    Linear, zero biases. It keeps the activations' scale through depth, which deep networks without batch
    norm (d2l's VGG, NiN, GoogLeNet) need to leave chance quickly; Xavier's halves it at every ReLU."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


CLASS_BIAS = 2.0  # kaiming-identity's start of the class convolution's biases (NiN: no class starts dead)


def kaiming_identity_init_(net: nn.Module) -> None:
    """``--init kaiming-identity``, for networks whose logits come out of a ReLU (d2l's NiN): He init, then
    every 1x1 convolution with as many outputs as inputs starts as the identity (zero bias), and the first
    convolution of the model's head (NiN's class convolution) starts with biases of ``CLASS_BIAS``.

    With random 1x1 filters between ReLUs, a channel's weighted sum of non-negative, alike inputs has the
    same sign for nearly every image: at He init 1 to 6 of NiN's 10 class logits are 0 for every image, get
    no gradient, and are never predicted (docs/benchmarks.md). The identity keeps each class channel the
    ReLU of the class convolution, which the bias starts positive."""
    square = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)
              and m.in_channels == m.out_channels and m.groups == 1]
    head = getattr(net, "head", None)
    first = next((m for m in head.modules() if isinstance(m, nn.Conv2d)), None) if isinstance(head, nn.Module) \
        else None
    if not square or first is None:
        raise ConvzooError(f"--init kaiming-identity sets square 1x1 convolutions and a convolution in the head, "
                           f"and {_name(net)} lacks them (nin has both); choose another --init")
    kaiming_init_(net)
    for m in square:
        nn.init.dirac_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    if first.bias is not None:
        nn.init.constant_(first.bias, CLASS_BIAS)


def _name(net: nn.Module) -> str:
    return str(getattr(net, "model_name", type(net).__name__))


def dirac_init_(net: nn.Module) -> None:
    """Identity init (airbench): in every 3x3 convolution after the network's first, the first
    ``in_channels`` filters pass their input channel through unchanged (a Dirac delta at the centre, zero
    bias); the other filters keep their init. A network of such layers starts close to the identity map on
    what its first layer extracts."""
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)][1:]
    convs = [m for m in convs if m.kernel_size == (3, 3) and m.groups == 1]
    if not convs:
        raise ConvzooError(f"--init dirac sets 3x3 convolutions after the first, and {_name(net)} has none; "
                           "choose another --init")
    for m in convs:
        nn.init.dirac_(m.weight[: m.in_channels])  # (out x in x 3 x 3: filters i < in pick channel i)
        if m.bias is not None:
            nn.init.zeros_(m.bias[: m.in_channels])


def freeze_bn_scales_(net: nn.Module) -> None:
    """``--bn-frozen-scale``: every batch norm's scale set to 1 and left out of training (airbench); the shift
    still trains."""
    layers = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None]
    if not layers:
        raise ConvzooError(f"--bn-frozen-scale freezes batch-norm scales, and {_name(net)} has no batch norm; "
                           "drop --bn-frozen-scale")
    for m in layers:
        nn.init.ones_(m.weight)
        m.weight.requires_grad_(False)


WHITEN_IMAGES = 5000  # training images whose patches set the whitening layer (airbench's count)


def whiten_(net: nn.Module, split: Split, preprocess: Preprocess, seed: int) -> None:
    """``--whiten``: set the model's first whitening layer (``models.airbench.Whitening``) from the patches of
    ``WHITEN_IMAGES`` training images drawn from ``seed`` (all of them when there are fewer), preprocessed as
    training sees them, before any augmentation; its kernels are frozen from then on."""
    layer = next((m for m in net.modules() if isinstance(m, Whitening)), None)
    if layer is None:
        raise ConvzooError(f"--whiten sets a whitening layer, and {_name(net)} has none (airbench_cifar has); "
                           "drop --whiten")
    pick = torch.randperm(len(split), generator=generator(seed, "whiten"))[:WHITEN_IMAGES]
    X = preprocess(split.images.index_select(0, pick.to(split.images.device)))  # N x C x H x W
    layer.whiten_(X.to(layer.weight.device))
