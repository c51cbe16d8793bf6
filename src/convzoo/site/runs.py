"""A run page's data, from a run directory's files and its selected checkpoint.

    entry = run_entry(Path("runs/lenet"), out / "img" / "runs" / "lenet", "img/runs/lenet")

From the files the run wrote: ``metrics.jsonl`` (one row per epoch: losses, accuracies, learning rate),
``config.toml`` (the run's ``TrainConfig``, shown as written) and ``run.json`` (seed, start, environment).
The confusion matrix is ``convzoo.evaluate``'s on the run's evaluation split (the test split, else the
validation split it held out, as the run's last lines chose), without test-time augmentation, on the data
the run recorded (its folder, or the site's ``--data-dir`` when the run's folder is gone or was not given); the
misclassified images of each cell (the first few) are found by one more pass of the selected checkpoint over
that split, whose confusion must equal ``evaluate``'s. When the run's data is not found, the page has the
curves, config and environment and says why the confusion matrix is left out.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

from convzoo.data import load_dataset, split_train_val
from convzoo.errors import ConvzooError, RunError
from convzoo.site.pictures import write_image
from convzoo.train.inference import evaluate, load
from convzoo.train.pipeline import Batches

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover (Python 3.10)
    import tomli as tomllib

__all__ = ["MISCLASSIFIED_PER_CELL", "read_metrics", "run_entry"]

MISCLASSIFIED_PER_CELL = 8  # images kept per off-diagonal cell of the confusion matrix, the first ones


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of ``metrics.jsonl``, one per epoch, in order."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise RunError(f"{run_dir} has no metrics.jsonl: not a convzoo run directory (or no epoch finished "
                       "yet); give the folder `convzoo train --out` wrote")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise RunError(f"{path}, line {number}: not JSON ({err.msg}); the file is damaged") from None
    return rows


def _data_dir(recorded: str | None, dataset: str, data_dir: Path | None) -> str | None:
    """Where the run's data is: the folder it recorded if it is still there, else ``data_dir/DATASET`` (or
    ``data_dir`` itself) when that holds it, else the recorded one (``load_dataset`` then looks in the usual
    places or says where it looked)."""
    if recorded is not None and Path(recorded).is_dir():
        return recorded
    if data_dir is not None and not dataset.startswith("imagefolder:"):
        for candidate in (data_dir / dataset, data_dir):
            if candidate.is_dir():
                return os.fspath(candidate)
    return recorded


def _confusion(run_dir: Path, folder: Path, url: str, data_dir: Path | None) -> dict[str, Any]:
    """The confusion matrix of the run's selected checkpoint and each cell's first misclassified images."""
    checkpoint = load(run_dir)
    meta = checkpoint.meta
    config = meta["config"]
    where = _data_dir(config.get("data_dir"), meta["dataset"], data_dir)
    data = load_dataset(meta["dataset"], data_dir=where)
    split = "test" if data.test is not None else "val"
    report = evaluate(run_dir, split, data_dir=where, device="cpu", tta="none")
    chosen = data.test if data.test is not None else split_train_val(data.train, config["val_split"],
                                                                     config.get("val_seed", 0))[1]
    batches = Batches(chosen, 512, device=checkpoint.device, preprocess=checkpoint.preprocess)
    predicted = []
    with torch.no_grad():
        for start in range(0, len(chosen.labels), 512):
            X = batches.preprocess(batches.images[start : start + 512])
            predicted.append(checkpoint.model(X).argmax(dim=1).cpu())
    y, y_hat = chosen.labels.cpu(), torch.cat(predicted)
    k = len(checkpoint.classes)
    confusion = torch.bincount(y * k + y_hat, minlength=k * k).view(k, k)
    if not torch.equal(confusion, report.result.confusion):
        raise AssertionError(f"{run_dir}: the site's pass over the {split} split disagrees with convzoo.evaluate")
    cells: dict[str, list[dict[str, Any]]] = {}
    folder.mkdir(parents=True, exist_ok=True)
    for index in torch.nonzero(y != y_hat).flatten().tolist():
        key = f"{int(y[index])}-{int(y_hat[index])}"
        kept = cells.setdefault(key, [])
        if len(kept) < MISCLASSIFIED_PER_CELL:
            write_image(chosen.images[index], folder / f"{split}{index}.png")
            kept.append({"png": f"{url}/{split}{index}.png", "index": index})
    return {"split": split, "count": int(len(y)), "accuracy": report.result.accuracy,
            "classes": checkpoint.classes, "matrix": confusion.tolist(), "misclassified": cells,
            "checkpoint": os.fspath(checkpoint.path.relative_to(run_dir.resolve()))
            if checkpoint.path.is_relative_to(run_dir.resolve()) else os.fspath(checkpoint.path)}


def run_entry(run_dir: Path, folder: Path, url: str, data_dir: Path | None = None) -> dict[str, Any]:
    """Everything a run page shows about ``run_dir``; its pictures written under ``folder`` (``url``). The run's
    data is read from where the run found it, else from ``data_dir`` (the site's ``--data-dir``)."""
    if not run_dir.is_dir():
        raise RunError(f"--runs {run_dir}: no such folder; give a run directory `convzoo train --out` wrote")
    metrics = read_metrics(run_dir)
    config_path, run_path = run_dir / "config.toml", run_dir / "run.json"
    config_text = config_path.read_text(encoding="utf-8") if config_path.is_file() else ""
    config = tomllib.loads(config_text) if config_text else {}
    run_json = json.loads(run_path.read_text(encoding="utf-8")) if run_path.is_file() else {}
    entry: dict[str, Any] = {"name": run_dir.name, "path": os.fspath(run_dir), "metrics": metrics,
                             "config_text": config_text, "model": config.get("model", ""),
                             "dataset": config.get("dataset", ""),
                             "environment": run_json.get("environment", {}),
                             "run": {k: v for k, v in run_json.items() if k != "environment"}}
    try:
        entry["confusion"] = _confusion(run_dir.resolve(), folder, url, data_dir)
    except ConvzooError as err:  # the run's data or checkpoint is not here: the rest of the page still stands
        entry["confusion"] = None
        entry["confusion_missing"] = (f"the confusion matrix needs the run's checkpoint and its {entry['dataset']} "
                                      f"data ({err}); give convzoo site --data-dir a folder holding it")
    return entry
