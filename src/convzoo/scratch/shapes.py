"""The output-size rule of convolution and pooling, worked as on paper (notes 001), and the argument checks
the other primitives share.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from convzoo.errors import ConvzooError

__all__ = ["output_size"]


def _whole(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConvzooError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return value


def _pair(value: object, name: str, minimum: int) -> tuple[int, int]:
    """``3 -> (3, 3)``; ``(3, 5) -> (3, 5)`` (height, width); anything else is a ``ConvzooError`` (a ``ValueError``)."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != 2:
            raise ConvzooError(f"{name} must be a whole number or a (height, width) pair, got {tuple(value)!r}")
        return _whole(value[0], name, minimum), _whole(value[1], name, minimum)
    v = _whole(value, name, minimum)
    return v, v


def _size(h: int, w: int) -> str:
    return f"{h}x{w}"


def _check_image(X: object, name: str = "X") -> Tensor:
    """``X`` must be a floating-point ``B x C x H x W`` or ``C x H x W`` tensor."""
    if not isinstance(X, Tensor):
        raise ConvzooError(f"{name} must be a torch.Tensor, got {type(X).__name__}")
    if X.dim() not in (3, 4):
        raise ConvzooError(
            f"{name} must be B x C x H x W (or C x H x W), got {X.dim()} dimensions {tuple(X.shape)}; "
            f"add the missing batch and channel dimensions, e.g. {name}[None, None]"
        )
    if not X.is_floating_point():
        raise ConvzooError(f"{name} must be a floating-point tensor, got {X.dtype}; use {name}.float()")
    return X


def _check_fits(kernel: tuple[int, int], span: tuple[int, int], size: tuple[int, int],
                padding: tuple[int, int, int, int], dilation: tuple[int, int] = (1, 1)) -> None:
    """The window (``span`` pixels once dilated) must fit in the padded input; ``padding`` is (l, r, t, b)."""
    left, right, top, bottom = padding
    padded = (size[0] + top + bottom, size[1] + left + right)
    if span[0] <= padded[0] and span[1] <= padded[1]:
        return
    if left == right == top == bottom:
        pad = f"padding {left}"
    elif (left, top) == (right, bottom):
        pad = f"padding {(top, left)}"
    else:
        pad = f"padding (left, right, top, bottom) {padding}"
    what = f"kernel {_size(*kernel)}"
    if dilation != (1, 1):
        what += f" with dilation {dilation[0] if dilation[0] == dilation[1] else dilation} spans {_size(*span)}, which"
    raise ConvzooError(
        f"{what} is larger than the padded input {_size(*padded)} (input {_size(*size)}, {pad}); "
        f"use a smaller kernel or more padding"
    )


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
        raise ConvzooError(
            f"kernel covers {span} pixels (kernel {kernel}, dilation {dilation}) but the padded input "
            f"has only {padded} (n {n} + 2 x padding {padding}); use a smaller kernel or more padding"
        )
    return (padded - span) // stride + 1
