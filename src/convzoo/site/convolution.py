"""The convolution page's worked examples, with the numbers :func:`convzoo.scratch.explain` computes.

    examples = worked_examples()   # [{"id": "conv", "title": ..., "input": C x H x W, "kernel": O x C x k x k, ...}]

conv, pad, stride and pool are ``explain``'s own examples (the notes' 5x5 input and 3x3 kernel 1..9), their
grids taken from ``Explanation.numbers`` and their printed text kept beside them, so the page shows what
``convzoo explain TOPIC`` prints. ``explain`` has no topic for several channels or the 1x1 convolution: those
two are d2l's example (6.4, two input channels of 3x3 and a 2x2x2 kernel) and a 1x1 convolution of the same
input, computed by ``convzoo.scratch.conv2d`` and checked against ``torch.nn.functional.conv2d`` here.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from convzoo.scratch import conv2d, explain

__all__ = ["worked_examples"]

# d2l 6.4.1: two input channels, one 2x2 kernel per channel; the output is [[56, 72], [104, 120]]
MULTI_INPUT = (((0, 1, 2), (3, 4, 5), (6, 7, 8)), ((1, 2, 3), (4, 5, 6), (7, 8, 9)))
MULTI_KERNEL = ((((0, 1), (2, 3)), ((1, 2), (3, 4))),)
ONE_BY_ONE_KERNEL = ((((1,),), ((2,),)), (((-1,),), ((1,),)), (((0,),), ((3,),)))  # 3 outputs x 2 inputs x 1 x 1


def _finite(grid: Any) -> Any:
    if isinstance(grid, list):
        return [_finite(v) for v in grid]
    if isinstance(grid, float) and not math.isfinite(grid):
        raise AssertionError("a worked example holds an infinite value, which JSON cannot carry")
    return grid


def _from_explain(topic: str, title: str, why: str) -> dict[str, Any]:
    result = explain(topic)
    if not result.ok:
        raise AssertionError(f"explain {topic}'s check against torch failed:\n{result.text}")
    n = result.numbers
    return {"id": topic, "title": title, "why": why, "kind": "conv", "command": f"convzoo explain {topic}",
            "text": result.text, "input": [n["input"]], "padded": [n["padded"]], "kernel": [[n["kernel"]]],
            "output": [n["output"]], "padding": n["padding"], "stride": n["stride"], "mode": n["mode"]}


def _pool(mode: str) -> dict[str, Any]:
    result = explain("pool", mode=mode)
    if not result.ok:
        raise AssertionError(f"explain pool's check against torch failed:\n{result.text}")
    n = result.numbers
    words = "largest value" if mode == "max" else "mean"
    return {"id": f"pool-{mode}", "title": f"{'Max' if mode == 'max' else 'Average'} pooling",
            "why": f"each {n['kernel']}x{n['kernel']} window is replaced by its {words}; the stride is the window's "
                   "size, so the windows do not overlap", "kind": mode,
            "command": f"convzoo explain pool --mode {mode}",
            "text": result.text, "input": [n["input"]], "padded": [_finite(n[f"padded_{mode}"])],
            "kernel_size": n["kernel"], "output": [n[f"output_{mode}"]], "padding": n["padding"],
            "stride": n["stride"]}


def _scratch(example_id: str, title: str, why: str, X: torch.Tensor, K: torch.Tensor) -> dict[str, Any]:
    import torch.nn.functional as F

    Y = conv2d(X, K)  # O x Ho x Wo
    expected = F.conv2d(X[None], K)[0]
    if not torch.equal(Y, expected):
        raise AssertionError(f"convzoo.scratch.conv2d and torch.nn.functional.conv2d differ on the {title} example")
    return {"id": example_id, "title": title, "why": why, "kind": "conv",
            "command": "convzoo.scratch.conv2d(X, K), checked against torch.nn.functional.conv2d", "text": "",
            "input": X.tolist(), "padded": X.tolist(), "kernel": K.tolist(), "output": Y.tolist(), "padding": 0,
            "stride": 1, "mode": "zeros"}


def worked_examples() -> list[dict[str, Any]]:
    """The page's examples in order: convolution, padding, stride, several channels, 1x1, max and average
    pooling; each with its input (``C x H x W``), the input as the windows see it (``padded``), the kernel
    (``O x C x k x k``; pooling: ``kernel_size``), the output (``O x Ho x Wo``), padding and stride."""
    X = torch.tensor(MULTI_INPUT, dtype=torch.float32)  # 2 x 3 x 3
    return [
        _from_explain("conv", "Convolution (cross-correlation)",
                      "slide the kernel over the input; at each position multiply element by element and add up"),
        _from_explain("pad", "Padding", "a border of zeros lets the kernel sit on the edge pixels too; padding 1 "
                                        "with a 3x3 kernel keeps the 5x5 size"),
        _from_explain("stride", "Stride", "the window jumps 2 pixels at a time: fewer windows, a smaller output"),
        _scratch("multi-channel", "Several input channels",
                 "one kernel per input channel; the channels' sums are added into one output channel (d2l 6.4)",
                 X, torch.tensor(MULTI_KERNEL, dtype=torch.float32)),
        _scratch("1x1", "The 1x1 convolution",
                 "a 1x1 kernel looks at one pixel: each output channel is a weighted sum of the input channels at "
                 "that pixel (NiN, GoogLeNet)", X, torch.tensor(ONE_BY_ONE_KERNEL, dtype=torch.float32)),
        _pool("max"),
        _pool("avg"),
    ]
