"""``convzoo.export`` and ``convzoo export``: every registered model as ONNX and as a torch.export program,
checked against PyTorch; metadata; the errors (a model the exporter refuses, a failed check, a missing extra)."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from convzoo import create_model, model_info
from convzoo.cli import main
from convzoo.errors import ConvzooError, ModelError
from convzoo.export import FORMATS, TOLERANCE, example_batch, export_model, read_metadata
from convzoo.models import ConvNet, InputRange
from helpers import every_model_quick_per_family, smallest_of_each_family
from train_fixtures import make_toy_mnist

onnxruntime = pytest.importorskip("onnxruntime", reason="the export extra: pip install -e '.[export]'")


def run_exported(path, fmt: str, X: Tensor) -> Tensor:
    """The logits of the file at ``path`` on ``X``, by the runtime of its format."""
    if fmt == "onnx":
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return torch.from_numpy(session.run(None, {"images": X.numpy()})[0])
    with torch.no_grad():
        return torch.export.load(path).module()(X)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", every_model_quick_per_family())
def test_every_model_exports_at_its_default_size_and_matches_pytorch(name, fmt, tmp_path):
    """The export's check passes (<= 1e-4 on the batch of 2 it was traced on), and the file, run again on a
    batch of 3, still agrees: the batch axis is dynamic (checked for the quick tier's models only: loading a
    VGG's file again costs as much as its export, and the axis is the exporter's setting, the same for all)."""
    net = create_model(name).eval()
    path = tmp_path / f"{name}.{fmt}"
    result = export_model(net, path, fmt)
    try:
        assert result.max_abs_diff <= TOLERANCE and result.batch == 2
        assert result.size == path.stat().st_size > 0
        assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary file left
        if name not in smallest_of_each_family():
            return
        X = torch.randn(3, *model_info(name).default_input_size, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            expected = net(X)
        got = run_exported(path, fmt, X)
        assert got.shape == (3, net.num_classes)
        assert float((got - expected).abs().max()) <= TOLERANCE
    finally:
        path.unlink(missing_ok=True)  # the VGGs write half a gigabyte each


@pytest.mark.parametrize("fmt", FORMATS)
def test_metadata_is_stored_and_read_back(fmt, tmp_path):
    net = create_model("lenet_bn")
    metadata = {"classes": ["T-shirt/top", "Trouser"] + [str(i) for i in range(8)], "mean": [0.286],
                "std": [0.353], "input_size": [1, 28, 28], "dataset": "fashion-mnist"}
    path = tmp_path / ("m.onnx" if fmt == "onnx" else "m.pt2")
    export_model(net, path, fmt, metadata=metadata)
    assert read_metadata(path) == metadata
    if fmt == "onnx":  # what a consumer of the file sees, through onnxruntime alone
        meta = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta()
        assert json.loads(meta.custom_metadata_map["classes"])[:2] == ["T-shirt/top", "Trouser"]


def test_export_leaves_the_model_in_its_mode_and_the_input_check_out_of_the_graph(tmp_path, monkeypatch):
    """The input check runs for the reference forward only, never while torch.export traces (the check is
    ``ConvNet.forward``'s, skipped under ``torch.compiler.is_exporting()``)."""
    seen: list[bool] = []
    check = ConvNet.check_input

    def spy(self, X):
        seen.append(torch.compiler.is_exporting())
        return check(self, X)

    monkeypatch.setattr(ConvNet, "check_input", spy)
    net = create_model("lenet_bn").train()
    for fmt in FORMATS:
        export_model(net, tmp_path / f"m-{fmt}", fmt)
    assert seen == [False, False]  # one reference forward per export, none inside a trace
    assert net.training


class _ValueBranch(nn.Module):
    """Control flow on a tensor's value: torch.export cannot trace it."""

    def forward(self, X: Tensor) -> Tensor:
        return X * 2 if X.sum() > 0 else X


class _Bessel(nn.Module):
    """An operator with no ONNX translation (torch.export takes it)."""

    def forward(self, X: Tensor) -> Tensor:
        return X + torch.special.bessel_j0(X)


class _Tiny(ConvNet):
    def __init__(self, middle: nn.Module) -> None:
        super().__init__(model_name="tiny", in_channels=1, num_classes=3, default_size=8)
        self.features = nn.Sequential(nn.Conv2d(1, 2, 3), middle)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(72, 3))
        self.set_input_range(InputRange(8, 8))  # (the probe, on the meta device, cannot branch on values)


