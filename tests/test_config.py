"""The training configuration and what ``convzoo train`` refuses before it starts: boolean options as flag
pairs, one typed validation from ``TrainConfig``'s own type hints for flags and TOML files alike, ranges
checked up front, an honest divergence message, a batch size batch norm cannot train refused before the run
directory exists; and how the error boundary reports them."""

from __future__ import annotations

import argparse
import signal
from dataclasses import fields
from pathlib import Path

import pytest
import torch

import convzoo.zoo_report
from convzoo.cli import build_parser, main
from convzoo.errors import ConvzooError, DivergenceError
from convzoo.train import TrainConfig, fit
from convzoo.train.config import load_config_file, resolve_config
from convzoo.train.run import Interrupted
from train_fixtures import make_toy_mnist


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_mnist(tmp_path_factory.mktemp("toy16") / "mnist")


def one_line_error(capsys, argv: list[str], code: int = 2) -> str:
    """Run ``convzoo ARGV``; assert it exits ``code`` with one line on stderr, and return that line."""
    got = main(argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert got == code, (got, out, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def train_argv(toy: Path, run: Path, *extra: str) -> list[str]:
    return ["train", "--model", "lenet", "--dataset", "mnist", "--data-dir", str(toy), "--epochs", "1",
            "--out", str(run), "--quiet", *extra]


def bool_fields() -> list[str]:
    """The ``TrainConfig`` fields typed ``bool`` or ``bool | None`` that have a command-line flag."""
    hints = {f.name: f for f in fields(TrainConfig)}
    return [name for name, f in hints.items() if f.metadata.get("cli", True)
            and f.type in ("bool", "bool | None")]


# ---- #2: every boolean option is a flag pair ---------------------------------------------------------------


def test_every_boolean_option_is_a_flag_pair():
    names = bool_fields()
    assert {"channels_last", "normalize", "compile", "amp", "download"} <= set(names)
    parser = build_parser()
    for name in names:
        flag = "--" + name.replace("_", "-")
        assert getattr(parser.parse_args(["train", flag]), name) is True
        assert getattr(parser.parse_args(["train", "--no-" + flag[2:]]), name) is False
        assert not hasattr(parser.parse_args(["train"]), name)  # unset: the recipe, the file or the default


def test_channels_last_unset_means_auto():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    action = next(a for a in sub.choices["train"]._actions if a.dest == "channels_last")
    assert isinstance(action, argparse.BooleanOptionalAction)
    assert TrainConfig().channels_last is None
    assert resolve_config(overrides={"channels_last": False}).channels_last is False


@pytest.mark.parametrize("argv", [["--channels-last", "false"], ["--channels-last", "0"],
                                  ["--channels-last", "maybe"], ["--channels-last=false"],
                                  ["--no-channels-last", "true"], ["--epochs", "1", "--compile", "no"]])
def test_a_value_given_to_a_flag_pair_is_refused_naming_both_flags(argv, tmp_path, capsys):
    line = one_line_error(capsys, ["train", *argv, "--data-dir", str(tmp_path / "none"), "--out",
                                   str(tmp_path / "run")])
    flag = next(a for a in argv if a.startswith(("--channels", "--no-channels", "--compile"))).split("=")[0]
    value = (argv[-1] if "=" not in argv[-1] else argv[-1].split("=")[1])
    assert f"{flag} is a flag and takes no value, got {value!r}" in line
    on = "--compile" if "compile" in flag else "--channels-last"
    assert f"write {on} to turn it on or --no-{on[2:]} to turn it off" in line
    assert not (tmp_path / "run").exists()


def test_a_value_given_to_a_plain_flag_is_refused(capsys):
    line = one_line_error(capsys, ["bench", "lenet", "--channels-last", "false"])
    assert "--channels-last is a flag and takes no value, got 'false'; write --channels-last alone" in line


# ---- #3: one typed validation, from the dataclass's type hints, for files and flags alike ------------------


TOML_CASES = {
    'compile = "false"': "compile must be true or false (type bool), got 'false' of type str; in a TOML file "
                         "write compile = true or compile = false (no quotes)",
    'normalize = "yes"': "normalize must be true or false (type bool), got 'yes' of type str",
    "normalize = 0": "normalize must be true or false (type bool), got 0 of type int",
    'channels_last = "false"': "channels_last must be true or false (type bool or unset), got 'false' of type str",
    "seed = 1.5": "seed must be a whole number (type int), got 1.5 of type float",
    "out = 5": "out must be a string (type str or unset), got 5 of type int",
    # a count written as a float is refused, in a file as on the command line (argparse: invalid int value)
    "epochs = 1.0": "epochs must be a whole number (type int), got 1.0 of type float",
    "resize = true": "resize must be a whole number (type int or unset), got True of type bool",
    'lr = "0.1"': "lr must be a number (type float), got '0.1' of type str",
    "model_kwargs = 3": "model_kwargs must be a table of values (type dict), got 3 of type int",
}


@pytest.mark.parametrize("line", list(TOML_CASES))
def test_a_config_file_value_of_the_wrong_type_is_one_line_naming_field_type_and_value(line, toy, tmp_path, capsys,
                                                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)  # (no --out: the file's own out must be checked; the default run goes to runs/)
    config = tmp_path / "c.toml"
    config.write_text(line + "\n")
    error = one_line_error(capsys, ["train", "--config", str(config), "--dataset", "mnist", "--data-dir", str(toy),
                                    "--quiet"])
    assert error.startswith(f"convzoo: error: {TOML_CASES[line]}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]


def test_the_same_validation_for_python_callers():
    with pytest.raises(ConvzooError, match=r"^compile must be true or false \(type bool\), got 'false'"):
        TrainConfig(compile="false")
    with pytest.raises(ConvzooError, match=r"^seed must be a whole number \(type int\), got 1.5"):
        resolve_config(overrides={"seed": 1.5})
    with pytest.raises(ConvzooError, match=r"^epochs must be a whole number \(type int\), got True"):
        TrainConfig(epochs=True)


@pytest.mark.parametrize("name", [f.name for f in fields(TrainConfig)])
def test_every_field_refuses_a_value_of_another_type(name):
    """No field is left out of the typed check (a list is no field's type)."""
    with pytest.raises(ConvzooError, match=rf"^{name} must be .*\(type \w+.*\), got \[1\] of type list"):
        TrainConfig(**{name: [1]})


def test_a_whole_number_is_a_number(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("lr = 1\nwarmup_epochs = 1\nweight_decay = 0\n")
    config = resolve_config(file_values=load_config_file(path))
    assert (config.lr, config.warmup_epochs, config.weight_decay) == (1.0, 1.0, 0.0)
    assert all(type(v) is float for v in (config.lr, config.warmup_epochs, config.weight_decay))


def test_a_saved_config_passes_its_own_validation(tmp_path):
    from convzoo.train.config import save_config

    config = TrainConfig(channels_last=False, compile=True, resize=32, seed=2**63 - 1)
    save_config(config, tmp_path / "config.toml")
    assert resolve_config(file_values=load_config_file(tmp_path / "config.toml")) == config


# ---- #10: absurd ranges refused up front, saying what is accepted ------------------------------------------


RANGE_CASES = {
    ("--lr", "1e308"): "--lr must be a number > 0 and at most 100, got 1e+308",
    ("--lr", "inf"): "--lr must be a number > 0 and at most 100, got inf",
    ("--weight-decay", "inf"): "--weight-decay must be a number in [0, 1], got inf",
    ("--weight-decay", "nan"): "--weight-decay must be a number in [0, 1], got nan",
    ("--momentum", "1e9"): "--momentum must be a number in [0, 1), got 1000000000.0",
    ("--resize", "99999999999"): "--resize must be a whole number from 1 to 4096, got 99999999999",
    ("--crop-padding", "100000"): "--crop-padding must be a whole number from 0 to 4096, got 100000",
    ("--seed", "-1"): "--seed must be a whole number >= 0, got -1",
    ("--batch-size", "99999999999999999999"): "--batch-size must be a whole number from 1 to 2**63 - 1 (TOML's "
                                              "largest integer), got 99999999999999999999",
    ("--warmup-epochs", "inf"): "--warmup-epochs must be a number in [0, epochs=1], got inf",
}


@pytest.mark.parametrize("case", list(RANGE_CASES))
def test_absurd_values_are_refused_before_anything_starts(case, toy, tmp_path, capsys):
    line = one_line_error(capsys, train_argv(toy, tmp_path / "run", *case))
    assert line == f"convzoo: error: {RANGE_CASES[case]}"
    assert not (tmp_path / "run").exists()


# ---- #16: the divergence message says what is kept ----------------------------------------------------------


def poison_loss(monkeypatch, at_call: int) -> None:
    """A NaN loss at the ``at_call``-th training step of the run (evaluation does not call the loss module)."""
    calls = {"n": 0}
    real = torch.nn.CrossEntropyLoss.forward

    def poisoned(self, logits, y):
        calls["n"] += 1
        loss = real(self, logits, y)
        return loss * float("nan") if calls["n"] == at_call else loss

    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", poisoned)


def toy_config(toy: Path, run: Path) -> TrainConfig:
    return TrainConfig(model="simple_cnn", dataset="mnist", data_dir=str(toy), epochs=2, batch_size=64, lr=0.05,
                       optimizer="momentum", out=str(run), eval_batch_size=128)


def test_divergence_before_the_first_checkpoint_claims_none(toy, tmp_path, monkeypatch):
    poison_loss(monkeypatch, 2)  # epoch 1, step 2 (10 steps per epoch)
    run = tmp_path / "early"
    with pytest.raises(DivergenceError) as raised:
        fit(toy_config(toy, run), progress=False)
    message = str(raised.value)
    assert "at epoch 1, step 2" in message and "checkpoint is kept" not in message
    assert f"no checkpoint was written before it, so none is kept; start again with --out elsewhere (or delete " \
           f"{run})" in message
    assert not (run / "checkpoints" / "last").exists()


def test_divergence_after_a_checkpoint_names_it(toy, tmp_path, monkeypatch):
    poison_loss(monkeypatch, 14)  # epoch 2, step 4
    run = tmp_path / "late"
    with pytest.raises(DivergenceError) as raised:
        fit(toy_config(toy, run), progress=False)
    assert str(raised.value).endswith(f"; its last good checkpoint is kept ({run / 'checkpoints' / 'epoch-0001'})")
    assert (run / "checkpoints" / "epoch-0001" / "model.safetensors").is_file()


# ---- #19: what can be checked is checked before the run directory is made ----------------------------------


def test_batch_size_one_with_batch_norm_is_refused_before_the_run_directory_exists(toy, tmp_path, capsys):
    run = tmp_path / "bn"
    line = one_line_error(capsys, ["train", "--model", "lenet_bn", "--batch-size", "1", "--dataset", "mnist",
                                   "--data-dir", str(toy), "--epochs", "1", "--out", str(run), "--quiet"])
    assert line.startswith("convzoo: error: --batch-size 1 cannot train lenet_bn: its batch norm layer ")
    assert line.endswith("use --batch-size 2 or more")
    assert not run.exists()
    # the retry, with the fix, needs no --resume
    assert main(["train", "--model", "lenet_bn", "--batch-size", "2", "--train-limit", "8", "--dataset", "mnist",
                 "--data-dir", str(toy), "--epochs", "1", "--out", str(run), "--quiet"]) == 0
    assert (run / "checkpoints" / "last").is_dir()


def test_batch_size_one_is_kept_where_batch_norm_has_enough_values(toy, tmp_path):
    """ResNet's BatchNorm2d layers see H x W > 1 values per channel even in a batch of one: it trains."""
    result = fit(TrainConfig(model="resnet18_cifar", dataset="mnist", data_dir=str(toy), epochs=1, batch_size=1,
                             train_limit=2, out=str(tmp_path / "r")), progress=False)
    assert result.history[0]["epoch"] == 1


def test_missing_data_leaves_no_run_directory(tmp_path, capsys):
    run = tmp_path / "nodata"
    one_line_error(capsys, train_argv(tmp_path / "no-such-data", run))
    assert not run.exists()


# ---- the error boundary: #9 and #11 --------------------------------------------------------------------------


@pytest.mark.parametrize(("device", "absent", "message"), [
    ("cuda", not torch.cuda.is_available(), "--device cuda: no CUDA device is available here; use --device cpu"),
    ("mps", not torch.backends.mps.is_available(), "--device mps: no Apple GPU is available here; use --device cpu"),
])
def test_bench_on_an_absent_device_is_one_line(device, absent, message, capsys):
    if not absent:
        pytest.skip(f"this machine has {device}")
    assert message in one_line_error(capsys, ["bench", "lenet", "--device", device])


@pytest.mark.parametrize(("raised", "code", "line"), [
    (KeyboardInterrupt(), 130, "convzoo: interrupted"),
    (Interrupted(signal.SIGINT, Path("runs/report/fast/lenet/run/checkpoints/epoch-0001-step-0005")), 130,
     "convzoo: interrupted by SIGINT; saved runs/report/fast/lenet/run/checkpoints/epoch-0001-step-0005"),
    (Interrupted(signal.SIGTERM, Path("runs/report/fast/lenet/run/checkpoints/epoch-0002")), 143,
     "convzoo: interrupted by SIGTERM; saved runs/report/fast/lenet/run/checkpoints/epoch-0002"),
])
def test_ctrl_c_during_report_is_one_line_and_130(raised, code, line, capsys, monkeypatch):
    """Ctrl-C while ``convzoo report`` trains reaches the boundary as the trainer's ``Interrupted`` (its
    SIGINT handler saved the run), elsewhere in the report as ``KeyboardInterrupt``: one line either way."""
    def run_report(*args, **kwargs):
        raise raised

    monkeypatch.setattr(convzoo.zoo_report, "run_report", run_report)
    assert one_line_error(capsys, ["report", "--models", "lenet"], code=code) == line
