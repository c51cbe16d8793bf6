"""Pooling from first principles (notes 001; d2l 7.5), checked against ``torch.nn.functional``.

- ``pool2d``: the readable loop of d2l, one channel, stride 1;
- ``max_pool2d`` / ``avg_pool2d``: the vectorised ones over every window at once (``sliding_windows``),
  PyTorch's semantics: the stride defaults to the kernel, max pooling pads with -inf (padding never
  wins), average pooling counts the padded zeros (``count_include_pad=True``), the output side is
  floored (``ceil_mode=False``), and the padding is at most half the kernel;
- ``adaptive_avg_pool2d``: the output size is given, the windows follow; as two matrix products.

Pure tensor code: no ``torch.nn.functional`` inside.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from convzoo.errors import ConvzooError
from convzoo.scratch.conv import sliding_windows
from convzoo.scratch.pad import pad2d
from convzoo.scratch.shapes import _check_fits, _check_image, _pair, _whole

__all__ = ["adaptive_avg_pool2d", "avg_pool2d", "max_pool2d", "pool2d"]


def pool2d(X: Tensor, pool_size: int | Sequence[int], mode: str = "max") -> Tensor:
    """Slide a ``ph x pw`` window over ``X`` (``H x W``), stride 1, keeping its max or its mean (d2l's loop)."""
    if not isinstance(X, Tensor) or X.dim() != 2:
        shape = tuple(X.shape) if isinstance(X, Tensor) else type(X).__name__
        raise ConvzooError(f"pool2d takes one channel: X must be a 2-d tensor (H x W), got {shape}")
    if mode not in ("max", "avg"):
        raise ConvzooError(f"mode must be 'max' or 'avg', got {mode!r}")
    ph, pw = _pair(pool_size, "pool_size", 1)
    _check_fits((ph, pw), (ph, pw), (X.shape[0], X.shape[1]), (0, 0, 0, 0))
    Y = torch.zeros((X.shape[0] - ph + 1, X.shape[1] - pw + 1), dtype=X.dtype, device=X.device)
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            window = X[i:i + ph, j:j + pw]
            Y[i, j] = window.max() if mode == "max" else window.mean()
    return Y


def _pool_args(X: Tensor, kernel: int | Sequence[int], stride: int | Sequence[int] | None,
               padding: int | Sequence[int]) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    _check_image(X)
    k = _pair(kernel, "kernel", 1)
    s = k if stride is None else _pair(stride, "stride", 1)
    p = _pair(padding, "padding", 0)
    for side, ki, pi in (("height", k[0], p[0]), ("width", k[1], p[1])):
        if pi > ki // 2:
            raise ConvzooError(f"padding {pi} is more than half the kernel {ki} ({side}): a window could see "
                             f"only padding; use padding <= {ki // 2} or a larger kernel")
    _check_fits(k, k, (X.shape[-2], X.shape[-1]), (p[1], p[1], p[0], p[0]))
    return k, s, p


def max_pool2d(X: Tensor, kernel: int | Sequence[int], stride: int | Sequence[int] | None = None,
               padding: int | Sequence[int] = 0) -> Tensor:
    """The largest value of each ``kh x kw`` window of ``X`` (``B x C x H x W`` or ``C x H x W``).

    As ``F.max_pool2d``: ``stride`` defaults to ``kernel``; padding is -inf, so it never wins.
    """
    k, s, p = _pool_args(X, kernel, stride, padding)
    if any(p):
        X = pad2d(X, (p[1], p[1], p[0], p[0]), mode="constant", value=float("-inf"))
    windows = sliding_windows(X, k, s).flatten(-2)  # B x C x Ho x Wo x (kh*kw), row by row
    # max, not amax: the gradient goes to the first largest value of the window, as PyTorch's
    return windows.max(dim=-1).values  # B x C x Ho x Wo


def avg_pool2d(X: Tensor, kernel: int | Sequence[int], stride: int | Sequence[int] | None = None,
               padding: int | Sequence[int] = 0) -> Tensor:
    """The mean of each ``kh x kw`` window of ``X`` (``B x C x H x W`` or ``C x H x W``).

    As ``F.avg_pool2d``: ``stride`` defaults to ``kernel``; padded zeros count in the mean (every window
    divides by ``kh * kw``).
    """
    k, s, p = _pool_args(X, kernel, stride, padding)
    if any(p):
        X = pad2d(X, (p[1], p[1], p[0], p[0]))
    return sliding_windows(X, k, s).sum(dim=(-2, -1)) / (k[0] * k[1])  # B x C x Ho x Wo


def _bins(n_in: int, n_out: int, X: Tensor) -> Tensor:
    """``n_out x n_in`` matrix averaging the input positions of each output bin.

    Bin ``i`` covers ``floor(i * n_in / n_out)`` up to ``ceil((i + 1) * n_in / n_out)`` (exclusive), as
    PyTorch's adaptive pooling: bins tile the input, overlapping by a pixel when the sizes do not divide.
    """
    i = torch.arange(n_out, device=X.device)
    start = (i * n_in) // n_out
    end = ((i + 1) * n_in + n_out - 1) // n_out
    j = torch.arange(n_in, device=X.device)
    inside = (j >= start[:, None]) & (j < end[:, None])  # n_out x n_in
    return inside.to(X.dtype) / (end - start)[:, None].to(X.dtype)


def adaptive_avg_pool2d(X: Tensor, output_size: int | Sequence[int | None]) -> Tensor:
    """Average pooling to a given output size (``Ho x Wo``; ``None`` keeps that side), as
    ``F.adaptive_avg_pool2d``: the bins are computed from the sizes, e.g. 7x7 to 1x1 is a global average.

    Each bin averages rows then columns, so the whole pool is ``A_h @ X @ A_w.T`` with two averaging matrices.
    """
    _check_image(X)
    H, W = X.shape[-2:]
    if isinstance(output_size, Sequence) and not isinstance(output_size, str):
        if len(output_size) != 2:
            raise ConvzooError(f"output_size must be a whole number or a (height, width) pair, got {output_size!r}")
        Ho = H if output_size[0] is None else _whole(output_size[0], "output_size", 1)
        Wo = W if output_size[1] is None else _whole(output_size[1], "output_size", 1)
    else:
        Ho = Wo = _whole(output_size, "output_size", 1)
    return _bins(H, Ho, X) @ X @ _bins(W, Wo, X).T  # (Ho x H) @ (... x H x W) @ (W x Wo) = ... x Ho x Wo
