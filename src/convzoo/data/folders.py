"""Image folders as files on disk, nothing decoded: their layouts, each split's files and labels, and what a
look at every file tells without decoding it (its size from the header, its bytes hashed).

This is all the streaming path (:mod:`convzoo.data.streaming`) holds per image: a path, a label, a 64-bit
hash and a size, some 150 bytes, whatever the image's pixel count.

Layouts (``ROOT`` may also be a ``.tar``/``.tar.gz`` of one, extracted once under the cache):

- ``ROOT/train/<class>/`` + ``ROOT/val/<class>/``: ``val`` is the evaluation split, named ``val`` everywhere
  (ImageNet's, torchvision's references', PyTorch's transfer-learning tutorial's layout);
- ``ROOT/train/<class>/`` + ``ROOT/test/<class>/``; or all three, ``train/``, ``val/`` and ``test/``;
- ``ROOT/<class>/``: one folder, whose validation split ``--val-split`` carves out.

Every split has the training split's classes (a class may be absent from ``val/`` or ``test/``; a class
folder there that training lacks is refused). Splits may hold images of different sizes.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple, Protocol

import torch
from torch import Tensor

from convzoo.data.formats import check_class_folders, extract_once, list_classes
from convzoo.data.images import MAX_PIXELS, read_file, walk_images
from convzoo.errors import DataError
from convzoo.utils.atomic import atomic_path

__all__ = ["ByteSource", "FileSplit", "ImageFolder", "SplitFolders", "file_digest", "inspect_bytes", "inspect_files",
           "is_archive", "scan_image_folder", "split_folders"]

_INSPECT_FORMAT = 1  # bump when what inspect_files caches changes


class SplitFolders(NamedTuple):
    """The split folders of an image-folder root: ``train`` always, ``val`` and ``test`` when present."""

    train: Path
    val: Path | None
    test: Path | None


def is_archive(path: Path) -> bool:
    return path.name.endswith((".tar.gz", ".tgz", ".tar"))


def split_folders(root: Path) -> SplitFolders:
    """The layout of ``root`` (see the module's docstring): ``train/`` with ``val/`` and/or ``test/``, or
    ``root`` itself as the one training folder. An archive's single top folder holding ``train/`` is looked
    into."""
    entries = [e for e in root.iterdir() if not e.name.startswith(".")] if root.is_dir() else []
    if len(entries) == 1 and entries[0].is_dir() and (entries[0] / "train").is_dir():
        root = entries[0]  # an archive with one top folder
    if (root / "train").is_dir():
        val, test = root / "val", root / "test"
        return SplitFolders(root / "train", val if val.is_dir() else None, test if test.is_dir() else None)
    return SplitFolders(root, None, None)


class ByteSource(Protocol):
    """Where a split's images are when they are not files of their own (shards, :mod:`convzoo.data.shards`):
    ``read(position)`` gives the encoded bytes of the image at ``position`` in the source."""

    def read(self, position: int) -> bytes: ...


@dataclass(frozen=True)
class FileSplit:
    """One split on disk: ``files`` each image's path as found (its class folder gives its label), ``labels``
    int64 ``N``; ``hashes`` int64 ``N``, each file's bytes hashed (64-bit BLAKE2b; None until inspected);
    ``sizes`` int32 ``N x 2``, each image's height and width read from its header (None until inspected).

    The leakage check (:func:`convzoo.data.check_disjoint`) compares hashes of file bytes here, where the
    in-memory path compares hashes of decoded pixels: a byte-for-byte copy of a training file is caught, a
    re-encoded copy is not. ``digest`` (SHA-256 of the hashes and labels, :func:`file_digest`) is the split's
    identity that a run records.

    ``source``: None when ``files`` are the image files themselves; else the images' bytes are read from it
    (shards), ``indices`` int64 ``N`` giving each image's position there and ``files`` only naming the images
    (in messages)."""

    files: tuple[str, ...]
    labels: Tensor
    hashes: Tensor | None = None
    sizes: Tensor | None = None
    digest: str = ""
    indices: Tensor | None = None  # positions in ``source`` (None without one: ``files`` are the images)
    source: ByteSource | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, i: int) -> str | bytes:
        """What :func:`~convzoo.data.images.decode_image` reads image ``i`` from: its file, or its bytes."""
        if self.source is None:
            return self.files[i]
        assert self.indices is not None
        return self.source.read(int(self.indices[i]))

    def take(self, index: Tensor) -> FileSplit:
        """The images at ``index`` (positions in this split), in that order."""
        positions = index.tolist()
        return replace(self, files=tuple(self.files[i] for i in positions), labels=self.labels[index],
                       hashes=None if self.hashes is None else self.hashes[index],
                       sizes=None if self.sizes is None else self.sizes[index], digest="",
                       indices=None if self.indices is None else self.indices[index])


@dataclass(frozen=True)
class ImageFolder:
    """An image folder's layout, listed: the class names (the training folder's class folders, sorted as
    torchvision's ``ImageFolder`` sorts them) and each split's files."""

    root: Path
    classes: tuple[str, ...]
    train: FileSplit
    val: FileSplit | None
    test: FileSplit | None
    where: str  # what the user named: the folder or the archive


def scan_image_folder(path: Path, cache_dir: Path, classes: tuple[str, ...] | None = None) -> ImageFolder:
    """List the image folder (or archive of one) at ``path`` without decoding anything. ``classes``: the class
    names labels are numbered by (a trained run's, for ``convzoo eval --dataset``); default: the training
    folder's, or for a folder without ``train/``, its own class folders."""
    if is_archive(path):
        if not path.is_file():
            raise DataError(f"{path}: no such archive")
        root = extract_once(path, cache_dir)
    elif not path.is_dir():
        raise DataError(f"{path}: no such folder; imagefolder:PATH needs a folder of class folders "
                        "(PATH/<class>/<image>), train/ with val/ or test/ of them, or a .tar.gz of one")
    else:
        root = path
    folders = split_folders(root)
    for other in (folders.val, folders.test):
        if other is not None and other.resolve() == folders.train.resolve():
            raise DataError(f"{other} is the training folder {folders.train}; an evaluation split must hold other "
                            "images")
    classes = classes or list_classes(folders.train)
    splits = [None if f is None else _list_split(f, classes) for f in folders]
    train = splits[0]
    assert train is not None
    return ImageFolder(root, classes, train, splits[1], splits[2], str(path))


def _list_split(folder: Path, classes: tuple[str, ...]) -> FileSplit:
    """The files and labels of one split folder, labels numbered by ``classes``; class folders that are not
    among ``classes`` are refused, and an empty class folder, as when decoding."""
    found = list_classes(folder)
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"{folder}: class folders {', '.join(unknown)} are not among the training classes "
                        f"{', '.join(classes)}")
    files: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        if name in found:
            listed = walk_images(folder / name)
            check_class_folders(folder, (name,), listed)
            files += map(str, listed)
            labels += [label] * len(listed)
    return FileSplit(tuple(files), torch.tensor(labels, dtype=torch.int64))


def inspect_files(split: FileSplit, cache_dir: Path | None = None, threads: int | None = None) -> FileSplit:
    """``split`` with each file's ``hashes`` and ``sizes`` (and the ``digest``): every file is read once (in
    ``threads`` threads) and its header parsed, nothing decoded. A file that cannot be read or is no image
    Pillow recognises, or that declares more than ``MAX_PIXELS``, is refused here, naming it, before any
    training starts. With ``cache_dir``, the result is kept under ``cache_dir/inspected``, keyed by each
    file's path, size and modification time, so a second run (or a resume) reads no file."""
    if split.hashes is not None and split.sizes is not None:  # (shards carry them; a split taken from one, no digest)
        return split if split.digest else _with(split, split.hashes, split.sizes)
    path = None
    if cache_dir is not None:
        path = cache_dir / "inspected" / f"{_stat_key(split.files)}.safetensors"
        cached = _read_inspected(path, len(split))
        if cached is not None:
            return _with(split, *cached)
    with ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool:  # hashing and Pillow release the GIL
        looked = list(pool.map(_inspect_one, split.files))
    hashes = torch.tensor([h for h, _, _ in looked], dtype=torch.int64) if looked else torch.empty(0, dtype=torch.int64)
    sizes = torch.tensor([(height, width) for _, height, width in looked], dtype=torch.int32).view(-1, 2)
    if path is not None:
        _write_inspected(path, hashes, sizes)
    return _with(split, hashes, sizes)


def _with(split: FileSplit, hashes: Tensor, sizes: Tensor) -> FileSplit:
    return replace(split, hashes=hashes, sizes=sizes, digest=file_digest(hashes, split.labels))


def file_digest(hashes: Tensor, labels: Tensor) -> str:
    """SHA-256 of a split's per-file hashes and labels: its identity, the same wherever the files are."""
    h = hashlib.sha256()
    h.update(hashes.contiguous().numpy().data)
    h.update(labels.contiguous().numpy().data)
    return h.hexdigest()


def _inspect_one(file: str) -> tuple[int, int, int]:
    """(hash of the bytes as a signed 64-bit integer, height, width) of one image file, or a DataError."""
    return inspect_bytes(read_file(Path(file)), file)


def inspect_bytes(data: bytes, file: str) -> tuple[int, int, int]:
    """(hash of ``data`` as a signed 64-bit integer, height, width as displayed, EXIF orientation applied) of an
    image file's bytes, read from its header; a DataError naming ``file`` when it is no image Pillow recognises,
    cannot be read or declares more than ``MAX_PIXELS``."""
    import io

    from PIL import Image, UnidentifiedImageError

    digest = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            transposed = image.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # EXIF orientation swaps the sides
    except Image.DecompressionBombError:
        raise DataError(f"{file}: declares too many pixels: refused before decoding (a decompression bomb?); "
                        "shrink the image or remove it") from None
    except UnidentifiedImageError:
        raise DataError(f"{file}: not a readable image (not an image file Pillow recognises); replace it or "
                        "remove it") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise DataError(f"{file}: not a readable image: could not be decoded ({err}); replace it or remove "
                        "it") from None
    if width * height > MAX_PIXELS:
        raise DataError(f"{file}: declares {width}x{height} pixels, more than {MAX_PIXELS:,}: refused before "
                        "decoding (a decompression bomb?); shrink the image or remove it")
    return digest, *((width, height) if transposed else (height, width))


def _stat_key(files: tuple[str, ...]) -> str:
    stats = []
    for f in files:
        try:
            s = os.stat(f)
        except OSError as err:
            raise DataError(f"{f}: cannot be read: {err.strerror or err}") from None
        stats.append((os.path.abspath(f), os.path.realpath(f), s.st_size, s.st_mtime_ns))
    return hashlib.sha256(json.dumps([_INSPECT_FORMAT, stats]).encode()).hexdigest()[:24]


def _read_inspected(path: Path, count: int) -> tuple[Tensor, Tensor] | None:
    if not path.is_file():
        return None
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
        hashes, sizes = tensors["hashes"], tensors["sizes"]
    except Exception:  # noqa: BLE001  (an unreadable cache entry is only inspected again)
        return None
    if len(hashes) != count or tuple(sizes.shape) != (count, 2):
        return None
    return hashes, sizes


def _write_inspected(path: Path, hashes: Tensor, sizes: Tensor) -> None:
    """Best effort: a read-only or full cache only costs reading the files again next time."""
    from safetensors.torch import save_file

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            save_file({"hashes": hashes.contiguous(), "sizes": sizes.contiguous()}, str(tmp))
    except OSError:
        pass
