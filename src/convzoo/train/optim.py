"""The optimizer and its learning-rate schedule: ``make_optimizer`` builds the optimizer a config names,
``lr_at`` gives the learning rate of every step (warm-up, then constant, cosine or one-cycle), and
``trained_out`` the parameters whose training has ended (airbench's whitening bias)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from convzoo.errors import ConvzooError
from convzoo.models.airbench import Whitening
from convzoo.train.config import TrainConfig
from convzoo.train.env import fused_sgd

__all__ = ["lr_at", "make_optimizer", "trained_out"]


def lr_at(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Learning rate at global step ``step``: linear warm-up from ``warmup_start`` x lr, then constant, or a
    cosine or linear (one-cycle) decay to ``final_lr_fraction`` x lr at the last step."""
    total = config.epochs * steps_per_epoch
    warm = config.warmup_epochs * steps_per_epoch
    if step < warm:
        start = config.warmup_start
        return config.lr * (start + (1 - start) * (step + 1) / warm)
    progress = (step - warm) / max(1.0, total - warm)
    end = config.final_lr_fraction
    if config.schedule == "cosine":
        return config.lr * (end + (1 - end) * 0.5 * (1 + math.cos(math.pi * progress)))
    if config.schedule == "onecycle":
        return config.lr * (end + (1 - end) * max(0.0, 1 - progress))
    return config.lr


def make_optimizer(config: TrainConfig, net: nn.Module) -> torch.optim.Optimizer:
    """The optimizer of ``config``. With ``--bias-lr-scale S`` the batch-norm shifts are a parameter group of
    their own whose lr is S times the others' (``lr_scale``, which the loop's schedule keeps) and whose weight
    decay is divided by S, so that their decay per step is the others' (airbench's BN-bias lr)."""
    params: Any = net.parameters()
    if config.bias_lr_scale != 1:
        shifts = {id(m.bias) for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                  and m.bias is not None}
        if not shifts:
            raise ConvzooError(f"--bias-lr-scale scales the learning rate of batch-norm shifts, and {config.model} "
                               "has no batch norm; drop --bias-lr-scale")
        scale, named = config.bias_lr_scale, list(net.named_parameters())  # (named: state.pt maps them by name)
        params = [{"params": [(n, p) for n, p in named if id(p) not in shifts], "lr_scale": 1.0},
                  {"params": [(n, p) for n, p in named if id(p) in shifts], "lr_scale": scale,
                   "lr": config.lr * scale, "weight_decay": config.weight_decay / scale}]
    if config.optimizer in ("sgd", "momentum", "nesterov"):
        momentum = 0.0 if config.optimizer == "sgd" else config.momentum
        return torch.optim.SGD(params, lr=config.lr, momentum=momentum, nesterov=config.optimizer == "nesterov",
                               weight_decay=config.weight_decay, fused=fused_sgd(net.parameters()))
    betas = (config.momentum, 0.999)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, betas=betas, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, betas=betas, weight_decay=config.weight_decay)


def trained_out(net: nn.Module, config: TrainConfig, epoch: int) -> list[Tensor]:
    """The parameters whose training has ended by epoch ``epoch`` (0-based): the whitening layer's bias after
    ``--whiten-bias-epochs`` epochs (airbench). They keep ``requires_grad`` (so that several processes'
    ``DistributedDataParallel`` sees the same parameters throughout); the loop drops their gradients."""
    if not config.whiten_bias_epochs or epoch < config.whiten_bias_epochs:
        return []
    return [m.bias for m in net.modules() if isinstance(m, Whitening) and m.bias is not None]