@pytest.mark.parametrize(("middle", "fmt", "reason"), [
    (_ValueBranch(), "onnx", "GuardOnDataDependentSymNode: Could not guard on data-dependent expression"),
    (_ValueBranch(), "exported-program", "GuardOnDataDependentSymNode: Could not guard on data-dependent"),
    (_Bessel(), "onnx", "No ONNX function found for <OpOverload(op='prims.bessel_j0'"),
])
def test_a_model_the_exporter_refuses_is_one_line_with_the_reason_and_writes_nothing(middle, fmt, reason, tmp_path,
                                                                                   capfd):
    net = _Tiny(middle).eval()
    with pytest.raises(ModelError) as refused:
        export_model(net, tmp_path / "tiny.out", fmt)
    message = str(refused.value)
    assert message.startswith(f"tiny cannot be exported as {fmt}: ") and reason in message
    assert "\n" not in message and "\x1b" not in message
    assert list(tmp_path.iterdir()) == []
    assert "def forward" not in capfd.readouterr().err  # torch's graph dumps held back


def test_the_bessel_model_does_export_as_a_program(tmp_path):
    """(So the ONNX refusal above is the translation's, not the model's.)"""
    assert export_model(_Tiny(_Bessel()).eval(), tmp_path / "b.pt2", "exported-program").max_abs_diff <= TOLERANCE


def test_an_export_that_differs_from_pytorch_is_not_written(tmp_path, monkeypatch):
    import convzoo.export as export

    real = export._write_program
    monkeypatch.setattr(export, "_write_program", lambda *args: real(*args) + 1e-3)  # a wrong translation
    with pytest.raises(ModelError, match=r"lenet_bn: the exported-program export differs from the PyTorch model by "
                                         r"up to 0.001 on a batch of 2 \(more than 0.0001\), so it was not written"):
        export_model(create_model("lenet_bn"), tmp_path / "m.pt2", "exported-program")
    assert list(tmp_path.iterdir()) == []


def test_a_missing_extra_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed: its import fails
    with pytest.raises(ConvzooError, match=r"ONNX export needs onnxruntime, which is not installed; install "
                                           r"convzoo's 'export' extra: pip install 'convzoo\[export\]'"):
        export_model(create_model("lenet"), tmp_path / "m.onnx", "onnx")
    assert export_model(create_model("lenet"), tmp_path / "m.pt2", "exported-program").max_abs_diff <= TOLERANCE


def test_a_model_off_the_cpu_is_refused_before_anything_runs(tmp_path):
    with torch.device("meta"):  # (no GPU here: the meta device stands for any other device)
        net = create_model("lenet")
    with pytest.raises(ModelError, match=r"lenet is on meta: export it from the CPU \(net.cpu\(\)\)"):
        export_model(net, tmp_path / "m.pt2", "exported-program")
    assert list(tmp_path.iterdir()) == []


def test_the_example_batch_is_fixed_and_sized_for_the_model():
    net = create_model("fastcnn_cifar")
    X = example_batch(net)
    assert X.shape == (2, 3, 32, 32) and torch.equal(X, example_batch(net))
    assert example_batch(net, (40, 48), batch=5).shape == (5, 3, 40, 48)


# ---- the command line ------------------------------------------------------------------------------------


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory: pytest.TempPathFactory):
    """A trained run (one short epoch on toy MNIST, normalised input)."""
    from convzoo.train import TrainConfig, fit

    root = tmp_path_factory.mktemp("export-run")
    data = make_toy_mnist(root / "mnist")
    config = TrainConfig(model="simple_cnn", dataset="mnist", data_dir=str(data), epochs=1, batch_size=64,
                         train_limit=300, out=str(root / "run"))
    fit(config, progress=False, out=io.StringIO())
    return root / "run"


