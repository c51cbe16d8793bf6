"""What a model page shows of its shipped weights: test images with their top-5, every block's feature maps,
and the first convolution's filters, precomputed when the site is built.

    gallery = weights_gallery(info, data, out / "img" / "lenet", "img/lenet", count=3)

The test images are the first of each class (CIFAR-10's test split is in class order: its first three are three
airplanes). The maps come from :func:`convzoo.feature_maps` (the blocks of ``forward_features``) on each image
as the weights' own preprocessing gives it (``Checkpoint.preprocess``: resize, mean and std of the weights' index);
the top-5 from the same forward pass. The maps are written as small PNG mosaics with Pillow (each channel
scaled to its own range, viridis, as ``convzoo features`` draws them), which is a hundred times quicker than a
matplotlib figure per map; the filters are ``convzoo.features.plot_filters``' own picture.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from convzoo.data import Dataset
from convzoo.features import MAX_TILES, feature_maps, first_conv, grid_for, plot_filters
from convzoo.models import WeightsInfo
from convzoo.train.inference import load_pretrained
from convzoo.utils.atomic import atomic_path

__all__ = ["MAP_CHANNELS", "write_image", "write_mosaic", "weights_gallery"]

MAP_CHANNELS = 16  # channels drawn per block on the site: the first ones (a 4 x 4 mosaic)
TILE_PX = 48  # a map tile's longer side on the page, in pixels (nearest-neighbour enlarged)


def _viridis() -> Tensor:
    """256 x 3 uint8: matplotlib's viridis colour map as a lookup table."""
    import matplotlib

    table = matplotlib.colormaps["viridis"](torch.linspace(0, 1, 256).numpy())[:, :3]
    return torch.from_numpy((table * 255).round()).to(torch.uint8)


def write_image(pixels: Tensor, path: Path) -> None:
    """Write uint8 ``C x H x W`` (C = 1 or 3) as a PNG, atomically."""
    from PIL import Image

    array = pixels.permute(1, 2, 0).squeeze(-1).contiguous().numpy()  # H x W (x 3)
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(array).save(tmp, format="PNG", optimize=False)


def write_mosaic(maps: Tensor, path: Path, max_channels: int = MAP_CHANNELS) -> dict[str, int]:
    """Image 0 of ``maps`` (``B x C x H x W``): its first ``max_channels`` channels as a grid of viridis tiles,
    each scaled to its own range, white gaps between; how the grid was laid out."""
    channels = maps[0].detach().float().cpu()  # C x H x W
    shown = min(len(channels), max_channels)
    tiles = channels[:shown]
    low = tiles.flatten(1).min(dim=1).values.view(-1, 1, 1)
    high = tiles.flatten(1).max(dim=1).values.view(-1, 1, 1)
    scaled = ((tiles - low) / (high - low).clamp(min=1e-12) * 255).round().clamp(0, 255).long()
    height, width = tiles.shape[-2:]
    zoom = max(1, math.ceil(TILE_PX / max(height, width)))
    rows, columns = grid_for(shown)
    gap = 2
    tile_h, tile_w = height * zoom, width * zoom
    canvas = torch.full((rows * (tile_h + gap) - gap, columns * (tile_w + gap) - gap, 3), 255, dtype=torch.uint8)
    colours = _viridis()[scaled]  # shown x H x W x 3
    colours = colours.repeat_interleave(zoom, dim=1).repeat_interleave(zoom, dim=2)
    for i in range(shown):
        row, column = divmod(i, columns)
        y, x = row * (tile_h + gap), column * (tile_w + gap)
        canvas[y : y + tile_h, x : x + tile_w] = colours[i]
    write_image(canvas.permute(2, 0, 1), path)
    return {"rows": rows, "columns": columns, "shown": shown, "total": len(channels)}


def _first_of_each_class(labels: Tensor, classes: int) -> list[int]:
    """The index of the first image of each class that has one, in class order."""
    found: dict[int, int] = {}
    for index, label in enumerate(labels.tolist()):
        found.setdefault(int(label), index)
        if len(found) == classes:
            break
    return [found[c] for c in sorted(found)]


def weights_gallery(info: WeightsInfo, data: Dataset | None, folder: Path, url: str,
                    count: int = 3) -> dict[str, Any]:
    """Pictures of ``info``'s weights under ``folder`` (linked as ``url/...``): the first convolution's
    filters and, when ``data`` (the weights' data set) is given, the first test image of each class
    (``picks``, for the Try it panel), of which ``count``, classes spread over the list (0, 3 and 7 of ten), get
    their top-5 and each block's maps (``examples``)."""
    checkpoint = load_pretrained(info.model, info.dataset)
    net = checkpoint.model
    folder.mkdir(parents=True, exist_ok=True)
    conv = first_conv(net)
    plot_filters(conv, folder / "filters.png", MAX_TILES)
    gallery: dict[str, Any] = {"dataset": info.dataset, "filters": f"{url}/filters.png",
                               "filters_shape": list(conv.weight.shape), "examples": [], "picks": []}
    if data is None or data.test is None:
        return gallery
    firsts = _first_of_each_class(data.test.labels, len(info.classes))
    for index in firsts:
        write_image(data.test.images[index], folder / f"test{index}.png")
        gallery["picks"].append({"png": f"{url}/test{index}.png", "index": index,
                                 "label": info.classes[int(data.test.labels[index])]})
    chosen = [firsts[round(i * len(firsts) / count)] for i in range(min(count, len(firsts)))]
    images, labels = data.test.images[chosen], data.test.labels[chosen]  # count x C x H x W uint8
    X = checkpoint.preprocess(images)  # count x C' x H' x W', as predict gives them to the model
    with torch.no_grad():
        probabilities = net(X).softmax(dim=1)  # count x K
        for i, index in enumerate(chosen):
            maps = feature_maps(net, X[i : i + 1])
            top = probabilities[i].topk(min(5, probabilities.shape[1]))
            blocks = []
            for name, tensor in maps.items():
                if tensor.dim() != 4:
                    continue
                grid = write_mosaic(tensor, folder / f"test{index}-{name}.png")
                blocks.append({"layer": name, "shape": list(tensor.shape), "png": f"{url}/test{index}-{name}.png",
                               **grid})
            gallery["examples"].append({
                "png": f"{url}/test{index}.png", "label": info.classes[int(labels[i])], "index": index,
                "top5": [[info.classes[int(k)], float(p)] for p, k in zip(top.values, top.indices, strict=True)],
                "maps": blocks,
            })
    return gallery
