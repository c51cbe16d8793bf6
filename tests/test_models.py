"""Every registered model, tested by being registered (timm's and torchvision's test_models).

Each model is built once for this module (the ``net`` fixture: pytest runs all of one model's tests before
building the next, so one large model at a time is alive); tests about shapes only build on the meta device.
"""

from __future__ import annotations

import warnings
from dataclasses import fields

import pytest
import torch
from torch import nn

import convzoo
from convzoo.errors import InputShapeError, ModelError
from convzoo.models import (
    ConvNet,
    D2LRecipe,
    ReportPlan,
    create_model,
    d2l_models,
    list_models,
    model_info,
    register_model,
)
from convzoo.models._base import probe_input_range
from convzoo.train.config import RECIPES, TrainConfig, resolve_config
from helpers import modules_in_run_order

MODELS = list_models()


def small_input(name: str, batch: int = 2, device: str = "cpu") -> torch.Tensor:
    """A cheap valid input: the smallest accepted side (at least 32, so every stage has some area)."""
    info = model_info(name)
    c, side, _ = info.min_input_size
    if info.max_input_size is None:
        side = max(side, 32)
    if device == "meta":
        return torch.empty(batch, c, side, side, device="meta")
    return torch.randn(batch, c, side, side, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module", params=MODELS)
def net(request: pytest.FixtureRequest) -> ConvNet:
    """The model ``request.param`` in its default configuration, built once for all the tests that take it."""
    torch.manual_seed(0)
    return create_model(request.param)


def test_zoo_has_every_model_the_issue_names():
    expected = {
        "lenet", "lenet_relu", "lenet5_cifar", "lenet_bn", "lenet_bn_scratch", "alexnet", "alexnet_bn",
        "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn", "vgg11_small",
        "nin", "googlenet", "resnet18", "resnet34", "resnet50", "resnet18_cifar", "preact_resnet18",
        "resnet_mini_cifar", "densenet_d2l", "densenet121", "simple_cnn", "three_conv_cnn", "inception_cnn",
        "residual_cnn",
    }
    assert expected <= set(MODELS)


def test_forward_backward(net):
    X = small_input(net.model_name)
    net.zero_grad(set_to_none=True)
    net.train()
    y = net(X)
    assert y.shape == (2, 10)
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no gradient for {missing}"
    # In training mode a bias right before a batch norm (d2l's BN-LeNet has them) has a gradient of exactly
    # zero in exact arithmetic: the batch mean removes it. In eval mode every output depends on every parameter.
    net.zero_grad(set_to_none=True)
    net.eval()
    net(X).square().mean().backward()
    zero = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    net.zero_grad(set_to_none=True)  # the gradients of the largest models take as much memory as the weights
    assert not zero, f"zero gradient for {zero}"


@pytest.mark.parametrize("name", MODELS)
def test_contract(name):
    with torch.device("meta"):  # shapes only
        net = create_model(name, num_classes=7, in_channels=2)
    assert isinstance(net, ConvNet)
    assert net.model_name == name
    assert (net.num_classes, net.in_channels) == (7, 2)
    X = small_input(name, device="meta")[:, :1].repeat(1, 2, 1, 1)
    net.eval()
    features = net.forward_features(X)
    assert features.dim() == 4, "forward_features returns a feature map"
    assert net.forward_head(features).shape == net(X).shape == (2, 7)


def test_forward_is_features_then_head(net):
    net.eval()
    X = small_input(net.model_name)
    with torch.no_grad():
        assert torch.equal(net.forward_head(net.forward_features(X)), net(X))


def test_eval_is_deterministic_and_per_image(net):
    """In evaluation mode no dropout or batch statistics remain: the same batch gives the same logits, and each
    image's logits do not depend on the rest of its batch."""
    net.eval()
    X = small_input(net.model_name)
    with torch.no_grad():
        Y = net(X)
        assert torch.equal(Y, net(X))
        for i in range(len(X)):
            torch.testing.assert_close(net(X[i : i + 1]), Y[i : i + 1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_parameter_count_is_pinned(name):
    with torch.device("meta"):
        net = create_model(name)
    assert sum(p.numel() for p in net.parameters()) == model_info(name).num_params


@pytest.mark.parametrize("name", MODELS)
def test_pinned_input_sizes_match_the_architecture(name):
    """``model_info`` builds nothing: its default input size and accepted range are pinned at registration,
    and here derived again from the model (a shape-only probe on the meta device)."""
    info = model_info(name)
    with torch.device("meta"):
        net = create_model(name)
    assert info.default_input_size == (net.in_channels, net.default_size, net.default_size)
    assert info.default_kwargs["in_channels"] == net.in_channels
    assert info.input_range == probe_input_range(net)
    with torch.device("meta"):  # the pinned range holds for any classes and channels (create_model relies on it)
        other = create_model(name, num_classes=3, in_channels=2)
    assert other.input_range() == info.input_range == probe_input_range(other)


def test_parameters_registered_in_run_order(net):
    order = [p for m in modules_in_run_order(net, small_input(net.model_name, batch=1))
             for p in m.parameters(recurse=False)]
    assert [id(p) for p in order] == [id(p) for p in net.parameters()]


def test_input_range_is_exact(net):
    """The pinned minimum (and maximum) hold on real tensors: the edge fits, one pixel beyond fails."""
    info = model_info(net.model_name)
    c, lo, _ = info.min_input_size
    net.eval()
    with torch.no_grad():
        assert net(torch.zeros(1, c, lo, lo)).shape == (1, 10)
        if lo > 1:
            with pytest.raises(InputShapeError, match="smaller than the minimum"):
                net(torch.zeros(1, c, lo - 1, lo - 1))
            with pytest.raises(RuntimeError):  # the check is right: the layers themselves fail there
                net.forward_head(net.forward_features(torch.zeros(1, c, lo - 1, lo - 1)))
        if info.max_input_size is not None:
            hi = info.max_input_size[1]
            assert net(torch.zeros(1, c, hi, hi)).shape == (1, 10)
            with pytest.raises(InputShapeError, match=f"input {hi + 1}x{hi + 1}"):
                net(torch.zeros(1, c, hi + 1, hi + 1))
            with pytest.raises(RuntimeError):
                net.forward_head(net.forward_features(torch.zeros(1, c, hi + 1, hi + 1)))


# torchvision's own published minimum sizes (weights meta "min_size") for the same layouts
TORCHVISION_MIN_SIZE = {"resnet18": 1, "resnet34": 1, "resnet50": 1, "vgg11": 32, "vgg16_bn": 32, "densenet121": 29}


@pytest.mark.parametrize("name", sorted(TORCHVISION_MIN_SIZE))
def test_minimum_agrees_with_torchvision(name):
    assert model_info(name).min_input_size[1] == TORCHVISION_MIN_SIZE[name]


# ---- d2l's table ---------------------------------------------------------------------------------


def test_d2l_models_are_d2l_table_in_its_order():
    # the rows of ../shared/reference/d2l_results.md
    assert d2l_models() == ["lenet", "alexnet", "vgg11_small", "nin", "googlenet", "lenet_bn_scratch", "lenet_bn",
                            "resnet18", "densenet_d2l"]
    assert [model_info(name).d2l.table_row for name in d2l_models()] == list(range(1, 10))


@pytest.mark.parametrize("name", d2l_models())
def test_d2l_entry_gives_a_valid_recipe_and_report_plan(name):
    info = model_info(name)
    d2l, plan = info.d2l, info.report
    assert isinstance(d2l, D2LRecipe) and isinstance(plan, ReportPlan)
    assert d2l.resize in info.input_range and 0.5 < d2l.test_acc < 1
    config = resolve_config(recipe="d2l", overrides={"model": name})
    assert (config.resize, config.batch_size, config.lr) == (d2l.resize, d2l.batch_size, d2l.lr)
    assert plan.recipe in RECIPES
    assert set(plan.fast_overrides) <= {f.name for f in fields(TrainConfig)}
    config = resolve_config(recipe="fast", overrides={"model": name, **plan.fast_overrides})  # values validated
    assert all(getattr(config, key) == value for key, value in plan.fast_overrides.items())


def test_models_outside_d2l_table_have_no_d2l_entry_or_report_plan():
    outside = [model_info(name) for name in MODELS if name not in d2l_models()]
    assert outside and all(info.d2l is None and info.report is None for info in outside)
    with pytest.raises(ValueError, match="d2l has no recipe for 'simple_cnn'"):
        resolve_config(recipe="d2l", overrides={"model": "simple_cnn"})


# ---- input checks --------------------------------------------------------------------------------


def test_wrong_channel_count_is_named_before_any_layer_runs():
    net = create_model("lenet")
    ran = []
    net.features[0].register_forward_pre_hook(lambda m, a: ran.append(m))
    with pytest.raises(InputShapeError) as err:
        net(torch.zeros(1, 3, 28, 28))
    message = str(err.value)
    assert "lenet" in message and "expected 1 input channel" in message and "got 3" in message
    assert "in_channels=3" in message
    assert not ran


def test_too_small_input_names_model_size_minimum_and_fix():
    with torch.device("meta"):  # the check runs before any layer: no weights needed
        net = create_model("alexnet")
    with pytest.raises(InputShapeError) as err:
        net(torch.zeros(1, 1, 28, 28))
    message = str(err.value)
    assert "alexnet" in message and "28x28" in message and "minimum 65x65" in message
    assert "--resize 224" in message


def test_fixed_classifier_rejects_a_larger_input():
    with pytest.raises(InputShapeError, match="lenet: input 64x64 is outside the accepted range 28x28 to 31x31"):
        create_model("lenet")(torch.zeros(1, 1, 64, 64))


def test_non_square_input_checked_per_side():
    with torch.device("meta"):  # shapes only
        net = create_model("vgg11_small").eval()
    with pytest.raises(InputShapeError, match="input 224x16"):
        net(torch.zeros(1, 1, 224, 16, device="meta"))
    assert net(torch.zeros(1, 1, 32, 64, device="meta")).shape == (1, 10)


def test_unbatched_input_gets_a_hint():
    with pytest.raises(InputShapeError, match="unsqueeze"):
        create_model("lenet")(torch.zeros(1, 28, 28))


@pytest.mark.parametrize("kwargs", [{"num_classes": 0}, {"in_channels": -1}, {"num_classes": 2.5}])
def test_bad_constructor_arguments(kwargs):
    with pytest.raises(ModelError, match="must be a whole number >= 1"):
        create_model("lenet", **kwargs)


def test_user_errors_stay_value_errors():
    """Callers that caught ValueError before the error classes existed keep working."""
    assert issubclass(InputShapeError, ModelError) and issubclass(ModelError, ValueError)
    with pytest.raises(ValueError, match="unknown model"):
        create_model("nope")


# ---- registry ------------------------------------------------------------------------------------


def test_list_models_globs():
    assert list_models("resnet*") == ["resnet18", "resnet18_cifar", "resnet34", "resnet50", "resnet_mini_cifar"]
    assert list_models("*_bn") == ["alexnet_bn", "lenet_bn", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"]
    assert list_models("nothing*") == []


def test_unknown_model_lists_close_matches():
    with pytest.raises(ModelError, match="unknown model 'resnet81'; did you mean resnet18"):
        create_model("resnet81")


@pytest.mark.parametrize(("typed", "suggested"),
                         [("LENET", "lenet"), ("ResNet18", "resnet18"), ("VGG11_BN", "vgg11_bn")])
def test_suggestions_ignore_case(typed, suggested):
    with pytest.raises(ModelError, match=rf"unknown model '{typed}'; did you mean {suggested}\b"):
        create_model(typed)


def test_unknown_argument_is_named():
    with pytest.raises(ModelError, match="unknown argument.*pretrainde"):
        create_model("lenet", pretrainde=True)


def test_registering_a_name_twice_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        @register_model(paper="x", year=2000, num_params=0, input_size=(1, 28, 28), min_side=28)
        def lenet() -> ConvNet:  # noqa: F811 (the point of the test)
            raise AssertionError


def test_registration_checks_its_metadata():
    with pytest.raises(ValueError, match="a report plan needs a d2l entry"):
        register_model(paper="x", year=2000, num_params=0, input_size=(1, 28, 28), min_side=28,
                       report=ReportPlan(cpu_side=20))
    with pytest.raises(ValueError, match="outside the accepted sides"):
        register_model(paper="x", year=2000, num_params=0, input_size=(1, 28, 28), min_side=32)


def test_model_info_fields():
    info = convzoo.model_info("googlenet")
    assert info.default_input_size == (1, 96, 96)
    assert info.year == 2014 and "Going Deeper" in info.paper
    assert info.notes == "002"
    assert info.min_input_size[1] <= 96 and info.max_input_size is None
    assert info.default_kwargs == {"num_classes": 10, "in_channels": 1}
    assert info.d2l == D2LRecipe(table_row=5, resize=96, batch_size=128, lr=0.1, test_acc=0.888)
    assert info.report is not None and (info.report.cpu_side, info.report.recipe) == (48, "fast")
    assert not info.torchvision_layout and convzoo.model_info("resnet18").torchvision_layout
    assert convzoo.model_info("resnet18_cifar").default_input_size == (3, 32, 32)
    assert convzoo.model_info("lenet").max_input_size == (1, 31, 31)
    assert convzoo.model_info("lenet").report == ReportPlan(recipe="d2l")


def test_model_info_builds_nothing(monkeypatch):
    def refuse(self: ConvNet, **kwargs: object) -> None:
        raise AssertionError(f"model_info built {kwargs.get('model_name')}")

    monkeypatch.setattr(ConvNet, "__init__", refuse)
    infos = [model_info(name) for name in MODELS]
    assert [info.name for info in infos] == MODELS
    with pytest.raises(AssertionError, match="built lenet"):  # the patch does catch a construction
        create_model("lenet")


def test_lenet_relu_conv_relu_option_is_notes_003():
    net = create_model("lenet_relu", conv_relu=True)
    assert [type(m).__name__ for m in net.features] == ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d"]


def test_scratch_bn_lenet_uses_the_hand_written_layer():
    from convzoo.scratch import BatchNorm

    net = create_model("lenet_bn_scratch")
    assert sum(isinstance(m, BatchNorm) for m in net.modules()) == 4
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    assert net.state_dict().keys() == create_model("lenet_bn").state_dict().keys()


# ---- tracing, FX and export (the input check is invisible to them) ---------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_fx_and_export_trace_the_layers_only(name):
    """``torch.fx.symbolic_trace`` and ``torch.export.export`` (shapes only, on the meta device) give graphs
    with the same output as the model, and no trace of the input check: a wrong-sized input then reaches the
    layers, which is what a traced graph does. The from-scratch batch norm (lenet_bn_scratch) traces too: its
    functional core, which checks shapes in Python, is one call in the graph."""
    with torch.device("meta"):
        net = create_model(name).eval()
    X = small_input(name, batch=1, device="meta")
    graph = torch.fx.symbolic_trace(net)
    assert graph(X).shape == (1, 10)
    assert "check_input" not in graph.code and "input_range" not in graph.code
    exported = torch.export.export(net, (X,))
    assert exported.module()(X).shape == (1, 10)


@pytest.mark.parametrize("name", MODELS)
def test_jit_trace(name):
    """``torch.jit.trace`` on a model as built (meta-built, then given uninitialised memory: the values do not
    matter) with a batch of one smallest image: it runs without the probe, and the traced graph agrees."""
    with torch.device("meta"):
        net = create_model(name).eval()
    net = net.to_empty(device="cpu")
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.01, generator=torch.Generator().manual_seed(0))
        for b in net.buffers():
            b.fill_(1 if b.is_floating_point() else 0)  # running variances of one, no NaN
    X = small_input(name, batch=1)
    with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = torch.jit.trace(net, X, check_trace=False)
        torch.testing.assert_close(traced(X), net(X))
    ours = [w for w in caught if w.filename.endswith("_base.py")]  # a TracerWarning: the check was traced
    assert not ours, [str(w.message) for w in ours]


def test_tracing_skips_the_probe_of_an_unpinned_model():
    """A model built outside the registry's pinned configuration probes its range lazily; under tracing
    the probe must not run (before the fix it ran on the meta device inside ``torch.jit.trace``)."""
    net = create_model("lenet_relu", conv_relu=True).eval()
    assert net._input_range is None
    X = torch.zeros(1, 1, 32, 32)
    torch.jit.trace(net, X, check_trace=False)
    torch.fx.symbolic_trace(net)
    assert net._input_range is None  # no probe ran
    with pytest.raises(InputShapeError, match="smaller than the minimum 32x32"):  # the eager check still works
        net(torch.zeros(1, 1, 8, 8))


# ---- VGG's classifier at inputs below 64 pixels ------------------------------------------------------------


def _vgg_step(net: nn.Module, X: torch.Tensor, y: torch.Tensor, observe: bool):
    """Logits and gradients of one training step, dropout's masks drawn from seed 1; ``observe`` puts a
    forward hook on the first linear layer, which makes the head take the full product."""
    hook = net.head[2].register_forward_hook(lambda *_: None) if observe else None
    torch.manual_seed(1)
    out = net(X)
    net.zero_grad()
    nn.functional.cross_entropy(out, y).backward()
    if hook is not None:
        hook.remove()
    return out.detach(), {k: p.grad.clone() for k, p in net.named_parameters()}


@pytest.mark.parametrize(("name", "side"), [("vgg11_small", 32), ("vgg11_small", 63), ("vgg11_bn", 40)])
def test_vgg_head_shortcut_is_the_full_product_in_outputs_and_gradients(name, side, monkeypatch):
    torch.manual_seed(0)
    net = create_model(name).train()
    X, y = torch.randn(16, 1, side, side), torch.randint(0, 10, (16,))
    calls = []
    monkeypatch.setattr(nn.functional, "linear", lambda x, w, b: calls.append(w.shape) or torch.addmm(b, x, w.T))
    (short, short_grads), (full, full_grads) = _vgg_step(net, X, y, False), _vgg_step(net, X, y, True)
    assert calls[0] == (4096, net.head[2].in_features // 49)  # the shortcut ran, once
    torch.testing.assert_close(short, full, rtol=1e-5, atol=1e-5)
    # against the largest gradient: a convolution's bias before batch norm has a gradient of zero but rounding
    scale = max(g.abs().max().item() for g in full_grads.values())
    for k in full_grads:
        torch.testing.assert_close(short_grads[k], full_grads[k], rtol=1e-4, atol=1e-6 * scale)


def test_vgg_head_shows_every_layer_to_an_inspector_and_keeps_a_replaced_layer():
    net = create_model("vgg11_small").eval()
    rows = {r.name: r for r in convzoo.summary(net, (1, 32, 32)).layers}
    assert rows["head.0"].output_shape[1:] == (128, 7, 7) and rows["head.2"].macs == 128 * 49 * 4096
    net.head[2] = nn.Linear(128 * 49, 4096, bias=False)  # a replaced layer without bias: folded alike
    X = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        short = net(X)
        hook = net.head[2].register_forward_hook(lambda *_: None)
        torch.testing.assert_close(short, net(X), rtol=1e-5, atol=1e-6)
        hook.remove()
    net.head[0] = nn.AdaptiveAvgPool2d(1)  # another pool: the head is a plain Sequential again
    net.head[2] = nn.Linear(128, 4096)
    assert net(X).shape == (2, 10)


# ---- model surgery (the input check follows the modules) ----------------------------------------------


def test_replaced_head_and_stem_are_what_the_model_reports_and_checks():
    net = create_model("lenet")
    net.head[-1] = nn.Linear(84, 4)  # 4 classes
    assert net.num_classes == 4
    net.head = nn.Sequential(nn.Flatten(), nn.Linear(400, 3))  # a whole new head
    assert net.num_classes == 3
    net.features[0] = nn.Conv2d(3, 6, kernel_size=5)  # RGB in, and no padding: 32x32 now fits, 28x28 no more
    assert net.in_channels == 3
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 3)
    with pytest.raises(InputShapeError, match="lenet: input 28x28 is smaller than the minimum 32x32"):
        net(torch.zeros(1, 3, 28, 28))
    with pytest.raises(InputShapeError, match="expected 3 input channel"):
        net(torch.zeros(1, 1, 32, 32))


def test_nin_s_convolution_head_gives_the_classes():
    with torch.device("meta"):
        net = create_model("nin", num_classes=7)
    assert net.num_classes == 7 and net.in_channels == 1


def test_refresh_input_check_after_a_change_deep_inside():
    """Replacing a layer deep inside ``features`` is not watched: ``refresh_input_check`` derives the sizes again."""
    with torch.device("meta"):
        net = create_model("vgg11_small").eval()
    assert net.input_range().minimum == 32
    net.features[4][4] = nn.Identity()  # one pooling fewer: 16x16 inputs now fit
    X = torch.empty(1, 1, 16, 16, device="meta")
    with pytest.raises(InputShapeError, match="smaller than the minimum 32x32"):  # stale until refreshed
        net(X)
    net.refresh_input_check()
    assert net.input_range() == probe_input_range(net) and net.input_range().minimum == 16
    assert net(X).shape == (1, 10)
