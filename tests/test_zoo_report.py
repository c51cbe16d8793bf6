"""convzoo report: trains within the budget, writes zoo.md / zoo.png, resumes per model, refuses bad input."""

from __future__ import annotations

import json

import pytest

import convzoo.zoo_report as report
from convzoo.cli import main
from train_fixtures import make_toy_mnist


def test_report_on_toy_data_resumes_per_model(tmp_path, monkeypatch):
    toy = make_toy_mnist(tmp_path / "toy", 256, 64)
    runs, out = tmp_path / "runs", tmp_path / "docs"
    monkeypatch.setattr(report, "_estimate_epoch_seconds", lambda *a: 20.0)  # 60,000 images: not the toy's
    results = report.run_report(["lenet", "lenet_bn"], budget_minutes=1.0, runs=runs, out=out, data_dir=str(toy),
                                log=lambda line: None)
    assert [r["epochs"] for r in results] == [3, 3]  # floor(60 s / 20 s)
    assert all(0 <= r["test_acc"] <= 1 and len(r["curve"]) == 3 for r in results)
    table = (out / "zoo.md").read_text()
    assert "| lenet | cpu | 28 | 3 |" in table and "0.804" in table and (out / "zoo.png").stat().st_size > 0
    saved = json.loads((runs / "lenet" / "result.json").read_text())
    assert saved["test_acc"] == results[0]["test_acc"]

    def no_training(*args, **kwargs):
        raise AssertionError("trained a model whose result was saved")

    monkeypatch.setattr(report, "run_model", no_training)
    assert report.run_report(["lenet", "lenet_bn"], runs=runs, out=out, log=lambda line: None) == results


def test_a_model_that_cannot_fit_the_budget_is_said_so(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "_estimate_epoch_seconds", lambda *a: 3600.0)
    (result,) = report.run_report(["alexnet"], budget_minutes=15, runs=tmp_path / "r", out=tmp_path / "d",
                                  log=lambda line: None)
    assert result["epochs"] == 0 and result["test_acc"] is None and "about 60 min" in result["note"]
    assert result["resize"] == 112  # the CPU size
    assert "| alexnet | cpu | 112 | 0 | - | 0.881 |" in (tmp_path / "d" / "zoo.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["report", "--models", "lenet,simple_cnn"], "no d2l recipe for simple_cnn"),
    (["report", "--budget-minutes", "0"], "--budget-minutes must be > 0"),
])
def test_cli_errors(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err
