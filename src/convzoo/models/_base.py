"""The one constructor contract every zoo model follows.

A zoo model is a :class:`ConvNet`: it takes ``num_classes`` and ``in_channels``, holds a
``features`` module (image in, feature map out) and a ``head`` module (feature map in, logits out),
and exposes timm's split ``forward_features`` / ``forward_head``. ``forward`` checks the input first,
so a wrong channel count or a too-small image is a clear ``InputShapeError`` (a ``ValueError``) before
any layer runs.

The accepted input sizes are derived from the architecture itself: the network is rebuilt on the
``meta`` device (shapes only, no memory, no arithmetic) and probed with candidate sizes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from convzoo.errors import InputShapeError, ModelError


@dataclass(frozen=True)
class InputRange:
    """Spatial sizes (pixels, per side) a model accepts: ``minimum <= H, W <= maximum``.

    ``maximum`` is ``None`` when the model ends in adaptive pooling and takes any larger size; it is a
    number when a flattened classifier fixes the feature-map size (LeNet, the notes' small CNNs).
    """

    minimum: int
    maximum: int | None

    def __contains__(self, side: int) -> bool:
        return side >= self.minimum and (self.maximum is None or side <= self.maximum)

    def __str__(self) -> str:
        if self.maximum is None:
            return f">= {self.minimum}x{self.minimum}"
        if self.maximum == self.minimum:
            return f"exactly {self.minimum}x{self.minimum}"
        return f"{self.minimum}x{self.minimum} to {self.maximum}x{self.maximum}"


def check_positive_int(value: object, what: str) -> int:
    """Return ``value`` if it is an int >= 1, else raise a ``ModelError`` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelError(f"{what} must be a whole number >= 1, got {value!r}")
    return value


class ConvNet(nn.Module):
    """Base class of every zoo model: ``features`` then ``head``, logits out (no softmax).

    Subclasses set ``self.features`` and ``self.head`` in ``__init__`` and pass the default input side
    (the size the architecture was designed for, e.g. 224 for AlexNet) used to probe the input range.
    """

    features: nn.Module
    head: nn.Module

    def __init__(self, *, model_name: str, in_channels: int, num_classes: int, default_size: int) -> None:
        super().__init__()
        self.model_name = model_name
        self.in_channels = check_positive_int(in_channels, f"{model_name}: in_channels")
        self.num_classes = check_positive_int(num_classes, f"{model_name}: num_classes")
        self.default_size = check_positive_int(default_size, f"{model_name}: default input size")
        self._input_range: InputRange | None = None

    # -- the timm split -------------------------------------------------------------------------
    def forward_features(self, X: Tensor) -> Tensor:
        """Image batch ``B x C x H x W`` to the last feature map (before pooling and classifier)."""
        return self.features(X)

    def forward_head(self, X: Tensor) -> Tensor:
        """Feature map to logits ``B x num_classes``."""
        return self.head(X)

    def forward(self, X: Tensor) -> Tensor:
        if not torch.compiler.is_compiling():
            self.check_input(X)
        return self.forward_head(self.forward_features(X))

    # -- input checks ---------------------------------------------------------------------------
    def input_range(self) -> InputRange:
        """The spatial sizes this model accepts: pinned in the registry for a model built by
        ``create_model`` with its registered architecture, else derived by probing a shape-only copy (once
        per architecture and process: models printing alike share the result)."""
        if self._input_range is None:
            key = (type(self).__module__, type(self).__qualname__, self.default_size, repr(self))
            if key not in _RANGES:
                _RANGES[key] = probe_input_range(self)
            self._input_range = _RANGES[key]
        return self._input_range

    def set_input_range(self, accepted: InputRange) -> None:
        """Use ``accepted`` instead of probing: the registry passes the range pinned for the architecture
        (the probe costs up to a second or two: the meta device's kernels import torch's compiler stack)."""
        self._input_range = accepted

    def check_input(self, X: Tensor) -> None:
        """Raise ``InputShapeError`` naming the model, the size given, what it needs and how to fix it."""
        name = self.model_name
        if X.dim() != 4:
            hint = " (add a batch dimension with X.unsqueeze(0))" if X.dim() == 3 else ""
            raise InputShapeError(
                f"{name}: expected a batch of images B x C x H x W, got a tensor of shape "
                f"{tuple(X.shape)}{hint}"
            )
        channels, height, width = X.shape[1], X.shape[2], X.shape[3]
        if channels != self.in_channels:
            raise InputShapeError(
                f"{name}: expected {self.in_channels} input channel(s), got {channels} "
                f"(input shape {tuple(X.shape)}); build the model with in_channels={channels} "
                f"(--in-channels {channels}) or convert the images to {self.in_channels} channel(s)"
            )
        accepted = self.input_range()
        if height in accepted and width in accepted:
            return
        if min(height, width) < accepted.minimum:
            problem = f"is smaller than the minimum {accepted.minimum}x{accepted.minimum}"
        elif accepted.maximum == accepted.minimum:
            problem = f"is not the {accepted.minimum}x{accepted.minimum} its classifier is sized for"
        else:
            problem = f"is outside the accepted range {accepted} (its classifier has a fixed input size)"
        raise InputShapeError(
            f"{name}: input {height}x{width} {problem}; resize the images, "
            f"e.g. --resize {self.default_size}"
        )


_RANGES: dict[tuple[str, str, int, str], InputRange] = {}


def _shape_only_copy(net: ConvNet) -> ConvNet:
    """A copy of ``net`` whose parameters and buffers live on the meta device (no data copied)."""
    memo: dict[int, object] = {}
    for param in net.parameters():
        memo[id(param)] = nn.Parameter(torch.empty_like(param, device="meta"), param.requires_grad)
    for buffer in net.buffers():
        memo[id(buffer)] = torch.empty_like(buffer, device="meta")
    twin = copy.deepcopy(net, memo)
    for module in twin.modules():  # hooks (an inspector's, say) must not see the probes
        module._forward_hooks.clear()
        module._forward_pre_hooks.clear()
    return twin


def probe_input_range(net: ConvNet) -> InputRange:
    """Derive the accepted spatial sizes of ``net`` by running shape-only forwards.

    Output sizes of convolutions and poolings never shrink as the input grows, so the valid sides form
    an interval: binary search its lower end below the default size and, if a side four times the
    default fails (a flattened classifier), its upper end above it.
    """
    twin = _shape_only_copy(net).eval()  # evaluation mode: batch norm takes a batch of one

    def fits(side: int) -> bool:
        X = torch.empty(1, net.in_channels, side, side, device="meta")
        try:
            with torch.no_grad():
                twin.forward_head(twin.forward_features(X))
        except (RuntimeError, ValueError):
            return False
        return True

    default = net.default_size
    if not fits(default):
        raise RuntimeError(f"{net.model_name}: its own default input size {default} does not fit")
    lo, hi = 1, default  # smallest fitting side lies in [lo, hi]
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(mid) else (mid + 1, hi)
    minimum = lo
    if fits(4 * default):
        return InputRange(minimum, None)
    lo, hi = default, 4 * default  # largest fitting side lies in [lo, hi)
    while lo + 1 < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return InputRange(minimum, lo)
