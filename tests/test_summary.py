"""The inspector: golden tables, the notes' printed shape sequences, and the accounting rules."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from conftest import EXPECTED
from convzoo import create_model, list_models, model_info, parameters_table, summary

# ---- the notes' printed shape sequences, reproduced ------------------------------------------------

_LINE = re.compile(r"^\s*(\w+) [Oo]utput shape\s*:?\s*torch\.Size\(\[([0-9, ]+)\]\)\s*$")


def notes_sequence(name: str) -> list[tuple[str, tuple[int, ...]]]:
    """(layer type, output shape) pairs of a shape listing printed in the notes."""
    text = (EXPECTED / "notes" / f"{name}.txt").read_text(encoding="utf-8")
    return [(m[1], tuple(int(s) for s in m[2].split(","))) for m in map(_LINE.match, text.splitlines())]


# (listing, model, input C x H x W, depth, notes lines convzoo leaves out, convzoo lines the notes lack)
NOTES_LISTINGS = [
    # 000's Reshape is the notes' input adapter; convzoo checks the input's shape instead
    ("000_lenet", "lenet", (1, 28, 28), None, {"Reshape"}, set()),
    # convzoo's AdaptiveAvgPool2d before the classifier is the identity at 224x224 (torchvision's design)
    ("000_alexnet", "alexnet", (1, 224, 224), None, set(), {"AdaptiveAvgPool2d"}),
    ("000_vgg11", "vgg11", (1, 224, 224), 1, set(), {"AdaptiveAvgPool2d"}),  # one line per vgg_block
    ("000_nin", "nin", (1, 224, 224), 1, set(), set()),
    # 002 ends every network in Softmax; convzoo outputs logits
    ("002_lenet", "lenet_relu", (1, 32, 32), None, {"Softmax"}, set()),
    ("002_alexnet_bn", "alexnet_bn", (1, 224, 224), None, {"Softmax", "Dropout1d"}, {"AdaptiveAvgPool2d", "Dropout"}),
    ("002_nin", "nin", (1, 224, 224), None, {"Softmax"}, set()),
    ("002_googlenet", "googlenet", (1, 224, 224), None, {"Softmax"}, set()),
    ("002_densenet", "densenet_d2l", (1, 224, 224), None, {"Softmax"}, set()),
]


@pytest.mark.parametrize(("listing", "name", "size", "depth", "notes_only", "ours_only"), NOTES_LISTINGS)
def test_notes_shape_listing_reproduced(listing, name, size, depth, notes_only, ours_only):
    expected = [(t, s) for t, s in notes_sequence(listing) if t not in notes_only]
    got = [(r.type_name, r.output_shape) for r in summary(create_model(name), size, depth=depth, style="notes").layers]
    assert [(t, s) for t, s in got if t not in ours_only] == expected
    if name == "alexnet_bn":  # the notes' Dropout1d (a bug, see the model's docstring) is convzoo's Dropout
        assert [s for t, s in got if t == "Dropout"] == [s for t, s in notes_sequence(listing) if t == "Dropout1d"]


def test_notes_style_prints_the_notes_lines_verbatim():
    text = str(summary(create_model("lenet"), (1, 28, 28), style="notes"))
    notes = (EXPECTED / "notes" / "000_lenet.txt").read_text(encoding="utf-8").splitlines()
    assert text.splitlines() == notes[1:]  # all but the notes' Reshape line, character for character


# ---- golden tables --------------------------------------------------------------------------------

GOLDEN = [
    ("lenet", (1, 28, 28), None, "table"),
    ("lenet_bn_scratch", (1, 28, 28), None, "table"),
    ("resnet18", (1, 224, 224), 2, "table"),
    ("resnet18_cifar", (3, 32, 32), 3, "table"),
    ("googlenet", (1, 96, 96), 2, "table"),
    ("densenet_d2l", (1, 96, 96), None, "notes"),
    ("inception_cnn", (1, 28, 28), None, "table"),
    ("vgg11_small", (1, 224, 224), 1, "notes"),
]


@pytest.mark.parametrize(("name", "size", "depth", "style"), GOLDEN)
def test_golden_summary(golden, name, size, depth, style):
    suffix = "" if depth is None else f"_depth{depth}"
    golden(f"summary/{name}_{style}{suffix}.txt", str(summary(create_model(name), size, depth=depth, style=style)))


def test_golden_parameters_table(golden):
    golden("params/lenet_relu.txt", str(parameters_table(create_model("lenet_relu"))))


# ---- accounting -------------------------------------------------------------------------------------


def _input(name):
    info = model_info(name)
    c, side, _ = info.min_input_size
    if info.max_input_size is None:
        side = max(side, 32)
    return (c, side, side)


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize(("depth", "style"), [(None, "table"), (1, "table"), (2, "table"), (None, "notes")])
def test_rows_sum_to_totals(name, depth, style):
    net = create_model(name)
    s = summary(net, _input(name), depth=depth, style=style)
    assert s.total_params == sum(p.numel() for p in net.parameters())
    assert sum(r.num_params for r in s.layers) == s.total_params
    assert sum(r.macs for r in s.layers) == s.total_macs
    if depth is not None and style == "table":
        assert max(r.depth for r in s.layers) <= depth


def test_macs_by_hand_for_lenet():
    s = summary(create_model("lenet"), (1, 28, 28))
    conv1 = 6 * 28 * 28 * (1 * 5 * 5)
    conv2 = 16 * 10 * 10 * (6 * 5 * 5)
    dense = 400 * 120 + 120 * 84 + 84 * 10
    assert s.total_macs == conv1 + conv2 + dense


def test_macs_of_imagenet_resnet18_match_published_figure():
    # torchinfo and the ResNet paper: 1.8 G multiply-adds for ResNet-18 at 3x224x224
    s = summary(create_model("resnet18", in_channels=3, num_classes=1000), (3, 224, 224), depth=1)
    assert s.total_macs == 1_814_073_344
    assert s.total_params == 11_689_512  # torchvision's published count


class _Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.unused = nn.Linear(8, 3)

    def forward(self, X):
        return self.fc(self.fc(X.flatten(1)))  # one layer applied twice


def test_shared_parameters_count_once_and_unused_ones_are_shown():
    s = summary(_Shared(), (2, 2, 2))
    fc_rows = [r for r in s.layers if r.name == "fc"]
    assert len(fc_rows) == 2 and [r.num_params for r in fc_rows] == [72, 0]
    assert [r.macs for r in fc_rows] == [64, 64]
    assert s.total_params == 72 + 27
    assert s.layers[-1].name == "(not run)" and s.layers[-1].num_params == 27
    assert sum(r.num_params for r in s.layers) == s.total_params


def test_mode_is_restored_and_batch_of_one_works_with_batch_norm():
    net = create_model("lenet_bn").train()
    summary(net, (1, 28, 28))
    assert net.training
    net.eval()
    summary(net, (1, 28, 28))
    assert not net.training
    assert all(int(m.num_batches_tracked) == 0 for m in net.modules() if isinstance(m, nn.BatchNorm2d))


def test_runs_on_the_models_own_device():
    with torch.device("meta"):  # the meta device stands in for an accelerator: no data, shapes only
        net = create_model("resnet18")
    s = summary(net, (1, 64, 64), depth=1)
    assert s.layers[0].output_shape == (1, 10)


def test_trainable_params_exclude_frozen_ones():
    net = create_model("lenet")
    for p in net.features.parameters():
        p.requires_grad_(False)
    s = summary(net, (1, 28, 28))
    assert s.trainable_params == s.total_params - (156 + 2416)


def test_input_size_with_batch_dimension():
    assert summary(create_model("lenet"), (4, 1, 28, 28)).layers[0].output_shape == (4, 10)


@pytest.mark.parametrize("size", [(28, 28), (1, 0, 28), (1, 1, 28, 28, 1)])
def test_bad_input_size(size):
    with pytest.raises(ValueError, match="input_size must be"):
        summary(create_model("lenet"), size)


def test_bad_style_and_depth():
    with pytest.raises(ValueError, match="style"):
        summary(create_model("lenet"), (1, 28, 28), style="fancy")
    with pytest.raises(ValueError, match="depth"):
        summary(create_model("lenet"), (1, 28, 28), depth=0)


def test_too_small_input_is_the_models_error():
    with pytest.raises(ValueError, match="smaller than the minimum"):
        summary(create_model("alexnet"), (1, 28, 28))


def test_parameters_table_lists_named_parameters():
    net = create_model("lenet_relu")
    table = parameters_table(net)
    assert [(r.name, r.shape) for r in table.rows] == [(n, tuple(p.shape)) for n, p in net.named_parameters()]
    assert table.total == 61_706
    assert str(table).splitlines()[-1] == "10 tensors, 61,706 parameters (61,706 trainable)"
