"""Pretrained models carry their preprocessing: ``net.pretrained_cfg`` for every shipped weight (and
torchvision's ImageNet ones), ``convzoo.transforms_for(net)`` as the eval preset that training's evaluation and
``predict`` compute, the error for a model without weights, the hub's docstrings; and (data, slow) every
shipped weight loaded through ``torch.hub.load`` reaching its recorded accuracy with ``transforms_for`` alone."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import convzoo
from convzoo.data.images import decode_image
from convzoo.errors import ModelError
from convzoo.models import PretrainedCfg, create_model, list_models, transforms_for
from convzoo.models.weights import list_weights, weights_for
from convzoo.train.inference import load_pretrained
from convzoo.train.pipeline import Preprocess
from train_fixtures import FASHION, SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
ENTRIES = list_weights()
NAMES = [f"{w.model}-{w.dataset}" for w in ENTRIES]


def _pixels(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


# ---- the cfg of each shipped weight -------------------------------------------------------------------------


@pytest.mark.parametrize("info", ENTRIES, ids=NAMES)
def test_every_shipped_weight_gives_its_model_the_cfg_of_its_index_entry(info):
    net = create_model(info.model, pretrained=info.dataset)
    cfg = net.pretrained_cfg
    assert isinstance(cfg, PretrainedCfg)
    channels = info.input_size[0]
    assert (cfg.model, cfg.dataset, cfg.classes, cfg.input_size) == (info.model, info.dataset, info.classes,
                                                                     info.input_size)
    assert cfg.mean == (info.mean if info.mean is not None else (0.0,) * channels)  # d2l's LeNet: plain [0, 1]
    assert cfg.std == (info.std if info.std is not None else (1.0,) * channels)
    # MNIST, Fashion-MNIST and CIFAR-10 have one native size: the in-memory path squashes bilinear
    assert (cfg.interpolation, cfg.resize_mode, cfg.crop_pct) == ("bilinear", "squash", 1.0)
    assert (cfg.accuracy, cfg.split, cfg.split_size) == (info.accuracy, info.split, info.split_size)
    assert (cfg.file, cfg.command, cfg.license) == (info.file, info.command, info.license)
    assert cfg.num_classes == net.num_classes == 10 and cfg.in_channels == net.in_channels
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.mean = (0.5,)  # type: ignore[misc]


def test_a_model_without_weights_has_no_cfg_and_transforms_for_says_how_to_preprocess():
    net = create_model("lenet_bn")
    assert net.pretrained_cfg is None
    with pytest.raises(ModelError, match=r"lenet_bn was built without pretrained weights, so it carries no "
                                         r"preprocessing .*pretrained=True .*eval_transform\(size, mean="):
        transforms_for(net)
    with pytest.raises(ModelError, match=r"a Linear is not a convzoo model with pretrained weights.*eval_transform"):
        transforms_for(torch.nn.Linear(2, 2))


def test_an_adapted_model_keeps_the_preprocessing_and_drops_what_is_no_longer_true():
    with pytest.warns(UserWarning):
        five = create_model("lenet_bn", pretrained=True, num_classes=5)
    info = weights_for("lenet_bn")
    assert five.pretrained_cfg.classes is None and five.pretrained_cfg.accuracy is None
    assert five.pretrained_cfg.mean == info.mean and five.pretrained_cfg.input_size == info.input_size
    with pytest.warns(UserWarning):
        rgb = create_model("lenet_bn", pretrained=True, in_channels=3)
    assert rgb.pretrained_cfg.input_size == (3, 28, 28) and rgb.pretrained_cfg.mean == info.mean * 3
    assert rgb.pretrained_cfg.classes == info.classes and rgb.pretrained_cfg.accuracy is None
    assert transforms_for(rgb)(_pixels(1, 28, 28)).shape == (3, 28, 28)
    with pytest.warns(UserWarning):
        gray = create_model("fastcnn_cifar_small", pretrained=True, in_channels=1)
    cifar = weights_for("fastcnn_cifar_small")
    assert gray.pretrained_cfg.mean == pytest.approx((sum(cifar.mean) / 3,))
    assert transforms_for(gray)(_pixels(3, 32, 32)).shape == (1, 32, 32)


def test_imagenet_weights_carry_torchvisions_preset():
    """torchvision's ``Weights.transforms()`` (resize 256, centre crop 224) is what transforms_for rebuilds."""
    import torchvision

    cfg = weights_for("resnet18", "imagenet").pretrained_cfg()  # (the file itself is not needed for its cfg)
    reference = torchvision.models.ResNet18_Weights.DEFAULT
    assert (cfg.dataset, cfg.input_size, cfg.resize_mode, cfg.crop_pct, cfg.interpolation) == \
        ("imagenet", (3, 224, 224), "crop", 224 / 256, "bilinear")
    assert cfg.mean == (0.485, 0.456, 0.406) and cfg.std == (0.229, 0.224, 0.225)
    assert cfg.classes == tuple(reference.meta["categories"]) and cfg.accuracy == pytest.approx(0.69758)
    photo = _pixels(3, 300, 400)
    ours = cfg.transforms()(photo)
    assert ours.shape == (3, 224, 224) and ours.dtype == torch.float32
    # the same resize, crop and normalisation; transforms.v2 resizes uint8 in its own kernel, which may round a
    # pixel to the next level where torchvision's ImageClassification (the v1 functional) does not
    levels = (ours - reference.transforms()(photo)) * torch.tensor(cfg.std).view(3, 1, 1) * 255
    assert float(levels.abs().max()) <= 1 + 1e-4 and float(levels.abs().mean()) < 0.25


