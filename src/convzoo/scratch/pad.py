"""Padding from first principles (notes 001): zero, constant, mirror (reflect), replicate and circular.

Pure tensor code, no ``torch.nn.functional`` inside; matches ``F.pad`` on the last two dimensions.
``padding`` is an int (the same on every side) or ``(left, right, top, bottom)``, the order ``F.pad``
uses for a 4-tuple. Zero and constant padding copy the input into a grid already filled with the value;
the other modes are a gather: each padded row (column) copies the input row (column) an index map names.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from convzoo.errors import ConvzooError
from convzoo.scratch.shapes import _whole

__all__ = ["PAD_MODES", "pad2d"]

PAD_MODES = ("zeros", "constant", "reflect", "replicate", "circular")


def _padding4(padding: int | Sequence[int]) -> tuple[int, int, int, int]:
    """``p -> (p, p, p, p)``; ``(left, right, top, bottom)`` kept as it is."""
    if isinstance(padding, Sequence) and not isinstance(padding, str):
        if len(padding) != 4:
            raise ConvzooError(
                f"padding must be a whole number or a (left, right, top, bottom) tuple as F.pad, "
                f"got {tuple(padding)!r}"
            )
        left, right, top, bottom = (_whole(p, "padding", 0) for p in padding)
        return left, right, top, bottom
    p = _whole(padding, "padding", 0)
    return p, p, p, p


def _source_index(n: int, before: int, after: int, mode: str, device: torch.device) -> Tensor:
    """For each of the ``before + n + after`` padded positions, the input position it copies.

    reflect:   mirror about the edge without repeating it:  -2 -1 | 0 1 2 3 4 | 5 6  ->  2 1 | ... | 3 2
    replicate: the edge repeated:                                                     ->  0 0 | ... | 4 4
    circular:  the other side wrapped around:                                         ->  3 4 | ... | 0 1
    """
    i = torch.arange(-before, n + after, device=device)
    if mode == "reflect":
        i = i.abs()
        return torch.where(i > n - 1, 2 * (n - 1) - i, i)
    if mode == "replicate":
        return i.clamp(0, n - 1)
    return i.remainder(n)  # circular


def pad2d(X: Tensor, padding: int | Sequence[int], mode: str = "zeros", value: float = 0.0) -> Tensor:
    """Pad the last two dimensions of ``X`` (``... x H x W``), as ``F.pad(X, (l, r, t, b), mode, value)``.

    ``mode``: "zeros", "constant" (with ``value``), "reflect" (mirror without repeating the edge; padding
    must be smaller than the side), "replicate" (repeat the edge) or "circular" (wrap around; padding at
    most the side). E.g. one row of ``[1, 2, 3]`` padded by 2: reflect ``3 2 | 1 2 3 | 2 1``, replicate
    ``1 1 | 1 2 3 | 3 3``, circular ``2 3 | 1 2 3 | 1 2``.
    """
    if not isinstance(X, Tensor) or X.dim() < 2:
        shape = tuple(X.shape) if isinstance(X, Tensor) else type(X).__name__
        raise ConvzooError(f"X must be a tensor of at least 2 dimensions (... x H x W), got {shape}")
    if mode not in PAD_MODES:
        raise ConvzooError(f"mode must be one of {', '.join(PAD_MODES)}; got {mode!r}")
    if mode != "constant" and value != 0:
        raise ConvzooError(f"value={value} only applies to mode='constant', not mode={mode!r}")
    left, right, top, bottom = _padding4(padding)
    H, W = X.shape[-2:]
    if mode in ("reflect", "circular"):
        for side, before, after in (("height", top, bottom), ("width", left, right)):
            n, p = (H, W)[side == "width"], max(before, after)
            limit = n - 1 if mode == "reflect" else n
            if p > limit:
                why = "mirrors without repeating the edge" if mode == "reflect" else "wraps around at most once"
                raise ConvzooError(
                    f"padding {p} is too large for {mode} padding of an input {side} of {n}: {mode} {why}, "
                    f"so the padding can be at most {limit}; use less padding or mode 'replicate'"
                )
    if mode in ("zeros", "constant"):
        out = X.new_full((*X.shape[:-2], top + H + bottom, left + W + right), value)  # ... x Hp x Wp
        out[..., top:top + H, left:left + W] = X  # a fresh tensor: autograd records the copy
        return out
    rows = _source_index(H, top, bottom, mode, X.device)
    cols = _source_index(W, left, right, mode, X.device)
    return X[..., rows, :][..., cols]  # ... x Hp x W, then ... x Hp x Wp
