"""torchvision's layouts: its (randomly filled) weights load into the zoo model and give identical outputs at
224x224.

The models are built on the meta device and given memory without an initialisation
(``to_empty``): every tensor is then written by the test, so no time goes into inits whose values are
overwritten. The tests that only pair state_dicts never leave the meta device.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torchvision
from torch import nn

from convzoo import create_model, load_torchvision_weights
from convzoo.errors import WeightsError
from convzoo.models import ConvNet, torchvision_models
from helpers import randomize_


def on_meta(build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` with every tensor on the meta device: shapes only, no memory, no init."""
    with torch.device("meta"):
        return build()


def theirs_filled(name: str, seed: int) -> nn.Module:
    """torchvision's ``name`` with seeded random values in every tensor (running variances kept positive)."""
    model = on_meta(lambda: getattr(torchvision.models, name)(weights=None)).to_empty(device="cpu")
    randomize_(model, seed=seed)  # floating tensors: weights, biases, running statistics, BN affine
    with torch.no_grad():
        for buffer in model.buffers():
            if not buffer.is_floating_point():  # num_batches_tracked
                buffer.zero_()
    return model.eval()


def ours_unfilled(name: str, **kwargs: int) -> ConvNet:
    """The zoo's ``name`` with memory but arbitrary values: whatever the loader does not write stays garbage."""
    model = on_meta(lambda: create_model(name, **kwargs)).to_empty(device="cpu")
    assert isinstance(model, ConvNet)
    return model


def test_the_layouts_are_registered():
    assert torchvision_models() == ["densenet121", "resnet18", "resnet34", "resnet50", "vgg11", "vgg11_bn", "vgg13",
                                    "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]


@pytest.mark.parametrize("name", torchvision_models())
def test_identical_outputs(name):
    theirs = theirs_filled(name, seed=1)
    ours = ours_unfilled(name, in_channels=3, num_classes=1000).eval()
    load_torchvision_weights(ours, theirs.state_dict())
    X = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, got = theirs(X), ours(X)
    assert expected.shape == (2, 1000) and expected.std() > 0  # (a model of zeros would agree with anything)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())


def test_loads_from_a_file(tmp_path):
    theirs = theirs_filled("resnet18", seed=3)
    path = tmp_path / "resnet18.pth"
    torch.save(theirs.state_dict(), path)
    ours = ours_unfilled("resnet18", in_channels=3, num_classes=1000)
    load_torchvision_weights(ours, path)
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), theirs.state_dict().values(),
                                                  strict=True))


