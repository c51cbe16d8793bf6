"""The images ``convzoo eval`` evaluates a checkpoint on, as batches its model takes:

- the run's own test or validation split (its ``test/``; its ``val/``, or the ``--val-split`` carve-out made
  again; from its shards for a ``shards:`` run), checked by content to be the data it was trained on;
- with ``--dataset imagefolder:DIR``, any labelled folder: ``DIR/<class>/`` whole, or the ``--split`` of a
  ``DIR/train/`` + ``val/``/``test/`` layout (default ``test/``, else ``val/``). Its class folders must be
  among the run's classes (a folder lacking some of them is fine); labels are numbered by the run's classes.

Either way the images are preprocessed as the run's evaluation preprocessed them: a run that streamed or held
its images resized (``"pipeline": "stream"`` or ``"held"`` in its sidecar) resizes the shorter side to
``round(S / crop_pct)`` and crops the centre ``S x S`` (:func:`convzoo.data.presets.eval_transform`), streamed
from disk; a run trained in memory decodes the folder in memory and resizes it to its input size, as its own
evaluation did.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from convzoo.data import Split, default_cache_dir, load_dataset, split_train_val
from convzoo.data.datasets import split_train_val_files
from convzoo.data.folders import FileSplit, SplitFolders, inspect_files, is_archive, scan_image_folder, split_folders
from convzoo.data.formats import extract_once, list_classes
from convzoo.data.presets import DEFAULT_CROP_PCT, eval_transform
from convzoo.data.shards import open_shards
from convzoo.errors import ConvzooError, DataError
from convzoo.train.loader import StreamBatches, default_workers
from convzoo.train.pipeline import Batches, Preprocess
from convzoo.train.saver import data_changes, split_identity

__all__ = ["eval_batches"]


def eval_batches(checkpoint: Path, meta: dict[str, Any], split: str | None, *, dataset: str | None,
                 data_dir: str | None, device: torch.device, batch_size: int,
                 preprocess: Preprocess) -> tuple[Batches | StreamBatches, str]:
    """(batches, the split's name in the report) of what ``convzoo eval`` evaluates (the module's docstring).
    ``meta``: the sidecar of ``checkpoint``; ``preprocess``: its model's (channels, size, mean, std)."""
    if split not in (None, "test", "val"):
        raise ConvzooError(f"--split must be test or val, got {split!r}")
    streamed = meta.get("pipeline") in ("stream", "held")  # (held images: the files, resized as evaluation does)
    if dataset is not None:
        chosen, name = _other_folder(meta, dataset, split, streamed)
    elif streamed:
        chosen, name = _own_files(checkpoint, meta, split or "test", data_dir), split or "test"
    else:
        chosen, name = _own_split(checkpoint, meta, split or "test", data_dir), split or "test"
    if isinstance(chosen, Split):
        return Batches(chosen, batch_size, device=device, preprocess=preprocess), name
    spec = meta["input"]
    size = int(spec["size"][-1])
    transform = eval_transform(size, crop_pct=float(spec.get("crop_pct", DEFAULT_CROP_PCT)))
    streaming = Preprocess(preprocess.in_channels, None, preprocess.mean, preprocess.std)  # (already S x S)
    return StreamBatches(chosen, batch_size, device=device, preprocess=streaming, transform=transform,
                         channels=preprocess.in_channels, workers=min(2, default_workers())), name


def _folder_path(dataset: str) -> Path:
    if not dataset.startswith("imagefolder:") or not dataset.split(":", 1)[1].strip():
        raise ConvzooError(f"--dataset takes imagefolder:DIR (a labelled folder of class folders), got {dataset!r}; "
                           "to evaluate on the run's own data, leave --dataset out")
    return Path(dataset.split(":", 1)[1]).expanduser()


def _other_folder(meta: dict[str, Any], dataset: str, split: str | None,
                  streamed: bool) -> tuple[Split | FileSplit, str]:
    """Any labelled folder, its classes checked against the run's and numbered as the run numbers them."""
    path, run_classes = _folder_path(dataset), tuple(meta["classes"])
    cache = default_cache_dir()
    root = extract_once(path, cache) if is_archive(path) and path.is_file() else path
    if not root.is_dir():
        raise DataError(f"{path}: no such folder; --dataset imagefolder:DIR needs a folder of class folders")
    folders = split_folders(root)
    if folders.train == root and not {"val", "test"} & set(run_classes):  # val/ or test/ without train/: a layout
        val, test = root / "val", root / "test"
        folders = SplitFolders(root, val if val.is_dir() else None, test if test.is_dir() else None)
    if folders.val is not None or folders.test is not None or folders.train != root:  # a layout: one of its splits
        name = split or ("test" if folders.test is not None else "val")
        folder = folders.test if name == "test" else folders.val
        if folder is None:
            has = [f"{f.name}/" for f in (folders.val, folders.test) if f is not None]
            raise DataError(f"{path} has no {name}/ folder (it has {', '.join(has) or 'train/ only'}); choose one "
                            "with --split, or give a folder of class folders")
    else:
        name, folder = str(path), root
    unknown = sorted(set(list_classes(folder)) - set(run_classes))
    if unknown:
        raise DataError(f"{folder}: class folders {', '.join(unknown)} are not among the run's classes "
                        f"{', '.join(run_classes)}; the model can only predict those (remove or rename these)")
    if streamed:
        return inspect_files(scan_image_folder(folder, cache, run_classes).train, cache), name
    data = load_dataset(f"imagefolder:{folder}")  # in memory, as the run's own images were
    numbered = torch.tensor([run_classes.index(c) for c in data.classes], dtype=torch.int64)
    own = data.train
    return Split(own.images, numbered[own.labels], own.files, hashes=own.hashes), name


