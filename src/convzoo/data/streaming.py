"""The streaming path: images stay on disk and ``torch.utils.data.DataLoader`` worker processes decode them.

- :class:`StreamDataset` decodes one file with :func:`~convzoo.data.images.decode_image` (the one decoder),
  gives it the data set's channels and runs a transform of :mod:`convzoo.data.presets` on it (training:
  ``RandomResizedCrop(S)`` + flip; evaluation: ``Resize(round(S / 0.875))`` + ``CenterCrop(S)``), uint8 out.
- :class:`EpochBatchSampler` gives the batches of one epoch as lists of ``(epoch, index)`` keys.

Determinism: the order of an epoch is ``randperm`` from ``derive_seed(seed, "shuffle", epoch)`` (the
permutation the in-memory path draws), and every random draw of image ``index``'s training transform comes
from torch's generator seeded with ``derive_seed(seed, "augment", epoch, index)`` just before the transform,
``index`` being the image's position in its split. Nothing depends on which worker or process decodes an
image, so a run is the same for any number of workers and processes, and a run resumed at step ``k`` draws
what the uninterrupted one drew. Several processes draw the same permutation and each takes the rows
``rank::world`` of every global batch, as the in-memory ``Batches`` do.

A file that cannot be decoded mid-epoch (its header was read when the run started, so: pixel data truncated or
corrupt) is named in a warning on stderr, once per worker, and left out of its batch; the run goes on.

Held in memory (:func:`decode_resized`): a folder of mixed sizes that fits ``--cache-memory`` once resized is
decoded once, every image whose shorter side is longer than ``round(S / crop_pct)`` resized to that (aspect
ratio kept: evaluation's own first step, so evaluation sees exactly what it sees from the files), and
:class:`StreamDataset` crops and flips those tensors instead of decoding a file each time; the order and the
draws are the same functions of (seed, epoch, index).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from convzoo.data.folders import FileSplit
from convzoo.data.images import decode_image
from convzoo.data.presets import DEFAULT_CROP_PCT, eval_transform
from convzoo.errors import DataError
from convzoo.utils.seeds import derive_seed

__all__ = ["STATS_SAMPLE", "EpochBatchSampler", "StreamDataset", "collate_decoded", "decode_resized", "held_bytes",
           "held_side", "sample_channels_and_stats", "steps_of"]

STATS_SAMPLE = 500  # training images whose pixels give the channel mean and std (a fixed sample, seed 0)

Key = tuple[int, int]  # (epoch, index of the image in its split)
Held = Sequence[Tensor | None]  # a split's images decoded once (C x H x W uint8), None for an undecodable file


def held_side(size: int, crop_pct: float = DEFAULT_CROP_PCT) -> int:
    """The shorter side images are held at for crops of ``size``: evaluation's resize, ``round(size / crop_pct)``."""
    return round(size / crop_pct)


def _held_shape(height: int, width: int, side: int) -> tuple[int, int]:
    """An image's shape once held: unchanged when its shorter side is at most ``side``, else that side ``side``
    and the longer one scaled as ``transforms.v2.Resize(side)`` scales it."""
    short, long = min(height, width), max(height, width)
    if short <= side:
        return height, width
    scaled = int(side * long / short)
    return (side, scaled) if height <= width else (scaled, side)


def held_bytes(counts: Mapping[tuple[int, int], int], side: int, channels: int = 3) -> int:
    """Bytes images take held at shorter side ``side``, ``counts`` giving how many there are of each (height,
    width)."""
    return sum(n * channels * math.prod(_held_shape(h, w, side)) for (h, w), n in counts.items())


def _decode_held(split: FileSplit, i: int, side: int) -> Tensor | None:
    X = _decoded_or_none(split, i, left_out="every batch")  # C x H x W uint8
    if X is None or min(X.shape[-2:]) <= side:
        return X
    from torchvision.transforms.v2 import functional as F

    return F.resize(X, [side], antialias=True).contiguous()  # as eval_transform's Resize(side)


