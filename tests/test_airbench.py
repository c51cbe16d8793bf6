"""airbench's techniques (issue 15): the whitening layer, identity init, frozen batch-norm scales with a
larger lr on the shifts, the moving average of the weights (and its resume), alternating flips, reflect
translation, test-time flip-translate, the recipe and its options; a short real fit on CIFAR-10."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import convzoo
from convzoo.cli import main
from convzoo.data import Split
from convzoo.errors import ConvzooError
from convzoo.models.airbench import Whitening
from convzoo.train import TrainConfig, fit, resolve_config
from convzoo.train import init as init_module
from convzoo.train import loop as loop_module
from convzoo.train import optim as optim_module
from convzoo.train.averaging import WeightAverage
from convzoo.train.config import load_config_file, save_config
from convzoo.train.evaluation import tta_logits
from convzoo.train.pipeline import Augment, Batches, Preprocess
from convzoo.train.run import Interrupted
from train_fixtures import SHARED_DATA, make_toy_mnist


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_mnist(tmp_path_factory.mktemp("toy") / "mnist")


def correlated_images(n: int, side: int = 6, seed: int = 0) -> torch.Tensor:
    """``n x 3 x side x side`` float images whose channels and neighbouring pixels are correlated."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 1, side + 1, side + 1, generator=g)
    smooth = (base[..., 1:, 1:] + base[..., :-1, :-1]) / 2  # n x 1 x side x side
    return torch.cat([smooth, 0.5 * smooth + torch.randn(n, 1, side, side, generator=g),
                      torch.randn(n, 1, side, side, generator=g) + 2.0], dim=1)


# ---- the whitening layer --------------------------------------------------------------------------------


