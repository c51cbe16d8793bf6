"""``convzoo explain``: the default worked examples (golden files under tests/expected/explain/, regenerated
with ``pytest --update-golden``), options, one-line errors with exit code 2, and exit code 1 when the check
against torch.nn.functional fails."""

from __future__ import annotations

import importlib
import re

import pytest
import torch

from convzoo.cli import main
from convzoo.scratch import TOPICS, explain

# the module, not the function convzoo.scratch.explain that shadows it as an attribute of the package
explain_module = importlib.import_module("convzoo.scratch.explain")


def run(capsys, *argv):
    code = main(["explain", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("topic", TOPICS)
def test_default_example_golden(capsys, golden, topic):
    code, out, err = run(capsys, topic)
    assert code == 0 and not err
    assert out.rstrip("\n").splitlines()[-1].startswith("check: torch.nn.functional.")
    golden(f"explain/{topic}.txt", out.rstrip("\n"))


def test_conv_shows_the_notes_example_worked_on_paper(capsys):
    _, out, _ = run(capsys, "conv")
    assert "  3*1 + 4*2 + 6*3 + 2*4 + 4*5 + 6*6 + 1*7 + 6*8 + 7*9 = 211" in out
    assert "  211  295  262\n  259  282  214\n  251  253  169" in out
    assert "floor((n + 2p - k) / s) + 1 = floor((5 + 2*0 - 3) / 1) + 1 = 3" in out
    assert out.endswith("check: torch.nn.functional.conv2d gives the same 3x3 output\n")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["pad", "--mode", "reflect"], "(reflect: the input mirrored at its edge, the edge itself not repeated)"),
        (["pad", "--mode", "replicate", "--padding", "2"], "floor((5 + 2*2 - 3) / 1) + 1 = 7"),
        (["pad", "--mode", "constant", "--value", "9"], "  9  9  9  9  9  9  9"),
        (["conv", "--padding", "1", "--mode", "circular"], "check: torch.nn.functional.pad and conv2d give"),
        (["stride", "--stride", "3"], "windows start at rows 0 and columns 0: 1x1 = 1 window"),
        (["pool", "--mode", "max", "--kernel", "3", "--padding", "1"], "max(-inf, -inf, -inf, -inf, 3, 4, -inf, 2, 4)"),
        (["pool", "--mode", "avg"], "(3 + 4 + 2 + 4) / 4 = 13 / 4 = 3.25"),
        (["conv", "--input-size", "4", "7", "--kernel", "2", "--stride", "2"], "  height: floor((4 + 2*0 - 2) / 2)"),
        (["batchnorm", "--input-size", "3", "1"], "channel 1: 6 values (2 images x 3x1)"),
    ],
)
def test_options(capsys, argv, expected):
    code, out, err = run(capsys, *argv)
    assert code == 0 and not err
    assert expected in out
    assert out.rstrip("\n").splitlines()[-1].startswith("check: torch.nn.functional.")


