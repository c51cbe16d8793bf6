"""The run's data: its splits loaded, carved (``--val-split``), limited (``--train-limit``) and checked for
leakage, on one of three paths behind one ``--dataset``.

- **In memory** (``Dataset``, uint8 tensors, ``train/pipeline.py``'s ``Batches``): MNIST, Fashion-MNIST and
  CIFAR-10 always; an image folder when every image of every split has one size H x W, the folder decoded
  (``N x 3 x H x W`` bytes, counted for colour) fits ``--cache-memory`` (default a quarter of this machine's
  memory), and ``--image-size`` is unset or that size. Then nothing changes from before: the same tensors,
  batches and results, bit for bit.
- **Held resized** (``StreamedData`` with its ``held`` images, ``StreamBatches`` reading them): an image folder of
  mixed sizes whose images, each with its shorter side resized to ``round(S / 0.875)`` when longer (aspect ratio
  kept: evaluation's own first step), fit ``--cache-memory``, or any mixed-size folder with ``--cache-resized``.
  Every file is decoded once, at the start; each epoch crops and flips the held tensors, in this process by
  default (a crop of a held image costs well under a millisecond: loader workers would only take cores from
  the training step). Evaluation sees what it would see from the files, bit for bit; a training crop is cut
  from the held image instead of the full-size one.
- **Streaming** (``StreamedData``, files on disk, ``train/loader.py``'s ``StreamBatches``): every other image
  folder, or any with ``--stream``; and always shards (``shards:WHERE``, written by ``convzoo pack``,
  :mod:`convzoo.data.shards`), whose images are read from their chunks by position instead of from files.
  Images of other sizes are never stretched to one: training crops (``RandomResizedCrop``) and evaluation
  resizes the shorter side and crops the centre, at ``--image-size`` (default: the model's default input size).
  ``--train-limit`` and ``--val-split`` pick files before any is decoded.

The run says at its start, in one line, which path it took and why (:func:`load_run_data`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from convzoo.data import Dataset, Split, check_disjoint, default_cache_dir, load_dataset, split_train_val
from convzoo.data.datasets import split_train_val_files, stratified_subset
from convzoo.data.folders import FileSplit, ImageFolder, inspect_files, scan_image_folder
from convzoo.data.streaming import STATS_SAMPLE, Held, decode_resized, held_bytes, held_side, sample_channels_and_stats
from convzoo.errors import ConvzooError, DataError
from convzoo.train.config import TrainConfig
from convzoo.utils.seeds import derive_seed

__all__ = ["RunData", "StreamedData", "cache_budget", "load_run_data", "load_splits", "stream_size"]


@dataclass(frozen=True)
class StreamedData:
    """An image folder on the streaming path: the splits' files (``FileSplit``), the class names, the side
    ``size`` every image is cropped to, the channels (1 when every image of the statistics sample is gray,
    else 3) and the per-channel mean and std of that sample at that size, on the [0, 1] scale. ``held``: on
    the held-resized path, each split's images decoded once ("train", "val", "test"), else empty."""

    name: str
    classes: tuple[str, ...]
    train: FileSplit
    test: FileSplit | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str
    channels: int
    size: int
    val: FileSplit | None = None
    held: dict[str, Held] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> tuple[int, int]:
        return self.size, self.size


RunData = Dataset | StreamedData


def cache_budget(config: TrainConfig) -> int:
    """Bytes an image folder may take decoded in memory: ``--cache-memory`` GB, else a quarter of RAM."""
    if config.cache_memory is not None:
        return int(config.cache_memory * 1e9)
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4
    except (ValueError, OSError):  # no sysconf: assume 4 GB
        return 1 << 30


def stream_size(config: TrainConfig) -> int:
    """The side images are cropped to on the streaming path: ``--image-size``, else the model's default."""
    if config.image_size:
        return config.image_size
    from convzoo.models import list_models, model_info

    if config.model not in list_models():
        raise ConvzooError(f"unknown model {config.model!r}; convzoo models lists them")
    return model_info(config.model).default_input_size[-1]


def load_splits(config: TrainConfig) -> tuple[RunData, Split | FileSplit | None]:
    """The data set with ``train`` the split the run trains on (the validation split carved out, then
    ``--train-limit``), and the validation split (an image folder's ``val/``, or ``--val-split``'s; None
    without either). Refuses evaluating on training images, and a run with nothing to evaluate on."""
    data, val, _ = load_run_data(config)
    return data, val


