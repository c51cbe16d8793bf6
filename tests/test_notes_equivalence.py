"""Each notes model computes exactly the function of the notes' code (tests/notes_reference.py):
same parameter count, and copying the notes' tensors in run order gives identical outputs."""

from __future__ import annotations

import pytest
import torch

from convzoo.models import create_model
from helpers import copy_in_run_order, randomize_
from notes_reference import REFERENCES, Net003

# different arithmetic (the scratch batch norm): equal to float32 rounding accumulated over the network
HAND_WRITTEN = {"lenet_bn_scratch"}
WITH_BATCH_NORM = {"lenet_bn", "lenet_bn_scratch", "densenet_d2l", "resnet_mini_cifar"}


def _pair(name, reference):
    torch.manual_seed(0)
    ref = reference()
    randomize_(ref)
    net = create_model(name)
    return ref, net


def _assert_same(a, b, exact):
    if exact:
        assert torch.equal(a, b), f"max difference {(a - b).abs().max().item()}"
    else:
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_same_parameter_count(name):
    reference, _ = REFERENCES[name]
    ref, net = reference(), create_model(name)
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in ref.parameters())


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_same_function_in_eval_mode(name):
    reference, shape = REFERENCES[name]
    ref, net = _pair(name, reference)
    X = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
    copy_in_run_order(ref, net, X[:1])
    ref.eval(), net.eval()
    with torch.no_grad():
        _assert_same(ref(X), net(X), exact=name not in HAND_WRITTEN)


@pytest.mark.parametrize("name", sorted(WITH_BATCH_NORM))
def test_same_function_and_statistics_in_train_mode(name):
    reference, shape = REFERENCES[name]
    ref, net = _pair(name, reference)
    X = torch.randn(4, *shape, generator=torch.Generator().manual_seed(1))
    copy_in_run_order(ref, net, X[:1])
    ref.train(), net.train()
    exact = name not in HAND_WRITTEN
    _assert_same(ref(X), net(X), exact)
    for a, b in zip(ref.buffers(), net.buffers(), strict=True):  # running statistics updated alike
        _assert_same(a.float(), b.float(), exact)


def test_lenet_relu_with_conv_relu_is_notes_003_net():
    ref = Net003()
    randomize_(ref)
    net = create_model("lenet_relu", conv_relu=True)
    X = torch.randn(2, 1, 32, 32)
    copy_in_run_order(ref, net, X[:1])
    with torch.no_grad():
        assert torch.equal(ref(X), net(X))


def test_notes_004_bug_is_fixed():
    """The notes' last block adds a 2x2 identity to a 1x1 output; the zoo projects the shortcut."""
    net = create_model("resnet_mini_cifar").eval()
    last = net.features[-1]
    assert last.extra is not None
    with torch.no_grad():
        assert net.forward_features(torch.zeros(1, 3, 32, 32)).shape == (1, 512, 1, 1)
