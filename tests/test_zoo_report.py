"""convzoo report: trains within the budget, writes zoo.md / zoo.png, resumes per model, refuses bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import convzoo.zoo_report as report
from convzoo.cli import main
from convzoo.models import d2l_models, model_info
from train_fixtures import make_toy_mnist


def test_report_on_toy_data_resumes_per_model(tmp_path, monkeypatch):
    toy = make_toy_mnist(tmp_path / "toy", 256, 64)
    runs, out = tmp_path / "runs", tmp_path / "docs"
    monkeypatch.setattr(report, "_estimate_epoch_seconds", lambda *a: 20.0)  # 60,000 images: not the toy's
    results = report.run_report(["lenet", "lenet_bn"], budget_minutes=1.0, runs=runs, out=out, data_dir=str(toy),
                                log=lambda line: None)
    assert [r["epochs"] for r in results] == [3, 3]  # floor(60 s / 20 s)
    for r, recipe in zip(results, ("d2l", "fast"), strict=True):  # the last epoch's test accuracy, as d2l reports
        rows = [json.loads(line) for line in (runs / recipe / r["model"] / "run" / "metrics.jsonl").open()]
        assert r["curve"] == [row["test_acc"] for row in rows] and r["test_acc"] == rows[-1]["test_acc"]
        assert len(r["curve"]) == 3
    table = (out / "zoo.md").read_text()
    assert "| lenet | d2l | cpu | 28 | 3 |" in table and "| lenet_bn | fast | cpu | 28 | 3 |" in table
    assert "0.804" in table and (out / "zoo.png").stat().st_size > 0
    assert "Below d2l's median within the budget: lenet reaches" in table  # a toy set of 256 images
    saved = json.loads((runs / "fast" / "lenet_bn" / "result.json").read_text())  # its ReportPlan's recipe
    assert saved["test_acc"] == results[1]["test_acc"] and saved["recipe"] == "fast" and saved["lr"] == 0.1
    assert json.loads((runs / "d2l" / "lenet" / "result.json").read_text())["lr"] == 0.9

    def no_training(*args, **kwargs):
        raise AssertionError("trained a model whose result was saved")

    monkeypatch.setattr(report, "run_model", no_training)
    assert report.run_report(["lenet", "lenet_bn"], runs=runs, out=out, force=True, log=lambda line: None) == results


def test_a_result_made_with_other_settings_is_kept_aside_and_the_model_trained_again(tmp_path, monkeypatch):
    toy = make_toy_mnist(tmp_path / "toy", 256, 64)
    runs, lines = tmp_path / "runs", []
    monkeypatch.setattr(report, "_estimate_epoch_seconds", lambda *a: 60.0)
    (first,) = report.run_report(["lenet_bn"], budget_minutes=1.0, runs=runs, out=tmp_path / "a",
                                 data_dir=str(toy), log=lines.append)
    registry_values = report.recipe_values  # the registry's plan for lenet_bn, with another fast lr
    monkeypatch.setattr(report, "recipe_values", lambda model, recipe: registry_values(model, recipe) | {"lr": 0.05})
    (second,) = report.run_report(["lenet_bn"], budget_minutes=1.0, runs=runs, out=tmp_path / "a", force=True,
                                  data_dir=str(toy), log=lines.append)
    assert (first["lr"], second["lr"]) == (0.1, 0.05)
    assert "other settings (lr 0.1 -> 0.05)" in lines[-3] and "training again" in lines[-3]
    assert lines[-1] == f"report: {tmp_path / 'a' / 'zoo.md'} and {tmp_path / 'a' / 'zoo.png'}"
    (kept,) = (runs / "fast").glob("lenet_bn.replaced-*")
    assert json.loads((kept / "result.json").read_text()) == first
    assert json.loads((runs / "fast" / "lenet_bn" / "result.json").read_text())["lr"] == 0.05


def test_each_recipe_keeps_its_own_results(tmp_path, monkeypatch):
    toy = make_toy_mnist(tmp_path / "toy", 256, 64)
    runs = tmp_path / "runs"
    monkeypatch.setattr(report, "_estimate_epoch_seconds", lambda *a: 60.0)
    fast = report.run_report(["lenet"], budget_minutes=1.0, runs=runs, out=tmp_path / "a", data_dir=str(toy),
                             recipe="fast", log=lambda line: None)
    d2l = report.run_report(["lenet"], budget_minutes=1.0, runs=runs, out=tmp_path / "b", data_dir=str(toy),
                            recipe="d2l", log=lambda line: None)
    assert (fast[0]["recipe"], fast[0]["lr"]) == ("fast", 0.1) and (d2l[0]["recipe"], d2l[0]["lr"]) == ("d2l", 0.9)
    assert (runs / "fast" / "lenet" / "result.json").is_file() and (runs / "d2l" / "lenet" / "result.json").is_file()
    assert "d2l's hyperparameters" in (tmp_path / "b" / "zoo.md").read_text()


def test_a_model_that_cannot_fit_the_budget_is_said_so(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "_estimate_epoch_seconds", lambda *a: 3600.0)
    (result,) = report.run_report(["alexnet"], budget_minutes=15, runs=tmp_path / "r", out=tmp_path / "d",
                                  log=lambda line: None)
    assert result["epochs"] == 0 and result["test_acc"] is None and "about 60 min" in result["note"]
    assert result["resize"] == model_info("alexnet").report.cpu_side == 72  # the CPU size, not d2l's 224
    table = (tmp_path / "d" / "zoo.md").read_text()
    assert f"| alexnet | fast | cpu | {result['resize']} | 0 | - | 0.881 |" in table
    assert "alexnet does not fit the budget (one epoch takes about 60 min here" in table


def test_the_report_goes_to_a_new_run_style_folder_never_into_a_docs_folder_there(tmp_path, monkeypatch, capsys):
    toy = make_toy_mnist(tmp_path / "toy", 256, 64)
    (tmp_path / "docs").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(report, "_estimate_epoch_seconds", lambda *a: 60.0)
    assert main(["report", "--models", "lenet", "--budget-minutes", "1", "--data-dir", str(toy)]) == 0
    assert list((tmp_path / "docs").iterdir()) == []
    (folder,) = (tmp_path / "runs").glob("report-*")
    assert re.fullmatch(r"report-\d{8}-\d{6}", folder.name)  # as a run directory is named
    assert sorted(p.name for p in folder.iterdir()) == ["zoo.md", "zoo.png"]
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == f"report: {Path('runs') / folder.name / 'zoo.md'} and " \
                                   f"{Path('runs') / folder.name / 'zoo.png'}"
    assert (tmp_path / "runs" / "report" / "d2l" / "lenet" / "result.json").is_file()  # --runs' default: unchanged


def test_an_out_folder_holding_a_report_is_refused_unless_force(tmp_path, monkeypatch, capsys):
    out = tmp_path / "docs"
    out.mkdir()
    (out / "zoo.md").write_text("the report kept in the repository\n")

    def no_training(*args, **kwargs):
        raise AssertionError("trained before refusing --out")

    monkeypatch.setattr(report, "run_model", no_training)
    assert main(["report", "--models", "lenet", "--out", str(out)]) == 2
    assert capsys.readouterr().err == (f"convzoo: error: --out {out} already holds a report (zoo.md); choose another "
                                       "--out, or add --force to replace it\n")
    assert (out / "zoo.md").read_text() == "the report kept in the repository\n"
    (tmp_path / "a-file").write_text("x")
    assert main(["report", "--models", "lenet", "--out", str(tmp_path / "a-file"), "--force"]) == 2
    assert capsys.readouterr().err.startswith(f"convzoo: error: --out {tmp_path / 'a-file'} is a file; --out names "
                                              "the folder for zoo.md and zoo.png")
    saved = {"model": "lenet", "recipe": "d2l", **report.planned("lenet", "d2l", "cpu", False), "epochs": 1,
             "test_acc": 0.5, "seconds": 1.0, "curve": [0.5], "d2l_median": 0.804, "budget_minutes": 1.0,
             "epoch_estimate_s": 60.0}
    (tmp_path / "runs" / "d2l" / "lenet").mkdir(parents=True)
    (tmp_path / "runs" / "d2l" / "lenet" / "result.json").write_text(json.dumps(saved))  # nothing to train
    assert main(["report", "--models", "lenet", "--runs", str(tmp_path / "runs"), "--out", str(out), "--force"]) == 0
    assert "| lenet | d2l | cpu | 28 | 1 |" in (out / "zoo.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["report", "--models", "lenet,simple_cnn"], "no d2l recipe for simple_cnn"),
    (["report", "--budget-minutes", "0"], "--budget-minutes must be > 0"),
    (["report", "--recipe", "slow"], "invalid choice: 'slow'"),
])
def test_cli_errors(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("model", [m for m in d2l_models() if model_info(m).report.cpu_side])
def test_cpu_sizes_are_accepted_by_the_model(model):
    side = model_info(model).report.cpu_side
    assert model_info(model).min_input_size[1:] <= (side, side) and side < model_info(model).default_input_size[1]