def load_run_data(config: TrainConfig) -> tuple[RunData, Split | FileSplit | None, str | None]:
    """:func:`load_splits`, and for an image folder the line that says which path it took and why."""
    if config.dataset.startswith("shards:"):
        return _sharded(config)
    if not config.dataset.startswith("imagefolder:"):
        if config.stream or config.cache_resized or config.image_size:
            flag = "--stream" if config.stream else "--cache-resized" if config.cache_resized else "--image-size"
            raise ConvzooError(f"{flag} is for image folders (imagefolder:PATH); {config.dataset} is read in memory "
                               "at its own size (--resize N resizes it)")
        data, val = _in_memory(config)
        return data, val, None
    typed = config.dataset.split(":", 1)[1]
    if not typed.strip():
        raise DataError("imagefolder:PATH needs a path, e.g. imagefolder:./flowers; got an empty one")
    cache = default_cache_dir()
    folder = scan_image_folder(Path(typed).expanduser(), cache)
    if folder.val is not None and config.val_split:
        raise ConvzooError(f"{folder.where} has a val/ folder, the run's validation split; drop --val-split (or "
                           "move val/ away to carve one out of train/)")
    path, why = _choose(config, folder, cache)
    if path == "memory":
        memory, val = _in_memory(config)
        return memory, val, f"data: in memory: {why}"
    streamed, files = _streamed(config, folder, cache, hold=path == "held")
    S = streamed.size
    if path == "held":
        cropper = "DataLoader workers" if config.workers else "this process"
        return streamed, files, (f"data: held in memory, decoded once: {why}; {S}x{S} crops of the held images cut "
                                 f"by {cropper}, {_channels_and_stats(streamed)}")
    decoder = "DataLoader workers" if config.workers != 0 else "this process"
    return streamed, files, (f"data: streamed from disk, decoded by {decoder}: {why}; {S}x{S} crops, "
                             f"{_channels_and_stats(streamed)}")


def _channels_and_stats(data: StreamedData) -> str:
    """The end of a streamed or held run's data line: its channels and where its mean and std come from."""
    return (f"{data.channels} channel(s), mean/std of a fixed sample of {min(STATS_SAMPLE, len(data.train))} "
            "training images")


def _sharded(config: TrainConfig) -> tuple[StreamedData, FileSplit | None, str]:
    """``shards:WHERE``: the splits of the shards, streamed (each image read from its chunk by its position)."""
    from convzoo.data.shards import open_shards

    where = config.dataset.split(":", 1)[1]
    if not where.strip():
        raise DataError("shards:WHERE needs the folder or URL convzoo pack wrote, e.g. shards:./flowers-shards or "
                        "shards:s3://bucket/flowers; got an empty one")
    cache = default_cache_dir()
    folder = open_shards(where, cache)
    if folder.val is not None and config.val_split:
        raise ConvzooError(f"{folder.where} has a val split, the run's validation split; drop --val-split")
    streamed, files = _streamed(config, folder, cache)
    decoder = "DataLoader workers" if config.workers != 0 else "this process"
    return streamed, files, (f"data: streamed from litdata shards, read by position and decoded by {decoder} "
                             f"(shards always stream); {streamed.size}x{streamed.size} crops, "
                             f"{_channels_and_stats(streamed)}")


