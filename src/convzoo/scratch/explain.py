"""Worked examples, written out as a person would on paper (notes 001 and 000), for ``convzoo explain``.

Each example computes with ``convzoo.scratch`` and ends with a check against ``torch.nn.functional``:
this module is the one place in ``convzoo.scratch`` that calls it, imported inside ``_check_*`` only.
With no options the examples use the notes' own numbers: the 5x5 input and the 3x3 kernel 1..9. A custom
``input_size`` or ``kernel`` draws whole numbers 0..9 from ``random.Random(seed)`` (whose ``random()``
sequence Python keeps stable across versions), so a printed example is reproducible.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from convzoo.errors import ConvzooError
from convzoo.scratch.conv import conv1x1, conv2d
from convzoo.scratch.norm import batch_norm
from convzoo.scratch.pad import pad2d
from convzoo.scratch.pool import avg_pool2d, max_pool2d
from convzoo.scratch.shapes import _check_fits, _whole

__all__ = ["NOTES_INPUT", "NOTES_KERNEL", "TOPICS", "Explanation", "explain"]

TOPICS = ("conv", "pad", "stride", "pool", "batchnorm", "channels", "1x1")
NOTES_INPUT = ((3, 4, 6, 5, 7), (2, 4, 6, 8, 2), (1, 6, 7, 8, 4), (9, 7, 4, 6, 2), (3, 7, 5, 4, 1))  # notes 001
NOTES_KERNEL = ((1, 2, 3), (4, 5, 6), (7, 8, 9))
# d2l 6.4.1: two input channels of 3x3 and one 2x2 kernel per channel, whose output is [[56, 72], [104, 120]]
D2L_CHANNELS_INPUT = (((0, 1, 2), (3, 4, 5), (6, 7, 8)), ((1, 2, 3), (4, 5, 6), (7, 8, 9)))
D2L_CHANNELS_KERNEL = (((0, 1), (2, 3)), ((1, 2), (3, 4)))
ONE_BY_ONE_WEIGHTS = ((1, 2), (-1, 1), (0, 3))  # 3 output channels x 2 input channels: sum, difference, mixture
EXPLAIN_PAD_MODES = ("zeros", "constant", "reflect", "replicate", "circular")
POOL_MODES = ("max", "avg")
MAX_SIDE = 32  # every number is printed: keep the grids readable

_MODE_WORDS = {
    "zeros": "0 in every new pixel",
    "constant": "{value} in every new pixel",
    "reflect": "the input mirrored at its edge, the edge itself not repeated",
    "replicate": "the edge row and column repeated",
    "circular": "the opposite side wrapped around",
}


@dataclass(frozen=True)
class Explanation:
    """The printed example; ``ok`` is False when ``torch.nn.functional`` disagrees with ``convzoo.scratch``.

    ``numbers`` holds the grids the text prints, as nested lists (the same tensors the text is written from),
    and the settings, for a reader that draws the example instead of printing it (``convzoo site``): conv,
    pad and stride give ``input``, ``padded``, ``kernel``, ``output``, ``padding``, ``stride``, ``mode``; pool
    gives ``input``, ``kernel`` (the side), ``padding``, ``stride`` and per mode ``padded_max`` / ``output_max``
    (``_avg``); batchnorm gives ``input`` and ``output`` (N x C x H x W).
    """

    text: str
    ok: bool
    numbers: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


def _num(v: float) -> str:
    """Whole numbers without a decimal point (``211``), others with up to 4 decimals (``3.25``, ``-0.2410``)."""
    if math.isinf(v):
        return "-inf" if v < 0 else "inf"
    if v == round(v):
        return str(int(round(v)))
    text = f"{v:.4f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _decimals(v: float) -> int:
    text = _num(v)
    return len(text) - text.index(".") - 1 if "." in text else 0


def _grid(T: Tensor, indent: str = "  ") -> str:
    """Right-aligned columns; one number of decimals for the whole grid (0 when every value is whole)."""
    rows = T.tolist()
    places = max(_decimals(v) for row in rows for v in row)

    def cell(v: float) -> str:
        if places == 0 or math.isinf(v):
            return _num(v)
        text = f"{v:.{places}f}"
        return text[1:] if text.startswith("-") and float(text) == 0 else text

    cells = [[cell(v) for v in row] for row in rows]
    width = max(len(c) for row in cells for c in row)
    return "\n".join(indent + "  ".join(c.rjust(width) for c in row) for row in cells)


def _size(T: Tensor) -> str:
    return "x".join(str(n) for n in T.shape)


def _span(first: int, last: int, what: str) -> str:
    return f"{what} {first}" if first == last else f"{what}s {first}-{last}"


def _random_grid(rng: random.Random, h: int, w: int) -> Tensor:
    return torch.tensor([[float(int(rng.random() * 10)) for _ in range(w)] for _ in range(h)])


def _agree(ours: Tensor, theirs: Tensor, exact: bool) -> tuple[bool, str]:
    """Exactly equal (whole-number arithmetic is exact in float32), or equal to float32 rounding."""
    if ours.shape == theirs.shape and torch.equal(ours, theirs):
        return True, ""
    if not exact and ours.shape == theirs.shape and torch.allclose(ours, theirs, rtol=1e-5, atol=1e-6):
        return True, " to float32 rounding"
    return False, ""


def _failed(what: str, ours: Tensor, theirs: Tensor) -> str:
    diff = (ours - theirs).abs().max().item() if ours.shape == theirs.shape else float("nan")
    return (f"check FAILED: {what} gives a different result (shapes {_size(ours)} and {_size(theirs)}, "
            f"largest difference {diff:g}); this is a bug in convzoo.scratch")


def _formula(n: tuple[int, int], k: int, p: int, s: int) -> list[str]:
    """The output-size rule with the numbers filled in, once if both sides agree, else per side."""
    filled = [f"floor(({ni} + 2*{p} - {k}) / {s}) + 1 = {(ni + 2 * p - k) // s + 1}" for ni in n]
    rule = "floor((n + 2p - k) / s) + 1"
    if filled[0] == filled[1]:
        return [f"output size: {rule} = {filled[0]}"]
    return [f"output size, {rule}:", f"  height: {filled[0]}", f"  width:  {filled[1]}"]


def _slide(out: tuple[int, int], k: int, s: int, padded: tuple[int, int]) -> list[str]:
    """Where the windows start, and the rows/columns no window reaches (the floor in the rule)."""
    starts = [", ".join(str(i * s) for i in range(o)) for o in out]
    lines = [f"windows start at rows {starts[0]} and columns {starts[1]}: "
             f"{out[0]}x{out[1]} = {out[0] * out[1]} window{'s' * (out[0] * out[1] > 1)}"]
    left = [(o - 1) * s + k for o in out]  # first row / column past the last window
    over = [_span(left[i], padded[i] - 1, what) for i, what in ((0, "row"), (1, "column")) if left[i] < padded[i]]
    if over:
        lines.append(f"{' and '.join(over)} left over: a window starting there would not fit (the floor below)")
    return lines


def _products(window: Tensor, K: Tensor) -> str:
    """``3*1 + 4*2 + ... = 211``, one line, or one line per kernel row when long."""
    rows = [" + ".join(f"{_num(x)}*{_num(k)}" for x, k in zip(wr, kr, strict=True))
            for wr, kr in zip(window.tolist(), K.tolist(), strict=True)]
    total = _num(float((window.double() * K.double()).sum()))
    one_line = "  " + " + ".join(rows) + f" = {total}"
    if len(one_line) <= 100:
        return one_line
    return "\n".join(("  " if i == 0 else "+ ") + r for i, r in enumerate(rows)) + f" = {total}"


def _source(custom: bool, seed: int, notes: str) -> str:
    return f"random 0-9, seed {seed}" if custom else notes


def _explain_conv(topic: str, X: Tensor, K: Tensor, padding: int, stride: int, mode: str, value: float,
                  sources: tuple[str, str]) -> Explanation:
    H, W = X.shape
    k = K.shape[0]
    _check_fits((k, k), (k, k), (H, W), (padding,) * 4)
    Xp = pad2d(X, padding, mode=mode, value=value)  # Hp x Wp
    Y = conv2d(Xp[None, None], K[None, None], stride=stride)[0, 0]  # Ho x Wo
    mode_words = _MODE_WORDS[mode].format(value=_num(value))
    lines = [f"explain {topic}: {H}x{W} input ({sources[0]}), {k}x{k} kernel ({sources[1]}), "
             f"padding {padding}{f' ({mode})' if padding else ''}, stride {stride}"]
    lines += {
        "conv": ["slide the kernel over the input; at each position multiply element by element and add up",
                 "(a cross-correlation: the kernel is not flipped, as in PyTorch and the notes)"],
        "pad": ["padding adds a border around the input so that the kernel can also sit on the edge pixels;",
                "with padding (k - 1) / 2 and stride 1 the output keeps the input's size"],
        "stride": [f"the window jumps {stride} pixels at a time instead of 1: fewer windows, a smaller output"],
    }[topic]
    lines += ["", f"input X, {H}x{W}:", _grid(X)]
    if padding:
        Hp, Wp = Xp.shape
        lines += ["", f"padded input, {Hp}x{Wp}: {padding} pixel{'s' * (padding > 1)} of {mode} padding on every "
                      f"side, X is {_span(padding, padding + H - 1, 'row')}, "
                      f"{_span(padding, padding + W - 1, 'column')}",
                  f"({mode}: {mode_words})", _grid(Xp)]
    lines += ["", f"kernel K, {k}x{k}:", _grid(K)]
    where = "the padded input" if padding else "X"
    lines += ["", f"first window: rows 0-{k - 1}, columns 0-{k - 1} of {where}, times K element by element, summed:",
              _products(Xp[:k, :k], K)]
    lines += [f"the window moves {stride} column{'s' * (stride > 1)} right to the end of the row, "
              f"then {stride} row{'s' * (stride > 1)} down;"]
    lines += _slide((Y.shape[0], Y.shape[1]), k, stride, (Xp.shape[0], Xp.shape[1]))
    lines += ["", f"output Y, {_size(Y)}:", _grid(Y), ""]
    lines += _formula((H, W), k, padding, stride)
    ok, note = _check_conv(X, K, Xp, Y, padding, stride, mode, value)
    if ok and padding:
        lines.append(f"check: torch.nn.functional.pad and conv2d give the same {_size(Xp)} padded input and "
                     f"{_size(Y)} output{note}")
    elif ok:
        lines.append(f"check: torch.nn.functional.conv2d gives the same {_size(Y)} output{note}")
    else:
        lines.append(note)
    numbers = {"input": X.tolist(), "padded": Xp.tolist(), "kernel": K.tolist(), "output": Y.tolist(),
               "padding": padding, "stride": stride, "mode": mode}
    return Explanation("\n".join(lines), ok, numbers)


def _check_conv(X: Tensor, K: Tensor, Xp: Tensor, Y: Tensor, padding: int, stride: int, mode: str,
                value: float) -> tuple[bool, str]:
    import torch.nn.functional as F

    torch_mode = "constant" if mode == "zeros" else mode
    Xp_torch = F.pad(X[None, None], (padding,) * 4, mode=torch_mode, value=value if mode == "constant" else None)
    ok, note = _agree(Xp, Xp_torch[0, 0], exact=True)
    if not ok:
        return False, _failed("torch.nn.functional.pad", Xp, Xp_torch[0, 0])
    Y_torch = F.conv2d(Xp_torch, K[None, None], stride=stride)[0, 0]
    ok, note = _agree(Y, Y_torch, exact=True)
    return (True, note) if ok else (False, _failed("torch.nn.functional.conv2d", Y, Y_torch))


def _explain_pool(X: Tensor, k: int, padding: int, stride: int, modes: Sequence[str], source: str) -> Explanation:
    import torch.nn.functional as F

    H, W = X.shape
    if padding > k // 2:
        raise ConvzooError(f"padding {padding} is more than half the kernel {k}: a window could see only padding; "
                         f"use padding <= {k // 2} or a larger kernel")
    _check_fits((k, k), (k, k), (H, W), (padding,) * 4)
    lines = [f"explain pool: {H}x{W} input ({source}), {k}x{k} window, stride {stride}, padding {padding}",
             "pooling shrinks a feature map: each window is replaced by its largest value (max pooling) or its",
             "mean (average pooling); the stride defaults to the window size, as in PyTorch",
             "", f"input X, {H}x{W}:", _grid(X), ""]
    out: tuple[int, int] = (0, 0)
    numbers: dict[str, Any] = {"input": X.tolist(), "kernel": k, "padding": padding, "stride": stride}
    checks: list[tuple[str, Tensor, Tensor, bool]] = []
    blocks: list[str] = []
    for mode in modes:
        fill = float("-inf") if mode == "max" else 0.0
        Xp = pad2d(X, padding, mode="constant", value=fill)
        window = Xp[:k, :k].flatten().tolist()
        if mode == "max":
            Y = max_pool2d(X[None, None], k, stride, padding)[0, 0]
            Y_torch = F.max_pool2d(X[None, None], k, stride, padding)[0, 0]
            first = f"max({', '.join(_num(v) for v in window)}) = {_num(max(window))}"
            name, title = "max_pool2d", "max pooling"
        else:
            Y = avg_pool2d(X[None, None], k, stride, padding)[0, 0]
            Y_torch = F.avg_pool2d(X[None, None], k, stride, padding)[0, 0]
            total = sum(window)
            first = (f"({' + '.join(_num(v) for v in window)}) / {k * k} = {_num(total)} / {k * k} = "
                     f"{_num(Y[0, 0].item())}")
            name, title = "avg_pool2d", "average pooling"
        out = (Y.shape[0], Y.shape[1])
        numbers[f"padded_{mode}"], numbers[f"output_{mode}"] = Xp.tolist(), Y.tolist()
        checks.append((name, Y, Y_torch, mode == "max"))
        if padding:
            why = ("-inf, so the padding never wins" if mode == "max"
                   else "zeros, counted in the mean (count_include_pad, PyTorch's default)")
            blocks += [f"{title} pads with {why}", f"padded input, {_size(Xp)}:", _grid(Xp)]
        blocks += [f"{title}, first window (rows 0-{k - 1}, columns 0-{k - 1}): {first}",
                   f"output, {_size(Y)}:", _grid(Y), ""]
    padded = (H + 2 * padding, W + 2 * padding)
    lines += _slide(out, k, stride, padded)
    lines += _formula((H, W), k, padding, stride)
    lines += ["", *blocks]
    failures = []
    notes = []
    for name, Y, Y_torch, exact in checks:
        ok, note = _agree(Y, Y_torch, exact=exact)
        notes.append(note)
        if not ok:
            failures.append(_failed(f"torch.nn.functional.{name}", Y, Y_torch))
    if failures:
        lines += failures
    else:
        names = " and ".join(name for name, *_ in checks)
        plural = "s" if len(checks) > 1 else ""
        lines.append(f"check: torch.nn.functional.{names} give{'s' * (not plural)} the same {out[0]}x{out[1]} "
                     f"output{plural}{max(notes, key=len)}")
    return Explanation("\n".join(lines), not failures, numbers)


def _square(v: float) -> str:
    return f"({_num(v)})^2" if v < 0 else f"{_num(v)}^2"


def _explain_batchnorm(X: Tensor, seed: int) -> Explanation:
    import torch.nn.functional as F

    N, C, H, W = X.shape
    momentum, eps = 0.1, 1e-5
    count = N * H * W  # values per channel
    lines = [f"explain batchnorm: a batch of {N} images, {C} channels of {H}x{W} (random 0-9, seed {seed}), "
             f"training mode",
             "batch normalisation (Ioffe & Szegedy, 2015; notes 000) normalises each channel with the mean and",
             "variance of that channel over the whole batch (every image, every pixel), then scales by gamma and",
             "shifts by beta; a fresh layer has gamma 1, beta 0, running mean 0 and running variance 1", ""]
    lines.append(f"input X, {N}x{C}x{H}x{W} (image x channel x height x width):")
    for n in range(N):
        for c in range(C):
            lines += [f"image {n}, channel {c}:", _grid(X[n, c])]
    running_mean, running_var = torch.zeros(C), torch.ones(C)
    gamma, beta = torch.ones(C), torch.zeros(C)
    Y = batch_norm(X, gamma, beta, running_mean, running_var, training=True, momentum=momentum, eps=eps)
    for c in range(C):
        values = X[:, c].flatten().tolist()  # image 0 first, row by row
        total = sum(values)
        mean = total / count
        squares = sum((v - mean) ** 2 for v in values)
        var = squares / count
        lines += ["", f"channel {c}: {count} values ({N} images x {H}x{W})",
                  f"  mean = ({' + '.join(_num(v) for v in values)}) / {count} = {_num(total)} / {count} = "
                  f"{_num(mean)}",
                  f"  deviations from the mean: {', '.join(_num(v - mean) for v in values)}",
                  f"  var  = ({' + '.join(_square(v - mean) for v in values)}) / {count} = "
                  f"{_num(squares)} / {count} = {_num(var)}",
                  f"  first value: ({_num(values[0])} - {_num(mean)}) / sqrt({_num(var)} + 1e-5) = "
                  f"{_num(Y[0, c, 0, 0].item())}",
                  f"  running_mean = {1 - momentum:g} * 0 + {momentum:g} * {_num(mean)} = "
                  f"{_num(running_mean[c].item())}",
                  f"  running_var  = {1 - momentum:g} * 1 + {momentum:g} * {_num(var)} * {count} / {count - 1} = "
                  f"{_num(running_var[c].item())}   (* {count} / {count - 1}: the unbiased variance)"]
    lines += ["", "normalised output (gamma 1, beta 0):"]
    for n in range(N):
        for c in range(C):
            lines += [f"image {n}, channel {c}:", _grid(Y[n, c])]
    lines += ["", "evaluation mode normalises with running_mean and running_var instead of the batch's statistics"]
    rm_torch, rv_torch = torch.zeros(C), torch.ones(C)
    Y_torch = F.batch_norm(X, rm_torch, rv_torch, gamma, beta, training=True, momentum=momentum, eps=eps)
    ok = True
    for what, ours, theirs in (("output", Y, Y_torch), ("running_mean", running_mean, rm_torch),
                               ("running_var", running_var, rv_torch)):
        agree, _ = _agree(ours, theirs, exact=False)
        if not agree:
            ok = False
            lines.append(_failed(f"torch.nn.functional.batch_norm ({what})", ours, theirs))
    if ok:
        lines.append("check: torch.nn.functional.batch_norm gives the same output and running statistics "
                     "(to float32 rounding)")
    return Explanation("\n".join(lines), ok, {"input": X.tolist(), "output": Y.tolist()})


def _signed(v: float) -> str:
    return f"({_num(v)})" if v < 0 else _num(v)


def _channel_grids(T: Tensor, what: str) -> list[str]:
    """Each channel of ``T`` (``C x H x W``) under its own heading."""
    lines: list[str] = []
    for c in range(T.shape[0]):
        lines += [f"{what}, channel {c}, {_size(T[c])}:", _grid(T[c])]
    return lines


def _explain_channels(X: Tensor, K: Tensor, sources: tuple[str, str]) -> Explanation:
    """Several input channels (d2l 6.4): each channel cross-correlated with its own kernel, the results added."""
    import torch.nn.functional as F

    C, H, W = X.shape
    k = K.shape[-1]
    _check_fits((k, k), (k, k), (H, W), (0, 0, 0, 0))
    per_channel = [conv2d(X[c][None, None], K[c][None, None])[0, 0] for c in range(C)]  # each Ho x Wo
    Y = conv2d(X, K[None])[0]  # Ho x Wo: one output channel
    lines = [f"explain channels: {C} input channels of {H}x{W} ({sources[0]}), one {k}x{k} kernel per input channel "
             f"({sources[1]}), stride 1",
             "with several input channels, each channel is cross-correlated with its own kernel and the results are",
             f"added into one output channel: the kernel of one output channel is {C}x{k}x{k} (in x kh x kw)", ""]
    lines += _channel_grids(X, "input X")
    lines += [""] + _channel_grids(K, "kernel K")
    lines += ["", f"first window: rows 0-{k - 1}, columns 0-{k - 1} of every channel, times that channel's kernel "
                  "element by element, summed:"]
    for c in range(C):
        lines += [f"channel {c}:", _products(X[c, :k, :k], K[c])]
    firsts = [float((X[c, :k, :k].double() * K[c].double()).sum()) for c in range(C)]
    lines.append(f"sum over the channels: {' + '.join(_num(v) for v in firsts)} = {_num(sum(firsts))}")
    lines += [""]
    for c in range(C):
        lines += [f"channel {c} with its kernel, {_size(per_channel[c])}:", _grid(per_channel[c])]
    lines += ["", f"output Y, the sum over the channels, {_size(Y)}:", _grid(Y), ""]
    lines += _formula((H, W), k, 0, 1)
    Y_torch = F.conv2d(X[None], K[None])[0, 0]
    ok, note = _agree(Y, Y_torch, exact=True)
    lines.append(f"check: torch.nn.functional.conv2d gives the same {_size(Y)} output{note}" if ok
                 else _failed("torch.nn.functional.conv2d", Y, Y_torch))
    numbers = {"input": X.tolist(), "padded": X.tolist(), "kernel": [K.tolist()], "output": [Y.tolist()],
               "padding": 0, "stride": 1, "mode": "zeros"}
    return Explanation("\n".join(lines), ok, numbers)


def _explain_1x1(X: Tensor, Wt: Tensor, source: str) -> Explanation:
    """The 1x1 convolution (NiN, GoogLeNet): a fully connected layer over the channels, applied at every pixel."""
    import torch.nn.functional as F

    C, H, W = X.shape
    O = Wt.shape[0]
    Y = conv2d(X, Wt[:, :, None, None])  # O x H x W
    lines = [f"explain 1x1: {C} input channels of {H}x{W} ({source}), a 1x1 convolution to {O} output channels",
             "a 1x1 kernel sees one pixel: each output channel is a weighted sum of the input channels at the same",
             "pixel, so it mixes channels and keeps the height and width (NiN, GoogLeNet's reductions)", ""]
    lines += _channel_grids(X, "input X")
    lines += ["", f"weights, {O} outputs x {C} inputs (the kernel is {O}x{C}x1x1):", _grid(Wt)]
    lines += ["", "first pixel (row 0, column 0), one weighted sum per output channel:"]
    pixel = X[:, 0, 0].tolist()
    for o in range(O):
        terms = " + ".join(f"{_num(x)}*{_signed(w)}" for x, w in zip(pixel, Wt[o].tolist(), strict=True))
        lines.append(f"  output {o}: {terms} = {_num(float(Y[o, 0, 0]))}")
    lines += [""] + _channel_grids(Y, "output Y")
    lines += ["", f"output size: {H}x{W}, as the input's (floor((n + 2*0 - 1) / 1) + 1 = n)"]
    Y_torch = F.conv2d(X[None], Wt[:, :, None, None])[0]
    ok, note = _agree(Y, Y_torch, exact=True)
    as_matrix = conv1x1(X, Wt)  # the same as a matrix product, pixel by pixel
    if ok and torch.equal(as_matrix, Y):
        lines.append(f"check: torch.nn.functional.conv2d gives the same {_size(Y)} output{note}, and so does "
                     "convzoo.scratch.conv1x1 (a matrix product)")
    else:
        ok = False
        lines.append(_failed("torch.nn.functional.conv2d", Y, Y_torch))
    numbers = {"input": X.tolist(), "padded": X.tolist(), "kernel": Wt[:, :, None, None].tolist(),
               "output": Y.tolist(), "padding": 0, "stride": 1, "mode": "zeros"}
    return Explanation("\n".join(lines), ok, numbers)


_TAKES = {"batchnorm": "input_size and seed", "channels": "input_size, kernel and seed", "1x1": "input_size and seed"}


def _not_for(topic: str, **given: object) -> None:
    for name, v in given.items():
        if v is not None:
            takes = _TAKES.get(topic, "kernel, padding, stride, mode and seed")
            raise ConvzooError(f"{name} does not apply to explain {topic} (it takes {takes})")


def explain(
    topic: str,
    *,
    input_size: Sequence[int] | None = None,
    kernel: int | None = None,
    padding: int | None = None,
    stride: int | None = None,
    mode: str | None = None,
    value: float | None = None,
    seed: int = 0,
) -> Explanation:
    """The worked example for ``topic`` ("conv", "pad", "stride", "pool" or "batchnorm") as text.

    conv: kernel 3, padding 0, stride 1; pad: padding 1, ``mode`` zeros, constant (``value``), reflect,
    replicate or circular; stride: stride 2; pool: kernel 2, stride = kernel, ``mode`` max or avg (both
    when None); batchnorm: a 2 x 2 x H x W batch (``input_size`` H W, default 2 2); channels: two input
    channels and a kernel per channel (d2l 6.4's 3x3 input and 2x2 kernels, or ``input_size`` and ``kernel``
    random); 1x1: the same two channels (or ``input_size`` random) into three output channels. Bad arguments are a
    ``ConvzooError`` (a ``ValueError``) naming the argument and the fix.
    """
    if topic not in TOPICS:
        raise ConvzooError(f"topic must be one of {', '.join(TOPICS)}; got {topic!r}")
    seed = _whole(seed, "seed", 0)
    rng = random.Random(seed)
    if input_size is not None:
        if len(input_size) != 2:
            raise ConvzooError(f"input_size must be two whole numbers H W, got {tuple(input_size)!r}")
        size = (_whole(input_size[0], "input height", 1), _whole(input_size[1], "input width", 1))
        if max(size) > MAX_SIDE:
            raise ConvzooError(f"input_size {size[0]}x{size[1]} is too large to print; use at most "
                             f"{MAX_SIDE}x{MAX_SIDE}")
    if topic == "batchnorm":
        _not_for(topic, kernel=kernel, padding=padding, stride=stride, mode=mode, value=value)
        h, w = (2, 2) if input_size is None else size
        X = torch.tensor([[_random_grid(rng, h, w).tolist() for _ in range(2)] for _ in range(2)])  # 2 x 2 x H x W
        return _explain_batchnorm(X, seed)
    if topic == "channels":
        _not_for(topic, padding=padding, stride=stride, mode=mode, value=value)
        X = (torch.tensor(D2L_CHANNELS_INPUT, dtype=torch.float32) if input_size is None
             else torch.stack([_random_grid(rng, *size) for _ in range(2)]))  # 2 x H x W
        K = (torch.tensor(D2L_CHANNELS_KERNEL, dtype=torch.float32) if kernel is None
             else torch.stack([_random_grid(rng, _whole(kernel, "kernel", 1), kernel) for _ in range(2)]))
        return _explain_channels(X, K, (_source(input_size is not None, seed, "d2l 6.4"),
                                        _source(kernel is not None, seed, "d2l 6.4")))
    if topic == "1x1":
        _not_for(topic, kernel=kernel, padding=padding, stride=stride, mode=mode, value=value)
        X = (torch.tensor(D2L_CHANNELS_INPUT, dtype=torch.float32) if input_size is None
             else torch.stack([_random_grid(rng, *size) for _ in range(2)]))  # 2 x H x W
        return _explain_1x1(X, torch.tensor(ONE_BY_ONE_WEIGHTS, dtype=torch.float32),
                            _source(input_size is not None, seed, "d2l 6.4"))
    X = torch.tensor(NOTES_INPUT, dtype=torch.float32) if input_size is None else _random_grid(rng, *size)
    x_source = _source(input_size is not None, seed, "notes 001")
    if topic == "pool":
        _not_for(topic, value=value)
        if mode is not None and mode not in POOL_MODES:
            raise ConvzooError(f"mode for explain pool must be one of {', '.join(POOL_MODES)}; got {mode!r}")
        k = 2 if kernel is None else _whole(kernel, "kernel", 1)
        p = 0 if padding is None else _whole(padding, "padding", 0)
        s = k if stride is None else _whole(stride, "stride", 1)
        return _explain_pool(X, k, p, s, POOL_MODES if mode is None else (mode,), x_source)
    mode = "zeros" if mode is None else mode
    if mode not in EXPLAIN_PAD_MODES:
        raise ConvzooError(f"mode for explain {topic} must be one of {', '.join(EXPLAIN_PAD_MODES)}; got {mode!r}")
    if value is not None and mode != "constant":
        raise ConvzooError(f"value only applies to mode constant, not {mode}; add mode constant")
    fill = 0.0 if value is None else float(value)
    if fill != round(fill):
        raise ConvzooError(f"value must be a whole number (the examples compute exactly), got {value}")
    if kernel is None:
        K = torch.tensor(NOTES_KERNEL, dtype=torch.float32)
    else:
        k = _whole(kernel, "kernel", 1)
        K = _random_grid(rng, k, k)
    p = (1 if topic == "pad" else 0) if padding is None else _whole(padding, "padding", 0)
    s = (2 if topic == "stride" else 1) if stride is None else _whole(stride, "stride", 1)
    k_source = _source(kernel is not None, seed, "1..9, notes 001")
    return _explain_conv(topic, X, K, p, s, mode, fill, (x_source, k_source))
