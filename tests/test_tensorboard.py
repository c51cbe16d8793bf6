"""``convzoo train --tensorboard``: each epoch's metrics and learning rate as TensorBoard events in
RUN_DIR/tensorboard, read back with TensorBoard's own ``EventAccumulator``; once per epoch after a resume."""

from __future__ import annotations

import io
import json
import os
import signal
import sys

import pytest

from convzoo.cli import main
from convzoo.errors import ConvzooError
from convzoo.train import Interrupted, TrainConfig, fit
from convzoo.train import loop as loop_module
from train_fixtures import make_toy_mnist

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator",
                                        reason="the tensorboard extra: pip install -e '.[tensorboard]'")


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory):
    return make_toy_mnist(tmp_path_factory.mktemp("tb") / "mnist")


def scalars(run) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of the run's events: (epoch, value) pairs, as TensorBoard shows them."""
    acc = event_accumulator.EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def rows(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_train_flag_writes_each_epochs_metrics_and_lr(toy, tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", "--model", "simple_cnn", "--dataset", "mnist", "--data-dir", str(toy), "--epochs", "2",
                 "--batch-size", "64", "--val-split", "0.1", "--schedule", "cosine", "--tensorboard", "--quiet",
                 "--out", str(run)])
    assert code == 0, capsys.readouterr().err
    assert any(p.name.startswith("events.out.tfevents.") for p in (run / "tensorboard").iterdir())
    found, expected = scalars(run), rows(run)
    for tag, key in (("accuracy/val", "val_acc"), ("accuracy/test", "test_acc"), ("lr", "lr"),
                     ("loss/train", "train_loss"), ("accuracy/train", "train_acc")):
        assert [step for step, _ in found[tag]] == [1, 2], tag
        assert [value for _, value in found[tag]] == pytest.approx([r[key] for r in expected], rel=1e-6), tag
    assert found["lr"][0][1] != found["lr"][1][1]  # (the cosine schedule: a value per epoch, not a constant)
    assert "tensorboard = true" in (run / "config.toml").read_text()


def test_no_events_without_the_flag(toy, tmp_path):
    fit(TrainConfig(model="simple_cnn", dataset="mnist", data_dir=str(toy), epochs=1, train_limit=200,
                    out=str(tmp_path / "run")), progress=False, out=io.StringIO())
    assert not (tmp_path / "run" / "tensorboard").exists()


def test_a_resumed_run_has_each_epoch_once(toy, tmp_path, monkeypatch):
    """Killed in epoch 2 after epoch 1's events were written; the resumed process writes them again with
    purge_step=1, so TensorBoard keeps one value per epoch."""
    config = TrainConfig(model="simple_cnn", dataset="mnist", data_dir=str(toy), epochs=2, batch_size=64,
                         out=str(tmp_path / "run"), tensorboard=True)
    real_update = loop_module.Progress.update

    def interrupt(self, step, loss=None):
        if (self.epoch, step) == (2, 1):
            os.kill(os.getpid(), signal.SIGINT)
        return real_update(self, step, loss)

    monkeypatch.setattr(loop_module.Progress, "update", interrupt)
    with pytest.raises(Interrupted):
        fit(config, progress=True, out=io.StringIO())
    assert [step for step, _ in scalars(tmp_path / "run")["accuracy/test"]] == [1]
    monkeypatch.setattr(loop_module.Progress, "update", real_update)
    fit(config, resume=tmp_path / "run", progress=False, out=io.StringIO())
    found = scalars(tmp_path / "run")
    assert [step for step, _ in found["accuracy/test"]] == [1, 2]
    assert [v for _, v in found["accuracy/test"]] == pytest.approx([r["test_acc"] for r in rows(tmp_path / "run")])


def test_missing_tensorboard_is_one_error_before_the_run_directory_exists(toy, tmp_path, monkeypatch):
    for module in ("tensorboard", "torch.utils.tensorboard"):
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    config = TrainConfig(model="simple_cnn", dataset="mnist", data_dir=str(toy), epochs=1,
                         out=str(tmp_path / "run"), tensorboard=True)
    with pytest.raises(ConvzooError, match=r"--tensorboard needs tensorboard, torch\.utils\.tensorboard, which are "
                                           r"not installed; install convzoo's 'tensorboard' extra: "
                                           r"pip install 'convzoo\[tensorboard\]'"):
        fit(config, progress=False, out=io.StringIO())
    assert not (tmp_path / "run").exists()
