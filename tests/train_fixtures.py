"""Small data sets in the real formats, and the real ones when this machine has them."""

from __future__ import annotations

import gzip
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FASHION = Path("/usr/share/datasets/fashion-mnist")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file (gzipped when the name ends in .gz): magic 0x08 unsigned byte, big-endian dims."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)


def toy_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` 28x28 images of 10 easily told apart classes: a bright square whose position is the label,
    on noise, so that a small CNN learns them in an epoch or two."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = rng.integers(0, 60, (n, 28, 28))
    for i, label in enumerate(labels):
        r, c = divmod(int(label), 5)
        images[i, 4 + 10 * r : 12 + 10 * r, 1 + 5 * c : 6 + 5 * c] = 230
    return images.astype(np.uint8), labels.astype(np.uint8)


def make_toy_mnist(root: Path, n_train: int = 600, n_test: int = 200) -> Path:
    """A folder with the four MNIST IDX files (gzipped) of a toy problem."""
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = toy_images(n, seed)
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


def need_fashion() -> Path:
    if not (FASHION / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST not installed: apt-get install dataset-fashion-mnist")
    return FASHION


def need_mnist() -> Path:
    if not (SHARED_DATA / "mnist" / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST not found in {SHARED_DATA / 'mnist'} (../shared/data beside the repository)")
    return SHARED_DATA / "mnist"


def make_toy_cifar_png(root: Path, n_train: int = 2, n_test: int = 1, *, tarballs: bool = True,
                       seed: int = 0) -> dict[str, np.ndarray]:
    """CIFAR-10's lossless layout in ``root``: ``train/<class>/NNNN.png`` (``n_train`` per class) and
    ``test/<class>/NNNN.png`` (``n_test``), as ``train.tar.gz`` and ``test.tar.gz`` (or, without
    ``tarballs``, the two folders), of random 32x32 RGB images; returns each split's images ``N x 32 x 32 x 3``
    in reading order (class by class, by file name). Each class's images are brighter in one channel band,
    so that a network can learn something from them."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    written = {}
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 200, (len(CIFAR10_CLASSES), n, 32, 32, 3), dtype=np.uint8)
        for label, name in enumerate(CIFAR10_CLASSES):
            images[label, :, 3 * label:3 * label + 4] = 250  # a bright band at a row given by the label
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(images[label, i]).save(folder / f"{i:04d}.png")
        written[split] = images.reshape(-1, 32, 32, 3)
        if tarballs:
            with tarfile.open(root / f"{split}.tar.gz", "w:gz") as tar:
                tar.add(root / split, arcname=split)
            for path in sorted((root / split).rglob("*"), reverse=True):
                path.unlink() if path.is_file() else path.rmdir()
            (root / split).rmdir()
    return written