def test_a_file_without_a_state_dict_is_refused(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(WeightsError, match="the file holds a list, not a state_dict"):
        load_torchvision_weights(on_meta(lambda: create_model("resnet18")), path)


def test_wrong_head_size_is_named_and_nothing_is_loaded():
    theirs = on_meta(lambda: torchvision.models.resnet18(weights=None)).state_dict()
    ours = create_model("resnet18")  # 1 channel, 10 classes
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    expected = r"'conv1.weight' has shape \(64, 3, 7, 7\).*in_channels=3, num_classes=1000"
    with pytest.raises(WeightsError, match=expected):
        load_torchvision_weights(ours, theirs)
    assert all(torch.equal(before[k], v) for k, v in ours.state_dict().items())


def test_missing_tensors_are_an_error():
    theirs = on_meta(lambda: torchvision.models.vgg11(weights=None)).state_dict()
    theirs.pop("classifier.6.bias")
    with pytest.raises(WeightsError, match="lacks 1 of torchvision's 22 tensors \\('classifier.6.bias'\\)"):
        load_torchvision_weights(on_meta(lambda: create_model("vgg11", in_channels=3, num_classes=1000)), theirs)
    renamed = {f"module.{k}": v for k, v in theirs.items()}  # paired by position: counted
    with pytest.raises(WeightsError, match="21 tensors, the model has 22"):
        load_torchvision_weights(on_meta(lambda: create_model("vgg11", in_channels=3, num_classes=1000)), renamed)


def _assert_loaded(ours: nn.Module, theirs: nn.Module) -> None:
    """Every tensor of ``ours`` equals torchvision's, position by position, counters included."""
    pairs = zip(ours.state_dict().values(), theirs.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


@pytest.mark.parametrize("name", ["resnet18", "densenet121", "vgg11_bn"])
def test_matched_by_name_in_any_order_and_without_counters(name):
    """A state_dict in sorted order (safetensors') or without ``num_batches_tracked`` (which torch itself
    loads) is matched by name; a missing counter becomes 0, as ``load_state_dict`` makes it."""
    theirs = theirs_filled(name, seed=4)
    state = theirs.state_dict()
    shuffled = dict(sorted(state.items()))
    assert list(shuffled) != list(state)  # the order does differ
    ours = ours_unfilled(name, in_channels=3, num_classes=1000)
    load_torchvision_weights(ours, shuffled)
    _assert_loaded(ours, theirs)
    without = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert len(without) < len(state)
    theirs.load_state_dict(without)  # torch accepts it
    ours = ours_unfilled(name, in_channels=3, num_classes=1000)
    load_torchvision_weights(ours, dict(reversed(list(without.items()))))
    _assert_loaded(ours, theirs)


def test_loads_a_safetensors_file(tmp_path):
    from safetensors.torch import save_file

    theirs = theirs_filled("resnet18", seed=5)
    path = tmp_path / "resnet18.safetensors"
    save_file(theirs.state_dict(), str(path))
    ours = ours_unfilled("resnet18", in_channels=3, num_classes=1000)
    load_torchvision_weights(ours, path)
    _assert_loaded(ours, theirs)


def test_systematically_renamed_tensors_pair_by_position():
    """``DataParallel``'s ``module.`` prefix renames every tensor: they pair by position, counters or not."""
    theirs = theirs_filled("resnet18", seed=6)
    prefixed = {f"module.{k}": v for k, v in theirs.state_dict().items()}
    ours = ours_unfilled("resnet18", in_channels=3, num_classes=1000)
    load_torchvision_weights(ours, prefixed)
    _assert_loaded(ours, theirs)
    ours = ours_unfilled("resnet18", in_channels=3, num_classes=1000)
    load_torchvision_weights(ours, {k: v for k, v in prefixed.items() if not k.endswith("num_batches_tracked")})
    _assert_loaded(ours, theirs)


def test_a_name_match_still_uses_every_tensor():
    theirs = on_meta(lambda: torchvision.models.resnet18(weights=None)).state_dict()
    extra = {**theirs, "fc.extra": torch.zeros(1, device="meta")}
    with pytest.raises(WeightsError, match="torchvision's 'fc.extra' does not pair with any tensor of resnet18"):
        load_torchvision_weights(on_meta(lambda: create_model("resnet18", in_channels=3, num_classes=1000)), extra)


def test_another_models_weights_do_not_pair():
    theirs = on_meta(lambda: torchvision.models.vgg11_bn(weights=None)).state_dict()
    with pytest.raises(WeightsError, match=r"is it torchvision's vgg13\?"):
        load_torchvision_weights(on_meta(lambda: create_model("vgg13", in_channels=3, num_classes=1000)), theirs)


def test_a_tensor_of_another_kind_does_not_pair():
    theirs = on_meta(lambda: torchvision.models.resnet18(weights=None)).state_dict()
    renamed = {("bn1.beta" if k == "bn1.bias" else k): v for k, v in theirs.items()}  # order kept
    with pytest.raises(WeightsError, match="torchvision's 'bn1.beta' does not pair with"):
        load_torchvision_weights(on_meta(lambda: create_model("resnet18", in_channels=3, num_classes=1000)), renamed)


def test_models_of_other_layouts_are_refused():
    with pytest.raises(WeightsError, match="does not follow torchvision's layout; torchvision weights load into "
                                           "densenet121, resnet18"):
        load_torchvision_weights(on_meta(lambda: create_model("googlenet")), {})
