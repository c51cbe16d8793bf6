"""torchvision's layouts: its (randomly initialised) weights load into the zoo model and give
identical outputs at 224x224."""

from __future__ import annotations

import pytest
import torch
import torchvision

from convzoo import create_model, load_torchvision_weights
from convzoo.models.torchvision_weights import TORCHVISION_LAYOUT
from helpers import randomize_

WITH_BATCH_NORM = {"resnet18", "resnet34", "resnet50", "densenet121"}


@pytest.mark.parametrize("name", sorted(TORCHVISION_LAYOUT))
def test_identical_outputs(name):
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, name)(weights=None).eval()
    if name in WITH_BATCH_NORM or name.endswith("_bn"):
        randomize_(theirs, seed=1)  # non-trivial running statistics and BN affine parameters
    ours = create_model(name, in_channels=3, num_classes=1000).eval()
    load_torchvision_weights(ours, theirs.state_dict())
    X = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, got = theirs(X), ours(X)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())


def test_loads_from_a_file(tmp_path):
    theirs = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(theirs.state_dict(), path)
    ours = create_model("resnet18", in_channels=3, num_classes=1000)
    load_torchvision_weights(ours, path)
    assert torch.equal(ours.head[-1].weight, theirs.fc.weight)


def test_wrong_head_size_is_named_and_nothing_is_loaded():
    theirs = torchvision.models.resnet18(weights=None).state_dict()
    ours = create_model("resnet18")  # 1 channel, 10 classes
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    with pytest.raises(ValueError, match=r"'conv1.weight' has shape \(64, 3, 7, 7\).*in_channels=3, num_classes=1000"):
        load_torchvision_weights(ours, theirs)
    assert all(torch.equal(before[k], v) for k, v in ours.state_dict().items())


def test_missing_tensors_are_an_error():
    theirs = torchvision.models.vgg11(weights=None).state_dict()
    theirs.pop("classifier.6.bias")
    with pytest.raises(ValueError, match="21 tensors, the model has 22"):
        load_torchvision_weights(create_model("vgg11", in_channels=3, num_classes=1000), theirs)


def test_another_models_weights_do_not_pair():
    theirs = torchvision.models.vgg11_bn(weights=None).state_dict()
    with pytest.raises(ValueError):
        load_torchvision_weights(create_model("vgg13", in_channels=3, num_classes=1000), theirs)


def test_models_of_other_layouts_are_refused():
    with pytest.raises(ValueError, match="does not follow torchvision's layout"):
        load_torchvision_weights(create_model("googlenet"), {})