def _choose(config: TrainConfig, folder: ImageFolder, cache: Path) -> tuple[str, str]:
    """(path, why), the path "memory", "held" or "stream": the rule of the module's docstring. Reads every
    file's header (and hashes its bytes: the leakage check needs that too), cached; decodes nothing."""
    if config.stream:
        return "stream", "--stream"
    splits = [s for s in (folder.train, folder.val, folder.test) if s is not None]
    sizes: dict[tuple[int, int], int] = {}
    for split in splits:
        inspected = inspect_files(split, cache)
        assert inspected.sizes is not None
        for (h, w), n in zip(*inspected.sizes.unique(dim=0, return_counts=True), strict=True):
            sizes[(int(h), int(w))] = sizes.get((int(h), int(w)), 0) + int(n)
    count, budget = sum(sizes.values()), cache_budget(config)
    if len(sizes) > 1:
        common = ", ".join(f"{w}x{h}" for (h, w), _ in sorted(sizes.items(), key=lambda kv: -kv[1])[:3])
        mixed = f"{count:,} images of {len(sizes):,} sizes (most common {common})"
        side = held_side(stream_size(config))
        held = held_bytes(sizes, side)
        if config.cache_resized or held <= budget:
            within = "--cache-resized" if config.cache_resized and held > budget else \
                f"within --cache-memory {budget / 1e9:.2f} GB"
            return "held", (f"{mixed}, each with its shorter side resized to at most {side} px, aspect ratio kept, "
                            f"{held / 1e9:.3g} GB at most, {within} (--stream decodes the files every epoch instead)")
        return "stream", (f"{mixed}, {held / 1e9:.2f} GB even resized to a shorter side of {side} px, more than "
                          f"--cache-memory {budget / 1e9:.2f} GB; each resized and cropped with its aspect ratio "
                          "kept, never stretched to one size")
    if config.cache_resized:
        raise ConvzooError("--cache-resized is for image folders of mixed sizes; the images of this one are all one "
                           "size: drop --cache-resized (they are held in memory as they are when they fit "
                           "--cache-memory)")
    ((H, W),) = sizes
    if config.image_size and (H, W) != (config.image_size, config.image_size):
        return "stream", f"--image-size {config.image_size} for images of {W}x{H}: resized and centre-cropped"
    decoded = count * 3 * H * W
    if decoded > budget:
        return "stream", (f"{count:,} images of {W}x{H} take {decoded / 1e9:.2f} GB decoded, more than "
                          f"--cache-memory {budget / 1e9:.2f} GB")
    return "memory", (f"{count:,} images of one size, {W}x{H}, {decoded / 1e9:.3g} GB decoded at most, within "
                      f"--cache-memory {budget / 1e9:.2f} GB (--stream streams them instead)")


def _in_memory(config: TrainConfig) -> tuple[Dataset, Split | None]:
    data = load_dataset(config.dataset, data_dir=config.data_dir, download=config.download)
    if data.test is not None:
        check_disjoint(data.train, data.test)
    train_split, val_split = data.train, data.val
    if config.val_split:
        if val_split is not None:
            raise ConvzooError(f"{data.source} has a val/ folder, the run's validation split; drop --val-split")
        train_split, val_split = split_train_val(data.train, config.val_split, config.val_seed)
    if config.train_limit:
        train_split = stratified_subset(train_split, config.train_limit, derive_seed(config.seed, "train_limit"))
    evaluation = [s for s in (val_split, data.test) if s is not None]
    check_disjoint(train_split, *evaluation)
    if not evaluation:
        raise ConvzooError(f"{data.name} has no test split; hold out a validation split with --val-split 0.1")
    # hold the training images once: the carved splits are copies, so let the full split go
    return dataclasses.replace(data, train=train_split, val=None), val_split


def _streamed(config: TrainConfig, folder: ImageFolder, cache: Path,
              hold: bool = False) -> tuple[StreamedData, FileSplit | None]:
    for flag, given in (("--resize", config.resize), ("--whiten", config.whiten),
                        ("--augment", config.augment != "none")):
        if given:
            raise ConvzooError(f"{flag} is for data held in memory; this image folder streams, cropped to "
                               "--image-size with RandomResizedCrop + flip (data/presets.py): drop " + flag)
    train, val, test = folder.train, folder.val, folder.test
    if config.val_split:
        train, val = split_train_val_files(train, config.val_split, config.val_seed)
    if config.train_limit:
        train = stratified_subset(train, config.train_limit, derive_seed(config.seed, "train_limit"))
    train = inspect_files(train, cache)
    val = None if val is None else inspect_files(val, cache)
    test = None if test is None else inspect_files(test, cache)
    evaluation = [s for s in (val, test) if s is not None]
    check_disjoint(train, *evaluation)
    if not evaluation:
        raise ConvzooError(f"{folder.where} has no val/ or test/ folder; hold out a validation split with "
                           "--val-split 0.1")
    size = stream_size(config)
    held: dict[str, Held] = {}
    if hold:  # every file decoded once, now: an unreadable one is named here and left out of every batch
        held = {name: decode_resized(split, held_side(size))
                for name, split in (("train", train), ("val", val), ("test", test)) if split is not None}
    channels, mean, std = sample_channels_and_stats(train, size, held=held.get("train"))
    data = StreamedData(config.dataset, folder.classes, train, test, mean, std, folder.where, channels, size,
                        held=held)
    return data, val