def decode_resized(split: FileSplit, side: int, *, threads: int | None = None) -> list[Tensor | None]:
    """Every image of ``split`` decoded once and held: its shorter side resized to ``side`` when longer (aspect
    ratio kept), else as it is; None for a file that cannot be decoded (named on stderr: left out of every
    batch, as a file found corrupt mid-epoch is left out of its batch). ``threads`` decode in parallel."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool:
        return list(pool.map(lambda i: _decode_held(split, i, side), range(len(split))))


def as_channels(X: Tensor, channels: int) -> Tensor:
    """uint8 ``C x H x W`` with ``channels`` channels: gray repeated into three, colour to gray by ITU-R 601
    luminance rounded (as Pillow's ``convert("L")``)."""
    if X.shape[0] == channels:
        return X
    if X.shape[0] == 1:
        return X.expand(channels, -1, -1).contiguous()
    weights = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
    return (X.float() * weights).sum(0, keepdim=True).round().clamp(0, 255).to(torch.uint8)


class StreamDataset(Dataset[tuple[Tensor, int] | None]):
    """The images of a split on disk, decoded when asked for: ``dataset[(epoch, index)]`` is the uint8
    ``channels x S x S`` tensor of image ``index`` after ``transform`` and its label, or None when the file
    cannot be decoded (warned, once per process). ``train``: the transform is random and seeded per image from
    (seed, epoch, index); else it is deterministic and the epoch is ignored. ``held``: the split's images
    decoded once (:func:`decode_resized`), transformed instead of the files."""

    def __init__(self, split: FileSplit, transform: Callable[[Tensor], Tensor], channels: int, *, seed: int = 0,
                 train: bool = False, held: Held | None = None) -> None:
        if held is not None and len(held) != len(split):
            raise ValueError(f"{len(held)} held images for a split of {len(split)}")
        self.split = split
        self.files = split.files
        self.labels = split.labels.tolist()
        self.transform = transform
        self.channels = channels
        self.seed = seed
        self.train = train
        self.held = held
        self.warned: set[int] = set()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: Key) -> tuple[Tensor, int] | None:
        epoch, index = key
        try:
            if self.held is not None:
                image = self.held[index]
                if image is None:  # (named when it was decoded)
                    return None
            else:
                image = decode_image(self.split.image(index), name=self.files[index])
            X = as_channels(image, self.channels)  # C x H x W
        except DataError as err:
            if index not in self.warned:
                self.warned.add(index)
                print(f"warning: {err}; left out of its batch", file=sys.stderr, flush=True)
            return None
        if self.train:
            with torch.random.fork_rng(devices=[]):  # (the caller's generator is left as it was)
                torch.manual_seed(derive_seed(self.seed, "augment", epoch, index))
                X = self.transform(X)
        else:
            X = self.transform(X)
        return X.as_subclass(Tensor), self.labels[index]  # channels x S x S (a plain tensor, not a tv_tensor)


def collate_decoded(samples: Sequence[tuple[Tensor, int] | None], *,
                    channels_last: bool = False) -> tuple[Tensor, Tensor]:
    """A batch: uint8 ``B x C x S x S`` and int64 ``B``, the samples that could not be decoded left out;
    ``channels_last``: stored in that memory format (as the model takes it), so that the training process
    does not reorder it."""
    kept = [s for s in samples if s is not None]
    if not kept:
        return torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.int64)
    labels = torch.tensor([y for _, y in kept], dtype=torch.int64)
    if channels_last:  # B x S x S x C, seen as B x C x S x S
        return torch.stack([X.permute(1, 2, 0) for X, _ in kept]).permute(0, 3, 1, 2), labels
    return torch.stack([X for X, _ in kept]), labels


