"""Helpers shared by the model tests."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def modules_in_run_order(net: nn.Module, X: Tensor) -> list[nn.Module]:
    """The modules of ``net`` in the order they first run on ``X`` (evaluation mode)."""
    order: list[nn.Module] = []
    seen: set[int] = set()

    def hook(module: nn.Module, args: object) -> None:
        if id(module) not in seen:
            seen.add(id(module))
            order.append(module)

    handles = [m.register_forward_pre_hook(hook) for m in net.modules()]
    was_training = net.training
    try:
        net.eval()
        with torch.no_grad():
            net(X)
    finally:
        for h in handles:
            h.remove()
        net.train(was_training)
    return order


def tensors_in_run_order(net: nn.Module, X: Tensor) -> list[Tensor]:
    """Parameters and buffers, module by module, in the order the modules first run."""
    tensors: list[Tensor] = []
    for module in modules_in_run_order(net, X):
        tensors += [*module.parameters(recurse=False), *module.buffers(recurse=False)]
    return tensors


def randomize_(net: nn.Module, seed: int = 0) -> None:
    """Fill every floating parameter and buffer with seeded random values (variances kept positive)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in [*net.named_parameters(), *net.named_buffers()]:
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                fan_in = t[0].numel() if t.dim() > 1 else 1
                t.copy_(torch.randn(t.shape, generator=g) / fan_in**0.5)


def copy_in_run_order(src: nn.Module, dst: nn.Module, X: Tensor) -> None:
    """Copy ``src``'s tensors into ``dst`` pairing them in run order; shapes must agree one to one."""
    a, b = tensors_in_run_order(src, X), tensors_in_run_order(dst, X)
    assert len(a) == len(b), f"{len(a)} tensors in the reference, {len(b)} in the zoo model"
    with torch.no_grad():
        for i, (s, d) in enumerate(zip(a, b, strict=True)):
            assert s.shape == d.shape, f"tensor {i}: reference {tuple(s.shape)} vs zoo {tuple(d.shape)}"
            d.copy_(s)
