"""The output-size rule of convolution and pooling, worked as on paper (notes 001)."""

from __future__ import annotations

__all__ = ["output_size"]


def _whole(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return value


def output_size(n: int, kernel: int, padding: int = 0, stride: int = 1, dilation: int = 1) -> int:
    """Side of the output of a convolution or pooling window sliding over a side of ``n`` pixels.

    ``floor((n + 2 * padding - dilation * (kernel - 1) - 1) / stride) + 1``; e.g. a 3x3 kernel over a
    5x5 input: ``output_size(5, 3) == 3``, with padding 1: 5, with stride 2: 2.
    """
    n = _whole(n, "input size n", 1)
    kernel = _whole(kernel, "kernel", 1)
    padding = _whole(padding, "padding", 0)
    stride = _whole(stride, "stride", 1)
    dilation = _whole(dilation, "dilation", 1)
    span = dilation * (kernel - 1) + 1  # pixels one window covers
    padded = n + 2 * padding
    if span > padded:
        raise ValueError(
            f"kernel covers {span} pixels (kernel {kernel}, dilation {dilation}) but the padded input "
            f"has only {padded} (n {n} + 2 x padding {padding}); use a smaller kernel or more padding"
        )
    return (padded - span) // stride + 1