@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_exports_a_run_with_its_classes_and_normalisation(toy_run, tmp_path, capsys, fmt):
    from convzoo.train import load

    ckpt = load(toy_run)
    out = tmp_path / ("run.onnx" if fmt == "onnx" else "run.pt2")
    code, printed, err = run_cli(capsys, "export", str(toy_run), "--format", fmt, "--out", str(out))
    assert code == 0, err
    lines = printed.splitlines()
    assert lines[0].startswith(f"wrote {out} ({fmt}, ") and f"from run {toy_run} (checkpoint " in lines[0]
    assert lines[1].startswith("checked against PyTorch on a batch of 2: max abs difference ")
    assert float(lines[1].split("difference ")[1].split()[0]) <= TOLERANCE
    meta = read_metadata(out)
    assert meta["classes"] == ckpt.classes and meta["model"] == "simple_cnn" and meta["dataset"] == "mnist"
    assert meta["mean"] == ckpt.meta["input"]["mean"] and meta["mean"] is not None
    assert meta["input_size"] == [1, 28, 28]
    X = ckpt.preprocess(torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8))
    with torch.no_grad():
        expected = ckpt.model(X)
    np.testing.assert_allclose(run_exported(out, fmt, X).numpy(), expected.numpy(), atol=TOLERANCE)


def test_cli_exports_a_zoo_model_to_its_default_name(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, printed, err = run_cli(capsys, "export", "--model", "lenet_bn")
    assert code == 0, err
    assert printed.startswith("wrote lenet_bn.onnx (onnx, 0.2 MB) from lenet_bn with random weights")
    assert read_metadata(tmp_path / "lenet_bn.onnx")["classes"] is None  # random weights: no classes


def test_cli_refuses_an_existing_file_without_force_and_a_missing_folder(tmp_path, capsys, monkeypatch):
    """An existing --out (or default NAME.onnx) is kept unless --force, as a run directory keeps its run; a
    folder that does not exist is named, not made (a typo would otherwise scatter files)."""
    monkeypatch.chdir(tmp_path)
    for argv, existing in ((["--out", "mine.onnx"], tmp_path / "mine.onnx"), ([], tmp_path / "lenet_bn.onnx")):
        existing.write_bytes(b"keep me")
        code, _, err = run_cli(capsys, "export", "--model", "lenet_bn", *argv)
        assert code == 2 and err.strip().splitlines() == [
            f"convzoo: error: {existing.name} already exists; add --force to replace it, or choose another --out"]
        assert existing.read_bytes() == b"keep me"
        code, printed, err = run_cli(capsys, "export", "--model", "lenet_bn", *argv, "--force")
        assert code == 0 and printed.startswith(f"wrote {existing.name} (onnx"), err
        assert read_metadata(existing)["model"] == "lenet_bn"
    code, _, err = run_cli(capsys, "export", "--model", "lenet_bn", "--out", "missing/sub/net.onnx")
    assert code == 2 and err.strip().splitlines() == [
        "convzoo: error: --out missing/sub/net.onnx: the folder missing/sub does not exist; create it "
        "(mkdir -p missing/sub) or choose another --out"]
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["export"], "convzoo export: error: give a RUN_DIR (a run directory or a checkpoint folder) or --model NAME"),
    (["export", "runs/x", "--model", "lenet"], "give RUN_DIR or --model, not both"),
    (["export", "--pretrained", "mnist"], "--pretrained mnist needs --model NAME"),
    (["export", "--model", "lenet", "--format", "torchscript"], "argument --format: invalid choice: 'torchscript'"),
    (["export", "--model", "nope"], "convzoo: error: unknown model 'nope'"),
])
def test_cli_usage_errors_are_one_line(capsys, argv, message):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_cli_exports_shipped_weights_with_their_classes_and_normalisation(tmp_path, capsys):
    """``--model NAME --pretrained DATASET``: the weights convzoo ships, their class names and mean/std in the
    file; the ONNX model classifies a preprocessed image as the PyTorch one does."""
    from convzoo.models.weights import weights_for
    from convzoo.train.inference import load_pretrained

    info = weights_for("lenet_bn", "fashion-mnist")
    out = tmp_path / "lenet_bn.onnx"
    code, printed, err = run_cli(capsys, "export", "--model", "lenet_bn", "--pretrained", "fashion-mnist",
                                 "--out", str(out))
    assert code == 0, err
    assert "from lenet_bn with its fashion-mnist weights" in printed
    meta = read_metadata(out)
    assert (meta["classes"], meta["mean"], meta["std"]) == (list(info.classes), list(info.mean), list(info.std))
    assert meta["classes"][9] == "Ankle boot" and meta["dataset"] == "fashion-mnist"
    ckpt = load_pretrained("lenet_bn", "fashion-mnist")
    images = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    X = ckpt.preprocess(images)
    with torch.no_grad():
        expected = ckpt.model(X)
    got = run_exported(out, "onnx", X)
    assert float((got - expected).abs().max()) <= TOLERANCE and torch.equal(got.argmax(1), expected.argmax(1))
