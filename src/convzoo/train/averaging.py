"""A moving average of a model's weights (``--ema``), optionally looked ahead to (``--lookahead``).

Every ``every`` training steps the average moves towards the weights as they are:
``average <- decay_t x average + (1 - decay_t) x weights``, with ``decay_t = decay^every x (t / T)^3`` after
step ``t`` of ``T``. The cube keeps the early averages close to the weights themselves (whose start is
random) and brings the full decay in towards the end, as airbench94 does (Jordan 2024). The average covers
the parameters and the floating-point buffers (batch-norm statistics), as a ``state_dict`` holds them.

With ``lookahead`` the training weights are set to the average at each update (Zhang et al. 2019's
lookahead as airbench94 uses it: training goes on from the average). Without it the training weights are
left alone and the average is a plain exponential moving average (Polyak averaging).

Either way the average is what a run evaluates and checkpoints; the training weights go into the
checkpoint's ``TrainingState.train_weights``, so that a resumed run continues exactly.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

__all__ = ["WeightAverage"]


class WeightAverage:
    """The moving average of ``net``'s floating-point ``state_dict`` entries, starting from them now.

    ``decay`` is per training step (in [0, 1)), ``every`` the steps between updates, ``total_steps`` the
    run's last step (``T`` above).
    """

    def __init__(self, net: nn.Module, *, decay: float, every: int, total_steps: int, lookahead: bool) -> None:
        self.decay = decay
        self.every = every
        self.total_steps = max(1, total_steps)
        self.lookahead = lookahead
        self.average = {name: value.detach().clone() for name, value in net.state_dict().items()
                        if value.is_floating_point()}

    def decay_at(self, step: int) -> float:
        """The decay of the update after global step ``step`` (0-based; 0 when no update follows it)."""
        if (step + 1) % self.every:
            return 0.0
        return float(self.decay**self.every * (min(step + 1, self.total_steps) / self.total_steps) ** 3)

    @torch.no_grad()
    def update(self, net: nn.Module, step: int) -> None:
        """After global training step ``step`` (0-based): move the average (every ``every`` steps), and with
        ``lookahead`` set ``net``'s weights to it."""
        if (step + 1) % self.every:
            return
        keep = self.decay_at(step)
        current = net.state_dict()
        for name, average in self.average.items():
            average.lerp_(current[name], 1 - keep)
            if self.lookahead:
                current[name].copy_(average)

    @torch.no_grad()
    def copy_to(self, net: nn.Module) -> None:
        """Set ``net``'s floating-point weights and buffers to the average."""
        current = net.state_dict()
        for name, average in self.average.items():
            current[name].copy_(average)

    @torch.no_grad()
    def load_(self, weights: Mapping[str, Tensor]) -> None:
        """Set the average to ``weights`` (a ``state_dict``: a checkpoint's, or a model's after ``copy_to``)."""
        for name, average in self.average.items():
            average.copy_(weights[name])