def steps_of(count: int, batch_size: int, *, shuffle: bool, shard: tuple[int, int] = (0, 1)) -> int:
    """Steps of an epoch over ``count`` images, as the in-memory ``Batches`` count them: training drops a final
    batch of fewer than 2 images per process (training-mode batch norm needs 2); evaluation keeps every image
    of this process's contiguous share."""
    rank, world = shard
    if shuffle:
        return count // batch_size + (1 if count % batch_size >= 2 * world else 0)
    lo, hi = count * rank // world, count * (rank + 1) // world
    return -(-(hi - lo) // batch_size)


class EpochBatchSampler(Sampler[list[Key]]):
    """The batches of one epoch as lists of ``(epoch, index)`` keys, from step ``start`` (``set_epoch``).

    ``shuffle``: the epoch's permutation of ``count`` indices from (seed, "shuffle", epoch), cut into global
    batches of ``batch_size``, this process taking the rows ``rank::world`` of each. Else (evaluation) this
    process's contiguous ``1/world`` of the indices, in order."""

    def __init__(self, count: int, batch_size: int, *, shuffle: bool, seed: int = 0,
                 shard: tuple[int, int] = (0, 1)) -> None:
        self.count, self.batch_size, self.shuffle, self.seed, self.shard = count, batch_size, shuffle, seed, shard
        self.steps = steps_of(count, batch_size, shuffle=shuffle, shard=shard)
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self.steps - self.start

    def __iter__(self) -> Iterator[list[Key]]:
        rank, world = self.shard
        B, epoch = self.batch_size, self.epoch
        if self.shuffle:
            order = torch.randperm(self.count, generator=torch.Generator().manual_seed(
                derive_seed(self.seed, "shuffle", epoch)))
            for step in range(self.start, self.steps):
                yield [(epoch, int(i)) for i in order[step * B:(step + 1) * B][rank::world]]
        else:
            lo, hi = self.count * rank // world, self.count * (rank + 1) // world
            for step in range(self.start, self.steps):
                yield [(epoch, i) for i in range(lo + step * B, min(lo + (step + 1) * B, hi))]


def _decoded_or_none(split: FileSplit, i: int, *, left_out: str = "the channel statistics") -> Tensor | None:
    """Image ``i`` of ``split`` decoded, or None when it cannot be, named in a warning saying what it is left
    out of."""
    try:
        return decode_image(split.image(i), name=split.files[i])
    except DataError as err:
        print(f"warning: {err}; left out of {left_out}", file=sys.stderr, flush=True)
        return None


def sample_channels_and_stats(split: FileSplit, size: int, *, sample: int = STATS_SAMPLE, threads: int | None = None,
                              held: Held | None = None) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """(channels, mean, std) of a split on disk, from a fixed sample of ``sample`` of its images (drawn with
    seed 0, the same for every run on these files), each decoded and passed through the evaluation transform
    at ``size`` (what the model sees, less the random crop), summed image by image in float64: no copy of the
    data set is held. ``channels`` is 1 when every sampled image is gray, else 3. An undecodable file in the
    sample is named in a warning and left out, as in an epoch. ``held``: the split's images decoded once,
    read instead of the files (the same statistics: evaluation's resize is the one they were held at)."""
    from concurrent.futures import ThreadPoolExecutor

    if not len(split):
        raise DataError("the training split holds no images")
    pick = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))[:sample].sort().values.tolist()
    transform = eval_transform(size)
    with ThreadPoolExecutor(threads or 2) as pool:
        # a few images at a time: pool.map over all of them would hold every decoded image until it is summed
        images = (X for lo in range(0, len(pick), 8)
                  for X in pool.map(lambda i: _decoded_or_none(split, i) if held is None else held[i],
                                    pick[lo:lo + 8]))
        channels = 1
        total = torch.zeros(3, dtype=torch.float64)
        squares = torch.zeros(3, dtype=torch.float64)
        pixels = 0
        for X in images:
            if X is None:
                continue
            X = transform(as_channels(X, 3)).as_subclass(Tensor).to(torch.float64).flatten(1) / 255  # 3 x S*S
            if not torch.equal(X[0], X[1]) or not torch.equal(X[1], X[2]):
                channels = 3
            total += X.sum(1)
            squares += (X * X).sum(1)
            pixels += X.shape[1]
    if not pixels:
        raise DataError("none of the training images sampled for the channel statistics could be decoded")
    mean = total / pixels
    std = (squares / pixels - mean * mean).clamp_min(0).sqrt()
    if channels == 1:
        return 1, (float(mean[0]),), (float(std[0]),)
    return 3, tuple(mean.tolist()), tuple(std.tolist())
