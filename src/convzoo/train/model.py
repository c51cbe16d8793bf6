"""The run's model: built from the registry for the data set and initialised as the config says
(``build_model``), checked against the batch size (``check_batch_norm``), and the memory format it trains in
(``auto_channels_last``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from convzoo.errors import ConvzooError
from convzoo.models import ConvNet, create_model
from convzoo.train.config import TrainConfig
from convzoo.train.data import RunData
from convzoo.train.init import dirac_init_, freeze_bn_scales_, kaiming_identity_init_, kaiming_init_, xavier_init_
from convzoo.train.pipeline import derive_seed

__all__ = ["auto_channels_last", "build_model", "check_batch_norm"]


def build_model(config: TrainConfig, data: RunData) -> ConvNet:
    """The zoo model for this data set: its classes, its channels (unless the config says otherwise)."""
    kwargs = {"num_classes": data.num_classes, "in_channels": data.channels, **config.model_kwargs}
    torch.manual_seed(derive_seed(config.seed, "init"))
    net = create_model(config.model, **kwargs)
    if config.init == "xavier":
        xavier_init_(net)
    elif config.init == "kaiming":
        kaiming_init_(net)
    elif config.init == "dirac":
        dirac_init_(net)
    elif config.init == "kaiming-identity":
        kaiming_identity_init_(net)
    if config.bn_frozen_scale:
        freeze_bn_scales_(net)
    side = (config.resize, config.resize) if config.resize else data.image_size
    net.check_input(torch.empty(1, net.in_channels, *side, device="meta"))  # too small? say so now
    return net


def check_batch_norm(net: ConvNet, config: TrainConfig, data: RunData, processes: int = 1) -> None:
    """Refuse ``--batch-size 1`` for a model with a batch-norm layer that would then normalise one value
    per channel (BN-LeNet's BatchNorm1d after the flatten; a BatchNorm2d on 1 x 1 maps), which torch
    refuses in training mode, at the first step. (A batch of two or more always has enough values, and
    the loader drops a final batch of one.) Found by one evaluation-mode forward of one image, whose
    batch-norm layers neither update their statistics nor check."""
    layers = {name: m for name, m in net.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    if config.batch_size // processes > 1 or not layers:  # (each process normalises its own shard)
        return
    seen: dict[str, int] = {}  # layer -> values its input holds for the batch of one

    def record(name: str) -> Callable[[nn.Module, tuple[Tensor, ...]], None]:
        def hook(module: nn.Module, args: tuple[Tensor, ...]) -> None:  # (returns None: the input is unchanged)
            seen.setdefault(name, args[0].numel())
        return hook

    hooks = [m.register_forward_pre_hook(record(name)) for name, m in layers.items()]
    side = (config.resize, config.resize) if config.resize else data.image_size
    was_training = net.training
    try:
        net.eval()
        with torch.no_grad():
            net(torch.zeros(1, net.in_channels, *side, device=next(net.parameters()).device))  # 1 x C x H x W
    finally:
        net.train(was_training)
        for hook in hooks:
            hook.remove()
    single = [name for name, m in layers.items() if seen.get(name, 2) // m.num_features <= 1]
    if single:
        per = f" ({processes} processes: {config.batch_size // processes} image per process)" if processes > 1 else ""
        raise ConvzooError(f"--batch-size {config.batch_size}{per} cannot train {config.model}: its batch norm layer "
                           f"{single[0]} would normalise a single value per channel, which training mode cannot; "
                           f"use --batch-size {2 * processes} or more")

def auto_channels_last(net: nn.Module, device: torch.device) -> bool:
    """The memory format ``--channels-last`` left unset picks: NHWC on a CPU, where the training step runs
    1.1-1.4x faster in it for every zoo model measured (benchmarks/channels_last.py), except when a
    BatchNorm2d normalises fewer than 16 channels (BN-LeNet, whose first batch norm has 6: 0.38-0.66x; batch
    norm over so few channels vectorises badly in NHWC). FastCNN-MNIST, whose narrowest has 16, is 1.73x faster.
    NCHW on accelerators. Deterministic for a model, so a resumed run makes the same choice."""
    if device.type != "cpu":
        return False
    return not any(isinstance(m, nn.BatchNorm2d) and m.num_features < 16 for m in net.modules())
