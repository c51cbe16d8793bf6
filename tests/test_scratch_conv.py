"""convzoo.scratch corr2d / conv2d / conv1x1 / sliding_windows against torch.nn.functional: values and
gradients over random shapes, strides, paddings, padding modes, dilations and groups (hypothesis)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import convzoo.scratch
from convzoo.scratch import CONV_PADDING_MODES, conv1x1, conv2d, corr2d, output_size, sliding_windows
from scratch_checks import SCRATCH, assert_same_values_and_grads, leaf


def reference_conv2d(X, W, b, stride, padding, padding_mode, dilation, groups):
    """What nn.Conv2d does: F.pad first for the non-zero modes, then F.conv2d."""
    if padding_mode == "zeros":
        return F.conv2d(X, W, b, stride, padding, dilation, groups)
    ph, pw = padding
    return F.conv2d(F.pad(X, (pw, pw, ph, ph), mode=padding_mode), W, b, stride, 0, dilation, groups)


@st.composite
def conv_cases(draw):
    groups = draw(st.integers(1, 3))
    kernel = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dilation = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    padding = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    mode = draw(st.sampled_from(CONV_PADDING_MODES))
    size = []
    for k, d, p in zip(kernel, dilation, padding, strict=True):
        n = max(1, d * (k - 1) + 1 - 2 * p) + draw(st.integers(0, 5))  # the window fits the padded input
        n = max(n, p + 1) if mode == "reflect" else max(n, p) if mode == "circular" else n
        size.append(n)
    return {
        "B": draw(st.integers(1, 3)), "C": groups * draw(st.integers(1, 3)), "O": groups * draw(st.integers(1, 3)),
        "size": tuple(size), "kernel": kernel, "stride": (draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        "padding": padding, "mode": mode, "dilation": dilation, "groups": groups, "bias": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


@SCRATCH
@given(conv_cases())
def test_conv2d_matches_functional(case):
    g = torch.Generator().manual_seed(case["seed"])
    X = leaf((case["B"], case["C"], *case["size"]), g)
    W = leaf((case["O"], case["C"] // case["groups"], *case["kernel"]), g)
    inputs = [X, W] + ([leaf((case["O"],), g)] if case["bias"] else [])
    args = (case["stride"], case["padding"], case["mode"], case["dilation"], case["groups"])

    def ours(X, W, b=None):
        return conv2d(X, W, b, *args)

    def theirs(X, W, b=None):
        return reference_conv2d(X, W, b, *args)

    assert_same_values_and_grads(ours, theirs, inputs, g)
    sides = [output_size(*rule) for rule in zip(case["size"], case["kernel"], case["padding"], case["stride"],
                                                case["dilation"], strict=True)]
    assert list(ours(*inputs).shape) == [case["B"], case["O"], *sides]


@SCRATCH
@given(conv_cases())
def test_conv2d_in_float64_is_the_formula(case):
    """In float64 only the order of the additions differs from PyTorch: agreement to 1e-12."""
    g = torch.Generator().manual_seed(case["seed"])
    X = torch.randn(case["B"], case["C"], *case["size"], generator=g, dtype=torch.float64)
    W = torch.randn(case["O"], case["C"] // case["groups"], *case["kernel"], generator=g, dtype=torch.float64)
    args = (case["stride"], case["padding"], case["mode"], case["dilation"], case["groups"])
    torch.testing.assert_close(conv2d(X, W, None, *args), reference_conv2d(X, W, None, *args),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")  # PyTorch's own note
@SCRATCH
@given(kernel=st.tuples(st.integers(1, 5), st.integers(1, 5)), dilation=st.integers(1, 2),
       extra=st.integers(0, 4), seed=st.integers(0, 2**32 - 1))
def test_conv2d_same_and_valid_padding(kernel, dilation, extra, seed):
    g = torch.Generator().manual_seed(seed)
    side = dilation * (max(kernel) - 1) + 1 + extra
    X, W = leaf((2, 3, side, side + 1), g), leaf((4, 3, *kernel), g)
    for padding in ("same", "valid"):
        assert_same_values_and_grads(lambda X, W, p=padding: conv2d(X, W, padding=p, dilation=dilation),
                                     lambda X, W, p=padding: F.conv2d(X, W, padding=p, dilation=dilation),
                                     [X, W], g)
    assert conv2d(X, W, padding="same", dilation=dilation).shape[-2:] == X.shape[-2:]


@pytest.mark.parametrize("padding_mode", CONV_PADDING_MODES)
def test_conv2d_is_nn_conv2d(padding_mode):
    torch.manual_seed(0)
    layer = nn.Conv2d(4, 6, kernel_size=(3, 2), stride=(2, 1), padding=(2, 1), dilation=(1, 2), groups=2,
                      padding_mode=padding_mode)
    X = torch.randn(2, 4, 7, 6)
    got = conv2d(X, layer.weight, layer.bias, stride=(2, 1), padding=(2, 1), padding_mode=padding_mode,
                 dilation=(1, 2), groups=2)
    torch.testing.assert_close(got, layer(X), rtol=1e-5, atol=1e-5)


def test_conv2d_unbatched_input():
    X, W = torch.randn(3, 6, 5), torch.randn(2, 3, 3, 3)
    assert conv2d(X, W, padding=1).shape == (2, 6, 5)
    torch.testing.assert_close(conv2d(X, W, padding=1), F.conv2d(X, W, padding=1), rtol=1e-5, atol=1e-5)


@SCRATCH
@given(H=st.integers(1, 6), W=st.integers(1, 6), kh=st.integers(1, 6), kw=st.integers(1, 6),
       seed=st.integers(0, 2**32 - 1))
def test_corr2d_loop_matches_conv2d_and_functional(H, W, kh, kw, seed):
    kh, kw = min(kh, H), min(kw, W)
    g = torch.Generator().manual_seed(seed)
    X, K = leaf((H, W), g), leaf((kh, kw), g)
    assert_same_values_and_grads(corr2d, lambda X, K: F.conv2d(X[None, None], K[None, None])[0, 0], [X, K], g)
    torch.testing.assert_close(corr2d(X, K), conv2d(X[None, None], K[None, None])[0, 0], rtol=1e-5, atol=1e-5)


@SCRATCH
@given(B=st.integers(1, 3), C=st.integers(1, 5), O=st.integers(1, 5), H=st.integers(1, 6), W=st.integers(1, 6),
       bias=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_conv1x1_is_a_matrix_product_over_channels(B, C, O, H, W, bias, seed):
    g = torch.Generator().manual_seed(seed)
    inputs = [leaf((B, C, H, W), g), leaf((O, C, 1, 1), g)] + ([leaf((O,), g)] if bias else [])
    assert_same_values_and_grads(conv1x1, F.conv2d, inputs, g)
    torch.testing.assert_close(conv1x1(*inputs), conv2d(*inputs), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(conv1x1(inputs[0], inputs[1][:, :, 0, 0]), conv1x1(inputs[0], inputs[1]))


def test_sliding_windows_are_the_windows():
    X = torch.arange(2 * 3 * 9 * 8, dtype=torch.float32).reshape(2, 3, 9, 8)
    windows = sliding_windows(X, (3, 2), stride=(2, 3), dilation=(2, 1))
    assert windows.shape == (2, 3, 3, 3, 3, 2)  # B x C x Ho x Wo x kh x kw
    for i in range(3):
        for j in range(3):
            torch.testing.assert_close(windows[:, :, i, j], X[:, :, 2 * i:2 * i + 5:2, 3 * j:3 * j + 2])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: conv2d(torch.zeros(1, 3, 3, 3), torch.zeros(1, 3, 7, 7), padding=1),
         r"^kernel 7x7 is larger than the padded input 5x5 \(input 3x3, padding 1\); use a smaller kernel or more "
         r"padding$"),
        (lambda: conv2d(torch.zeros(1, 3, 5, 5), torch.zeros(1, 3, 3, 3), dilation=3),
         r"kernel 3x3 with dilation 3 spans 7x7, which is larger than the padded input 5x5"),
        (lambda: conv2d(torch.zeros(1, 3, 5, 5), torch.zeros(1, 4, 3, 3)), r"^W has 4 input channels but X has 3 "
         r"\(groups=1\)$"),
        (lambda: conv2d(torch.zeros(1, 4, 5, 5), torch.zeros(2, 4, 3, 3), groups=2),
         r"W has 4 input channels but X has 4 \(groups=2\); with groups=2 W needs 2 per group"),
        (lambda: conv2d(torch.zeros(1, 3, 5, 5), torch.zeros(2, 1, 3, 3), groups=2), r"groups=2 must divide"),
        (lambda: conv2d(torch.zeros(1, 3, 5, 5), torch.zeros(1, 3, 3, 3), stride=0),
         r"^stride must be a whole number >= 1, got 0$"),
        (lambda: conv2d(torch.zeros(1, 3, 5, 5), torch.zeros(1, 3, 3, 3), stride=(1, 0)), r"stride must be"),
        (lambda: conv2d(torch.zeros(1, 3, 5, 5), torch.zeros(1, 3, 3, 3), padding=-1), r"padding must be .* >= 0"),
        (lambda: conv2d(torch.zeros(1, 3, 5, 5), torch.zeros(1, 3, 3, 3), padding="full"), r"'valid' or 'same'"),
        (lambda: conv2d(torch.zeros(1, 3, 5, 5), torch.zeros(1, 3, 3, 3), stride=2, padding="same"),
         r"padding='same' needs stride 1"),
        (lambda: conv2d(torch.zeros(1, 3, 5, 5), torch.zeros(1, 3, 3, 3), padding_mode="mirror"),
         r"padding_mode must be one of zeros, reflect, replicate, circular; got 'mirror'"),
        (lambda: conv2d(torch.zeros(1, 3, 5, 5), torch.zeros(1, 3, 3, 3), padding=5, padding_mode="reflect"),
         r"padding 5 is too large for reflect padding of an input height of 5"),
        (lambda: conv2d(torch.zeros(1, 3, 5, 5), torch.zeros(2, 3, 3, 3), torch.zeros(3)),
         r"b must have shape \(2,\) for 2 output channels, got \(3,\)"),
        (lambda: conv2d(torch.zeros(5, 5), torch.zeros(1, 1, 3, 3)), r"X must be B x C x H x W .* X\[None, None\]"),
        (lambda: conv2d(torch.zeros(1, 1, 5, 5), torch.zeros(3, 3)), r"W must be out_channels x in_channels/groups"),
        (lambda: conv2d(torch.zeros(1, 1, 5, 5, dtype=torch.long), torch.zeros(1, 1, 3, 3)), r"floating-point"),
        (lambda: conv2d(torch.zeros(1, 1, 5, 5), torch.zeros(1, 1, 3, 3, dtype=torch.float64)),
         r"X is torch.float32 but W is torch.float64"),
        (lambda: corr2d(torch.zeros(1, 5, 5), torch.zeros(3, 3)), r"corr2d takes one channel: X must be a 2-d"),
        (lambda: corr2d(torch.zeros(2, 5), torch.zeros(3, 3)), r"kernel 3x3 is larger than the padded input 2x5"),
        (lambda: conv1x1(torch.zeros(1, 3, 5, 5), torch.zeros(2, 4)), r"W has 4 input channels but X has 3"),
        (lambda: conv1x1(torch.zeros(1, 3, 5, 5), torch.zeros(2, 3, 3, 3)), r"W must be out_channels x in_channels"),
        (lambda: sliding_windows(torch.zeros(1, 1, 2, 2), 3), r"kernel 3x3 is larger than the padded input 2x2"),
    ],
)
def test_conv_errors_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


FORBIDDEN = re.compile(r"(^|\.)(functional|conv\w*|max_pool\w*|avg_pool\w*|adaptive\w*|batch_norm|Unfold|Conv\w*|"
                       r"\w*Pool\w*|_C|ops)(\.|$)")


def _dotted(node: ast.expr) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id, *reversed(parts)]) if isinstance(node, ast.Name) else None


# explain.py is the exception: it calls torch.nn.functional to check the worked examples it prints
PRIMITIVES = sorted(p for p in Path(convzoo.scratch.__file__).parent.glob("*.py") if p.name != "explain.py")


def _uses(source: str) -> list[str]:
    """Forbidden torch names a source uses: imports and attribute chains rooted at ``torch`` or ``nn``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Attribute) and (name := _dotted(node)) and name.split(".")[0] in ("torch", "nn"):
            names = [name]
        else:
            continue
        found += [f"{node.lineno}: {n}" for n in names if n.startswith(("torch", "nn")) and FORBIDDEN.search(n)]
    return found


def test_the_scan_finds_functional_calls():
    assert _uses("import torch.nn.functional as F")
    assert _uses("from torch.nn import functional")
    assert _uses("import torch\ntorch.conv2d(X, W)")
    assert _uses("from torch import nn\nnn.Unfold(3)")
    assert _uses("import torch\ntorch.nn.functional.max_pool2d(X, 2)")
    assert not _uses("import torch\nfrom torch import nn\ntorch.einsum('ij->i', X)\nX.unfold(2, 3, 1)\nnn.Module")


@pytest.mark.parametrize("path", PRIMITIVES, ids=lambda p: p.name)
def test_primitives_use_no_torch_functional(path):
    """The primitives are from scratch: no torch.nn.functional, torch.conv*, pooling ops or nn.Unfold."""
    assert not _uses(path.read_text(encoding="utf-8"))
