"""The command line: output of models / summary / params / info, and one-line errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

import convzoo
from convzoo.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_models_lists_the_zoo(capsys):
    code, out, err = run(capsys, "models")
    assert code == 0 and not err
    lines = out.splitlines()
    assert lines[0].split() == ["model", "params", "input", "notes", "paper"]
    assert any(line.startswith("lenet ") and "61,706" in line and "1x28x28" in line for line in lines)
    assert len(lines) == 1 + len(convzoo.list_models())


def test_models_pattern(capsys):
    code, out, _ = run(capsys, "models", "densenet*")
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["densenet121", "densenet_d2l"]


def test_summary_table_and_notes(capsys):
    code, out, _ = run(capsys, "summary", "lenet")
    assert code == 0 and "Total params: 61,706" in out
    code, out, _ = run(capsys, "summary", "lenet", "--style", "notes")
    assert out.splitlines()[0] == "Conv2d output shape: torch.Size([1, 6, 28, 28])"


def test_summary_options(capsys):
    code, out, _ = run(capsys, "summary", "resnet18", "--input-size", "3", "64", "64", "--depth", "1",
                       "--num-classes", "100")
    assert code == 0
    assert "[1, 100]" in out.splitlines()[3]
    assert "features (Sequential)" in out and "(BasicBlock)" not in out
    code, out, _ = run(capsys, "summary", "lenet5_cifar", "--in-channels", "1")
    assert code == 0 and "[1, 6, 28, 28]" in out


def test_params(capsys):
    code, out, _ = run(capsys, "params", "lenet_relu")
    assert code == 0 and out.splitlines()[1].split()[:2] == ["features.0.weight", "[6,"]


def test_info(capsys):
    code, out, _ = run(capsys, "info", "lenet")
    assert code == 0 and "min_input_size       (1, 28, 28)" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["summary", "resnet81"], "unknown model 'resnet81'; did you mean resnet18"),
        (["summary", "lenet", "--input-size", "1", "20", "20"], "smaller than the minimum 28x28"),
        (["summary", "lenet", "--input-size", "1", "0", "28"], "expected a whole number >= 1"),
        (["summary", "lenet", "--depth", "x"], "expected a whole number"),
        (["summary", "lenet", "--style", "pretty"], "invalid choice"),
        (["summary", "lenet", "--bogus"], "unrecognized arguments: --bogus"),
        (["summary"], "the following arguments are required: name"),
        (["models", "zzz*"], "no model matches"),
        (["params", "nope"], "unknown model"),
        (["frobnicate"], "invalid choice"),
        # sizes torch's arithmetic overflows on (found by the fuzzer once overflows counted as bugs)
        (["summary", "lenet", "--input-size", "1", "99999999999", "99999999999"], "not enough memory for a tensor"),
        (["params", "lenet", "--num-classes", "99999999999999999999"], "expected a whole number from 1 to"),
        (["bench", "lenet", "--threads", "99999999999"], "use at most --threads"),
        (["bench", "lenet", "--batch-size", "1099511627776"], "not enough memory for a tensor"),
        (["bench", "lenet", "--device", "tpu"], "invalid choice: 'tpu'"),
        (["report", "--models", ""], "--models '' holds an empty name"),
        (["report", "--budget-minutes", "inf"], "--budget-minutes must be > 0 and finite"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_every_device_option_is_the_one_definition():
    """Every command taking --device takes the training configuration's devices, and refuses others alike."""
    import argparse

    from convzoo.cli import build_parser
    from convzoo.train.config import DEVICES

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    takers = {name: next(a for a in p._actions if a.dest == "device") for name, p in sub.choices.items()
              if any(a.dest == "device" for a in p._actions)}
    assert set(takers) == {"train", "eval", "predict", "bench", "report"}
    assert all(tuple(a.choices) == DEVICES for a in takers.values())
    assert {name: a.default for name, a in takers.items()} == {"train": argparse.SUPPRESS, "eval": "auto",
                                                                "predict": "cpu", "bench": "cpu", "report": "cpu"}


def test_console_script_exit_code():
    proc = subprocess.run([sys.executable, "-m", "convzoo", "summary", "nope"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("convzoo: error: unknown model 'nope'")
    assert "Traceback" not in proc.stderr
