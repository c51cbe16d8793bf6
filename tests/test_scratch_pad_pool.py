"""convzoo.scratch pad2d / max_pool2d / avg_pool2d / adaptive_avg_pool2d / pool2d against torch.nn.functional:
values and gradients over random shapes, paddings, modes, kernels and strides (hypothesis)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from convzoo.scratch import PAD_MODES, adaptive_avg_pool2d, avg_pool2d, max_pool2d, pad2d, pool2d
from scratch_checks import SCRATCH, assert_same_values_and_grads, leaf

seeds = st.integers(0, 2**32 - 1)


@st.composite
def pad_cases(draw):
    mode = draw(st.sampled_from(PAD_MODES))
    as_int = draw(st.booleans())
    pads = [draw(st.integers(0, 4)) for _ in range(1 if as_int else 4)] * (4 if as_int else 1)  # l, r, t, b
    # reflect needs padding < side, circular padding <= side
    extra = 1 if mode == "reflect" else 0
    H = max(max(pads[2:]) + extra, 1) + draw(st.integers(0, 3))
    W = max(max(pads[:2]) + extra, 1) + draw(st.integers(0, 3))
    padding = pads[0] if as_int else tuple(pads)
    value = draw(st.floats(-5, 5, allow_nan=False)) if mode == "constant" else 0.0
    return {"shape": (draw(st.integers(1, 2)), draw(st.integers(1, 3)), H, W), "padding": padding, "mode": mode,
            "value": value, "seed": draw(seeds)}


@SCRATCH
@given(pad_cases())
def test_pad2d_matches_functional(case):
    g = torch.Generator().manual_seed(case["seed"])
    X = leaf(case["shape"], g)
    pad = case["padding"] if isinstance(case["padding"], tuple) else (case["padding"],) * 4
    torch_mode = "constant" if case["mode"] == "zeros" else case["mode"]
    value = case["value"] if case["mode"] == "constant" else None
    assert_same_values_and_grads(lambda X: pad2d(X, case["padding"], case["mode"], case["value"]),
                                 lambda X: F.pad(X, pad, mode=torch_mode, value=value), [X], g)


def test_pad2d_modes_on_one_row():
    """The docstring's example: [1, 2, 3] padded by 2 on the left and right."""
    row = torch.tensor([[[1.0, 2.0, 3.0]]])
    expected = {"zeros": [0, 0, 1, 2, 3, 0, 0], "constant": [7, 7, 1, 2, 3, 7, 7], "reflect": [3, 2, 1, 2, 3, 2, 1],
                "replicate": [1, 1, 1, 2, 3, 3, 3], "circular": [2, 3, 1, 2, 3, 1, 2]}
    for mode, want in expected.items():
        got = pad2d(row, (2, 2, 0, 0), mode, value=7.0 if mode == "constant" else 0.0)
        assert got[0, 0].tolist() == want, mode


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: pad2d(torch.zeros(1, 1, 5, 5), 1, "mirror"), r"mode must be one of zeros, constant, reflect, "
         r"replicate, circular; got 'mirror'"),
        (lambda: pad2d(torch.zeros(1, 1, 5, 3), (3, 0, 0, 0), "reflect"),
         r"padding 3 is too large for reflect padding of an input width of 3: .* at most 2"),
        (lambda: pad2d(torch.zeros(1, 1, 5, 3), (0, 0, 6, 0), "circular"),
         r"padding 6 is too large for circular padding of an input height of 5: .* at most 5"),
        (lambda: pad2d(torch.zeros(1, 1, 5, 5), (1, 1)), r"\(left, right, top, bottom\) tuple as F.pad"),
        (lambda: pad2d(torch.zeros(1, 1, 5, 5), -1), r"padding must be a whole number >= 0, got -1"),
        (lambda: pad2d(torch.zeros(5), 1), r"at least 2 dimensions"),
        (lambda: pad2d(torch.zeros(1, 1, 5, 5), 1, "reflect", value=2.0), r"value=2.0 only applies to mode"),
    ],
)
def test_pad_errors_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@st.composite
def pool_cases(draw):
    kernel = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    size = tuple(max(1, k - 2 * p) + draw(st.integers(0, 5)) for k, p in zip(kernel, padding, strict=True))
    batched = draw(st.booleans())
    shape = ((draw(st.integers(1, 2)),) if batched else ()) + (draw(st.integers(1, 3)), *size)
    return {"shape": shape, "kernel": kernel, "stride": stride, "padding": padding, "seed": draw(seeds)}


