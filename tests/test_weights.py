"""Pretrained weights (issue 14): the shipped files and their index, sha256 checks, timm-style adaptation,
torchvision's ImageNet files from torch.hub's cache, ``convzoo models --pretrained``, ``convzoo predict
--model``, ``hubconf.py`` on a copy of the repository, and (data) every shipped weight's accuracy again."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import convzoo
from convzoo.cli import main
from convzoo.errors import WeightsError
from convzoo.models import create_model, list_models, model_info
from convzoo.models import weights as weights_module
from convzoo.models.weights import WEIGHTS_DIR, file_name, list_weights, weights_for
from train_fixtures import FASHION, SHARED_DATA, need_mnist

REPO = Path(__file__).resolve().parents[1]
ENTRIES = list_weights()
NAMES = [f"{w.model}-{w.dataset}" for w in ENTRIES]
MEANT_FOR = {"mnist", "fashion-mnist", "cifar10"}


def _eligible() -> list[str]:
    return [name for name in list_models() if model_info(name).num_params * 4 <= 5_000_000]


# ---- the index and the files ------------------------------------------------------------------------


def test_every_model_of_at_most_5_mb_has_default_weights_and_nothing_else_is_shipped():
    assert sorted({w.model for w in ENTRIES}) == _eligible()
    for name in _eligible():
        assert [w.default for w in ENTRIES if w.model == name].count(True) == 1, name
    assert sum(w.file_size for w in ENTRIES) <= 20_000_000
    on_disk = sorted(p.name for p in WEIGHTS_DIR.glob("*.safetensors"))
    assert on_disk == sorted(w.file for w in ENTRIES)  # no stray file, none missing


@pytest.mark.parametrize("info", ENTRIES, ids=NAMES)
def test_index_entry_describes_its_file(info):
    path = WEIGHTS_DIR / info.file
    assert info.file == file_name(info.model, info.dataset, info.sha256)
    assert re.fullmatch(r"[0-9a-f]{64}", info.sha256) and path.stat().st_size == info.file_size
    assert info.dataset in MEANT_FOR and info.num_classes == 10 and info.split in ("test", "val")
    if _on_the_jpeg_copy(info):  # not yet retrained on the lossless copy: its figure is on the JPEG copy's val split
        assert "--val-split 0.1" in info.command and "JPEG" in info.license and info.split_size == 5_000
    else:  # CIFAR-10 too: the official test split of the lossless copy
        assert info.split == "test" and info.split_size == 10_000
    assert info.num_params == model_info(info.model).num_params
    assert info.in_channels == model_info(info.model).default_input_size[0]
    assert info.command.startswith(f"convzoo train --model {info.model} --dataset {info.dataset} --recipe ")
    assert "--out" not in info.command and "--data-dir" not in info.command
    assert info.license and (info.mean is None) == (info.std is None)
    assert 0.5 < info.accuracy <= 1  # (chance is 0.1; the real figure is checked in the data test below)


@pytest.mark.parametrize("info", ENTRIES, ids=NAMES)
def test_pretrained_model_holds_the_files_tensors(info):
    net = create_model(info.model, pretrained=info.dataset).eval()
    shipped = load_file(WEIGHTS_DIR / info.file)
    assert net.state_dict().keys() == shipped.keys()
    assert all(torch.equal(net.state_dict()[k], v) for k, v in shipped.items())
    with torch.no_grad():
        assert net(torch.zeros(2, *info.input_size)).shape == (2, 10)
    if info.default:
        assert weights_for(info.model, True) == info


def test_list_weights_filters_and_is_a_lazy_name():
    assert convzoo.list_weights is list_weights
    assert [w.model for w in list_weights("lenet*")] == sorted(n for n in _eligible() if n.startswith("lenet"))
    assert list_weights("nothing*") == []


def test_models_without_weights_or_datasets_without_an_entry_say_so():
    with pytest.raises(WeightsError, match=r"resnet18 has no pretrained weights.*pretrained='imagenet'"):
        create_model("resnet18", pretrained=True)
    with pytest.raises(WeightsError, match=r"lenet_bn has no pretrained weights for 'cifar10'; it has 'fashion"):
        create_model("lenet_bn", pretrained="cifar10")
    with pytest.raises(WeightsError, match="does not follow torchvision's layout"):
        create_model("lenet_bn", pretrained="imagenet")


# ---- a changed, truncated or missing file -----------------------------------------------------------


@pytest.fixture
def copied_weights(tmp_path, monkeypatch) -> Path:
    """The weights folder copied, and the loader pointed at the copy (to damage it)."""
    copy = tmp_path / "weights"
    shutil.copytree(WEIGHTS_DIR, copy)
    monkeypatch.setattr(weights_module, "WEIGHTS_DIR", copy)
    return copy


def test_changed_file_is_refused_naming_it_and_the_rebuild(copied_weights):
    info = weights_for("lenet_bn")
    path = copied_weights / info.file
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01  # one bit of one weight
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=rf"{re.escape(str(path))} has changed: its sha256 is .*"
                                           r"python benchmarks/build_weights.py lenet_bn"):
        create_model("lenet_bn", pretrained=True)


def test_truncated_and_missing_files_are_refused(copied_weights):
    info = weights_for("lenet_bn")
    path = copied_weights / info.file
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(WeightsError, match=rf"{re.escape(str(path))} is truncated \(1,000 bytes, the index "
                                           rf"records {info.file_size:,}\).*build_weights.py lenet_bn"):
        create_model("lenet_bn", pretrained=True)
    path.unlink()
    with pytest.raises(WeightsError, match="is missing; rebuild it"):
        create_model("lenet_bn", pretrained=True)


# ---- adaptation -------------------------------------------------------------------------------------


def test_other_classes_get_a_new_classifier_with_a_warning():
    shipped = load_file(WEIGHTS_DIR / weights_for("lenet_bn").file)
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match=r"10 classes, the model 5: its classifier head.7 is new"):
        net = create_model("lenet_bn", pretrained=True, num_classes=5)
    state = net.state_dict()
    assert state["head.7.weight"].shape == (5, 84) and net.eval()(torch.zeros(2, 1, 28, 28)).shape == (2, 5)
    assert all(torch.equal(state[k], v) for k, v in shipped.items() if not k.startswith("head.7."))
    torch.manual_seed(0)
    fresh = create_model("lenet_bn", num_classes=5).state_dict()
    assert torch.equal(state["head.7.weight"], fresh["head.7.weight"])  # its own init, nothing copied


@pytest.mark.parametrize(("name", "channels"), [("lenet_bn", 3), ("lenet_bn", 2), ("fastcnn_cifar_small", 1)])
def test_other_input_channels_adapt_the_first_convolution(name, channels):
    """From 1 channel to 3 (repeated, scaled by 1/3), to 2, and from 3 to 1 (summed): a gray image on every
    channel gives the logits the weights give on the gray image."""
    trained = create_model(name, pretrained=True).eval()
    with pytest.warns(UserWarning, match="first convolution"):
        adapted = create_model(name, pretrained=True, in_channels=channels).eval()
    gray = torch.rand(2, 1, *weights_for(name).input_size[1:])
    with torch.no_grad():
        expected = trained(gray.expand(-1, trained.in_channels, -1, -1))
        got = adapted(gray.expand(-1, channels, -1, -1))
    assert adapted.in_channels == channels
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_weights_of_another_shape_are_refused():
    net = create_model("lenet_bn")
    state = net.state_dict()
    wide = {**state, "head.1.weight": torch.zeros(7, state["head.1.weight"].shape[1])}  # a hidden layer's width
    with pytest.raises(WeightsError, match=rf"head.1.weight has shape \(7, \d+\), lenet_bn needs "
                                           rf"\({state['head.1.weight'].shape[0]}, "):
        weights_module.adapt_state_dict(wide, net, source="test")
    with pytest.raises(WeightsError, match=r"test does not hold lenet_bn's tensors: missing head.7.bias \(1\)"):
        weights_module.adapt_state_dict({k: v for k, v in state.items() if k != "head.7.bias"}, net, source="test")


# ---- torchvision's ImageNet files from torch.hub's cache --------------------------------------------


def _hub(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_imagenet_file_absent_is_one_error_naming_file_and_folder(tmp_path, monkeypatch):
    folder = _hub(tmp_path, monkeypatch)
    with pytest.raises(WeightsError, match=rf"put resnet18-f37072fd.pth in {re.escape(str(folder))} .*downloads "
                                           "nothing"):
        create_model("resnet18", pretrained="imagenet")


def test_imagenet_file_present_loads_torchvisions_weights(tmp_path, monkeypatch):
    import torchvision

    folder = _hub(tmp_path, monkeypatch)
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).eval()  # random init: any tensors do
    torch.save(reference.state_dict(), folder / "resnet18-f37072fd.pth")
    net = create_model("resnet18", pretrained="imagenet").eval()
    assert net.num_classes == 1000 and net.in_channels == 3
    X = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net(X), reference(X))
    with pytest.warns(UserWarning, match="its classifier head"):
        small = create_model("resnet18", pretrained="imagenet", num_classes=10, in_channels=1)
    assert small.num_classes == 10 and small.in_channels == 1
    info = weights_for("resnet18", "imagenet")
    assert len(info.classes) == 1000 and info.input_size == (3, 224, 224) and info.mean == (0.485, 0.456, 0.406)


@pytest.mark.slow
def test_imagenet_densenet_file_with_torchvisions_old_names_loads(tmp_path, monkeypatch):
    """torchvision's published DenseNet file names its tensors ``norm.1``, not ``norm1``, and has no batch-norm
    step counters (it predates them)."""
    import torchvision

    folder = _hub(tmp_path, monkeypatch)
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    reference = torchvision.models.densenet121(weights=None).eval()
    old = {re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v
           for k, v in reference.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert any(".norm.1." in k for k in old)
    torch.save(old, folder / "densenet121-a639ec97.pth")
    net = create_model("densenet121", pretrained="imagenet").eval()
    X = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net(X), reference(X))


# ---- the command line -------------------------------------------------------------------------------


def test_models_pretrained_lists_every_entry(capsys):
    assert main(["models", "--pretrained"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["model", "dataset", "accuracy", "on", "split", "params", "size"]
    rows = [line.split() for line in lines[1:1 + len(ENTRIES)]]
    for row, w in zip(rows, ENTRIES, strict=True):
        assert row[:3] == [w.model, w.dataset, f"{w.accuracy:.4f}"] and row[3] == w.split
        assert row[5] == f"{w.num_params:,}"
    assert f"{len(ENTRIES)} weights" in lines[1 + len(ENTRIES)] and "imagenet" in lines[-1]
    assert main(["models", "--pretrained", "fastcnn*"]) == 0
    assert {line.split()[0] for line in capsys.readouterr().out.splitlines()[1:-2]} == \
        {n for n in _eligible() if n.startswith("fastcnn")}
    assert main(["models", "--pretrained", "resnet*"]) == 2


def test_predict_with_shipped_weights_and_no_run(tmp_path, capsys):
    rng = np.random.default_rng(0)
    path = tmp_path / "noise.png"
    Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(path)
    assert main(["predict", "--model", "lenet_bn", "--pretrained", "fashion-mnist", str(path), "--json",
                 "--topk", "10"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    info = weights_for("lenet_bn")
    # by hand: the pixels on [0, 1], normalised with the entry's mean and std, through the pretrained model
    X = (torch.from_numpy(np.array(Image.open(path))).float()[None, None] / 255 - info.mean[0]) / info.std[0]
    with torch.no_grad():
        probs = create_model("lenet_bn", pretrained=True).eval()(X).softmax(dim=1)[0]
    expected = sorted(zip(probs.tolist(), info.classes, strict=True), reverse=True)
    assert [t["class"] for t in record["top"]] == [c for _, c in expected]
    assert [t["probability"] for t in record["top"]] == pytest.approx([p for p, _ in expected], abs=1e-6)
    assert main(["predict", "--model", "lenet_bn", str(path)]) == 0  # --pretrained: the default entry
    assert capsys.readouterr().out.startswith(f"{path}: ")
    assert main(["predict", "--pretrained", "mnist", str(path)]) == 2
    assert "needs --model" in capsys.readouterr().err
    assert main(["predict", str(path)]) == 2


# ---- torch.hub on a copy of the repository ----------------------------------------------------------


def test_hubconf_on_a_copy_of_the_repository(tmp_path):
    """torch.hub.load(PATH, source="local") on a copy of the working tree; torch.hub.list and help, which take
    a GitHub name only (torch 2.14 has no ``source`` for them), on the same copy found in torch.hub's cache as
    a downloaded repository ``OWNER_NAME_REF`` is (with the ref given and the repo trusted: no network)."""
    hub = tmp_path / "torch" / "hub"
    clone = hub / "convzoo_convzoo_main"
    clone.mkdir(parents=True)
    shutil.copy(REPO / "hubconf.py", clone / "hubconf.py")
    shutil.copytree(REPO / "src", clone / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    code = textwrap.dedent(f"""
        import json, torch
        path = {str(clone)!r}
        net = torch.hub.load(path, "lenet_bn", source="local", pretrained=True, verbose=False)
        five = torch.hub.load(path, "simple_cnn", source="local", num_classes=5, in_channels=3, verbose=False)
        names = torch.hub.list("convzoo/convzoo:main", trust_repo=True, skip_validation=True, verbose=False)
        doc = torch.hub.help("convzoo/convzoo:main", "lenet_bn", trust_repo=True, skip_validation=True)
        import convzoo
        from safetensors.torch import load_file
        from convzoo.models.weights import WEIGHTS_DIR, weights_for
        shipped = load_file(WEIGHTS_DIR / weights_for("lenet_bn").file)
        same = all(torch.equal(net.state_dict()[k], v) for k, v in shipped.items())
        print(json.dumps({{"names": names, "doc": doc, "same": same, "file": convzoo.__file__,
                          "five": [five.num_classes, five.in_channels]}}))
    """)
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["names"] == list_models()
    assert result["file"].startswith(str(clone))  # the copy's convzoo, not the installed one
    assert model_info("lenet_bn").paper in result["doc"] and "1x28x28" in result["doc"]
    assert f"accuracy {weights_for('lenet_bn').accuracy:.4f}" in result["doc"]
    assert result["same"] and result["five"] == [5, 3]


# ---- rebuilding an entry, and every shipped weight measured again (real data) ------------------------


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_build_weights_rebuilds_an_entry(tmp_path):
    need_mnist()
    out = tmp_path / "weights"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "build_weights.py"), "simple_cnn", "--epochs",
                           "1", "--train-limit", "600", "--out-dir", str(out), "--data-dir", str(SHARED_DATA)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (record,) = json.loads((out / "index.json").read_text())["weights"]
    path = out / record["file"]
    import hashlib

    assert hashlib.sha256(path.read_bytes()).hexdigest() == record["sha256"] and record["file"].startswith(
        f"simple_cnn-mnist-{record['sha256'][:8]}")
    assert record["command"].endswith("--recipe fast --epochs 3 --epochs 1 --train-limit 600")
    metrics = re.search(r"test accuracy (\d\.\d{4}) after 1 epochs", done.stdout)
    assert metrics and float(metrics.group(1)) == pytest.approx(record["accuracy"], abs=5e-5)
    assert load_file(path).keys() == create_model("simple_cnn").state_dict().keys()


def _on_the_jpeg_copy(info) -> bool:
    """A CIFAR-10 weight still as built before issue 31: trained on 45,000 images of the JPEG copy, its
    accuracy measured on the 5,000 that ``--val-split 0.1`` held out (the copy has no test split)."""
    return info.dataset == "cifar10" and info.split == "val"


def _data_dir(dataset: str) -> Path:
    folder = {"mnist": SHARED_DATA / "mnist", "fashion-mnist": FASHION, "cifar10": SHARED_DATA}[dataset]
    probe = {"mnist": folder / "train-images-idx3-ubyte.gz", "fashion-mnist": folder / "train-images-idx3-ubyte.gz",
             "cifar10": folder / "cifar10" / "train.tar.gz"}[dataset]
    if not probe.exists():
        pytest.skip(f"{dataset} not found at {probe}")
    return folder


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_shipped_weight_reaches_its_recorded_accuracy():
    """Each weight evaluated on its real test split (CIFAR-10: the official one, from the lossless copy; a
    weight not yet retrained there, on the JPEG copy's held-out 10% its run validated on) with the entry's
    input size and normalisation: the index's accuracy to within 0.001, on the split it names."""
    from convzoo.data import load_dataset, split_train_val
    from convzoo.train.evaluation import evaluate_batches
    from convzoo.train.pipeline import Batches, Preprocess
    from convzoo.train.saver import split_identity

    measured = {}
    for dataset in sorted({w.dataset for w in ENTRIES}):
        data = load_dataset(dataset, data_dir=_data_dir(dataset))
        for info in (w for w in ENTRIES if w.dataset == dataset):
            split = data.test
            if _on_the_jpeg_copy(info):
                jpegs = load_dataset(f"imagefolder:{SHARED_DATA / 'cifar10-jpg' / 'train.tar.gz'}")
                split = split_train_val(jpegs.train, 0.1, 0)[1]
            assert split is not None
            assert split_identity(split) == {"images": info.split_size, "digest": info.split_digest}
            net = create_model(info.model, pretrained=info.dataset).eval()
            preprocess = Preprocess(info.in_channels, info.input_size[1:], info.mean, info.std)
            batches = Batches(split, 1000, device=torch.device("cpu"), preprocess=preprocess)
            measured[info.model] = evaluate_batches(net, net, batches, info.num_classes).accuracy
    print("\n".join(f"{w.model:<20} {w.dataset:<14} recorded {w.accuracy:.4f} measured {measured[w.model]:.4f}"
                    for w in ENTRIES))
    assert {w.model: pytest.approx(w.accuracy, abs=0.001) for w in ENTRIES} == measured
