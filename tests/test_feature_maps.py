"""``convzoo.feature_maps`` and ``convzoo features``: the maps equal the sub-networks run by hand; the pictures
exist, hold the grid they say and are not blank."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

import convzoo
from convzoo import create_model, model_info
from convzoo.cli import main
from convzoo.errors import ModelError
from convzoo.features import (
    MIN_WIDTH_PX,
    TILE_PX,
    TITLE_PX,
    default_layers,
    feature_maps,
    first_conv,
    plot_feature_maps,
    plot_filters,
)
from convzoo.models import ConvNet, InputRange
from helpers import every_model_quick_per_family
from train_fixtures import make_toy_mnist


def batch(name: str, n: int = 2) -> Tensor:
    return torch.randn(n, *model_info(name).default_input_size, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", every_model_quick_per_family())
def test_the_maps_are_the_blocks_of_forward_features_run_by_hand(name):
    net = create_model(name).eval()
    X = batch(name)
    with torch.no_grad():
        maps = feature_maps(net, X)
        assert list(maps) == [f"features.{child}" for child, _ in net.features.named_children()]
        assert len(maps) >= 4  # every family's features has blocks of its own to show
        H = X
        for (child, block), (layer, got) in zip(net.features.named_children(), maps.items(), strict=True):
            H = block(H)
            assert layer == f"features.{child}" and torch.equal(got, H), layer
        assert torch.equal(H, net.forward_features(X))  # the last block's map is forward_features'


def test_any_layer_by_its_module_name_deep_inside_or_in_the_head():
    net = create_model("resnet18_cifar").eval()
    X = batch("resnet18_cifar")
    with torch.no_grad():
        maps = feature_maps(net, X, ["features.1.0", "head.1", "features.1.0"])  # a repeat is given once
        stem = net.features[0](X)
        assert list(maps) == ["features.1.0", "head.1"]
        assert torch.equal(maps["features.1.0"], net.features[1][0](stem))
        assert torch.equal(maps["head.1"], net.head[:2](net.forward_features(X)))


def test_maps_are_copies_a_later_in_place_layer_cannot_change():
    class Inplace(ConvNet):
        def __init__(self) -> None:
            super().__init__(model_name="inplace", in_channels=1, num_classes=2, default_size=6)
            self.features = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(inplace=True))
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(48, 2))
            self.set_input_range(InputRange(6, 6))

    net = Inplace()
    X = batch("lenet")[:, :, :6, :6]
    conv = feature_maps(net, X, ["features.0"])["features.0"]
    assert torch.equal(conv, net.features[0](X)) and bool((conv < 0).any())  # the ReLU ran in place after it


def test_a_wrong_or_ambiguous_layer_is_a_clear_error():
    net = create_model("lenet_bn")
    X = batch("lenet_bn")
    with pytest.raises(ModelError, match=r"lenet_bn has no layer 'feature.0'; did you mean features\.0.*its blocks "
                                         r"are features\.0, features\.1, .*features\.7 \(`convzoo summary lenet_bn`"):
        feature_maps(net, X, ["feature.0"])
    relu = nn.ReLU()
    net.features = nn.Sequential(net.features[0], relu, net.features[3], net.features[4], relu, net.features[7])
    with pytest.raises(ModelError, match=r"layer features\.1 runs 2 times in one forward, so it has no one "
                                         r"feature map"):
        feature_maps(net, X, ["features.1"])


def test_the_lazy_name_and_the_default_layers():
    assert convzoo.feature_maps is feature_maps
    assert default_layers(create_model("resnet18")) == [f"features.{i}" for i in range(5)]


# ---- the pictures ---------------------------------------------------------------------------------------


def colourful_runs(path, axis: int) -> int:
    """How many separate bands of coloured pixels (viridis's, not the title's grey or the white gaps) the
    picture has along ``axis`` (0: rows of tiles, 1: columns of tiles)."""
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)  # H x W x 3
    colourful = (pixels.max(axis=2) - pixels.min(axis=2)) > 40
    present = colourful.any(axis=1 - axis)
    return int(present[0]) + int(np.sum(present[1:] & ~present[:-1]))


def picture_size(rows: int, columns: int, side: int) -> tuple[int, int]:
    """(width, height) in pixels of a grid of square tiles of ``side`` map pixels."""
    gap = max(1, round(side / 8))
    scale = TILE_PX / side
    grid_w, grid_h = (columns * (side + gap) - gap) * scale, (rows * (side + gap) - gap) * scale
    return round(max(grid_w, MIN_WIDTH_PX)), round(grid_h + TITLE_PX)


@pytest.mark.parametrize(("name", "layer", "channels", "grid"), [
    ("lenet_bn", "features.0", 6, (2, 3)),
    ("lenet_bn", "features.7", 16, (4, 4)),
    ("resnet18_cifar", "features.4", 512, (8, 8)),  # the first 64 of 512
])
def test_a_layer_picture_has_its_grid_and_is_not_blank(tmp_path, name, layer, channels, grid):
    net = create_model(name).eval()
    with torch.no_grad():
        maps = feature_maps(net, batch(name), [layer])[layer]
    path = tmp_path / f"{layer}.png"
    drawn = plot_feature_maps(layer, maps, path)
    assert (drawn.rows, drawn.columns, drawn.total, drawn.shown) == (*grid, channels, min(channels, 64))
    assert (colourful_runs(path, 0), colourful_runs(path, 1)) == grid
    image = Image.open(path)
    assert image.size == picture_size(*grid, maps.shape[-1])
    assert np.asarray(image.convert("L")).std() > 0


def test_filters_picture_one_tile_per_kernel_gray_and_rgb(tmp_path):
    gray = plot_filters(first_conv(create_model("lenet")), tmp_path / "gray.png")
    assert (gray.rows, gray.columns, gray.shown) == (2, 3, 6)
    assert (colourful_runs(tmp_path / "gray.png", 0), colourful_runs(tmp_path / "gray.png", 1)) == (2, 3)
    rgb = plot_filters(first_conv(create_model("resnet18_cifar")), tmp_path / "rgb.png")  # 64 x 3 x 3 x 3
    assert (rgb.rows, rgb.columns, rgb.shown, rgb.total) == (8, 8, 64, 64)
    image = Image.open(tmp_path / "rgb.png")
    assert image.size == picture_size(8, 8, 3) and np.asarray(image.convert("L")).std() > 0


def test_a_layer_without_feature_maps_cannot_be_drawn(tmp_path):
    with pytest.raises(ModelError, match=r"layer head\.1 gives a tensor of shape \(2, 120\), not B x C x H x W"):
        plot_feature_maps("head.1", torch.zeros(2, 120), tmp_path / "x.png")


# ---- the command line ------------------------------------------------------------------------------------


def image_file(tmp_path, size=(28, 28), mode="L"):
    rng = np.random.default_rng(0)
    shape = size[::-1] if mode == "L" else (*size[::-1], 3)
    path = tmp_path / "shoe.png"
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(path)
    return path


def test_cli_draws_every_block_and_the_filters(tmp_path, capsys):
    image = image_file(tmp_path)
    out = tmp_path / "pictures"
    code = main(["features", "--model", "lenet_bn", str(image), "--out", str(out)])
    printed, err = capsys.readouterr()
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == sorted([f"features.{i}.png" for i in range(8)] + ["filters.png"])
    lines = printed.splitlines()
    assert lines[0] == f"lenet_bn with random weights (no --pretrained), on {image} as 1 x 1 x 28 x 28"
    assert lines[1] == f"{out / 'features.0.png'}: features.0 1 x 6 x 24 x 24, 6 of 6 channels in a 2 x 3 grid"
    assert lines[-1] == f"{out / 'filters.png'}: first convolution 6 x 1 x 5 x 5, 6 of 6 kernels in a 2 x 3 grid"


def test_cli_preprocesses_as_predict_does_for_a_run(tmp_path, capsys, monkeypatch):
    """A run's pictures come from the image decoded by predict's decoder, resized and normalised as the
    run was trained (here: a colour 40 x 36 image for a gray 28 x 28 model)."""
    import convzoo.features as module
    from convzoo.train import TrainConfig, fit, load, read_image

    data = make_toy_mnist(tmp_path / "mnist")
    run = tmp_path / "run"
    fit(TrainConfig(model="simple_cnn", dataset="mnist", data_dir=str(data), epochs=1, batch_size=64,
                    train_limit=300, out=str(run)), progress=False, out=io.StringIO())
    seen = []
    real = module.feature_maps
    monkeypatch.setattr(module, "feature_maps", lambda net, X, layers: seen.append(X) or real(net, X, layers))
    image = image_file(tmp_path, size=(40, 36), mode="RGB")
    code = main(["features", str(run), str(image), "--layers", "features.0,features.3", "--out", str(tmp_path / "o")])
    assert code == 0, capsys.readouterr().err
    ckpt = load(run)
    assert ckpt.preprocess.mean is not None
    assert torch.equal(seen[0], ckpt.transform(read_image(image)[None]))  # what predict gives the model
    torch.testing.assert_close(seen[0], ckpt.preprocess(read_image(image)[None]), atol=1e-5, rtol=0)  # evaluation
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["features.0.png", "features.3.png", "filters.png"]


@pytest.mark.parametrize(("argv", "message"), [
    (["--model", "lenet_bn", "IMG", "--layers", "features.0,head.1"], "layer head.1 gives a tensor of shape (1, 120), "
                                                                    "not B x C"),
    (["--model", "lenet_bn", "IMG", "--layers", ","], "--layers ',' names no layer"),
    (["--model", "lenet_bn", "IMG", "--layers", "features.9"], "lenet_bn has no layer 'features.9'"),
    (["--model", "lenet", "runs/x", "IMG"], "give RUN_DIR or --model, not both"),
    (["IMG"], "convzoo features: error: give a RUN_DIR"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, argv, message):
    image = str(image_file(tmp_path))
    code = main(["features", *[image if a == "IMG" else a for a in argv], "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()  # nothing drawn
