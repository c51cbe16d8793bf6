"""``convzoo train --init-from RUN|FILE``: a new run starts from trained weights; the
classifier is new when the classes differ, the first convolution adapted when the channels do, and the
weights of another model are refused naming both."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from convzoo.cli import main
from convzoo.errors import ConvzooError, RunError
from convzoo.models import create_model
from convzoo.models.weights import WEIGHTS_DIR, weights_for
from convzoo.train import TrainConfig, fit
from convzoo.train import loop as loop_module
from convzoo.train.config import load_config_file
from convzoo.train.init_from import init_from
from train_fixtures import make_toy_mnist


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_mnist(tmp_path_factory.mktemp("toy") / "mnist", n_train=300, n_test=100)


def config(toy: Path, out: Path, **overrides) -> TrainConfig:
    values = dict(model="simple_cnn", dataset="mnist", data_dir=str(toy), epochs=1, batch_size=64,
                  optimizer="momentum", lr=0.05, out=str(out), eval_batch_size=128)
    return TrainConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def source_run(toy, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "source"
    fit(config(toy, out, val_split=0.2), progress=False)
    return out


def selected(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "checkpoints" / "best" / "model.safetensors")


@pytest.fixture
def built_weights(monkeypatch) -> list[dict[str, torch.Tensor]]:
    """The model's weights as ``_build`` leaves them, before the first step."""
    seen: list[dict[str, torch.Tensor]] = []
    build = loop_module.build_run

    def spy(*args, **kwargs):
        run = build(*args, **kwargs)
        seen.append({k: v.detach().clone() for k, v in run.net.state_dict().items()})
        return run

    monkeypatch.setattr(loop_module, "build_run", spy)
    return seen


def test_a_run_starts_from_the_selected_weights_of_another(toy, source_run, tmp_path, built_weights):
    out = tmp_path / "tuned"
    fit(config(toy, out, init_from=str(source_run)), progress=False)
    start = built_weights[0]
    assert all(torch.equal(start[k], v) for k, v in selected(source_run).items())
    assert load_config_file(out / "config.toml")["init_from"] == str(source_run)  # it decides the run
    fresh = tmp_path / "fresh"
    fit(config(toy, fresh), progress=False)
    assert not torch.equal(built_weights[1]["head.1.weight"], start["head.1.weight"])  # (without it: a fresh init)


def test_from_files_safetensors_and_pt(toy, source_run, tmp_path, built_weights):
    weights = selected(source_run)
    save_file(weights, tmp_path / "w.safetensors")
    torch.save(weights, tmp_path / "w.pt")
    torch.save({"epoch": 3, "state_dict": weights}, tmp_path / "script.pt")
    folder = (source_run / "checkpoints" / "best").resolve()
    for i, source in enumerate(["w.safetensors", "w.pt", "script.pt", folder / "model.safetensors"]):
        fit(config(toy, tmp_path / f"run{i}", init_from=str(tmp_path / source)), progress=False)
        assert all(torch.equal(built_weights[i][k], v) for k, v in weights.items()), source


def test_other_classes_load_everything_but_the_classifier(source_run):
    torch.manual_seed(0)
    net = create_model("simple_cnn", num_classes=5)
    fresh_head = net.state_dict()["head.1.weight"].clone()
    notes = init_from(net, source_run)
    assert len(notes) == 1 and "10 classes, the model 5: its classifier head.1 is new" in notes[0]
    state, weights = net.state_dict(), selected(source_run)
    assert all(torch.equal(state[k], v) for k, v in weights.items() if not k.startswith("head.1."))
    assert torch.equal(state["head.1.weight"], fresh_head)


def test_other_channels_adapt_the_first_convolution_with_a_note(toy, source_run, tmp_path, capfd, built_weights):
    fit(config(toy, tmp_path / "rgb", init_from=str(source_run), model_kwargs={"in_channels": 3}), progress=False)
    assert "note: --init-from: the first convolution features.0 takes 3 input channel(s), the weights 1: its " \
           "kernels are repeated and scaled by 1/3" in capfd.readouterr().err
    stem = selected(source_run)["features.0.weight"]  # out x 1 x 5 x 5
    torch.testing.assert_close(built_weights[0]["features.0.weight"], stem.repeat(1, 3, 1, 1) / 3)


def test_weights_of_another_model_are_refused_naming_both(toy, source_run, tmp_path):
    out = tmp_path / "other"
    with pytest.raises(RunError, match=r"holds simple_cnn weights, this run trains three_conv_cnn"):
        fit(config(toy, out, model="three_conv_cnn", init_from=str(source_run)), progress=False)
    assert not out.exists()  # refused before anything was created
    shipped = WEIGHTS_DIR / weights_for("fastcnn_mnist").file  # convzoo's own files name their model
    with pytest.raises(RunError, match=r"holds fastcnn_mnist weights, this run trains simple_cnn"):
        fit(config(toy, out, init_from=str(shipped)), progress=False)
    torch.save(create_model("three_conv_cnn").state_dict(), tmp_path / "other.pt")  # a file that names nothing
    with pytest.raises(RunError, match=r"other.pt does not hold simple_cnn's tensors: unexpected features.6.bias"):
        fit(config(toy, out, init_from=str(tmp_path / "other.pt")), progress=False)


def test_unreadable_sources_are_clear_errors(toy, tmp_path):
    with pytest.raises(ConvzooError, match="no such file or folder"):
        init_from(create_model("simple_cnn"), tmp_path / "missing")
    (tmp_path / "junk.pt").write_bytes(b"not a pickle")
    with pytest.raises(ConvzooError, match="cannot read it as a torch.save state_dict"):
        init_from(create_model("simple_cnn"), tmp_path / "junk.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(ConvzooError, match="cannot read it as safetensors"):
        init_from(create_model("simple_cnn"), tmp_path / "junk.safetensors")


def test_cli_flag(toy, source_run, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["train", "--model", "simple_cnn", "--dataset", "mnist", "--data-dir", str(toy), "--epochs", "1",
                 "--batch-size", "64", "--init-from", str(source_run), "--out", str(out), "--quiet"]) == 0
    assert load_config_file(out / "config.toml")["init_from"] == str(source_run)
    assert main(["train", "--model", "three_conv_cnn", "--dataset", "mnist", "--data-dir", str(toy),
                 "--init-from", str(source_run), "--out", str(tmp_path / "no"), "--quiet"]) == 2
    assert "holds simple_cnn weights, this run trains three_conv_cnn" in capsys.readouterr().err


def test_a_resumed_run_does_not_read_its_init_source_again(toy, source_run, tmp_path):
    """The resumed weights come from the run's own checkpoint, so a source deleted since does not matter."""
    import shutil

    source = tmp_path / "source-copy"
    shutil.copytree(source_run, source, symlinks=True)
    out = tmp_path / "tuned"
    fit(config(toy, out, epochs=2, init_from=str(source)), progress=False, on_epoch=lambda row: True)
    shutil.rmtree(source)
    result = fit(config(toy, out, epochs=2, init_from=str(source)), resume=out, progress=False)
    assert [row["epoch"] for row in result.history] == [1, 2]
