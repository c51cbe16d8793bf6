"""The pictures a run leaves: ``curves.png`` (loss and accuracy per epoch, like d2l's Animator),
``confusion.png`` and ``samples.png``. Figures are drawn with matplotlib's Agg canvas directly (no
pyplot state, no display needed) and written atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from convzoo.utils.atomic import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_confusion", "plot_curves", "plot_samples"]


def _figure(**kwargs: Any) -> Figure:
    """A figure on matplotlib's Agg canvas (imported here: matplotlib costs half a second to import)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path, tight: bool = True) -> None:
    """Write the figure as a PNG through the one atomic writer (the temporary name keeps ``.png``, which
    tells ``savefig`` the format). ``tight`` trims the margins, at the cost of drawing the figure twice."""
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight" if tight else None)


def plot_curves(history: Sequence[dict[str, Any]], path: Path, title: str = "") -> None:
    """Training loss, and train / validation / test accuracy, against the epoch."""
    epochs = [row["epoch"] for row in history]
    fig = _figure(figsize=(9, 3.5))
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss_ax.plot(epochs, [row["train_loss"] for row in history], "o-", label="train loss")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("loss")
    loss_ax.grid(alpha=0.3)
    loss_ax.legend()
    for key, label, style in (("train_acc", "train acc", "o-"), ("val_acc", "val acc", "s--"),
                              ("test_acc", "test acc", "^:")):
        values = [row.get(key) for row in history]
        if any(v is not None for v in values):
            acc_ax.plot(epochs, [float("nan") if v is None else v for v in values], style, label=label)
    acc_ax.set_xlabel("epoch")
    acc_ax.set_ylabel("accuracy")
    acc_ax.grid(alpha=0.3)
    acc_ax.legend()
    for ax in (loss_ax, acc_ax):
        ax.set_xlim(0.5, max(epochs) + 0.5)
    if title:
        fig.suptitle(title)
    _save(fig, path)


def plot_confusion(confusion: Tensor, classes: Sequence[str], path: Path, title: str = "") -> None:
    """Row-normalised confusion matrix (true class by row), with the counts written in the cells."""
    counts = confusion.to(torch.float64)
    rates = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    k = len(classes)
    size = max(4.0, 0.6 * k + 2)
    fig = _figure(figsize=(size, size))
    ax = fig.subplots()
    image = ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), labels=list(classes), rotation=45, ha="right")
    ax.set_yticks(range(k), labels=list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=7,
                        color="white" if rates[i, j] > 0.5 else "black")
    if title:
        ax.set_title(title)
    _save(fig, path)


def plot_samples(images: Tensor, labels: Tensor, predicted: Tensor, classes: Sequence[str], path: Path,
                 columns: int = 8) -> None:
    """A grid of uint8 images (``N x C x H x W``) titled ``predicted (true)``; wrong ones in red.

    One set of axes holds every image, placed by its extent (an inch per unit): a grid of 32 subplots
    took 1.5 s to lay out, most of a short run's fixed cost; this draws the same picture in a tenth of it.
    """
    n = len(images)
    rows = max(1, -(-n // columns))
    cell_w, cell_h, side = 1.6, 1.8, 1.4  # inches: a cell, and the image inside it (the title above)
    fig = _figure(figsize=(cell_w * columns, cell_h * rows))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(0, cell_w * columns)
    ax.set_ylim(cell_h * rows, 0)  # rows downwards, as in an image
    ax.axis("off")
    for i in range(n):
        row, col = divmod(i, columns)
        x0, y0 = col * cell_w + (cell_w - side) / 2, row * cell_h + (cell_h - side)
        picture = images[i].permute(1, 2, 0).numpy()  # H x W x C
        extent = (x0, x0 + side, y0 + side, y0)
        if picture.shape[2] == 1:
            ax.imshow(picture[:, :, 0], cmap="gray", vmin=0, vmax=255, extent=extent, interpolation="nearest")
        else:
            ax.imshow(picture, extent=extent, interpolation="nearest")
        right = int(predicted[i]) == int(labels[i])
        ax.text(x0 + side / 2, y0 - 0.04, f"{classes[int(predicted[i])]}\n({classes[int(labels[i])]})",
                fontsize=7, ha="center", va="bottom", color="black" if right else "red")
    _save(fig, path, tight=False)
