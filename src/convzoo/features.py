"""Looking inside a network (notes 001): the feature maps its layers compute, and its first filters.

    maps = feature_maps(net, X)                            # {"features.0": B x C x H x W, ...}, in order
    maps = feature_maps(net, X, ["features.1.0", "head.1"])  # any layer, by its name in net.named_modules()

The default layers are the blocks of ``forward_features``: the top-level children of the model's ``features``
(a LeNet's every convolution, activation and pooling; a ResNet's stem and stages; a DenseNet's dense blocks
and transitions), named as ``net.named_modules()`` and ``convzoo summary`` name them. Each map is captured by
a forward hook and copied, so that a later in-place operation (``ReLU(inplace=True)``) cannot change it.

``plot_feature_maps`` draws one layer's channels as a grid of tiles and ``plot_filters`` the first
convolution's kernels, each tile scaled to its own range (matplotlib's Agg canvas, written atomically, as
``convzoo.train.plots`` draws a run's pictures). ``convzoo features`` writes both for an image.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from convzoo.errors import ModelError
from convzoo.models import ConvNet

__all__ = ["MAX_TILES", "Grid", "check_drawable", "default_layers", "feature_maps", "first_conv", "plot_feature_maps",
           "plot_filters"]

MAX_TILES = 64  # channels (or kernels) drawn per picture: the first ones; an 8 x 8 grid at most
TILE_PX = 64  # pixels for a tile's longer side
TITLE_PX = 44  # pixels above the grid for the title (two lines)
MIN_WIDTH_PX = 440  # a grid narrower than this is centred in a figure this wide, so that the title fits


def default_layers(net: ConvNet) -> list[str]:
    """The blocks of ``net.forward_features``: ``features.NAME`` for each top-level child of ``net.features``."""
    return [f"features.{name}" for name, _ in net.features.named_children()]


def feature_maps(net: ConvNet, X: Tensor, layers: Sequence[str] | None = None) -> dict[str, Tensor]:
    """The output of each of ``layers`` (default: :func:`default_layers`) when ``net`` runs on ``X``
    (``B x C x H x W``), by layer name, in the order given. ``net`` runs as it is (set ``net.eval()`` first for
    evaluation-mode maps; gradients flow as in any forward).

    A name that is not a layer, a layer that does not run or runs more than once in one forward (a module
    reused, whose maps would be ambiguous), or one whose output is not a tensor, is a ``ModelError``.
    """
    modules = {name: module for name, module in net.named_modules() if name}
    names = list(dict.fromkeys(default_layers(net) if layers is None else layers))  # once each, in order
    for name in names:
        if name not in modules:
            close = difflib.get_close_matches(name, list(modules), n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ModelError(f"{net.model_name} has no layer {name!r}; {hint}its blocks are "
                             f"{', '.join(default_layers(net))} (`convzoo summary {net.model_name}` shows every "
                             f"layer: features.1.0 is child 0 of block 1)")
    captured: dict[str, list[object]] = {name: [] for name in names}

    def keep(name: str) -> Callable[[nn.Module, object, object], None]:
        def hook(module: nn.Module, inputs: object, output: object) -> None:
            captured[name].append(output.clone() if isinstance(output, Tensor) else output)
        return hook

    handles = [modules[name].register_forward_hook(keep(name)) for name in names]
    try:
        net(X)
    finally:
        for handle in handles:
            handle.remove()
    maps = {}
    for name, outputs in captured.items():
        if len(outputs) != 1:
            how = "does not run in the forward" if not outputs else f"runs {len(outputs)} times in one forward"
            raise ModelError(f"{net.model_name}: layer {name} {how}, so it has no one feature map; choose "
                             f"another (its blocks: {', '.join(default_layers(net))})")
        (output,) = outputs
        if not isinstance(output, Tensor):
            raise ModelError(f"{net.model_name}: layer {name} gives a {type(output).__name__}, not a tensor; "
                             "choose another")
        maps[name] = output
    return maps


def first_conv(net: nn.Module) -> nn.Conv2d:
    """The first convolution of ``net`` (in module order: the one that reads the image)."""
    conv = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise ModelError(f"{type(net).__name__} has no convolution, so no filters to draw")
    return conv


@dataclass(frozen=True)
class Grid:
    """How a picture laid out its tiles: ``rows x columns`` cells holding the first ``shown`` of ``total``."""

    rows: int
    columns: int
    shown: int
    total: int


def grid_for(count: int) -> tuple[int, int]:
    """``(rows, columns)`` of the grid for ``count`` tiles: as square as it gets, wider than tall."""
    columns = math.ceil(math.sqrt(count))
    return math.ceil(count / columns), columns


def check_drawable(name: str, maps: Tensor) -> None:
    """Raise a ``ModelError`` unless layer ``name``'s output ``maps`` is ``B x C x H x W`` feature maps."""
    if maps.dim() != 4:
        raise ModelError(f"layer {name} gives a tensor of shape {tuple(maps.shape)}, not B x C x H x W feature "
                         "maps; choose a layer of the model's features")