def test_custom_sizes_are_random_whole_numbers_fixed_by_the_seed(capsys):
    outputs = [run(capsys, "conv", "--input-size", "6", "6", "--kernel", "3", "--seed", seed)[1]
               for seed in ("1", "1", "2")]
    assert outputs[0] == outputs[1] != outputs[2]
    grid = outputs[0].split("input X, 6x6:\n")[1].split("\n\n")[0]
    assert all(re.fullmatch(r"[0-9]", v) for v in grid.split())
    assert "(random 0-9, seed 1)" in outputs[0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["conv", "--kernel", "7", "--input-size", "3", "3", "--padding", "1"],
         "kernel 7x7 is larger than the padded input 5x5 (input 3x3, padding 1); use a smaller kernel or more padding"),
        (["pool", "--kernel", "9"], "kernel 9x9 is larger than the padded input 5x5"),
        (["pad", "--mode", "mirror"], "mode for explain pad must be one of zeros, constant, reflect, replicate"),
        (["pool", "--mode", "zeros"], "mode for explain pool must be one of max, avg; got 'zeros'"),
        (["pad", "--mode", "reflect", "--padding", "5"], "padding 5 is too large for reflect padding"),
        (["pool", "--kernel", "3", "--padding", "2"], "padding 2 is more than half the kernel 3"),
        (["conv", "--padding", "-1"], "padding must be a whole number >= 0, got -1"),
        (["conv", "--stride", "0"], "expected a whole number >= 1, got 0"),
        (["conv", "--kernel", "x"], "expected a whole number, got 'x'"),
        (["batchnorm", "--kernel", "3"], "kernel does not apply to explain batchnorm"),
        (["pad", "--value", "3"], "value only applies to mode constant"),
        (["conv", "--input-size", "40", "4"], "too large to print"),
        (["conv", "--input-size", "4"], "expected 2 arguments"),
        (["convolution"], "invalid choice: 'convolution'"),
        ([], "the following arguments are required: topic"),
    ],
)
def test_bad_options_one_line_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and not out
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize(("topic", "target"), [("conv", "conv2d"), ("pool", "max_pool2d"),
                                               ("batchnorm", "batch_norm"), ("channels", "conv2d"),
                                               ("1x1", "conv2d")])
def test_a_failed_check_says_so_and_exits_1(capsys, monkeypatch, topic, target):
    real = getattr(explain_module, target)
    monkeypatch.setattr(explain_module, target, lambda *a, **k: real(*a, **k) + 1)
    code, out, _ = run(capsys, topic)
    assert code == 1
    assert out.rstrip("\n").splitlines()[-1].startswith("check FAILED: torch.nn.functional.")


def test_explain_in_python():
    result = explain("stride")
    assert result.ok and "output Y, 2x2:\n  211  262\n  251  169" in result.text
    with pytest.raises(ValueError, match="topic must be one of conv, pad, stride, pool, batchnorm"):
        explain("dilation")
    assert torch.equal(torch.tensor(explain_module.NOTES_KERNEL), torch.arange(1, 10).view(3, 3))


def test_cli_topics_are_the_library_topics():
    """cli/explain.py spells the topics out so that `convzoo --help` does not import torch; keep them in step."""
    import argparse

    from convzoo.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    topic = next(a for a in sub.choices["explain"]._actions if a.dest == "topic")
    assert tuple(topic.choices) == TOPICS


def test_readme_example_is_real_output():
    """The README's abridged `convzoo explain conv` is the real output: its lines, in order ('...' skips)."""
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("$ convzoo explain conv\n")[1].split("```")[0].splitlines()
    lines = iter(explain("conv").text.splitlines())
    for line in block:
        if line != "...":
            assert line in lines, f"README line not in the output (in order): {line!r}"


def test_channels_and_1x1_take_their_own_options_and_say_which():
    import torch.nn.functional as F

    result = explain("channels", input_size=(4, 5), kernel=3, seed=1)
    X, K = torch.tensor(result.numbers["input"]), torch.tensor(result.numbers["kernel"])  # 2 x 4 x 5, 1 x 2 x 3 x 3
    assert result.ok and X.shape == (2, 4, 5) and K.shape == (1, 2, 3, 3)
    assert result.numbers["output"] == F.conv2d(X[None], K)[0].tolist()
    assert explain("channels", input_size=(4, 5), kernel=3, seed=1).text == result.text  # the seed fixes it
    one = explain("1x1", input_size=(2, 3), seed=2)
    X, W = torch.tensor(one.numbers["input"]), torch.tensor(one.numbers["kernel"])  # 2 x 2 x 3, 3 x 2 x 1 x 1
    assert one.ok and one.numbers["output"] == F.conv2d(X[None], W)[0].tolist()
    with pytest.raises(ValueError, match=r"padding does not apply to explain channels \(it takes input_size, "
                                         r"kernel and seed\)"):
        explain("channels", padding=1)
    with pytest.raises(ValueError, match=r"kernel does not apply to explain 1x1 \(it takes input_size and seed\)"):
        explain("1x1", kernel=3)