def test_a_model_loading_imagenet_weights_carries_their_cfg(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), folder / "resnet18-f37072fd.pth")  # any tensors
    net = create_model("resnet18", pretrained="imagenet")
    assert net.pretrained_cfg == weights_for("resnet18", "imagenet").pretrained_cfg()
    assert transforms_for(net)(_pixels(3, 256, 300)).shape == (3, 224, 224)
    predicted = load_pretrained("resnet18", "imagenet").transform(_pixels(1, 3, 256, 300))  # predict: the same crop
    torch.testing.assert_close(predicted[0], transforms_for(net)(_pixels(1, 3, 256, 300)[0]))


# ---- what transforms_for computes ---------------------------------------------------------------------------


def test_transforms_for_normalises_with_the_weights_own_mean_and_std():
    net = create_model("lenet_bn", pretrained=True)
    info = weights_for("lenet_bn")
    X = _pixels(1, 28, 28)
    out = transforms_for(net)(X)
    assert out.shape == (1, 28, 28) and out.dtype == torch.float32
    torch.testing.assert_close(out, (X.float() / 255 - info.mean[0]) / info.std[0])
    flat = transforms_for(net)(torch.full((1, 28, 28), round(info.mean[0] * 255), dtype=torch.uint8))
    assert float(flat.abs().max()) < 0.5 / 255 / info.std[0]  # the data set's mean pixel is about 0
    unnormalised = create_model("lenet", pretrained=True)  # d2l's recipe: plain [0, 1] pixels
    torch.testing.assert_close(transforms_for(unnormalised)(X), X.float() / 255)


@pytest.mark.parametrize("model", ["lenet_relu", "densenet_d2l", "fastcnn_cifar_small", "lenet_bn"])
def test_transforms_for_computes_what_the_in_memory_evaluation_computes(model):
    """The batches of training's evaluation (``train.pipeline.Preprocess``) and transforms_for agree, resized
    (28 -> 32, 28 -> 48, 40x30 -> 32x32) and channels converted (RGB -> gray, gray -> RGB)."""
    info = weights_for(model)
    net = create_model(model, pretrained=True)
    preprocess = Preprocess(info.in_channels, info.input_size[1:], info.mean, info.std)
    for shape in ((1, 28, 28), (3, 40, 30), (3, 28, 28)):
        X = _pixels(*shape, seed=len(shape) + shape[1])
        got = transforms_for(net)(X)
        assert got.shape == info.input_size and got.dtype == torch.float32
        torch.testing.assert_close(got, preprocess(X[None])[0], atol=2e-5, rtol=0)


def test_transforms_for_takes_batches_floats_and_pil_images_as_predict_does(tmp_path):
    net = create_model("fastcnn_cifar_small", pretrained=True)
    preprocess = transforms_for(net)
    X = _pixels(4, 3, 32, 32)
    batch = preprocess(X)
    assert batch.shape == (4, 3, 32, 32)
    torch.testing.assert_close(batch[2], preprocess(X[2]))
    torch.testing.assert_close(preprocess(X[0].float() / 255), batch[0])  # float on [0, 1], as ToTensor gives
    rng = np.random.default_rng(3)
    images = {  # a PIL image is read as its file is: alpha over black, a palette's colours, 16-bit scaled
        "rgb.png": Image.fromarray(rng.integers(0, 256, (32, 32, 3), np.uint8)),
        "rgba.png": Image.fromarray(rng.integers(0, 256, (32, 32, 4), np.uint8), "RGBA"),
        "palette.png": Image.fromarray(rng.integers(0, 256, (32, 32, 3), np.uint8)).convert("P"),
        "sixteen.png": Image.fromarray(rng.integers(0, 65536, (32, 32), np.uint16)),
    }
    images["photo.jpg"] = images["rgb.png"]  # saved as a JPEG and opened again: Pillow's pixels, the file's
    ckpt = load_pretrained("fastcnn_cifar_small")
    for name, image in images.items():
        image.save(tmp_path / name)
        if name.endswith(".jpg"):
            image = Image.open(tmp_path / name)
        from_file = preprocess(decode_image(tmp_path / name))
        torch.testing.assert_close(preprocess(image), from_file, atol=0, rtol=0, msg=name)
        # convzoo predict's probabilities are the model's on transforms_for's output
        with torch.no_grad():
            expected = net.eval()(from_file[None]).softmax(dim=1)[0]
        (top,) = ckpt.predict(tmp_path / name, topk=10)
        assert dict(top) == pytest.approx(dict(zip(net.pretrained_cfg.classes, expected.tolist(), strict=True)),
                                          abs=1e-6)