def plot_feature_maps(name: str, maps: Tensor, path: Path, max_channels: int = MAX_TILES) -> Grid:
    """Draw image 0 of one layer's maps (``B x C x H x W``) as a grid of its first ``max_channels`` channels,
    titled with the layer's name and shape; each channel scaled to its own range (viridis: dark is its
    lowest value, yellow its highest)."""
    check_drawable(name, maps)
    channels = maps[0].detach().float().cpu()  # C x H x W
    shown = min(len(channels), max_channels)
    title = f"{name}: {' x '.join(map(str, maps.shape))} (B x C x H x W)"
    part = f"{shown} channels" if shown == len(channels) else f"first {shown} of {len(channels)} channels"
    return _draw_tiles(channels[:shown, ..., None], len(channels), path,
                       f"{title}\n{part} (image 0), each scaled to its range", cmap="viridis")


def plot_filters(conv: nn.Conv2d, path: Path, max_kernels: int = MAX_TILES) -> Grid:
    """Draw the kernels of ``conv`` (``out x in x kH x kW``), the first ``max_kernels``: in colour when it
    reads 3 channels (RGB), else each kernel's mean over its input channels (viridis); each scaled to its own
    range."""
    weight = conv.weight.detach().float().cpu()  # out x in x kH x kW
    shown = min(len(weight), max_kernels)
    if weight.shape[1] == 3:
        tiles, how = weight[:shown].permute(0, 2, 3, 1), "as RGB"  # shown x kH x kW x 3
    else:
        tiles = weight[:shown].mean(dim=1)[..., None]  # shown x kH x kW x 1
        how = "1 input channel" if weight.shape[1] == 1 else f"mean of {weight.shape[1]} input channels"
    part = f"{shown} kernels" if shown == len(weight) else f"first {shown} of {len(weight)} kernels"
    title = f"first convolution: {' x '.join(map(str, weight.shape))} (out x in x kH x kW)"
    return _draw_tiles(tiles, len(weight), path, f"{title}\n{part}, {how}, each scaled to its range",
                       cmap="viridis")


def _draw_tiles(tiles: Tensor, total: int, path: Path, title: str, cmap: str) -> Grid:
    """Draw ``tiles`` (``N x H x W x 1`` or ``N x H x W x 3``) in one image, a grid with white gaps, under
    ``title``. The figure is sized in pixels from the grid: ``TILE_PX`` per tile's longer side."""
    from convzoo.train.plots import _figure, _save

    count, height, width, depth = tiles.shape
    rows, columns = grid_for(count)
    gap = max(1, round(max(height, width) / 8))  # between tiles, in the maps' pixels
    low = tiles.flatten(1).min(dim=1).values.view(-1, 1, 1, 1)
    high = tiles.flatten(1).max(dim=1).values.view(-1, 1, 1, 1)
    scaled = ((tiles - low) / (high - low).clamp(min=1e-12)).clamp(0, 1)  # each tile on [0, 1]
    mosaic = torch.full((rows * (height + gap) - gap, columns * (width + gap) - gap, depth), float("nan"))
    for i in range(count):
        row, column = divmod(i, columns)
        y, x = row * (height + gap), column * (width + gap)
        mosaic[y : y + height, x : x + width] = scaled[i]
    scale = TILE_PX / max(height, width)  # screen pixels per map pixel
    grid_w, grid_h = mosaic.shape[1] * scale, mosaic.shape[0] * scale
    fig_w, fig_h = max(grid_w, MIN_WIDTH_PX), grid_h + TITLE_PX
    fig = _figure(figsize=(fig_w / 100, fig_h / 100))  # inches at the 100 dpi _save writes
    ax = fig.add_axes(((fig_w - grid_w) / 2 / fig_w, 0.0, grid_w / fig_w, grid_h / fig_h))
    ax.axis("off")
    if depth == 1:
        import matplotlib

        colours = matplotlib.colormaps[cmap].with_extremes(bad="white")  # the gaps (NaN) white
        ax.imshow(mosaic[..., 0].numpy(), cmap=colours, vmin=0, vmax=1, interpolation="nearest", aspect="auto")
    else:
        pixels = mosaic.nan_to_num(nan=1.0)  # the gaps white
        ax.imshow(pixels.numpy(), interpolation="nearest", aspect="auto")
    fig.text(0.5, 1 - 4 / fig_h, title, ha="center", va="top", fontsize=9)
    _save(fig, path, tight=False)
    return Grid(rows, columns, count, total)
