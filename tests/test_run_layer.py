"""The run layer: the typed training state (``train/state.py``) and the checkpoint saver (``train/saver.py``).

The state goes to its dict and back unchanged, keeps the key layout of every ``state.pt`` written so far,
and refuses each damaged field by name; the saver keeps ``last`` and ``best`` right, prunes, recovers what
a kill left, rewrites the metrics on resume; and a run whose ``state.pt`` was written in the layout of the
first checkpoint format resumes to the uninterrupted run's weights and metrics, bit for bit.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import convzoo
from convzoo.errors import ConvzooError
from convzoo.train import TrainConfig, fit
from convzoo.train import loop as loop_module
from convzoo.train.checkpoint import CHECKPOINT_FORMAT, read_checkpoint
from convzoo.train.saver import CheckpointSaver
from convzoo.train.state import Best, EpochSums, TrainingState
from train_fixtures import make_toy_mnist

# the keys of state.pt since the first checkpoint format, in the order they were written
STATE_KEYS = ["optimizer", "schedule", "rng", "epoch", "step", "sums", "history", "best_val", "since_best",
              "best_epoch"]
SUMS_KEYS = ["loss_sum", "correct", "seen", "step_seconds", "train_seconds"]


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return convzoo.create_model("lenet")


def _stepped_optimizer(net: torch.nn.Module) -> torch.optim.Optimizer:
    """SGD with momentum after one step, so that every parameter has a momentum buffer."""
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.randn(2, 1, 28, 28)).sum().backward()
    optimizer.step()
    return optimizer


def _history(epochs: int) -> list[dict[str, Any]]:
    return [{"epoch": e, "lr": 0.1, "train_loss": 2.0 - e / 10, "val_acc": 0.5 + e / 100, "test_acc": None}
            for e in range(1, epochs + 1)]


def _state(net: torch.nn.Module, optimizer: torch.optim.Optimizer) -> TrainingState:
    """Two epochs finished, three steps into the third, the best at epoch 2."""
    state = TrainingState(epoch=2, step=3, sums=EpochSums(5.5, 20, 48, 0.25, 0.5), history=_history(2),
                          best=Best(0.52, 0, 2))
    return state.snapshot(optimizer, steps_per_epoch=10)


def _same(a: object, b: object) -> bool:
    """Equal, tensors compared by value (and dtype and shape), inside any nesting of dicts and lists."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype \
            and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b) and type(a) is type(b):
        return all(_same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    return type(a) is type(b) and a == b


# ---- the training state ------------------------------------------------------------------------------------


def test_state_round_trip(tmp_path):
    net = _net()
    state = _state(net, _stepped_optimizer(net))
    assert state.schedule_step == 23 and len(state.optimizer["state"]) == len(list(net.parameters()))
    torch.save(state.to_dict(), tmp_path / "state.pt")
    again = TrainingState.read(tmp_path / "state.pt", net)
    assert _same(again, state)
    assert not _same(dataclasses.replace(again, step=4), state)  # (the comparison can tell them apart)


def test_state_dict_keeps_the_layout_of_every_checkpoint_so_far():
    net = _net()
    saved = _state(net, _stepped_optimizer(net)).to_dict()
    assert list(saved) == STATE_KEYS and list(saved["sums"]) == SUMS_KEYS
    assert saved["schedule"] == {"step": 23} and list(saved["rng"]) == ["torch"]
    assert (saved["epoch"], saved["step"], saved["best_val"], saved["since_best"], saved["best_epoch"]) == (2, 3, 0.52,
                                                                                                         0, 2)


def test_finish_epoch_records_the_row_and_tracks_the_best():
    state = TrainingState(sums=EpochSums(1.0, 1, 2))
    for epoch, val in enumerate([0.5, 0.7, 0.6, 0.6], start=1):
        state.finish_epoch({"epoch": epoch, "val_acc": val})
    assert (state.epoch, state.step, state.sums) == (4, 0, EpochSums())
    assert [row["epoch"] for row in state.history] == [1, 2, 3, 4]
    assert state.best == Best(0.7, 2, 2)  # a tie does not count as better
    without_val = TrainingState()
    without_val.finish_epoch({"epoch": 1, "val_acc": None})
    assert without_val.best == Best()


class _NotPlainData:
    """An object that ``torch.load(weights_only=True)`` must refuse to rebuild."""


def _edit(change: Callable[[dict], object]) -> Callable[[dict], object]:
    """A damage done in place: the state dict itself is saved."""
    return lambda s: (change(s), s)[1]


def _drop(key: str) -> Callable[[dict], object]:
    return _edit(lambda s: s.pop(key))


def _set(key: str, value: object) -> Callable[[dict], object]:
    return _edit(lambda s: s.update({key: value}))


DAMAGED: dict[str, tuple[Callable[[dict], object], str]] = {
    # case: (a good state dict -> what is saved instead, what the one-line error must say)
    "not a dict": (lambda s: [s], "a list, not a dict"),
    "not plain data": (_set("optimizer", _NotPlainData()), "refusing to load"),
    "optimizer missing": (_drop("optimizer"), "'optimizer' is None, expected dict"),
    "epoch negative": (_set("epoch", -1), "'epoch' is -1"),
    "epoch a bool": (_set("epoch", True), "'epoch' is True"),
    "step a float": (_set("step", 1.5), "'step' is 1.5"),
    "sums not a dict": (_set("sums", [1, 2]), "'sums' is [1, 2]"),
    "history not a list": (_set("history", 5), "'history' is 5"),
    "best_val not a number": (_set("best_val", "high"), "'best_val' is 'high', expected a number"),
    "since_best negative": (_set("since_best", -2), "'since_best' is -2"),
    "a history row missing": (_edit(lambda s: s["history"].pop()), "one row per epoch for epochs 1..2"),
    "history rows misnumbered": (_edit(lambda s: s["history"][1].update(epoch=7)), "one row per epoch"),
    "best epoch after the history": (_set("best_epoch", 3), "'best_epoch' is 3, not an epoch"),
    "best epoch zero": (_set("best_epoch", 0), "'best_epoch' is 0"),
    "running sums renamed": (_edit(lambda s: s["sums"].update(evil=s["sums"].pop("seen"))), "'sums' holds"),
    "running sum not a number": (_edit(lambda s: s["sums"].update(seen="many")), "'sums' holds"),
    "optimizer without groups": (_edit(lambda s: s["optimizer"].pop("param_groups")), "no parameter groups"),
    "a parameter missing from the optimizer": (_edit(lambda s: s["optimizer"]["param_groups"][0]["params"].pop()),
                                               "the optimizer holds 9 parameters, the model 10"),
    "optimizer state of an unknown parameter": (_edit(lambda s: s["optimizer"]["state"].update({99: {}})),
                                                "names parameter 99"),
    "momentum of the wrong shape": (_edit(lambda s: s["optimizer"]["state"][0].update(momentum_buffer=torch.zeros(3))),
                                    "momentum_buffer of parameter 0 has shape (3,)"),
    "schedule missing": (_drop("schedule"), "'schedule' is None"),
    "schedule step negative": (_edit(lambda s: s["schedule"].update(step=-1)), "'schedule'"),
    "rng missing": (_drop("rng"), "'rng' holds no CPU generator state"),
    "rng of another size": (_edit(lambda s: s["rng"].update(torch=torch.zeros(7, dtype=torch.uint8))), "'rng'"),
}


@pytest.mark.parametrize("case", list(DAMAGED))
def test_each_damaged_field_is_refused_by_name(case, tmp_path):
    net = _net()
    damage, needle = DAMAGED[case]
    path = tmp_path / "state.pt"
    torch.save(damage(_state(net, _stepped_optimizer(net)).to_dict()), path)
    with pytest.raises(ConvzooError) as info:
        TrainingState.read(path, net)
    message = str(info.value)
    assert needle in message and str(path) in message and len(message.splitlines()) == 1, message


# ---- the saver ---------------------------------------------------------------------------------------------


def _sidecar() -> dict[str, Any]:
    return {"format": CHECKPOINT_FORMAT, "model": "lenet", "model_kwargs": {"num_classes": 10, "in_channels": 1},
            "dataset": "mnist", "classes": [str(i) for i in range(10)],
            "input": {"channels": 1, "size": [28, 28], "mean": None, "std": None}, "config": {}}


def _pointers(root: Path) -> tuple[str, str | None]:
    best = os.readlink(root / "best") if (root / "best").is_symlink() else None
    return os.readlink(root / "last"), best


def _epochs(saver: CheckpointSaver, net: torch.nn.Module, optimizer: torch.optim.Optimizer,
            state: TrainingState, vals: list[float]) -> list[tuple[set[str], tuple[str, str | None]]]:
    """End one epoch per validation accuracy in ``vals``; after each, the checkpoint folders and pointers."""
    seen = []
    for val in vals:
        state.finish_epoch({"epoch": state.epoch + 1, "train_loss": 1.0, "train_acc": 0.5, "val_acc": val})
        saver.end_epoch(net.state_dict(), state.snapshot(optimizer, 10))
        seen.append(({p.name for p in saver.root.iterdir() if not p.is_symlink()}, _pointers(saver.root)))
    return seen


def test_saver_points_last_and_best_and_prunes(tmp_path):
    net = _net()
    optimizer = _stepped_optimizer(net)
    saver, state = CheckpointSaver(tmp_path, _sidecar(), title="lenet"), TrainingState()
    assert _epochs(saver, net, optimizer, state, [0.5, 0.4, 0.6]) == [
        ({"epoch-0001"}, ("epoch-0001", "epoch-0001")),
        ({"epoch-0001", "epoch-0002"}, ("epoch-0002", "epoch-0001")),  # best kept, the last beside it
        ({"epoch-0003"}, ("epoch-0003", "epoch-0003")),
    ]
    state.step, state.sums = 5, EpochSums(3.0, 4, 5)  # interrupted five steps into epoch 4
    path = saver.save(net.state_dict(), state.snapshot(optimizer, 10))
    assert path == saver.root / "epoch-0004-step-0005" and _pointers(saver.root) == ("epoch-0004-step-0005",
                                                                                    "epoch-0003")
    meta = json.loads((path / "model.json").read_text())
    assert (meta["epoch"], meta["step"], meta["metrics"], meta["model"]) == (3, 5, None, "lenet")
    state.step = 0
    assert _epochs(saver, net, optimizer, state, [0.55]) == [({"epoch-0003", "epoch-0004"},
                                                              ("epoch-0004", "epoch-0003"))]
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 4 and (tmp_path / "curves.png").is_file()
    assert _same(saver.read_weights("best"), net.state_dict())


def test_saver_recovers_a_re_save_killed_between_its_renames(tmp_path):
    """A re-save swaps the old folder out (``.old-NAME-PID``) before renaming the new one in; a kill between
    the two leaves no ``epoch-0002`` and ``last`` dangling. Resuming renames the old one back."""
    net = _net()
    optimizer = _stepped_optimizer(net)
    saver, state = CheckpointSaver(tmp_path, _sidecar()), TrainingState()
    _epochs(saver, net, optimizer, state, [0.5, 0.6])
    root, dead = saver.root, 999_999_999  # no such process
    expected = TrainingState.read(root / "epoch-0002" / "state.pt", net)
    os.replace(root / "epoch-0002", root / f".old-epoch-0002-{dead}")
    (root / f".tmp-epoch-0002-{dead}").mkdir()  # the new one, half written
    assert not (root / "last").exists()
    weights, state = saver.resume() or pytest.fail("nothing to resume")
    assert _same(state, expected) and _same(weights, net.state_dict())
    assert _pointers(root) == ("epoch-0002", "epoch-0002")
    assert not (root / f".old-epoch-0002-{dead}").exists()
    saver.end_epoch(net.state_dict(), _finished(state, 0.4).snapshot(optimizer, 10))  # prunes the dead one's folder
    assert sorted(p.name for p in root.iterdir()) == ["best", "epoch-0002", "epoch-0003", "last"]


def _finished(state: TrainingState, val: float) -> TrainingState:
    state.finish_epoch({"epoch": state.epoch + 1, "train_loss": 1.0, "train_acc": 0.5, "val_acc": val})
    return state


def test_saver_resume_rewrites_the_metrics_and_points_best_again(tmp_path):
    """Killed after epoch 2's checkpoint but before its ``best`` pointer and its metrics rows."""
    net = _net()
    optimizer = _stepped_optimizer(net)
    saver, state = CheckpointSaver(tmp_path, _sidecar()), TrainingState()
    _epochs(saver, net, optimizer, state, [0.5])
    saver.save(net.state_dict(), _finished(state, 0.6).snapshot(optimizer, 10), state.history[-1])  # no best, no rows
    assert _pointers(saver.root) == ("epoch-0002", "epoch-0001")
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1
    (tmp_path / "curves.png").unlink()
    resumed = saver.resume()
    assert resumed is not None and resumed[1].epoch == 2 and resumed[1].best.epoch == 2
    assert _pointers(saver.root) == ("epoch-0002", "epoch-0002")
    assert [json.loads(line)["epoch"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert (tmp_path / "metrics.csv").read_text().count("\n") == 3 and (tmp_path / "curves.png").is_file()


def test_saver_resume_without_a_checkpoint(tmp_path):
    assert CheckpointSaver(tmp_path, _sidecar()).resume() is None


# ---- a checkpoint in today's state.pt layout resumes bit for bit ------------------------------------------


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_mnist(tmp_path_factory.mktemp("toy") / "mnist")


def _config(toy: Path, out: Path) -> TrainConfig:
    return TrainConfig(model="three_conv_cnn", dataset="mnist", data_dir=str(toy), epochs=2, batch_size=64,
                       optimizer="momentum", lr=0.05, augment="flip", val_split=0.2, out=str(out),
                       eval_batch_size=128)


def _outcome(run: Path) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    timing = {"step_img_s", "e2e_img_s", "epoch_time"}
    rows = [{k: v for k, v in json.loads(line).items() if k not in timing}
            for line in (run / "metrics.jsonl").read_text().splitlines()]
    return load_file(run / "checkpoints" / "last" / "model.safetensors"), rows


def _write_in_the_first_layout(folder: Path, steps_per_epoch: int) -> None:
    """Rewrite ``state.pt`` as the first checkpoint format's loop wrote it: its keys in its order, its
    running-sums names, and its schedule position (the start of the epoch after an epoch's end)."""
    raw = torch.load(folder / "state.pt", weights_only=True)
    epoch, step = raw["epoch"], raw["step"]
    epoch_index = epoch if step else epoch - 1
    first = {"optimizer": raw["optimizer"], "schedule": {"step": epoch_index * steps_per_epoch + step},
             "rng": {"torch": raw["rng"]["torch"]}, "epoch": epoch, "step": step,
             "sums": {name: raw["sums"][name] for name in SUMS_KEYS}, "history": raw["history"],
             "best_val": raw["best_val"], "since_best": raw["since_best"], "best_epoch": raw["best_epoch"]}
    torch.save(first, folder / "state.pt")


@pytest.fixture(scope="module")
def reference(toy: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """The uninterrupted run's last weights and metrics rows."""
    return _outcome(fit(_config(toy, tmp_path_factory.mktemp("full") / "run"), progress=False).run_dir)


@pytest.mark.slow
@pytest.mark.parametrize("cut", ["after epoch 1", "inside epoch 2"])
def test_a_checkpoint_in_the_first_layout_resumes_bit_for_bit(toy, reference, tmp_path, monkeypatch, cut):
    run = tmp_path / "cut"
    if cut == "after epoch 1":
        fit(_config(toy, run), progress=False, on_epoch=lambda row: True)
    else:
        real_update = loop_module.Progress.update

        def interrupt(self, step, loss=None):
            if (self.epoch, step) == (2, 2):
                os.kill(os.getpid(), signal.SIGINT)  # caught: the state is saved after this step
            return real_update(self, step, loss)

        monkeypatch.setattr(loop_module.Progress, "update", interrupt)
        with pytest.raises(loop_module.Interrupted):
            fit(_config(toy, run), progress=True)
        monkeypatch.undo()
    last = (run / "checkpoints" / "last").resolve()
    assert last.name == ("epoch-0001" if cut == "after epoch 1" else "epoch-0002-step-0003")
    _write_in_the_first_layout(last, steps_per_epoch=8)  # 480 training images in batches of 64
    _, _, state = read_checkpoint(last)
    assert state.schedule_step == (0 if cut == "after epoch 1" else 11)
    resumed = fit(_config(toy, run), resume=run, progress=False)
    weights, rows = _outcome(resumed.run_dir)
    assert rows == reference[1] and weights.keys() == reference[0].keys()
    assert all(torch.equal(weights[k], reference[0][k]) for k in weights)
