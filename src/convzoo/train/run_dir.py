"""The run directory: a new run's named and refused where one already is, or an old one's config compared and
resumed (its data checked by content, its state read back by rank 0 and sent to the other processes), and
what a diverged run leaves behind."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from pathlib import Path
from typing import TextIO

import torch
from torch import Tensor

from convzoo.data.datasets import resolve_dataset_name
from convzoo.errors import RunError
from convzoo.train.config import TrainConfig, config_diff, load_config_file, resolve_config, save_config
from convzoo.train.distributed import SINGLE, Dist
from convzoo.train.env import environment
from convzoo.train.run import Run, stopped_early
from convzoo.train.saver import CheckpointSaver, data_changes
from convzoo.train.state import TrainingState
from convzoo.utils.atomic import write_text_atomic

__all__ = ["prepare_run_dir", "refuse_existing_run", "start_or_resume", "what_is_kept"]


def _default_run_dir(config: TrainConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    dataset = config.dataset.replace(":", "-").replace("/", "_")
    return Path("runs") / f"{config.model}-{dataset}-{stamp}"


def prepare_run_dir(config: TrainConfig, resume: str | Path | None) -> tuple[Path, TrainConfig, bool]:
    """The run directory, the config to use, and whether this resumes a run. An ``imagefolder:`` path is
    stored resolved (absolute), so the run finds its data from any folder."""
    if resume is None:
        run_dir = Path(config.out) if config.out else _default_run_dir(config)  # named as typed
        refuse_existing_run(run_dir)
        return run_dir, dataclasses.replace(config, dataset=resolve_dataset_name(config.dataset)), False
    run_dir = Path(resume)
    if not (run_dir / "config.toml").is_file():
        raise RunError(f"--resume {run_dir}: no run there (config.toml missing)")
    saved_values = load_config_file(run_dir / "config.toml")
    missing = [key for key in ("model", "dataset") if key not in saved_values]
    if missing:
        raise RunError(f"--resume {run_dir}: config.toml lacks {', '.join(missing)} (cut short?); "
                       "it cannot be resumed, start it again with --out")
    saved = resolve_config(file_values=saved_values)
    saved = dataclasses.replace(saved, dataset=resolve_dataset_name(saved.dataset))  # older runs: as typed
    config = dataclasses.replace(config, dataset=resolve_dataset_name(config.dataset))
    differences = config_diff(saved, config)
    if differences:
        raise RunError(f"--resume {run_dir}: the command's config differs from the run's: {'; '.join(differences)}")
    machine = {k: getattr(config, k) for k in ("data_dir", "download", "device")}
    return run_dir, dataclasses.replace(saved, **machine, out=str(run_dir)), True


def refuse_existing_run(run_dir: Path) -> None:
    """Refuse to start a new run in ``run_dir`` when it holds one (its config or checkpoints)."""
    if (run_dir / "config.toml").exists() or (run_dir / "checkpoints").exists():
        raise RunError(f"run directory {run_dir} already holds a run; continue it with --resume {run_dir} "
                       f"or choose another --out")


def what_is_kept(saver: CheckpointSaver) -> str:
    """What a diverged run leaves: its last checkpoint (written before the loss went bad), or none yet."""
    last = saver.root / "last"
    if last.is_symlink() and last.is_dir():
        return f"its last good checkpoint is kept ({saver.root / last.readlink()})"
    return (f"no checkpoint was written before it, so none is kept; start again with --out elsewhere (or delete "
            f"{saver.run_dir})")


def start_or_resume(config: TrainConfig, run_dir: Path, run: Run, saver: CheckpointSaver, resuming: bool,
                     out: TextIO, dist: Dist = SINGLE) -> TrainingState:
    """The state to train from: when resuming, the last checkpoint's (weights, optimizer and RNG restored
    into ``run``); else a fresh one, with ``config.toml`` and ``run.json`` written (also for a run killed
    before its first checkpoint, which starts again from the beginning). Rank 0 reads and writes the files;
    what it read is sent to the other processes."""

    def on_main() -> tuple[dict[str, Tensor], TrainingState] | None:
        if resuming:
            resumed = saver.resume()
            if resumed is not None:
                _check_resumed_data(run_dir, saver, config, out)
                _say_where_it_resumes(config, run_dir, saver, resumed[1], dist, out)
                return resumed
            print(f"{run_dir} has no checkpoint yet; starting it from the beginning", file=out, flush=True)
        save_config(config, run_dir / "config.toml")
        write_text_atomic(run_dir / "run.json", json.dumps(
            {"started": datetime.now().isoformat(timespec="seconds"), "seed": config.seed,
             "channels_last": run.channels_last, "processes": dist.world,
             "environment": environment(run.device)}, indent=2))
        return None

    resumed = dist.from_main(on_main)
    if resumed is None:
        return TrainingState()
    weights, state = resumed
    run.net.load_state_dict(weights)
    if run.average is not None:  # the checkpoint holds the average; training goes on from its own weights
        run.average.load_(weights)
        if state.train_weights:
            run.net.load_state_dict(state.train_weights)
    run.optimizer.load_state_dict(state.optimizer)
    torch.set_rng_state(state.rng["torch"])
    return state


def _say_where_it_resumes(config: TrainConfig, run_dir: Path, saver: CheckpointSaver, state: TrainingState,
                          dist: Dist, out: TextIO) -> None:
    """Where the resumed run goes on from (or that it is finished), and a note when it was trained by
    another number of processes."""
    if state.epoch >= config.epochs:
        print(f"{run_dir} is finished ({state.epoch} of {config.epochs} epochs trained): nothing left to "
              f"train, its reports are written again; to train longer, start a new run with a larger "
              f"--epochs and another --out, or one that starts from its weights (--init-from {run_dir})",
              file=out, flush=True)
    elif stopped_early(config, state):
        print(f"{run_dir} is finished: early stopping ended it after epoch {state.epoch} (no better "
              f"validation accuracy for {state.best.since} epochs); its reports are written again",
              file=out, flush=True)
    else:
        print(f"resuming {run_dir} at epoch {state.epoch + 1}, step {state.step}", file=out, flush=True)
    before = (saver.resumed_sidecar or {}).get("processes", 1)
    if before != dist.world:
        print(f"note: {run_dir} was trained by {before} process(es) and continues with {dist.world}: the global "
              f"batch ({config.batch_size}), the order of the images and their augmentations stay the same; "
              "batch norm now normalises over shards of another size", file=out, flush=True)


def _check_resumed_data(run_dir: Path, saver: CheckpointSaver, config: TrainConfig, out: TextIO) -> None:
    """Refuse to continue a run on data other than its own, by content (a copy of the same files elsewhere
    is the same data); a checkpoint written before runs recorded their data is continued unchecked, with a
    note."""
    recorded = (saver.resumed_sidecar or {}).get("data")
    if not isinstance(recorded, dict):
        print(f"note: {run_dir} records no identity of its data (written by an older convzoo); not checking "
              "that this is the data it was trained on", file=out, flush=True)
        return
    changes = data_changes(recorded, saver.sidecar["data"])
    if changes:
        where = f"--data-dir {config.data_dir}" if config.data_dir else "the data found"
        raise RunError(f"--resume {run_dir}: {where} is not the data the run was trained on ({'; '.join(changes)}); "
                       f"point --data-dir at the run's own data (a copy anywhere will do)")