def test_bad_cfg_values_are_refused():
    cfg = create_model("lenet_bn", pretrained=True).pretrained_cfg
    with pytest.raises(ValueError, match="interpolation 'lanczos9'"):
        dataclasses.replace(cfg, interpolation="lanczos9")
    with pytest.raises(ValueError, match="1 for squash"):
        dataclasses.replace(cfg, crop_pct=0.875)
    with pytest.raises(ValueError, match="one value per channel"):
        dataclasses.replace(cfg, mean=(0.5, 0.5, 0.5))


def test_the_names_are_public():
    assert convzoo.transforms_for is transforms_for and convzoo.PretrainedCfg is PretrainedCfg


# ---- the hub ------------------------------------------------------------------------------------------------


def _hubconf():
    spec = importlib.util.spec_from_file_location("convzoo_hubconf_under_test", REPO / "hubconf.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hub_docstrings_show_transforms_for():
    hub = _hubconf()
    assert "preprocess = convzoo.transforms_for(net)" in hub.__doc__ and "net(preprocess(image)[None])" in hub.__doc__
    with_weights = {w.model for w in ENTRIES} | set(convzoo.models.torchvision_models())
    for name in list_models():
        doc = getattr(hub, name).__doc__
        assert ("convzoo.transforms_for(net)" in doc) == (name in with_weights), name
    assert "pretrained=True).eval()" in hub.lenet_bn.__doc__ and "pretrained='imagenet'" in hub.resnet18.__doc__


# ---- every shipped weight, through torch.hub, on its recorded split, with transforms_for alone (real data) --


@functools.cache
def _split(dataset: str, split: str):
    """The decoded images (uint8 N x C x H x W) and labels of the split a weight's accuracy was measured on."""
    from convzoo.data import load_dataset, split_train_val

    if dataset == "cifar10" and split == "val":  # not yet retrained on the lossless copy: its JPEG copy's 10%
        tarball = SHARED_DATA / "cifar10-jpg" / "train.tar.gz"
        if not tarball.exists():
            pytest.skip(f"the JPEG copy of CIFAR-10 not found at {tarball}")
        return split_train_val(load_dataset(f"imagefolder:{tarball}").train, 0.1, 0)[1]
    folder, probe = {"mnist": (SHARED_DATA / "mnist", "train-images-idx3-ubyte.gz"),
                     "fashion-mnist": (FASHION, "train-images-idx3-ubyte.gz"),
                     "cifar10": (SHARED_DATA, "cifar10/test.tar.gz")}[dataset]
    if not (folder / probe).exists():
        pytest.skip(f"{dataset} not found at {folder / probe}")
    return load_dataset(dataset, data_dir=folder).test


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("info", ENTRIES, ids=NAMES)
def test_every_shipped_weight_reaches_its_accuracy_through_the_hub_with_transforms_for_alone(info, capsys):
    from convzoo.train.saver import split_identity

    split = _split(info.dataset, info.split)
    assert split_identity(split) == {"images": info.split_size, "digest": info.split_digest}  # the recorded split
    net = torch.hub.load(str(REPO), info.model, source="local", pretrained=True, verbose=False).eval()
    assert net.pretrained_cfg.file == info.file
    preprocess = convzoo.transforms_for(net)
    correct = 0
    with torch.no_grad():
        for start in range(0, len(split.labels), 500):
            images = split.images[start : start + 500]  # uint8 B x C x H x W, as decoded
            X = torch.stack([preprocess(image) for image in images])  # one image at a time, as a user would
            correct += int((net(X).argmax(dim=1) == split.labels[start : start + 500]).sum())
    accuracy = correct / len(split.labels)
    with capsys.disabled():
        print(f"\n{info.model:<20} {info.dataset:<14} {info.split:<4} recorded {info.accuracy:.4f} "
              f"reproduced {accuracy:.4f} ({correct}/{len(split.labels)})")
    assert accuracy == pytest.approx(info.accuracy, abs=1e-4 + 1e-9)
