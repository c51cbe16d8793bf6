"""Shared by the tests of convzoo.scratch: one hypothesis profile and the values-and-gradients comparison."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from hypothesis import HealthCheck, settings
from torch import Tensor

# reproducible (derandomize: the same examples on every run) and fast (a modest number of small examples)
SCRATCH = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.too_slow])
RTOL, ATOL = 1e-5, 1e-5  # float32; atol for values near zero


def leaf(shape: Sequence[int], g: torch.Generator, dtype: torch.dtype = torch.float32) -> Tensor:
    """A random tensor that autograd tracks."""
    return torch.randn(tuple(shape), generator=g, dtype=dtype).requires_grad_()


def assert_same_values_and_grads(ours: Callable[..., Tensor], theirs: Callable[..., Tensor],
                                 inputs: Sequence[Tensor], g: torch.Generator,
                                 rtol: float = RTOL, atol: float = ATOL) -> None:
    """``ours(*inputs)`` equals ``theirs(*inputs)``, and so do the gradients of both with respect to every
    input for one random upstream gradient (``torch.autograd.grad``)."""
    Y_ours, Y_theirs = ours(*inputs), theirs(*inputs)
    torch.testing.assert_close(Y_ours, Y_theirs, rtol=rtol, atol=atol)
    dY = torch.randn(Y_theirs.shape, generator=g, dtype=Y_theirs.dtype)
    grads_ours = torch.autograd.grad(Y_ours, inputs, dY)
    grads_theirs = torch.autograd.grad(Y_theirs, inputs, dY)
    for i, (a, b) in enumerate(zip(grads_ours, grads_theirs, strict=True)):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m, i=i: f"gradient of input {i}: {m}")