def test_whitening_kernels_are_the_patch_covariance_eigenvectors_and_frozen():
    X = correlated_images(20).double()
    layer = Whitening(3).double()
    eps = 1e-3
    layer.whiten_(X, eps=eps)
    # the 2x2 patches, read one by one (the kernel's layout: channel, row, column)
    patches = torch.stack([X[b, :, i:i + 2, j:j + 2].reshape(-1) for b in range(len(X)) for i in range(5)
                           for j in range(5)])  # 500 x 12
    eigenvalues, eigenvectors = torch.linalg.eigh(torch.cov(patches.T))  # ascending
    expected = (eigenvectors / (eigenvalues + eps).sqrt()).T.flip(0)  # 12 x 12, largest eigenvalue first
    kernels = layer.weight.view(24, 12)
    signs = torch.sign((kernels[:12] * expected).sum(dim=1))  # (an eigenvector's sign is arbitrary)
    assert torch.allclose(kernels[:12], signs[:, None] * expected, atol=1e-8)
    assert torch.equal(kernels[12:], -kernels[:12])
    assert torch.allclose(layer.bias, -kernels @ patches.mean(dim=0), atol=1e-10)
    # so the outputs are centred and uncorrelated, of variance eigenvalue / (eigenvalue + eps)
    out = layer(X)[:, :12].permute(0, 2, 3, 1).reshape(-1, 12)
    assert torch.allclose(out.mean(dim=0), torch.zeros(12, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(torch.cov(out.T), torch.diag((eigenvalues / (eigenvalues + eps)).flip(0)), atol=1e-8)
    # frozen: the kernels get no gradient, the bias does
    assert not layer.weight.requires_grad
    layer(X).sum().backward()
    assert layer.weight.grad is None and layer.bias.grad is not None


def test_whiten_option_uses_a_subset_drawn_from_the_seed(monkeypatch):
    images = (torch.rand(40, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8)
    split = Split(images, torch.zeros(40, dtype=torch.int64))
    preprocess = Preprocess(3, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    monkeypatch.setattr(init_module, "WHITEN_IMAGES", 10)

    def whitened(seed: int) -> torch.Tensor:
        net = convzoo.create_model("airbench_cifar")
        init_module.whiten_(net, split, preprocess, seed)
        return net.features[0][0].weight.detach().clone()

    chosen = torch.randperm(40, generator=init_module.generator(3, "whiten"))[:10]
    by_hand = Whitening(3)
    by_hand.whiten_(preprocess(images[chosen]))
    assert torch.equal(whitened(3), by_hand.weight)
    assert torch.equal(whitened(3), whitened(3)) and not torch.allclose(whitened(3), whitened(4))
    with pytest.raises(ConvzooError, match="--whiten sets a whitening layer, and lenet has none"):
        init_module.whiten_(convzoo.create_model("lenet"), split, preprocess, 0)


# ---- identity init, frozen batch-norm scales, the shifts' learning rate -----------------------------------


def test_dirac_init_makes_later_3x3_convolutions_identity_maps():
    torch.manual_seed(0)
    net = convzoo.create_model("airbench_cifar")
    stem = net.features[0][0].weight.detach().clone()
    init_module.dirac_init_(net)
    assert torch.equal(net.features[0][0].weight, stem)  # the first convolution keeps its init
    X = torch.randn(2, 64, 9, 9)
    group = net.features[1]
    assert torch.allclose(group.conv2(X), X, atol=1e-6)  # 64 -> 64: the identity
    widened = group.conv1(X[:, :24])  # 24 -> 64: the first 24 channels pass through, the others keep their init
    assert torch.allclose(widened[:, :24], X[:, :24], atol=1e-6) and widened[:, 24:].abs().sum() > 0
    with pytest.raises(ConvzooError, match="--init dirac sets 3x3 convolutions after the first, and lenet has none"):
        init_module.dirac_init_(convzoo.create_model("lenet"))


def test_frozen_bn_scales_stay_1_and_the_shifts_get_their_own_lr():
    torch.manual_seed(0)
    net = convzoo.create_model("fastcnn_mnist")
    init_module.freeze_bn_scales_(net)
    config = TrainConfig(model="fastcnn_mnist", optimizer="nesterov", lr=0.1, weight_decay=0.01, bias_lr_scale=64)
    optimizer = optim_module.make_optimizer(config, net)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    shifts = {id(m.bias) for m in bns}
    others, biases = optimizer.param_groups
    assert {id(p) for p in biases["params"]} == shifts and not shifts & {id(p) for p in others["params"]}
    assert (biases["lr"], biases["weight_decay"], biases["lr_scale"]) == (pytest.approx(6.4), 0.01 / 64, 64)
    assert (others["lr"], others["weight_decay"]) == (0.1, 0.01)
    before = [m.bias.detach().clone() for m in bns]
    net(torch.randn(4, 1, 28, 28)).square().sum().backward()
    optimizer.step()
    assert all(torch.equal(m.weight, torch.ones_like(m.weight)) and not m.weight.requires_grad for m in bns)
    assert all(not torch.equal(m.bias, b) for m, b in zip(bns, before, strict=True))
    with pytest.raises(ConvzooError, match="--bn-frozen-scale freezes batch-norm scales, and lenet has no batch"):
        init_module.freeze_bn_scales_(convzoo.create_model("lenet"))
    with pytest.raises(ConvzooError, match="--bias-lr-scale scales the learning rate of batch-norm shifts"):
        optim_module.make_optimizer(TrainConfig(model="lenet", bias_lr_scale=2), convzoo.create_model("lenet"))


# ---- the moving average of the weights --------------------------------------------------------------------


@pytest.mark.parametrize("lookahead", [False, True])
def test_moving_average_equals_the_hand_computed_one_after_3_steps(lookahead):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    average = WeightAverage(net, decay=0.9, every=1, total_steps=3, lookahead=lookahead)
    expected = {k: v.detach().clone().double() for k, v in net.state_dict().items() if v.is_floating_point()}
    for step in range(3):
        net(torch.randn(8, 3)).square().sum().backward()
        optimizer.step()
        optimizer.zero_grad()
        keep = 0.9 * ((step + 1) / 3) ** 3  # the decay grows as (t / T)^3
        for k, v in net.state_dict().items():
            if k in expected:
                expected[k] = keep * expected[k] + (1 - keep) * v.double()
        average.update(net, step)
        current = {k: v for k, v in net.state_dict().items() if k in expected}
        if lookahead:  # the training weights are set to the average
            assert all(torch.equal(current[k], average.average[k]) for k in expected)
    assert all(torch.allclose(average.average[k].double(), expected[k], atol=1e-6) for k in expected)
    assert not lookahead or torch.equal(net[0].weight, average.average["0.weight"])
    assert lookahead or not torch.allclose(net[0].weight, average.average["0.weight"])


def test_moving_average_updates_every_k_steps():
    net = nn.Linear(2, 1)
    average = WeightAverage(net, decay=0.9, every=5, total_steps=10, lookahead=False)
    assert [average.decay_at(s) for s in (0, 3, 5)] == [0.0, 0.0, 0.0]
    assert average.decay_at(4) == pytest.approx(0.9**5 * 0.5**3) and average.decay_at(9) == pytest.approx(0.9**5)
    with torch.no_grad():
        net.weight.add_(1.0)
    average.update(net, 3)  # no update after step 4 of 5
    assert not torch.equal(average.average["weight"], net.weight)


TECHNIQUES = dict(model="fastcnn_mnist", optimizer="nesterov", lr=0.05, ema=0.9, ema_every=2, init="dirac",
                  bn_frozen_scale=True, bias_lr_scale=8.0, augment="crop-alt-flip", crop_padding=2,
                  crop_mode="reflect", tta="flip-translate", label_smoothing=0.2)


def _config(toy: Path, out: Path, **overrides) -> TrainConfig:
    values = dict(dataset="mnist", data_dir=str(toy), epochs=2, batch_size=64, train_limit=256, out=str(out),
                  eval_batch_size=256, **TECHNIQUES)
    values.update(overrides)
    return TrainConfig(**values)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "checkpoints" / "last" / "model.safetensors")


@pytest.mark.parametrize("lookahead", [False, True])
def test_averaged_run_resumes_bit_for_bit_and_saves_the_average(toy, tmp_path, monkeypatch, lookahead):
    full = fit(_config(toy, tmp_path / "full", lookahead=lookahead), progress=False)
    real_update = loop_module.Progress.update

    def interrupt(self, step, loss=None):
        if (self.epoch, step) == (1, 2):  # (4 steps an epoch)
            os.kill(os.getpid(), signal.SIGINT)
        return real_update(self, step, loss)

    monkeypatch.setattr(loop_module.Progress, "update", interrupt)
    with pytest.raises(Interrupted):
        fit(_config(toy, tmp_path / "cut", lookahead=lookahead), progress=True)
    monkeypatch.setattr(loop_module.Progress, "update", real_update)
    resumed = fit(_config(toy, tmp_path / "cut", lookahead=lookahead), resume=tmp_path / "cut", progress=False)
    assert all(torch.equal(x, _weights(full.run_dir)[k]) for k, x in _weights(resumed.run_dir).items())
    assert resumed.history[-1]["test_acc"] == full.history[-1]["test_acc"]
    # the checkpoint holds the average (what was evaluated), the state the training weights
    state = torch.load(tmp_path / "cut" / "checkpoints" / "last" / "state.pt", weights_only=True)
    saved = _weights(resumed.run_dir)
    assert saved.keys() == state["train_weights"].keys()
    # (lookahead set the training weights to the average at the last step, the 8th: every 2nd updates)
    assert all(torch.equal(saved[k], state["train_weights"][k]) for k in saved) == lookahead
    report = convzoo.evaluate(resumed.run_dir, "test")
    assert report.result.accuracy == pytest.approx(full.history[-1]["test_acc"])
    # the shifts' group kept its lr multiple through the schedule
    groups = state["optimizer"]["param_groups"]
    assert groups[1]["lr"] == pytest.approx(8 * groups[0]["lr"]) and groups[0]["lr"] > 0


def test_whitening_bias_trains_for_its_epochs_then_stops(toy, tmp_path, monkeypatch):
    biases: list[torch.Tensor] = []
    real = loop_module.train_one_epoch

    def recorded(net, *args, **kwargs):
        result = real(net, *args, **kwargs)
        biases.append(net.features[0][0].bias.detach().clone())
        return result

    monkeypatch.setattr(loop_module, "train_one_epoch", recorded)
    fit(TrainConfig(model="airbench_cifar", dataset="mnist", data_dir=str(toy), epochs=3, batch_size=64,
                    train_limit=128, eval_batch_size=256, optimizer="nesterov", lr=0.05, weight_decay=5e-4,
                    whiten=True, whiten_bias_epochs=2, out=str(tmp_path / "run")), progress=False)
    first, second, third = biases
    assert not torch.equal(first, second)  # trained in epochs 1 and 2 ...
    assert torch.equal(second, third)  # ... not in epoch 3, weight decay included
    assert (resolve_config(recipe="airbench").whiten_bias_epochs,
            resolve_config(recipe="airbench", overrides={"epochs": 4}).whiten_bias_epochs,
            resolve_config(recipe="airbench", overrides={"epochs": 1}).whiten_bias_epochs) == (3, 1, 1)
    with pytest.raises(ConvzooError, match="--whiten-bias-epochs stops the training .* add --whiten"):
        TrainConfig(whiten_bias_epochs=3)


def test_schedule_runs_from_its_start_fraction_to_its_final_fraction():
    config = TrainConfig(lr=2.0, epochs=10, warmup_epochs=2, warmup_start=0.2, final_lr_fraction=0.07,
                         schedule="onecycle")
    assert optim_module.lr_at(config, 0, 10) == pytest.approx(2.0 * (0.2 + 0.8 / 20))
    assert optim_module.lr_at(config, 19, 10) == pytest.approx(2.0)  # the peak at the warm-up's last step
    assert optim_module.lr_at(config, 99, 10) == pytest.approx(2.0 * (0.07 + 0.93 / 80))
    assert optim_module.lr_at(config, 100, 10) == pytest.approx(2.0 * 0.07)
    cosine = TrainConfig(lr=1.0, epochs=1, schedule="cosine", final_lr_fraction=0.1)
    assert optim_module.lr_at(cosine, 100, 100) == pytest.approx(0.1)
    for bad in (dict(warmup_start=1.5), dict(final_lr_fraction=-0.1)):
        with pytest.raises(ConvzooError, match="a fraction of lr in"):
            TrainConfig(**bad)


# ---- alternating flips, reflect translation -----------------------------------------------------------


def _ids_split(n: int = 12) -> Split:
    """Images whose left column holds their id (so a flip moves it to the right), labels the ids."""
    images = torch.zeros(n, 1, 4, 5, dtype=torch.uint8)
    images[:, 0, :, 0] = torch.arange(1, n + 1, dtype=torch.uint8)[:, None]
    return Split(images, torch.arange(n))


def _flipped(batches: Batches, epoch: int) -> dict[int, bool]:
    seen = {}
    for _, X, y in batches.epoch(epoch):
        for image, label in zip(X, y.tolist(), strict=True):
            seen[label] = bool(image[0, :, -1].sum() > 0)  # its id is now in the right column
    return seen


def test_alternating_flips_flip_each_image_in_one_of_two_consecutive_epochs():
    split, pre = _ids_split(), Preprocess(1)
    batches = Batches(split, 4, device=torch.device("cpu"), preprocess=pre, shuffle=True,
                      augment=Augment.from_name("alt-flip", 0), seed=5)
    epochs = [_flipped(batches, e) for e in range(3)]
    assert all(len(e) == 12 for e in epochs)
    assert 0 < sum(epochs[0].values()) < 12  # a random start per image
    assert all(epochs[1][i] != epochs[0][i] and epochs[2][i] == epochs[0][i] for i in range(12))
    other_seed = Batches(split, 4, device=torch.device("cpu"), preprocess=pre, shuffle=True,
                         augment=Augment.from_name("alt-flip", 0), seed=6)
    assert _flipped(other_seed, 0) != epochs[0]


@pytest.mark.parametrize("augment", ["alt-flip", "crop-alt-flip"])
def test_alternating_flips_are_the_same_for_any_shard_layout(augment):
    split, pre = _ids_split(), Preprocess(1)

    def batches(shard: tuple[int, int]) -> Batches:
        return Batches(split, 4, device=torch.device("cpu"), preprocess=pre, shuffle=True,
                       augment=Augment.from_name(augment, 1, "reflect"), seed=5, shard=shard)

    for epoch in range(2):
        whole = list(batches((0, 1)).epoch(epoch))
        parts = [list(batches((r, 2)).epoch(epoch)) for r in range(2)]
        for (_, X, y), (_, X0, y0), (_, X1, y1) in zip(whole, *parts, strict=True):
            assert torch.equal(X[0::2], X0) and torch.equal(X[1::2], X1)
            assert torch.equal(y[0::2], y0) and torch.equal(y[1::2], y1)


@pytest.mark.parametrize("mode", ["reflect", "zero"])
def test_translation_pixels(mode):
    X = torch.arange(1, 17, dtype=torch.uint8).view(1, 1, 4, 4).repeat(200, 1, 1, 1)
    out = Augment(crop_padding=2, reflect=mode == "reflect")(X, torch.Generator().manual_seed(0))
    padded = np.pad(X[0, 0].numpy(), 2, mode="reflect" if mode == "reflect" else "constant")  # 8 x 8
    crops = {(dy, dx): torch.from_numpy(padded[dy:dy + 4, dx:dx + 4].copy()) for dy in range(5) for dx in range(5)}
    shifts = [next((s for s, crop in crops.items() if torch.equal(image[0], crop)), None) for image in out]
    assert None not in shifts and len(set(shifts)) == 25  # every image one of the 25 shifted crops; all drawn
    assert (out == 0).any() == (mode == "zero")
    assert torch.equal(crops[(0, 0)][0], torch.tensor([11, 10, 9, 10] if mode == "reflect" else [0, 0, 0, 0],
                                                      dtype=torch.uint8))
    with pytest.raises(ConvzooError, match="--crop-padding must be below the image's side 4, got 4"):
        Augment(crop_padding=4, reflect=True)(X, torch.Generator().manual_seed(0))


# ---- test-time flip-translate ------------------------------------------------------------------------------


def test_tta_flip_translate_is_the_weighted_mean_of_six_views():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()
    X = torch.randn(2, 3, 8, 8)
    reflect = torch.tensor([1, *range(8), 6])  # the rows (columns) of a one-pixel reflect padding: 10

    def shifted(dy: int, dx: int) -> torch.Tensor:  # the image moved by (dy, dx), edges mirrored
        rows, cols = reflect[1 - dy:9 - dy], reflect[1 - dx:9 - dx]
        return X[:, :, rows][:, :, :, cols]

    views = [X, X.flip(3), shifted(1, 1), shifted(1, 1).flip(3), shifted(-1, -1), shifted(-1, -1).flip(3)]
    weights = [1 / 4, 1 / 4, 1 / 8, 1 / 8, 1 / 8, 1 / 8]
    with torch.no_grad():
        expected = sum(w * net(v) for w, v in zip(weights, views, strict=True))
        assert torch.allclose(tta_logits(net, X, "flip-translate"), expected, atol=1e-6)
        assert torch.allclose(tta_logits(net, X, "flip"), (net(X) + net(X.flip(3))) / 2, atol=1e-6)


# ---- the recipe and its options ------------------------------------------------------------------------


def test_airbench_recipe_holds_airbench94s_hyperparameters_for_the_mean_loss(tmp_path):
    config = resolve_config(recipe="airbench")
    assert (config.model, config.dataset, config.batch_size, config.optimizer) == ("airbench_cifar", "cifar10",
                                                                                   1024, "nesterov")
    assert config.lr == pytest.approx(11.5 / (1 + 1 / 0.15)) and config.momentum == 0.85  # 1.5 at batch 1024
    assert config.weight_decay == pytest.approx(0.0153 / 11.5) and config.label_smoothing == 0.2
    assert (config.init, config.whiten, config.bn_frozen_scale, config.bias_lr_scale) == ("dirac", True, True, 64)
    assert (config.ema, config.ema_every, config.lookahead) == (0.95, 5, True)
    assert (config.augment, config.crop_padding, config.crop_mode, config.tta) == ("crop-alt-flip", 2, "reflect",
                                                                                    "flip-translate")
    assert config.warmup_epochs == pytest.approx(2.3)
    assert (config.warmup_start, config.final_lr_fraction, config.whiten_bias_epochs) == (0.2, 0.07, 3)
    assert resolve_config(recipe="airbench", overrides={"epochs": 1}).warmup_epochs == pytest.approx(0.23)
    assert resolve_config(recipe="airbench", overrides={"epochs": 1, "warmup_epochs": 0.5}).warmup_epochs == 0.5
    assert resolve_config(recipe="fast", overrides={"epochs": 1}).warmup_epochs == 0.5  # (fast sets no epochs)
    save_config(config, tmp_path / "config.toml")
    saved = load_config_file(tmp_path / "config.toml")
    assert {k: saved[k] for k in ("whiten", "crop_mode", "ema", "lookahead", "bias_lr_scale")} == dict(
        whiten=True, crop_mode="reflect", ema=0.95, lookahead=True, bias_lr_scale=64.0)
    assert resolve_config(file_values=saved) == config


def test_options_are_in_train_help_and_checked(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--whiten", "--whiten-bias-epochs", "--warmup-start", "--final-lr-fraction",
                 "--bn-frozen-scale", "--bias-lr-scale", "--ema", "--ema-every", "--lookahead",
                 "--crop-mode CROP_MODE", "reflect (the image mirrored", "flip-translate", "crop-alt-flip", "dirac",
                 "{airbench,d2l,fast}"):
        assert flag in text, flag
    with pytest.raises(ConvzooError, match="--lookahead needs a moving average to look ahead to: add --ema 0.95"):
        TrainConfig(lookahead=True)
    for bad, match in ((dict(ema=1.0), "--ema must be a decay in"), (dict(bias_lr_scale=0.0), "--bias-lr-scale"),
                       (dict(ema_every=0), "--ema-every must be")):
        with pytest.raises(ConvzooError, match=match):
            TrainConfig(**bad)


# ---- real data ------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.heavy  # mostly decoding CIFAR-10's 60,000 PNGs into the cache (43 s on 2 shared cores): beyond CI
@pytest.mark.data
@pytest.mark.timeout(900)
def test_airbench_recipe_fits_on_cifar10(tmp_path):
    if not (SHARED_DATA / "cifar10" / "train.tar.gz").exists():
        pytest.skip(f"CIFAR-10 not found in {SHARED_DATA / 'cifar10'} (../shared/data beside the repository)")
    run = tmp_path / "run"
    code = main(["train", "--recipe", "airbench", "--train-limit", "512", "--epochs", "1", "--val-split", "0.02",
                 "--data-dir", str(SHARED_DATA), "--out", str(run), "--quiet"])
    assert code == 0
    config = load_config_file(run / "config.toml")
    assert (config["model"], config["recipe"], config["whiten"], config["tta"]) == ("airbench_cifar", "airbench",
                                                                                   True, "flip-translate")
    # the whitening layer holds the kernels of the seed's subset of the training split: set, then frozen
    from convzoo.train.run import load_splits as _load_splits

    resolved = resolve_config(recipe="airbench", overrides=dict(train_limit=512, epochs=1, val_split=0.02,
                                                                data_dir=str(SHARED_DATA)))
    data, _ = _load_splits(resolved)
    net = convzoo.create_model("airbench_cifar")
    init_module.whiten_(net, data.train, Preprocess(3, mean=data.mean, std=data.std), 0)
    assert torch.allclose(_weights(run)["features.0.0.weight"], net.features[0][0].weight, atol=1e-6)
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
