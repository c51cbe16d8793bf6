"""The convolution page's worked examples, with the numbers :func:`convzoo.scratch.explain` computes.

    examples = worked_examples()   # [{"id": "conv", "title": ..., "input": C x H x W, "kernel": O x C x k x k, ...}]

Every example is ``explain``'s own, its grids taken from ``Explanation.numbers`` and its printed text kept
beside them, so the page shows what ``convzoo explain TOPIC`` prints: conv, pad, stride, channels (d2l 6.4's
two input channels), 1x1, and pool with max and with average.
"""

from __future__ import annotations

import math
from typing import Any

from convzoo.scratch import explain

__all__ = ["worked_examples"]


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
            "text": result.text, "padding": n["padding"], "stride": n["stride"], "mode": n["mode"],
            **_channels_first(topic, n)}


def _channels_first(topic: str, n: Any) -> dict[str, Any]:
    """input and padded as ``C x H x W``, kernel as ``O x C x k x k``, output as ``O x Ho x Wo``: the one-channel
    topics' grids wrapped, those of channels and 1x1 as they are."""
    if topic in ("channels", "1x1"):
        return {"input": n["input"], "padded": n["padded"], "kernel": n["kernel"], "output": n["output"]}
    return {"input": [n["input"]], "padded": [n["padded"]], "kernel": [[n["kernel"]]], "output": [n["output"]]}


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


def worked_examples() -> list[dict[str, Any]]:
    """The page's examples in order: convolution, padding, stride, several channels, 1x1, max and average
    pooling; each with its input (``C x H x W``), the input as the windows see it (``padded``), the kernel
    (``O x C x k x k``; pooling: ``kernel_size``), the output (``O x Ho x Wo``), padding and stride."""
    return [
        _from_explain("conv", "Convolution (cross-correlation)",
                      "slide the kernel over the input; at each position multiply element by element and add up"),
        _from_explain("pad", "Padding", "a border of zeros lets the kernel sit on the edge pixels too; padding 1 "
                                        "with a 3x3 kernel keeps the 5x5 size"),
        _from_explain("stride", "Stride", "the window jumps 2 pixels at a time: fewer windows, a smaller output"),
        _from_explain("channels", "Several input channels",
                      "one kernel per input channel; the channels' sums are added into one output channel (d2l 6.4)"),
        _from_explain("1x1", "The 1x1 convolution",
                      "a 1x1 kernel looks at one pixel: each output channel is a weighted sum of the input channels "
                      "at that pixel (NiN, GoogLeNet)"),
        _pool("max"),
        _pool("avg"),
    ]
