"""Convolution from first principles (notes 001; d2l 7.2-7.4), checked against ``torch.nn.functional``.

Three views of one operation, all cross-correlations as in PyTorch (the kernel is not flipped):

- ``corr2d``: the readable double loop of notes 001, one output position at a time, one channel;
- ``conv2d``: the vectorised one. Every window of the padded input is gathered at once
  (``Tensor.unfold``: a view, no copy), laid out as one column per output pixel (im2col), and one
  matrix product multiplies every kernel with every window. Batches, several input and output
  channels, stride, padding modes, dilation and groups;
- ``conv1x1``: a 1x1 convolution is a matrix product over channels, pixel by pixel (NiN, GoogLeNet).

Pure tensor code: no ``torch.nn.functional``, no ``torch.conv*`` inside.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from convzoo.errors import ConvzooError
from convzoo.scratch.pad import pad2d
from convzoo.scratch.shapes import _check_fits, _check_image, _pair, _whole

__all__ = ["CONV_PADDING_MODES", "conv1x1", "conv2d", "corr2d", "sliding_windows"]

CONV_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")  # as nn.Conv2d's padding_mode


def corr2d(X: Tensor, K: Tensor) -> Tensor:
    """Slide the kernel ``K`` (``kh x kw``) over ``X`` (``H x W``): multiply element by element, add up.

    The loop of notes 001 (and d2l's ``corr2d``): output ``(H - kh + 1) x (W - kw + 1)``, no padding,
    stride 1. ``conv2d`` computes the same thing for every window at once.
    """
    for t, name in ((X, "X"), (K, "K")):
        if not isinstance(t, Tensor) or t.dim() != 2:
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ConvzooError(f"corr2d takes one channel: {name} must be a 2-d tensor (H x W), got {shape}")
    h, w = K.shape
    _check_fits((h, w), (h, w), (X.shape[0], X.shape[1]), (0, 0, 0, 0))
    Y = torch.zeros((X.shape[0] - h + 1, X.shape[1] - w + 1), dtype=torch.result_type(X, K), device=X.device)
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i:i + h, j:j + w] * K).sum()  # one window: products, then their sum
    return Y


def sliding_windows(X: Tensor, kernel: int | Sequence[int], stride: int | Sequence[int] = 1,
                    dilation: int | Sequence[int] = 1) -> Tensor:
    """Every ``kh x kw`` window of ``X`` (``B x C x H x W``, already padded), as a view.

    Returns ``B x C x Ho x Wo x kh x kw``: ``[b, c, i, j]`` is the window whose top-left corner sits at
    row ``i * stride``, column ``j * stride``; with dilation the window takes every ``dilation``-th pixel.
    """
    kh, kw = _pair(kernel, "kernel", 1)
    sh, sw = _pair(stride, "stride", 1)
    dh, dw = _pair(dilation, "dilation", 1)
    span = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)  # pixels one window covers
    _check_fits((kh, kw), span, (X.shape[-2], X.shape[-1]), (0, 0, 0, 0), (dh, dw))
    windows = X.unfold(-2, span[0], sh).unfold(-2, span[1], sw)  # B x C x Ho x Wo x span_h x span_w
    return windows[..., ::dh, ::dw]  # B x C x Ho x Wo x kh x kw


def _conv_padding(padding: int | Sequence[int] | str, kernel: tuple[int, int], stride: tuple[int, int],
                  dilation: tuple[int, int]) -> tuple[int, int, int, int]:
    """conv2d's ``padding`` (int, (height, width), "valid" or "same") as (left, right, top, bottom)."""
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding != "same":
            raise ConvzooError(f"padding must be a whole number, a (height, width) pair, 'valid' or 'same'; "
                             f"got {padding!r}")
        if stride != (1, 1):
            raise ConvzooError(f"padding='same' needs stride 1, got stride {stride}; give the padding as a number")
        # total padding d * (k - 1) per side; an odd total puts the extra pixel at the end, as PyTorch does
        (th, tw) = (dilation[0] * (kernel[0] - 1), dilation[1] * (kernel[1] - 1))
        return tw // 2, tw - tw // 2, th // 2, th - th // 2
    ph, pw = _pair(padding, "padding", 0)
    return pw, pw, ph, ph


def conv2d(
    X: Tensor,
    W: Tensor,
    b: Tensor | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] | str = 0,
    padding_mode: str = "zeros",
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> Tensor:
    """2-d convolution of ``X`` (``B x C x H x W`` or ``C x H x W``) with ``W`` (``O x C/groups x kh x kw``).

    Output channel ``o`` is the sum over its group's input channels of ``corr2d(X[c], W[o, c])``, plus
    ``b[o]`` (notes 001: m output channels need an m x n x kh x kw weight). ``padding`` is an int, a
    (height, width) pair, "valid" or "same" as ``F.conv2d``; ``padding_mode`` is nn.Conv2d's: "zeros",
    "reflect", "replicate" or "circular". ``groups`` splits the channels into independent convolutions.
    Output side: ``floor((n + 2p - d(k - 1) - 1) / s) + 1`` (``output_size``).
    """
    X = _check_image(X)
    if not isinstance(W, Tensor) or W.dim() != 4:
        shape = tuple(W.shape) if isinstance(W, Tensor) else type(W).__name__
        raise ConvzooError(f"W must be out_channels x in_channels/groups x kh x kw (4 dimensions), got {shape}")
    if W.dtype != X.dtype:
        raise ConvzooError(f"X is {X.dtype} but W is {W.dtype}; convert one, e.g. W.to(X.dtype)")
    unbatched = X.dim() == 3
    if unbatched:
        X = X.unsqueeze(0)  # 1 x C x H x W
    B, C, H, Wd = X.shape
    O, Cg, kh, kw = W.shape
    groups = _whole(groups, "groups", 1)
    if C % groups or O % groups:
        raise ConvzooError(f"groups={groups} must divide both the input channels of X ({C}) and the output "
                         f"channels of W ({O})")
    if Cg * groups != C:
        hint = "" if groups == 1 else f"; with groups={groups} W needs {C // groups} per group"
        raise ConvzooError(f"W has {Cg} input channels but X has {C} (groups={groups}){hint}")
    if b is not None and tuple(b.shape) != (O,):
        raise ConvzooError(f"b must have shape ({O},) for {O} output channels, got {tuple(b.shape)}")
    if padding_mode not in CONV_PADDING_MODES:
        raise ConvzooError(f"padding_mode must be one of {', '.join(CONV_PADDING_MODES)}; got {padding_mode!r}")
    s = _pair(stride, "stride", 1)
    d = _pair(dilation, "dilation", 1)
    pad = _conv_padding(padding, (kh, kw), s, d)
    span = (d[0] * (kh - 1) + 1, d[1] * (kw - 1) + 1)
    _check_fits((kh, kw), span, (H, Wd), pad, d)
    if any(pad):
        X = pad2d(X, pad, mode=padding_mode)  # B x C x Hp x Wp
    windows = sliding_windows(X, (kh, kw), s, d)  # B x C x Ho x Wo x kh x kw (a view)
    Ho, Wo = windows.shape[2:4]
    # im2col: one column per output pixel holding its window, C/G*kh*kw values (the one copy made)
    windows = windows.reshape(B, groups, Cg, Ho, Wo, kh, kw).permute(0, 1, 2, 5, 6, 3, 4)
    cols = windows.reshape(B, groups, Cg * kh * kw, Ho * Wo)  # B x G x C/G*kh*kw x Ho*Wo
    kernels = W.reshape(groups, O // groups, Cg * kh * kw)  # G x O/G x C/G*kh*kw: one kernel per row
    # every kernel times every window, one matrix product per image and group; already B x O x Ho x Wo
    Y = (kernels @ cols).reshape(B, O, Ho, Wo)  # B x G x O/G x Ho*Wo, then B x O x Ho x Wo
    if b is not None:
        Y = Y + b.reshape(1, O, 1, 1)
    return Y[0] if unbatched else Y


def conv1x1(X: Tensor, W: Tensor, b: Tensor | None = None) -> Tensor:
    """A 1x1 convolution is a fully connected layer applied to every pixel: a matrix product over channels.

    ``X``: ``B x C x H x W``; ``W``: ``O x C`` (or ``O x C x 1 x 1``, nn.Conv2d's weight); output
    ``B x O x H x W``. It mixes channels without looking at neighbours (NiN, GoogLeNet's reductions).
    """
    X = _check_image(X)
    if X.dim() == 3:
        return conv1x1(X.unsqueeze(0), W, b)[0]
    if isinstance(W, Tensor) and W.dim() == 4 and W.shape[2:] == (1, 1):
        W = W[:, :, 0, 0]  # O x C
    if not isinstance(W, Tensor) or W.dim() != 2:
        shape = tuple(W.shape) if isinstance(W, Tensor) else type(W).__name__
        raise ConvzooError(f"W must be out_channels x in_channels (or O x C x 1 x 1), got {shape}")
    B, C, H, Wd = X.shape
    O = W.shape[0]
    if W.shape[1] != C:
        raise ConvzooError(f"W has {W.shape[1]} input channels but X has {C}")
    if b is not None and tuple(b.shape) != (O,):
        raise ConvzooError(f"b must have shape ({O},) for {O} output channels, got {tuple(b.shape)}")
    Y = W @ X.reshape(B, C, H * Wd)  # (O x C) @ (B x C x HW) = B x O x HW: every pixel is a column
    if b is not None:
        Y = Y + b.reshape(1, O, 1)
    return Y.reshape(B, O, H, Wd)
