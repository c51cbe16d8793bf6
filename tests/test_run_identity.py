"""A run records the identity of its data: a resume or ``convzoo eval`` on
other data is refused by content, not by path; ``--recipe`` and ``--out`` are not silently ignored on
resume; a finished run says so when resumed; runs saved before the record still resume and evaluate."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

import convzoo
from convzoo.cli import main
from convzoo.errors import ConvzooError, DataError, RunError
from convzoo.train import TrainConfig, fit
from train_fixtures import make_toy_mnist


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_mnist(tmp_path_factory.mktemp("toy") / "mnist", n_train=320, n_test=100)


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another MNIST-format data set: other images under the same file names."""
    return make_toy_mnist(tmp_path_factory.mktemp("other") / "mnist", n_train=300, n_test=90)


def _config(data: Path, out: Path, **overrides) -> TrainConfig:
    values = dict(model="simple_cnn", dataset="mnist", data_dir=str(data), epochs=2, batch_size=64,
                  optimizer="momentum", lr=0.05, val_split=0.25, out=str(out), eval_batch_size=128)
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def finished(toy: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "run"
    fit(_config(toy, run), progress=False)
    return run


def _sidecars(run: Path) -> list[Path]:
    return sorted((run / "checkpoints").glob("epoch-*/model.json"))


def _as_before_the_record(run: Path) -> None:
    """Rewrite every sidecar of ``run`` as convzoo wrote them before runs recorded their data."""
    for path in _sidecars(run):
        meta = json.loads(path.read_text())
        meta.pop("data", None)
        path.write_text(json.dumps(meta, indent=2, sort_keys=True))


def test_the_sidecar_records_the_data_and_its_validation_split(finished):
    data = json.loads(_sidecars(finished)[-1].read_text())["data"]
    assert data["dataset"] == "mnist" and data["val_split"] == 0.25 and data["val_seed"] == 0
    assert {name: s["images"] for name, s in data["splits"].items()} == {"train": 240, "val": 80, "test": 100}
    assert all(len(s["digest"]) == 64 for s in data["splits"].values())


def test_resume_on_other_data_is_refused_by_content(finished, other, tmp_path, capsys):
    confusion = (finished / "confusion.png").stat().st_mtime_ns
    with pytest.raises(RunError, match=r"--data-dir .* is not the data the run was trained on \(train split: "
                                       r"225 images, 240 when the run was trained; val split"):
        fit(_config(other, finished), resume=finished, progress=False)
    assert (finished / "confusion.png").stat().st_mtime_ns == confusion  # nothing rewritten on the wrong data


def test_a_copy_of_the_data_elsewhere_resumes(finished, toy, tmp_path, capsys):
    copy = shutil.copytree(toy, tmp_path / "elsewhere" / "mnist")  # the same files: the path does not matter
    result = fit(_config(copy, finished), resume=finished, progress=False)
    out = capsys.readouterr().out
    assert result.selected_epoch in (1, 2) and "not the data" not in out


def test_resuming_a_finished_run_says_it_is_finished(finished, toy, capsys):
    fit(_config(toy, finished), resume=finished, progress=False)
    out = capsys.readouterr().out
    assert f"{finished} is finished (2 of 2 epochs trained)" in out and "larger --epochs" in out
    assert "resuming" not in out


def test_recipe_and_another_out_are_refused_on_resume(finished, toy, tmp_path, capsys):
    resume = ["train", "--resume", str(finished), "--data-dir", str(toy), "--quiet"]
    assert main([*resume, "--recipe", "fast"]) == 2
    assert capsys.readouterr().err.strip() == (f"convzoo: error: --recipe does not apply to --resume: {finished} "
                                               "keeps the settings it started with; drop --recipe")
    assert main([*resume, "--out", str(tmp_path / "new")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"convzoo: error: --out {tmp_path / 'new'} does not apply to --resume") and "\n" not in err
    assert not (tmp_path / "new").exists()
    assert main([*resume, "--out", str(finished)]) == 0  # --out naming the run itself is honoured
    assert "is finished" in capsys.readouterr().out


def test_eval_on_other_data_is_refused(finished, other, capsys):
    for split in ("test", "val"):
        with pytest.raises(DataError, match=rf"--data-dir .* is not the data the run was trained on \({split} "
                                            r"split: \d+ images, \d+ when the run was trained\): a different"):
            convzoo.evaluate(finished, split, data_dir=str(other), device="cpu")
    assert main(["eval", str(finished), "--data-dir", str(other), "--device", "cpu"]) == 2
    assert "not the data the run was trained on" in capsys.readouterr().err
    assert convzoo.evaluate(finished, "val", device="cpu").result.count == 80  # its own data: fine


def _png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = torch.randint(0, 256, (28, 28), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)
    Image.fromarray(pixels.numpy()).save(path)


def test_eval_val_after_the_image_folder_changed_is_refused(tmp_path, capsys):
    root = tmp_path / "pets"
    for i in range(12):
        _png(root / "train" / ("cat" if i % 2 else "dog") / f"{i}.png", i)
    for i in range(4):
        _png(root / "test" / ("cat" if i % 2 else "dog") / f"{i}.png", 100 + i)
    run = tmp_path / "run"
    fit(TrainConfig(model="simple_cnn", dataset=f"imagefolder:{root}", epochs=1, batch_size=4, val_split=0.25,
                    out=str(run)), progress=False)
    assert convzoo.evaluate(run, "val", device="cpu").result.count == 3
    _png(root / "train" / "cat" / "new.png", 999)  # 13 training images now: the carve-out moves
    with pytest.raises(DataError, match=r"the training images of the imagefolder:.* found changed since the run was "
                                        r"trained \(val split: other images .*--split val would carve another "
                                        r"validation split, maybe of training images; restore them or evaluate "
                                        r"on --split test"):
        convzoo.evaluate(run, "val", device="cpu")
    assert convzoo.evaluate(run, "test", device="cpu").result.count == 4  # the test split did not change


def test_a_run_saved_before_the_record_resumes_and_evaluates_with_a_note(toy, other, tmp_path, capsys):
    run = tmp_path / "old"
    fit(_config(toy, run), progress=False, on_epoch=lambda row: True)  # stopped after epoch 1 of 2
    _as_before_the_record(run)
    capsys.readouterr()
    result = fit(_config(toy, run), resume=run, progress=False)
    out = capsys.readouterr().out
    assert out.count("note: ") == 1 and "records no identity of its data" in out and len(result.history) == 2
    _as_before_the_record(run)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert convzoo.evaluate(run, "test", data_dir=str(other), device="cpu").result.count == 90  # unchecked
    assert [str(w.message) for w in caught if "records no identity" in str(w.message)] != []
    assert main(["eval", str(run), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert err.count("note: ") == 1 and "records no identity of its data" in err


def test_a_damaged_data_record_is_refused_as_such(finished, tmp_path):
    run = shutil.copytree(finished, tmp_path / "forged", symlinks=True)
    for path in _sidecars(run):
        meta = json.loads(path.read_text())
        meta["data"]["splits"]["test"]["images"] = "many"
        path.write_text(json.dumps(meta))
    with pytest.raises(ConvzooError, match=r"record of its data \('data' in model.json\) is damaged"):
        convzoo.evaluate(run, "test", device="cpu")