@SCRATCH
@given(pool_cases())
def test_max_pool2d_matches_functional(case):
    g = torch.Generator().manual_seed(case["seed"])
    args = (case["kernel"], case["stride"], case["padding"])
    assert_same_values_and_grads(lambda X: max_pool2d(X, *args), lambda X: F.max_pool2d(X, *args),
                                 [leaf(case["shape"], g)], g)


@SCRATCH
@given(pool_cases())
def test_avg_pool2d_matches_functional(case):
    g = torch.Generator().manual_seed(case["seed"])
    args = (case["kernel"], case["stride"], case["padding"])
    assert_same_values_and_grads(lambda X: avg_pool2d(X, *args), lambda X: F.avg_pool2d(X, *args),
                                 [leaf(case["shape"], g)], g)


def test_max_pool2d_gradient_goes_to_the_first_largest_value():
    """With ties PyTorch sends the gradient to the first maximum of the window, row by row; so do we."""
    X = torch.tensor([[[[1.0, 5.0], [5.0, 5.0]]]], requires_grad=True)
    (ours,) = torch.autograd.grad(max_pool2d(X, 2).sum(), X)
    (theirs,) = torch.autograd.grad(F.max_pool2d(X, 2).sum(), X)
    assert ours.tolist() == theirs.tolist() == [[[[0.0, 1.0], [0.0, 0.0]]]]


@SCRATCH
@given(H=st.integers(1, 10), W=st.integers(1, 10), Ho=st.one_of(st.none(), st.integers(1, 12)),
       Wo=st.integers(1, 12), seed=seeds)
def test_adaptive_avg_pool2d_matches_functional(H, W, Ho, Wo, seed):
    g = torch.Generator().manual_seed(seed)
    assert_same_values_and_grads(lambda X: adaptive_avg_pool2d(X, (Ho, Wo)),
                                 lambda X: F.adaptive_avg_pool2d(X, (Ho, Wo)), [leaf((2, 3, H, W), g)], g)


def test_adaptive_avg_pool2d_to_one_pixel_is_the_global_average():
    X = torch.randn(2, 3, 7, 5)
    torch.testing.assert_close(adaptive_avg_pool2d(X, 1), X.mean(dim=(2, 3), keepdim=True))


@SCRATCH
@given(H=st.integers(1, 6), W=st.integers(1, 6), k=st.integers(1, 3), mode=st.sampled_from(["max", "avg"]),
       seed=seeds)
def test_pool2d_loop_matches_the_vectorised_pools(H, W, k, mode, seed):
    k = min(k, H, W)
    X = torch.randn(H, W, generator=torch.Generator().manual_seed(seed))
    vectorised = (max_pool2d if mode == "max" else avg_pool2d)(X[None], k, stride=1)[0]
    torch.testing.assert_close(pool2d(X, k, mode), vectorised, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(vectorised, (F.max_pool2d if mode == "max" else F.avg_pool2d)(X[None], k, 1)[0],
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: max_pool2d(torch.zeros(1, 1, 5, 5), 3, padding=2),
         r"padding 2 is more than half the kernel 3 \(height\): .* use padding <= 1 or a larger kernel"),
        (lambda: avg_pool2d(torch.zeros(1, 1, 5, 5), 7), r"kernel 7x7 is larger than the padded input 5x5"),
        (lambda: avg_pool2d(torch.zeros(1, 1, 5, 5), 2, stride=0), r"stride must be a whole number >= 1, got 0"),
        (lambda: max_pool2d(torch.zeros(1, 1, 5, 5), 0), r"kernel must be a whole number >= 1, got 0"),
        (lambda: max_pool2d(torch.zeros(5, 5), 2), r"X must be B x C x H x W \(or C x H x W\)"),
        (lambda: adaptive_avg_pool2d(torch.zeros(1, 1, 5, 5), 0), r"output_size must be a whole number >= 1"),
        (lambda: adaptive_avg_pool2d(torch.zeros(1, 1, 5, 5), (1, 2, 3)), r"output_size must be .* pair"),
        (lambda: pool2d(torch.zeros(5, 5), 2, "min"), r"mode must be 'max' or 'avg', got 'min'"),
    ],
)
def test_pool_errors_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()