def _own_split(checkpoint: Path, meta: dict[str, Any], split: str, data_dir: str | None) -> Split:
    """The run's own test or validation split, in memory, checked against the run's record of it."""
    name = meta["dataset"]
    if data_dir is None:  # where the run found its data
        data_dir = meta["config"].get("data_dir")
    elif name.startswith("imagefolder:"):  # --data-dir points an image-folder run at its folder elsewhere
        name = f"imagefolder:{data_dir}"
    data = load_dataset(name, data_dir=data_dir)
    if split == "test":
        if data.test is None:
            raise ConvzooError(f"{data.name} has no test split here; evaluate on the validation split: --split val")
        chosen = data.test
    elif data.val is not None:  # the folder's own val/
        chosen = data.val
    else:
        fraction = meta["config"].get("val_split", 0.0)
        if not fraction:
            raise ConvzooError("this run held out no validation split (--val-split); use --split test")
        chosen = split_train_val(data.train, fraction, meta["config"].get("val_seed", 0))[1]
    _check_recorded(checkpoint, meta, split, chosen, data.test, data.name, data_dir)
    return chosen


def _own_files(checkpoint: Path, meta: dict[str, Any], split: str, data_dir: str | None) -> FileSplit:
    """The streamed run's own test or validation split, on disk (or in its shards), checked against the run's
    record of it."""
    cache = default_cache_dir()
    if meta["dataset"].startswith("shards:"):  # --data-dir: the same shards elsewhere (a folder or a URL)
        path: Path | str = data_dir if data_dir is not None else meta["dataset"].split(":", 1)[1]
        folder = open_shards(str(path), cache)
        if folder.classes != tuple(meta["classes"]):
            raise DataError(f"{folder.where} holds the classes {', '.join(folder.classes)}, the run was trained on "
                            f"{', '.join(meta['classes'])}; point --data-dir at the run's own shards")
    else:
        path = Path(data_dir) if data_dir is not None else _folder_path(meta["dataset"])
        folder = scan_image_folder(path, cache, tuple(meta["classes"]))
    chosen: FileSplit | None
    if split == "test":
        chosen = folder.test
        if chosen is None:
            raise ConvzooError(f"{path} has no test/ folder; evaluate on the validation split: --split val")
    elif folder.val is not None:
        chosen = folder.val
    else:
        fraction = meta["config"].get("val_split", 0.0)
        if not fraction:
            raise ConvzooError("this run held out no validation split (--val-split); use --split test")
        chosen = split_train_val_files(folder.train, fraction, meta["config"].get("val_seed", 0))[1]
    chosen = inspect_files(chosen, cache)
    test = None if folder.test is None else inspect_files(folder.test, cache)
    _check_recorded(checkpoint, meta, split, chosen, test, meta["dataset"], data_dir)
    return chosen


def _check_recorded(checkpoint: Path, meta: dict[str, Any], split: str, chosen: Split | FileSplit,
                    test: Split | FileSplit | None, name: str, data_dir: str | None) -> None:
    """The run's own data, by content: another data set, or an image folder changed since training (which
    carves another validation split, maybe of training images), is refused."""
    recorded = meta.get("data")
    if not isinstance(recorded, dict):
        warnings.warn(f"{checkpoint} records no identity of its data (written by an older convzoo); not checking "
                      f"that this {name} is the data it was trained on", stacklevel=5)
        return
    changes = data_changes(recorded, {"splits": {split: split_identity(chosen)}}, names=(split,))
    if not changes:
        return
    where = f"the data in --data-dir {data_dir}" if data_dir else f"the {name} found"
    same_test = test is not None and not data_changes(recorded, {"splits": {"test": split_identity(test)}},
                                                      names=("test",))
    if split == "val" and same_test:
        raise DataError(f"the training images of {where} changed since the run was trained ({changes[0]}), so "
                        "--split val would carve another validation split, maybe of training images; restore "
                        "them or evaluate on --split test")
    raise DataError(f"{where} is not the data the run was trained on ({changes[0]}): a different data set"
                    + (" or training images changed since" if split == "val" else "")
                    + "; point --data-dir at the run's own data (a copy anywhere will do)")
