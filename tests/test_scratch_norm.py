"""convzoo.scratch.batch_norm / BatchNorm and output_size against PyTorch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from convzoo.scratch import BatchNorm, batch_norm, output_size
from scratch_checks import SCRATCH, assert_same_values_and_grads, leaf


@pytest.mark.parametrize("shape", [(8, 5), (4, 3, 6, 7)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_matches_functional(shape, training):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(shape, generator=g) * 3 + 1
    C = shape[1]
    gamma, beta = torch.randn(C, generator=g), torch.randn(C, generator=g)
    rm, rv = torch.randn(C, generator=g), torch.rand(C, generator=g) + 0.5
    rm2, rv2 = rm.clone(), rv.clone()
    got = batch_norm(X, gamma, beta, rm, rv, training, momentum=0.2, eps=1e-4)
    want = F.batch_norm(X, rm2, rv2, gamma, beta, training, momentum=0.2, eps=1e-4)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(rm, rm2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(rv, rv2, rtol=1e-5, atol=1e-6)


@st.composite
def batch_norm_cases(draw):
    training = draw(st.booleans())
    if draw(st.booleans()):  # N x C
        shape = (draw(st.integers(2 if training else 1, 6)), draw(st.integers(1, 4)))
    else:  # N x C x H x W; training needs 2 or more values per channel
        shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4)))
        if training and shape[0] * shape[2] * shape[3] < 2:
            shape = (2, *shape[1:])
    return {"shape": shape, "training": training, "affine": draw(st.booleans()),
            "track": draw(st.booleans()) or not training,  # evaluation mode needs running statistics
            "momentum": draw(st.floats(0, 1)), "eps": draw(st.sampled_from([1e-5, 1e-3, 0.1])),
            "seed": draw(st.integers(0, 2**32 - 1))}


@SCRATCH
@given(batch_norm_cases())
def test_batch_norm_matches_functional_values_grads_and_running_stats(case):
    g = torch.Generator().manual_seed(case["seed"])
    C = case["shape"][1]
    X = (torch.randn(case["shape"], generator=g) * 2 + 1).requires_grad_()
    inputs = [X] + ([leaf((C,), g), leaf((C,), g)] if case["affine"] else [])
    stats = (torch.randn(C, generator=g), torch.rand(C, generator=g) + 0.5) if case["track"] else (None, None)
    ours_stats = [t.clone() if t is not None else None for t in stats]
    theirs_stats = [t.clone() if t is not None else None for t in stats]
    kwargs = {"momentum": case["momentum"], "eps": case["eps"]}

    def ours(X, gamma=None, beta=None):
        return batch_norm(X, gamma, beta, *ours_stats, case["training"], **kwargs)

    def theirs(X, gamma=None, beta=None):
        return F.batch_norm(X, *theirs_stats, gamma, beta, case["training"], **kwargs)

    assert_same_values_and_grads(ours, theirs, inputs, g)
    for a, b in zip(ours_stats, theirs_stats, strict=True):  # updated in place by the one call of each
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("cls", "shape"), [(nn.BatchNorm1d, (6, 4)), (nn.BatchNorm2d, (3, 4, 5, 5))])
def test_module_is_a_drop_in_for_nn_batchnorm(cls, shape):
    ours, theirs = BatchNorm(4), cls(4)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    X = torch.randn(shape, requires_grad=True)
    for _ in range(3):
        torch.testing.assert_close(ours(X), theirs(X), rtol=1e-5, atol=1e-6)
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    ours.eval(), theirs.eval()
    torch.testing.assert_close(ours(X), theirs(X), rtol=1e-5, atol=1e-6)


def test_batch_norm_errors():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        batch_norm(torch.zeros(1, 3), None, None, None, None, training=True)
    with pytest.raises(ValueError, match=r"gamma must have shape \(3,\)"):
        batch_norm(torch.zeros(2, 3), torch.ones(4), None, None, None, training=True)
    with pytest.raises(ValueError, match="N x C or N x C x H x W"):
        batch_norm(torch.zeros(2, 3, 4), None, None, None, None, training=True)
    with pytest.raises(ValueError, match="evaluation mode needs"):
        batch_norm(torch.zeros(2, 3), None, None, None, None, training=False)


@pytest.mark.parametrize(
    ("n", "k", "p", "s", "d"),
    [(5, 3, 0, 1, 1), (5, 3, 1, 1, 1), (5, 3, 0, 2, 1), (28, 5, 2, 1, 1), (224, 11, 1, 4, 1), (7, 3, 0, 1, 2),
     (6, 2, 0, 2, 1)],
)
def test_output_size_matches_pytorch(n, k, p, s, d):
    y = F.conv2d(torch.zeros(1, 1, n, n), torch.zeros(1, 1, k, k), stride=s, padding=p, dilation=d)
    assert output_size(n, k, p, s, d) == y.shape[-1]


def test_output_size_errors():
    with pytest.raises(ValueError, match="kernel covers 5 pixels.*padded input has only 3"):
        output_size(3, 5)
    with pytest.raises(ValueError, match="stride must be a whole number >= 1"):
        output_size(5, 3, stride=0)


def test_fx_traces_the_layer_as_one_call_that_agrees_in_both_modes():
    """``torch.fx.symbolic_trace`` of the hand-written layer (and of lenet_bn_scratch, in tests/test_models.py):
    its functional core is recorded as one call, so its Python checks and branches run when the graph runs.
    The mode is the one traced in (as for any module fx traces through)."""
    for shape in ((8, 3), (4, 3, 5, 5)):
        X = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
        for training in (True, False):
            layer, reference = BatchNorm(3).train(training), BatchNorm(3).train(training)
            graph = torch.fx.symbolic_trace(layer)
            assert [n.target for n in graph.graph.nodes if n.op == "call_function"] == [batch_norm]
            torch.testing.assert_close(graph(X), reference(X))
            torch.testing.assert_close(graph.running_var, reference.running_var)  # updated in training only
