"""Batch normalisation from first principles (Ioffe & Szegedy, 2015; d2l 7.5), checked against PyTorch.

Pure tensor code: no ``torch.nn.functional`` inside. Matches ``F.batch_norm`` exactly, running
statistics included: the batch variance normalises (biased), the running variance is updated with the
unbiased one, ``running = (1 - momentum) * running + momentum * batch``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from convzoo.errors import ConvzooError

__all__ = ["BatchNorm", "batch_norm"]


def _check_stat(t: Tensor | None, name: str, channels: int) -> None:
    if t is not None and tuple(t.shape) != (channels,):
        raise ConvzooError(f"{name} must have shape ({channels},) for {channels} channels, got {tuple(t.shape)}")


def batch_norm(
    X: Tensor,
    gamma: Tensor | None,
    beta: Tensor | None,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    training: bool,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Normalise ``X`` (``N x C`` or ``N x C x H x W``) per channel, then scale by gamma and shift by beta.

    In training mode the batch statistics normalise and, when given, the running statistics are updated
    in place; in evaluation mode the running statistics normalise.
    """
    if X.dim() not in (2, 4):
        raise ConvzooError(f"X must be N x C or N x C x H x W, got {X.dim()} dimensions {tuple(X.shape)}")
    channels = X.shape[1]
    for t, name in ((gamma, "gamma"), (beta, "beta"), (running_mean, "running_mean"), (running_var, "running_var")):
        _check_stat(t, name, channels)
    if not 0.0 <= momentum <= 1.0:
        raise ConvzooError(f"momentum must be between 0 and 1, got {momentum}")
    if eps <= 0:
        raise ConvzooError(f"eps must be > 0, got {eps}")
    dims = (0,) if X.dim() == 2 else (0, 2, 3)
    shape = (1, channels) if X.dim() == 2 else (1, channels, 1, 1)  # broadcast a per-channel vector
    if training:
        count = X.numel() // channels  # values per channel in this batch
        if count < 2:
            raise ConvzooError(
                f"training-mode batch norm needs more than 1 value per channel, got input shape "
                f"{tuple(X.shape)}; use a batch of 2 or more, or evaluation mode"
            )
        mean = X.mean(dim=dims)
        var = ((X - mean.reshape(shape)) ** 2).mean(dim=dims)  # biased, as used to normalise
        if running_mean is not None and running_var is not None:
            with torch.no_grad():
                running_mean.mul_(1 - momentum).add_(momentum * mean)
                running_var.mul_(1 - momentum).add_(momentum * var * count / (count - 1))
    else:
        if running_mean is None or running_var is None:
            raise ConvzooError("evaluation mode needs running_mean and running_var")
        mean, var = running_mean, running_var
    X_hat = (X - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + eps)
    if gamma is not None:
        X_hat = X_hat * gamma.reshape(shape)
    if beta is not None:
        X_hat = X_hat + beta.reshape(shape)
    return X_hat


# torch.fx records a call of batch_norm as one node instead of tracing into it: its checks and its branches on
# the input's rank and size are Python control flow on values a symbolic trace does not have. The graph runs
# it as written (``torch.fx.symbolic_trace(create_model("lenet_bn_scratch"))``); ``self.training`` is read at
# trace time, as fx does for every module it traces through.
torch.fx.wrap("batch_norm")


class BatchNorm(nn.Module):
    """Hand-written batch norm layer for ``N x C`` or ``N x C x H x W`` input.

    A drop-in for ``nn.BatchNorm1d`` / ``nn.BatchNorm2d``: same parameters (``weight``, ``bias``), same
    buffers (``running_mean``, ``running_var``, ``num_batches_tracked``), same state_dict keys.
    """

    running_mean: Tensor
    running_var: Tensor
    num_batches_tracked: Tensor

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(num_features))  # gamma
        self.bias = nn.Parameter(torch.zeros(num_features))  # beta
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, X: Tensor) -> Tensor:
        if self.training:
            self.num_batches_tracked.add_(1)
        return batch_norm(
            X, self.weight, self.bias, self.running_mean, self.running_var,
            self.training, self.momentum, self.eps,
        )

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"
