"""Batches streamed from image files: ``StreamBatches`` has the interface of the in-memory ``Batches``
(``epoch(e, start)`` yields ``(step, X, y)`` with X preprocessed on the device, ``len``, ``global_size``,
``first``), its images decoded and transformed by ``DataLoader`` worker processes (persistent across epochs,
``prefetch_factor`` batches ahead each, pinned memory on CUDA) from :mod:`convzoo.data.streaming`.

Which images and which augmentations each step gets depends only on (seed, epoch, index): not on the workers,
nor on the processes (see :mod:`convzoo.data.streaming`), so this path is as reproducible and resumable as the
in-memory one.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from convzoo.data.folders import FileSplit
from convzoo.data.streaming import EpochBatchSampler, Held, StreamDataset, collate_decoded
from convzoo.train.pipeline import Preprocess, check_global_batch

__all__ = ["StreamBatches", "default_workers"]

PREFETCH = 2  # batches each worker decodes ahead (torch's default): memory for workers x 2 batches, whatever the folder


def _ignore_sigint(worker_id: int) -> None:
    """A worker leaves SIGINT (a Ctrl-C reaches the whole process group) to the training process, which saves
    the run and stops its workers itself; a worker dying of it would fail the epoch. (SIGTERM keeps its default:
    it is how the training process's exit stops a worker that did not stop when asked.)"""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def default_workers(local_world: int = 1) -> int:
    """Loader workers per training process: the machine's cores shared by its processes, at most 8, at least 1."""
    return max(1, min(8, (os.cpu_count() or 1) // max(1, local_world)))


class StreamBatches:
    """Mini-batches of a split on disk, decoded by ``workers`` processes (0: in this process). ``transform``
    is a preset of :mod:`convzoo.data.presets` with uint8 output (``train``: random, seeded per image);
    ``preprocess`` turns the uint8 batch into the model's normalised input on ``device``. ``shard``, ``shuffle``
    and ``batch_size`` (the global batch when training) mean what they mean for ``Batches``. ``held``: the
    split's images decoded once (:func:`convzoo.data.streaming.decode_resized`), read instead of the files."""

    def __init__(self, split: FileSplit, batch_size: int, *, device: torch.device, preprocess: Preprocess,
                 transform: Callable[[Tensor], Tensor], channels: int, shuffle: bool = False, seed: int = 0,
                 shard: tuple[int, int] = (0, 1), workers: int = 0, held: Held | None = None) -> None:
        if shuffle:
            check_global_batch(batch_size, shard[1])
        self.split = split
        self.labels = split.labels
        self.batch_size = batch_size
        self.device = device
        self.preprocess = preprocess
        self.shuffle = shuffle
        self.shard = shard
        self.dataset = StreamDataset(split, transform, channels, seed=seed, train=shuffle, held=held)
        self.sampler = EpochBatchSampler(len(split), batch_size, shuffle=shuffle, seed=seed, shard=shard)
        self.steps = self.sampler.steps
        self.workers = workers
        self.loader = DataLoader(self.dataset, batch_sampler=self.sampler, num_workers=workers,
                                 collate_fn=functools.partial(collate_decoded,
                                                              channels_last=preprocess.channels_last),
                                 pin_memory=device.type == "cuda",
                                 persistent_workers=workers > 0, prefetch_factor=PREFETCH if workers else None,
                                 worker_init_fn=_ignore_sigint if workers else None)
        if workers:  # started now, with nothing to decode yet: before the run takes its directory's lock, which
            self.sampler.set_epoch(0, self.steps)  # a worker forked later would inherit and keep past a kill -9
            iter(self.loader)  # (the persistent workers' iterator, kept by the loader and reset by each epoch)

    def __len__(self) -> int:
        return self.steps

    def epoch(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[int, Tensor, Tensor]]:
        """Batches ``start..steps-1`` of epoch ``epoch`` (the same ones whenever asked)."""
        self.sampler.set_epoch(epoch, start)
        if start >= self.steps:
            return
        for step, (X, y) in enumerate(self.loader, start):  # X: B x C x S x S uint8
            yield step, self.preprocess(X.to(self.device, non_blocking=True)), y.to(self.device, non_blocking=True)

    def global_size(self, step: int) -> int:
        """Images in global batch ``step`` (all processes together)."""
        return min(self.batch_size, len(self.labels) - step * self.batch_size)

    def first(self, n: int) -> tuple[Tensor, Tensor]:
        """The first ``n`` images of the split as this loader gives them (uint8, on the CPU), and their labels."""
        got = [self.dataset[(0, i)] for i in range(min(n, len(self.dataset)))]
        return collate_decoded(got)
