"""The run's training state: one typed object, written as one dict (``state.pt``) and read back from it.

``TrainingState`` is what a resumed run needs beyond the weights: where it stands (epoch, step), the
running sums of the epoch in progress, the history of finished epochs, the best validation accuracy so
far, and the optimizer's, RNG's and schedule's state. ``to_dict`` is the one place that writes its
layout and ``TrainingState.read`` the one place that reads and validates it (torchvision's references
write one checkpoint dict and read the same keys back). The keys are those of ``state.pt`` since its
first version, so every checkpoint ever written resumes:

    {"optimizer", "schedule": {"step"}, "rng": {"torch"}, "epoch", "step", "sums", "history",
     "best_val", "since_best", "best_epoch"}

and, for a run that keeps a moving average of its weights (``--ema``), ``"train_weights"``: the weights
training continues from, the checkpoint's own weights being the average that was evaluated.

Reading trusts nothing: ``torch.load(weights_only=True)`` (plain tensors and containers, never arbitrary
objects), then every field is checked against what the loop writes and the model it is for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from convzoo.errors import ConvzooError

__all__ = ["Best", "EpochSums", "TrainingState"]


@dataclass
class EpochSums:
    """Sums over the steps of the epoch so far (saved with a mid-epoch checkpoint)."""

    loss_sum: float = 0.0  # sum of (batch mean loss x batch size)
    correct: int = 0  # training images classified right
    seen: int = 0  # training images seen
    step_seconds: float = 0.0  # inside the training steps
    train_seconds: float = 0.0  # the whole epoch's training, data included


@dataclass
class Best:
    """The best validation accuracy so far: what picks the `best` checkpoint and drives early stopping."""

    val: float = -1.0  # best validation accuracy (-1: none yet)
    since: int = 0  # epochs since it last improved
    epoch: int | None = None  # the 1-based epoch that reached it; None without a validation split

    def update(self, val_acc: float | None, epoch: int) -> bool:
        """Take epoch ``epoch``'s (1-based) validation accuracy into account; True if it is a new best.
        Without a validation split (``val_acc`` None) nothing changes."""
        if val_acc is None:
            return False
        if val_acc > self.val:
            self.val, self.since, self.epoch = val_acc, 0, epoch
            return True
        self.since += 1
        return False


@dataclass
class TrainingState:
    """Where a run stands. ``epoch`` epochs are finished and ``step`` steps of the next one (0-based
    index ``epoch``) are done: ``(2, 0)`` is the end of epoch 2, ``(1, 5)`` five steps into epoch 2.

    ``optimizer``, ``rng`` and ``schedule_step`` are as of the last ``snapshot`` (what a checkpoint holds);
    the loop's live state keeps them in the optimizer and the RNG themselves.
    """

    epoch: int = 0
    step: int = 0
    sums: EpochSums = field(default_factory=EpochSums)
    history: list[dict[str, Any]] = field(default_factory=list)  # one metrics row per finished epoch
    best: Best = field(default_factory=Best)
    optimizer: dict[str, Any] = field(default_factory=dict)  # torch.optim.Optimizer.state_dict()
    rng: dict[str, Tensor] = field(default_factory=dict)  # {"torch": torch.get_rng_state()}
    schedule_step: int = 0  # global step of the next training step: epoch x steps per epoch + step
    # a run with a moving average of its weights: the training weights (its checkpoint holds the average)
    train_weights: dict[str, Tensor] = field(default_factory=dict)

    def finish_epoch(self, row: dict[str, Any]) -> None:
        """Epoch ``epoch + 1`` ended with metrics ``row``: record it, update the best, move to the next epoch."""
        self.history.append(row)
        self.best.update(row.get("val_acc"), self.epoch + 1)
        self.epoch, self.step, self.sums = self.epoch + 1, 0, EpochSums()

    def snapshot(self, optimizer: torch.optim.Optimizer, steps_per_epoch: int,
                 train_weights: Mapping[str, Tensor] | None = None) -> TrainingState:
        """This state with the optimizer's and the RNG's state as they are now: what a checkpoint saves.
        ``train_weights``: the training weights, when the checkpoint's weights are their moving average."""
        return dataclasses.replace(self, optimizer=optimizer.state_dict(), rng={"torch": torch.get_rng_state()},
                                   schedule_step=self.epoch * steps_per_epoch + self.step,
                                   train_weights=dict(train_weights or {}))

    def to_dict(self) -> dict[str, Any]:
        """The dict saved as ``state.pt`` (plain containers and tensors: ``weights_only`` loads it)."""
        saved = {"optimizer": self.optimizer, "schedule": {"step": self.schedule_step}, "rng": dict(self.rng),
                 "epoch": self.epoch, "step": self.step, "sums": dataclasses.asdict(self.sums),
                 "history": self.history, "best_val": self.best.val, "since_best": self.best.since,
                 "best_epoch": self.best.epoch}
        if self.train_weights:
            saved["train_weights"] = dict(self.train_weights)
        return saved

    @classmethod
    def read(cls, path: Path, net: nn.Module) -> TrainingState:
        """The training state saved in ``path`` for model ``net``, validated field by field: its types,
        one history row per finished epoch, a best epoch among them, the loop's running sums, an optimizer
        holding exactly ``net``'s parameters with buffers of their shapes, a schedule position and an RNG
        state. Anything else is a ``ConvzooError`` naming the file; a pickle that is more than plain
        containers and tensors is refused unexecuted."""
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001  (an unpickling refusal is reported, never executed)
            raise ConvzooError(f"refusing to load {path}: {str(err).splitlines()[0]}") from None
        _validate(raw, net, path)
        return cls(epoch=raw["epoch"], step=raw["step"], sums=EpochSums(**raw["sums"]), history=list(raw["history"]),
                   best=Best(float(raw["best_val"]), raw["since_best"], raw["best_epoch"]),
                   optimizer=raw["optimizer"], rng=dict(raw["rng"]), schedule_step=raw["schedule"]["step"],
                   train_weights=dict(raw.get("train_weights", {})))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _validate(state: object, net: nn.Module, path: Path) -> None:
    """``state`` holds what ``TrainingState.to_dict`` writes, consistently with the model ``net``."""

    def damaged(what: str) -> ConvzooError:
        return ConvzooError(f"{path} is not a convzoo training state: {what}")

    if not isinstance(state, dict):
        raise damaged(f"a {type(state).__name__}, not a dict")
    kinds = {"optimizer": dict, "epoch": int, "step": int, "sums": dict, "history": list, "best_val": float,
             "since_best": int}
    for key, kind in kinds.items():
        value = state.get(key)
        ok = _is_number(value) if kind is float else (_is_int(value) if kind is int else isinstance(value, kind))
        if not ok or (kind is int and isinstance(value, int) and value < 0):
            raise damaged(f"'{key}' is {value!r:.40}, expected {'a number' if kind is float else kind.__name__}")
    epoch, history, best = state["epoch"], state["history"], state.get("best_epoch")
    if len(history) != epoch or not all(isinstance(r, dict) and r.get("epoch") == i + 1 for i, r in enumerate(history)):
        raise damaged(f"the history does not hold one row per epoch for epochs 1..{epoch}")
    if best is not None and not (_is_int(best) and 1 <= best <= epoch):
        raise damaged(f"'best_epoch' is {best!r:.40}, not an epoch of the history")
    sums = state["sums"]
    if set(sums) != {f.name for f in dataclasses.fields(EpochSums)} or not all(map(_is_number, sums.values())):
        raise damaged(f"'sums' holds {sorted(map(str, sums))[:6]}, expected the loop's running sums")
    optimizer = state["optimizer"]
    params = [p.shape for p in net.parameters()]
    groups = optimizer.get("param_groups")
    per_param = optimizer.get("state")
    if not isinstance(groups, list) or not all(isinstance(g, dict) and isinstance(g.get("params"), list)
                                               for g in groups) or not isinstance(per_param, dict):
        raise damaged("the optimizer state has no parameter groups")
    indices = sorted(i for g in groups for i in g["params"] if _is_int(i))
    if indices != list(range(len(params))):
        raise damaged(f"the optimizer holds {len(indices)} parameters, the model {len(params)}")
    if all("param_names" in g for g in groups):  # groups made of named parameters (--bias-lr-scale's): by name
        named = {n: p.shape for n, p in net.named_parameters()}
        pairs = [(i, n) for g in groups for i, n in zip(g["params"], g["param_names"], strict=False)]
        if any(not isinstance(g["param_names"], list) or len(g["param_names"]) != len(g["params"]) for g in groups) \
                or sorted(str(n) for _, n in pairs) != sorted(named):
            raise damaged("the optimizer's parameter names are not the model's")
        params = [named[n] for _, n in sorted(pairs)]
    for index, values in per_param.items():
        if not _is_int(index) or not 0 <= index < len(params) or not isinstance(values, dict):
            raise damaged(f"the optimizer state names parameter {index!r:.40}")
        for name, value in values.items():
            if isinstance(value, Tensor) and value.dim() > 0 and value.shape != params[index]:
                raise damaged(f"the optimizer's {name} of parameter {index} has shape {tuple(value.shape)}, "
                              f"the parameter {tuple(params[index])}")
    weights = state.get("train_weights", {})
    expected = {n: t.shape for n, t in net.state_dict().items()}
    if not isinstance(weights, dict) or (weights and (set(weights) != set(expected) or any(
            not isinstance(t, Tensor) or t.shape != expected[n] for n, t in weights.items()))):
        raise damaged("'train_weights' are not weights of the model")
    schedule = state.get("schedule")
    if not isinstance(schedule, dict) or not _is_int(schedule.get("step")) or schedule["step"] < 0:
        raise damaged(f"'schedule' is {schedule!r:.40}, expected {{'step': a whole number >= 0}}")
    rng = state.get("rng")
    generator = torch.get_rng_state()
    if not isinstance(rng, dict) or not isinstance(rng.get("torch"), Tensor) or rng["torch"].dtype != torch.uint8 \
            or rng["torch"].shape != generator.shape:
        raise damaged(f"'rng' holds no CPU generator state (a uint8 tensor of {generator.numel()} bytes)")
