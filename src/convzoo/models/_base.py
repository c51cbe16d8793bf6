"""The one constructor contract every zoo model follows.

A zoo model is a :class:`ConvNet`: it takes ``num_classes`` and ``in_channels``, holds a
``features`` module (image in, feature map out) and a ``head`` module (feature map in, logits out),
and exposes timm's split ``forward_features`` / ``forward_head``. ``forward`` checks the input first,
so a wrong channel count or a too-small image is a clear ``InputShapeError`` (a ``ValueError``) before
any layer runs.

The accepted input sizes are derived from the architecture itself: the network is rebuilt on the
``meta`` device (shapes only, no memory, no arithmetic) and probed with candidate sizes. The check is left
out while ``torch.jit.trace``, ``torch.fx`` symbolic tracing, ``torch.compile`` or ``torch.export`` runs the
forward, so their graphs hold the layers only.

Model surgery: ``in_channels`` and ``num_classes`` are read from the current modules (the first convolution
of ``features``, the last linear or convolution layer of ``head``), so they stay true after
``net.head = ...`` or ``net.features[0] = ...``. The accepted sizes are derived again on the next forward
after ``features``, ``head``, the first convolution or the head's last layer is replaced; after any other
change of the architecture (a layer deep inside ``features``), call ``net.refresh_input_check()``.
"""

from __future__ import annotations

import copy
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from convzoo.errors import InputShapeError, ModelError

if TYPE_CHECKING:
    from convzoo.models.pretrained_cfg import PretrainedCfg


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
        self._in_channels = check_positive_int(in_channels, f"{model_name}: in_channels")  # as built
        self._num_classes = check_positive_int(num_classes, f"{model_name}: num_classes")
        self.default_size = check_positive_int(default_size, f"{model_name}: default input size")
        self._input_range: InputRange | None = None
        # the preprocessing and provenance of the weights loaded by create_model(pretrained=...); None without
        self.pretrained_cfg: PretrainedCfg | None = None
        self._range_key: tuple[weakref.ref[nn.Module] | None, ...] | None = None  # the modules it was found for

    # -- what the current modules take and give ------------------------------------------------------
    def _stem(self) -> nn.Conv2d | None:
        """The first convolution of ``features`` (the layer that reads the image), if there is one yet."""
        features = self._modules.get("features")
        return next((m for m in features.modules() if isinstance(m, nn.Conv2d)), None) if features else None

    def _last_layer(self) -> nn.Linear | nn.Conv2d | None:
        """The last linear or convolution layer of ``head`` (the one giving the logits), if there is one yet."""
        head = self._modules.get("head")
        layers = [m for m in head.modules() if isinstance(m, nn.Linear | nn.Conv2d)] if head else []
        return layers[-1] if layers else None

    @property
    def in_channels(self) -> int:
        """Input channels: those of the first convolution as it is now (the built value before there is one)."""
        stem = self._stem()
        return stem.in_channels if stem is not None and stem.in_channels > 0 else self._in_channels

    @property
    def num_classes(self) -> int:
        """Classes: the outputs of the head's last layer as it is now (the built value before there is one)."""
        last = self._last_layer()
        if isinstance(last, nn.Linear) and last.out_features > 0:
            return last.out_features
        return last.out_channels if isinstance(last, nn.Conv2d) else self._num_classes

    def _watched(self) -> tuple[nn.Module | None, ...]:
        """The modules surgery replaces: ``features``, ``head``, the stem, the head's last layer."""
        return self._modules.get("features"), self._modules.get("head"), self._stem(), self._last_layer()

    def _remember_modules(self) -> None:
        """Note which modules the accepted range holds for (weak references: a replaced module is not kept)."""
        self._range_key = tuple(None if m is None else weakref.ref(m) for m in self._watched())

    def _modules_replaced(self) -> bool:
        if self._range_key is None:
            return False
        return any((None if ref is None else ref()) is not m for ref, m in zip(self._range_key, self._watched(),
                                                                              strict=True))

    def refresh_input_check(self) -> None:
        """Forget the accepted input sizes: the next forward derives them again from the modules as they are.
        Needed only after replacing a layer other than those ``_watched`` lists (module docstring)."""
        self._input_range = None
        self._range_key = None

    # -- the timm split -------------------------------------------------------------------------
    def forward_features(self, X: Tensor) -> Tensor:
        """Image batch ``B x C x H x W`` to the last feature map (before pooling and classifier)."""
        return self.features(X)

    def forward_head(self, X: Tensor) -> Tensor:
        """Feature map to logits ``B x num_classes``."""
        return self.head(X)

    def forward(self, X: Tensor) -> Tensor:
        if not _tracing(X):
            self.check_input(X)
        return self.forward_head(self.forward_features(X))

    # -- input checks ---------------------------------------------------------------------------
    def input_range(self) -> InputRange:
        """The spatial sizes this model accepts: pinned in the registry for a model built by
        ``create_model`` with its registered architecture, else derived by probing a shape-only copy (once
        per architecture and process: models printing alike share the result)."""
        if self._modules_replaced():  # surgery since the range was found
            self.refresh_input_check()
        if self._input_range is None:
            key = self._architecture()
            if key not in _RANGES:
                _RANGES[key] = probe_input_range(self)
            self._input_range = _RANGES[key]
            self._remember_modules()
        return self._input_range

    def _architecture(self) -> tuple[str, str, int, str]:
        return type(self).__module__, type(self).__qualname__, self.default_size, repr(self)

    def set_input_range(self, accepted: InputRange) -> None:
        """Use ``accepted`` instead of probing: the registry passes the range pinned for the architecture
        (the probe costs up to a second or two: the meta device's kernels import torch's compiler stack)."""
        self._input_range = accepted
        self._remember_modules()
        _RANGES.setdefault(self._architecture(), accepted)  # a deep copy (whose modules are new) finds it here

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


def _tracing(X: object) -> bool:
    """True while ``torch.jit.trace``, ``torch.fx`` symbolic tracing, ``torch.compile`` or ``torch.export``
    runs the forward: the input check is Python control flow on shapes (FX cannot branch on a ``Proxy``,
    the JIT would bake the branch into the graph with a warning) and its probe must not run inside a trace,
    so traced, exported and compiled graphs hold the layers only."""
    return (isinstance(X, torch.fx.Proxy) or torch.jit.is_tracing() or torch.compiler.is_compiling()
            or torch.compiler.is_exporting())


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
    default fails (a flattened classifier), its upper end above it. After surgery the default may no longer
    fit: the search then starts from the fitting side nearest to it.
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
    # a side that fits: the default, or after surgery (a stem without padding, say) the nearest one that does
    nearest = sorted(range(1, 4 * default + 1), key=lambda side: (abs(side - default), side))
    anchor = next((side for side in nearest if fits(side)), None)
    if anchor is None:
        raise RuntimeError(f"{net.model_name}: no input side from 1 to {4 * default} fits the architecture")
    lo, hi = 1, anchor  # smallest fitting side lies in [lo, hi]
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(mid) else (mid + 1, hi)
    minimum = lo
    if fits(4 * max(default, anchor)):
        return InputRange(minimum, None)
    lo, hi = anchor, 4 * max(default, anchor)  # largest fitting side lies in [lo, hi)
    while lo + 1 < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return InputRange(minimum, lo)
