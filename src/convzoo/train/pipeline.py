"""Batches from shuffled index slices of uint8 tensors, preprocessed whole on the training device.

No per-sample ``DataLoader`` + PIL path: an epoch is one permutation of the split's indices; each batch
is one gather from the uint8 images, moved to the device, augmented (random crop with padding,
horizontal flip) and turned into normalised floats with a few tensor operations.

Every random choice is a pure function of (seed, purpose, epoch, step), so a run resumed at any step
draws exactly what the uninterrupted run drew.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from convzoo.data import Split
from convzoo.data.presets import convert_channels  # (the one home of the channel rule; re-exported)
from convzoo.errors import ConvzooError
from convzoo.utils.seeds import derive_seed

__all__ = ["Augment", "Batches", "Preprocess", "alternating_flips", "convert_channels", "derive_seed", "generator"]


def generator(seed: int, *keys: object, device: torch.device | str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(derive_seed(seed, *keys))


@dataclass(frozen=True)
class Preprocess:
    """uint8 ``B x C x H x W`` batch in, float batch out: channels adapted, resized, scaled to [0, 1] and,
    when ``mean``/``std`` are given, normalised per channel."""

    in_channels: int  # the model's input channels: 1 <-> 3 converted by luminance / repetition
    size: tuple[int, int] | None = None  # (H, W) to resize to; None keeps the data's size
    mean: tuple[float, ...] | None = None  # per channel, on the [0, 1] scale
    std: tuple[float, ...] | None = None
    channels_last: bool = False

    def __call__(self, X: Tensor) -> Tensor:
        if self.channels_last and X.shape[1] == self.in_channels and (self.size is None
                                                                       or tuple(X.shape[-2:]) == self.size):
            return self._channels_last(X)
        X = X.to(torch.float32, copy=True)  # B x C x H x W in 0..255, ours to change in place
        if X.shape[1] != self.in_channels:
            X = convert_channels(X, self.in_channels).contiguous()
        if self.size is not None and tuple(X.shape[-2:]) != self.size:
            shrinking = self.size[0] < X.shape[-2] or self.size[1] < X.shape[-1]
            X = F.interpolate(X, size=self.size, mode="bilinear", align_corners=False, antialias=shrinking)
        if self.mean is not None and self.std is not None:
            mean = torch.tensor(self.mean, device=X.device).view(1, -1, 1, 1)
            std = torch.tensor(self.std, device=X.device).view(1, -1, 1, 1)
            X = X.sub_(255 * mean).div_(255 * std)  # (X/255 - mean) / std, in place: one float batch alive
        else:
            X = X.div_(255)
        if self.channels_last:
            X = X.contiguous(memory_format=torch.channels_last)
        return X

    def _channels_last(self, X: Tensor) -> Tensor:
        """The general path's values, bit for bit, computed in channels-last order: the uint8 batch reordered
        (a quarter of the float batch's bytes; nothing to do when the loader collated it so), converted, and
        normalised as rows of ``W x C`` values against the mean and std repeated ``W`` times (a per-channel
        broadcast over the innermost 1-3 values is 4-5x slower)."""
        X = X.contiguous(memory_format=torch.channels_last).to(torch.float32, copy=True)  # B x C x H x W, NHWC
        B, C, H, W = X.shape
        rows = X.permute(0, 2, 3, 1).view(B * H, W * C)  # one image row per row, channels innermost
        if self.mean is not None and self.std is not None:
            mean = torch.tensor(self.mean, device=X.device)
            std = torch.tensor(self.std, device=X.device)
            rows.sub_((255 * mean).repeat(W)).div_((255 * std).repeat(W))  # (X/255 - mean) / std
        else:
            rows.div_(255)
        return X


@dataclass(frozen=True)
class Augment:
    """Random crop after padding (zero or reflected), and/or horizontal flip, drawn independently per image;
    or alternating flips (``alternate``): each image flipped in every other epoch, which epoch first drawn
    once per image from the seed (:func:`alternating_flips`), so that every pair of consecutive epochs sees
    each image once each way (Jordan 2024's derandomised flips)."""

    crop_padding: int = 0  # pixels of padding; 0: no crop
    flip: bool = False
    alternate: bool = False  # flips alternate per image over the epochs instead of being drawn (with ``flip``)
    reflect: bool = False  # the padding mirrors the image at its edges instead of being zeros

    @classmethod
    def from_name(cls, name: str, crop_padding: int, crop_mode: str = "zero") -> Augment | None:
        """``none``, ``flip``, ``crop``, ``crop-flip``, ``alt-flip`` or ``crop-alt-flip`` (the config's
        ``augment``), the crop padded with ``crop_mode`` (``zero`` or ``reflect``)."""
        if name == "none":
            return None
        return cls(crop_padding=crop_padding if "crop" in name else 0, flip="flip" in name,
                   alternate="alt-flip" in name, reflect=crop_mode == "reflect")

    def __call__(self, X: Tensor, gen: torch.Generator, take: slice | None = None, drawn: int | None = None,
                 flips: Tensor | None = None) -> Tensor:
        """Augment batch ``X``. In a run of several processes ``X`` is the rows ``take`` of a global batch of
        ``drawn`` images: the draws are made for the whole global batch and this shard's rows taken, so that
        every image gets the same crop and flip whatever the number of processes. ``flips`` (``drawn``
        booleans, for ``alternate``): which images of the global batch to flip."""
        B, C, H, W = X.shape
        drawn = drawn or B

        def ours(values: Tensor) -> Tensor:  # drawn -> B
            return (values if take is None else values[take]).to(X.device)

        if self.crop_padding:
            p = self.crop_padding
            if self.reflect and p >= min(H, W):
                raise ConvzooError(f"--crop-mode reflect mirrors the image at its edges, so --crop-padding must be "
                                   f"below the image's side {min(H, W)}, got {p}")
            padded = F.pad(X, (p, p, p, p), mode="reflect" if self.reflect else "constant")  # B x C x H+2p x W+2p
            dy = ours(torch.randint(0, 2 * p + 1, (drawn,), generator=gen, device=gen.device))
            dx = ours(torch.randint(0, 2 * p + 1, (drawn,), generator=gen, device=gen.device))
            rows = (dy[:, None] + torch.arange(H, device=X.device))[:, None, :, None]  # B x 1 x H x 1
            cols = (dx[:, None] + torch.arange(W, device=X.device))[:, None, None, :]  # B x 1 x 1 x W
            batch = torch.arange(B, device=X.device)[:, None, None, None]
            chans = torch.arange(C, device=X.device)[None, :, None, None]
            X = padded[batch, chans, rows, cols]  # B x C x H x W
        if self.flip:
            if self.alternate:
                if flips is None or len(flips) != drawn:
                    raise ValueError("alternating flips need the flips of the global batch (Batches gives them)")
                flip = ours(flips)
            else:
                flip = ours(torch.rand(drawn, generator=gen, device=gen.device) < 0.5)
            X = torch.where(flip[:, None, None, None], X.flip(-1), X)
        return X


def alternating_flips(seed: int, count: int) -> Callable[[Tensor, int], Tensor]:
    """For a split of ``count`` images: ``flips(index, epoch)``, whether to flip images ``index`` in epoch
    ``epoch`` (0-based). Each image's first flip is drawn from ``seed``: it is flipped in epochs 0, 2, 4, ...
    or in 1, 3, 5, ..., so that any two consecutive epochs flip exactly the images the other did not."""
    first = torch.rand(count, generator=generator(seed, "alternating flips")) < 0.5  # count: flipped in epoch 0?

    def flips(index: Tensor, epoch: int) -> Tensor:
        return first[index.cpu()] ^ bool(epoch % 2)

    return flips


def check_global_batch(batch_size: int, world: int) -> None:
    """``--batch-size`` is the global batch: refuse one that the ``world`` processes cannot share evenly."""
    if batch_size % world:
        raise ConvzooError(f"--batch-size {batch_size} is the global batch and must divide by the {world} "
                           f"processes; use --batch-size {max(world, batch_size // world * world)}")


class Batches:
    """Mini-batches of a split: ``epoch(e)`` yields ``(step, X, y)`` with X preprocessed on ``device``.

    Training batches come from a fresh permutation per epoch; evaluation batches are plain slices.
    The uint8 split moves to an accelerator once (its uint8 size); on the CPU it is not copied.

    ``shard=(rank, world)``: this process's part, for a run of ``world`` processes. Training: ``batch_size``
    is the global batch; every process draws the same permutation and takes the rows ``rank::world`` of
    each global batch (``len`` and the steps are the global ones). Evaluation: this process's contiguous
    ``1/world`` of the split.
    """

    def __init__(self, split: Split, batch_size: int, *, device: torch.device, preprocess: Preprocess,
                 shuffle: bool = False, augment: Augment | None = None, seed: int = 0,
                 shard: tuple[int, int] = (0, 1)) -> None:
        rank, world = shard
        if shuffle:
            check_global_batch(batch_size, world)
        self.images = split.images.to(device)
        self.labels = split.labels.to(device)
        self.batch_size = batch_size
        self.preprocess = preprocess
        self.shuffle = shuffle
        self.augment = augment
        self.seed = seed
        self.device = device
        self.shard = shard
        n = len(self.labels)
        self.flips = alternating_flips(seed, n) if augment is not None and augment.alternate else None
        if shuffle:
            # a final batch of fewer than 2 images per process would break training-mode batch norm: drop it
            self.steps = n // batch_size + (1 if n % batch_size >= 2 * world else 0)
        else:
            self.lo, self.hi = n * rank // world, n * (rank + 1) // world  # this process's slice
            self.steps = -(-(self.hi - self.lo) // batch_size)

    def __len__(self) -> int:
        return self.steps

    def epoch(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[int, Tensor, Tensor]]:
        """Batches ``start..steps-1`` of epoch ``epoch`` (the same ones whenever asked)."""
        order = None
        if self.shuffle:
            order = torch.randperm(len(self.labels), generator=generator(self.seed, "shuffle", epoch))
            order = order.to(self.device)
        rank, world = self.shard
        for step in range(start, self.steps):
            lo, hi = step * self.batch_size, (step + 1) * self.batch_size
            rows: slice | None = None
            flips: Tensor | None = None
            if order is None:
                lo, hi = self.lo + lo, min(self.lo + hi, self.hi)
                X, y = self.images[lo:hi], self.labels[lo:hi]
                drawn = len(y)
                if self.flips is not None:
                    flips = self.flips(torch.arange(lo, hi), epoch)
            else:
                index = order[lo:hi]
                drawn = len(index)
                if self.flips is not None:
                    flips = self.flips(index, epoch)  # (for the global batch: each process takes its rows)
                if world > 1:
                    rows = slice(rank, None, world)
                    index = index[rows]  # this process's rows of the global batch
                X, y = self.images.index_select(0, index), self.labels.index_select(0, index)
            if self.augment is not None:
                X = self.augment(X, generator(self.seed, "augment", epoch, step), rows, drawn, flips)
            yield step, self.preprocess(X), y

    def first(self, n: int) -> tuple[Tensor, Tensor]:
        """The first ``n`` images of the split (uint8, on the device) and their labels."""
        return self.images[:n], self.labels[:n]

    def global_size(self, step: int) -> int:
        """Images in global batch ``step`` (all processes together)."""
        return min(self.batch_size, len(self.labels) - step * self.batch_size)
