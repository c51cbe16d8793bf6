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


def smallest_of_each_family() -> frozenset[str]:
    """The smallest registered model (by parameter count) of each family: the ones a test too slow to run for
    every model in the quick tier (``make check``) keeps there, so that every family is still covered."""
    from convzoo.models import list_models, model_info

    infos = [model_info(name) for name in list_models()]
    return frozenset(min((i for i in infos if i.family == family), key=lambda i: i.num_params).name
                     for family in {i.family for i in infos})


def every_model_quick_per_family() -> list:
    """Every registered model as a pytest parameter: quick for :func:`smallest_of_each_family`, ``slow`` for the
    rest, and ``heavy`` too for the 224-pixel ones among those but the smallest of each family (the larger VGGs
    and ResNets: 10-40 s each to export on two cores, more than CI's time for ``make test`` allows;
    ``make test-heavy`` runs them)."""
    import pytest

    from convzoo.models import list_models, model_info

    quick = smallest_of_each_family()
    infos = [model_info(name) for name in list_models()]
    large = [i for i in infos if i.default_input_size[-1] >= 224 or i.num_params > 25_000_000]
    # the smallest large model of each family stays in `make test`, so each family is checked at 224 pixels
    kept = {min((i for i in large if i.family == f), key=lambda i: i.num_params).name
            for f in {i.family for i in large}}
    heavy = {i.name for i in large} - kept - quick

    def marks(name: str) -> tuple:
        if name in quick:
            return ()
        return (pytest.mark.slow, pytest.mark.heavy) if name in heavy else (pytest.mark.slow,)

    return [pytest.param(name, marks=marks(name)) for name in list_models()]
