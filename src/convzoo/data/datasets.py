"""Data sets held in memory as uint8 tensors, found on disk, decoded once and cached.

``load_dataset("fashion-mnist")`` looks for the files in, in order: ``data_dir`` (``--data-dir``),
``$CONVZOO_DATA``, Debian's ``/usr/share/datasets/<name>`` and the user cache; downloads through
torchvision only when ``download=True``. The decoded tensors are cached as safetensors under the cache
directory (``$CONVZOO_CACHE``, else ``$XDG_CACHE_HOME/convzoo``, else ``~/.cache/convzoo``), keyed by the
source files' paths, sizes and modification times (through symlinks) and the image decoder's rules
(:data:`~convzoo.data.images.DECODER_VERSION`), so a second load skips decoding and a stale cache is never
served.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import torch
from torch import Tensor

from convzoo.data.folders import FileSplit, is_archive, split_folders
from convzoo.data.formats import (
    check_class_folders,
    check_labels,
    extract_once,
    image_folder_files,
    list_classes,
    read_cifar_batch,
    read_cifar_meta,
    read_idx,
    read_image_folder,
)
from convzoo.data.images import DECODER_VERSION, walk_images
from convzoo.errors import DataError
from convzoo.utils.atomic import atomic_path

__all__ = [
    "DATASETS", "DEBIAN_ROOT", "Dataset", "Split", "check_disjoint", "default_cache_dir", "image_hashes",
    "load_dataset", "resolve_dataset_name", "split_train_val", "split_train_val_files", "stratified_subset", "subset",
    "train_val_index",
]

DEBIAN_ROOT = Path("/usr/share/datasets")
_CACHE_FORMAT = 4  # bump when the decoded cache's layout or key changes (3: per-image content hashes; 4: val/)

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class Split:
    """One split in memory: ``images`` uint8 ``N x C x H x W``, ``labels`` int64 ``N``.

    ``files`` are the resolved source paths it was read from; ``indices`` its positions among them when it
    is a carved subset (a validation split), None when it is all of them; ``digest`` the SHA-256 of its
    pixels and labels ("" for subsets); ``hashes`` int64 ``N``, each image's pixels hashed
    (:func:`image_hashes`; None: not computed yet). Together they let :func:`check_disjoint` refuse to
    evaluate on the training images.
    """

    images: Tensor
    labels: Tensor
    files: tuple[str, ...] = ()
    digest: str = ""
    indices: Tensor | None = None
    hashes: Tensor | None = None

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Dataset:
    """A data set: class names, a train split, a test split (None when the source has none), and the
    training images' per-channel mean and std on the [0, 1] scale; ``val``: the validation split an image
    folder's ``val/`` holds (None: none, or carved later by ``--val-split``)."""

    name: str
    classes: tuple[str, ...]
    train: Split
    test: Split | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str = ""  # where it was read from, for the run's record
    val: Split | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train.images.shape[-2]), int(self.train.images.shape[-1])


@dataclass
class _Decoded:
    """What a reader returns: the splits' tensors, class names (empty: the data set's defaults) and the
    files each split was read from (resolved paths; archive members as ``archive!folder``)."""

    X: Tensor
    y: Tensor
    X_test: Tensor | None
    y_test: Tensor | None
    classes: tuple[str, ...]
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    X_val: Tensor | None = None
    y_val: Tensor | None = None
    val_files: tuple[str, ...] = ()


def _resolved(*paths: Path) -> tuple[str, ...]:
    return tuple(str(p.resolve()) for p in paths)


@dataclass(frozen=True)
class _Found:
    """Source files located for a data set, and how to decode them."""

    files: tuple[Path, ...]  # what the cache key and the disjointness check are made of
    decode: Callable[[], _Decoded]
    where: str


@dataclass(frozen=True)
class _Spec:
    name: str
    torchvision: str  # class in torchvision.datasets used by --download
    probe: Callable[[Path, Path], _Found | None]  # (root, cache_dir) -> files, if the root holds the data
    expects: str  # what a data folder must hold, for error messages


# ---------------------------------------------------------------- IDX (MNIST, Fashion-MNIST)

_IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
              "t10k-labels-idx1-ubyte")


def _probe_idx(classes: tuple[str, ...], torchvision_folder: str) -> Callable[[Path, Path], _Found | None]:
    def probe(root: Path, cache_dir: Path) -> _Found | None:
        for folder in (root, root / torchvision_folder / "raw"):
            files = []
            for stem in _IDX_NAMES:
                hits = [folder / (stem + ext) for ext in (".gz", "") if (folder / (stem + ext)).is_file()]
                links = [folder / (stem + ext) for ext in (".gz", "") if (folder / (stem + ext)).is_symlink()]
                if not hits and links:  # named, but the link leads nowhere
                    raise DataError(f"{links[0]}: a broken symbolic link or a symlink loop (it leads to "
                                    f"{os.readlink(links[0])}); point it at the file or remove it")
                if not hits:
                    break
                files.append(hits[0])
            if len(files) == 4:
                return _Found(tuple(files), partial(_decode_idx, tuple(files), len(classes)), str(folder))
        return None

    return probe


def _decode_idx(files: tuple[Path, ...], num_classes: int) -> _Decoded:
    splits = []
    for images_file, labels_file in (files[:2], files[2:]):
        X, y = read_idx(images_file, 3), read_idx(labels_file, 1).long()
        if len(X) != len(y):
            raise DataError(f"{images_file} has {len(X):,} images but {labels_file} has {len(y):,} labels; "
                            "one of them is from another release or truncated")
        check_labels(y, num_classes, labels_file)
        splits += [X[:, None], y]  # N x 1 x 28 x 28
    return _Decoded(splits[0], splits[1], splits[2], splits[3], (), _resolved(*files[:2]), _resolved(*files[2:]))


# ---------------------------------------------------------------- CIFAR-10

_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_PNG = ("train.tar.gz", "test.tar.gz")  # the lossless PNG copy: ImageFolder train/<class>/, test/<class>/


def _probe_cifar10(root: Path, cache_dir: Path) -> _Found | None:
    """The official python batches (``cifar-10-batches-py/`` or its ``.tar.gz``), else the lossless PNG layout:
    ``train.tar.gz`` and ``test.tar.gz``, or a folder holding ``train/<class>/`` and ``test/<class>/``. The JPEG
    copy (``cifar10-jpg/``) is lossy and not looked for: it is read only as ``imagefolder:PATH``."""
    for folder in (root / "cifar-10-batches-py", root):
        if (folder / "data_batch_1").is_file():
            missing = [n for n in (*_CIFAR_TRAIN, "test_batch") if not (folder / n).is_file()]
            if missing:
                raise DataError(f"{folder}: CIFAR-10 batches {', '.join(missing)} are missing; download it again")
            files = tuple(folder / n for n in (*_CIFAR_TRAIN, "test_batch"))
            return _Found(files, partial(_decode_cifar, folder), str(folder))
    archive = root / "cifar-10-python.tar.gz"
    if archive.is_file():
        return _Found((archive,), lambda: _decode_cifar(extract_once(archive, cache_dir) / "cifar-10-batches-py"),
                      str(archive))
    archives = (root / _CIFAR_PNG[0], root / _CIFAR_PNG[1])
    if any(a.is_file() for a in archives):
        missing = [a.name for a in archives if not a.is_file()]
        if missing:
            raise DataError(f"{root}: {missing[0]} is missing; CIFAR-10's PNG layout needs both "
                            f"{' and '.join(_CIFAR_PNG)}")
        return _Found(archives, partial(_decode_cifar_png, archives, cache_dir), str(root))
    if (root / "train").is_dir() and (root / "test").is_dir():
        files = (*_image_files(root / "train"), *_image_files(root / "test"))
        return _Found(files, lambda: _checked_cifar_png(_decode_splits(root / "train", root / "test"), root),
                      str(root))
    return None


def _decode_cifar(folder: Path) -> _Decoded:
    parts = [read_cifar_batch(folder / n) for n in _CIFAR_TRAIN]
    X_test, y_test = read_cifar_batch(folder / "test_batch")
    classes = read_cifar_meta(folder / "batches.meta") or CIFAR10_CLASSES
    return _Decoded(torch.cat([X for X, _ in parts]), torch.cat([y for _, y in parts]), X_test, y_test, classes,
                    _resolved(*(folder / n for n in _CIFAR_TRAIN)), _resolved(folder / "test_batch"))


def _decode_cifar_png(archives: tuple[Path, Path], cache_dir: Path) -> _Decoded:
    """The two tarballs, each extracted once under the cache, decoded by the one image decoder."""
    train_root, test_root = (extract_once(a, cache_dir) for a in archives)
    return _checked_cifar_png(_decode_splits(train_root / "train", test_root / "test"), archives[0].parent)


def _checked_cifar_png(d: _Decoded, where: Path) -> _Decoded:
    """Refuse a PNG layout that is not CIFAR-10: other class folders, or images not 3 x 32 x 32."""
    if d.classes != CIFAR10_CLASSES:
        raise DataError(f"{where}: class folders {', '.join(d.classes)}, expected CIFAR-10's "
                        f"{', '.join(CIFAR10_CLASSES)}; for other images use --dataset imagefolder:PATH")
    assert d.X_test is not None  # _decode_splits was given a test folder
    for X in (d.X, d.X_test):
        if tuple(X.shape[1:]) != (3, 32, 32):
            raise DataError(f"{where}: images decode to {'x'.join(map(str, X.shape[1:]))}, CIFAR-10's are 3x32x32; "
                            "for other images use --dataset imagefolder:PATH")
    return d


# ---------------------------------------------------------------- image folders

def _image_folder_found(path: Path, cache_dir: Path) -> _Found:
    """An image folder (``root/<class>/...``, or ``root/train/<class>/...`` with ``val/`` and/or ``test/``) or a
    tar of one."""
    if is_archive(path):
        if not path.is_file():
            raise DataError(f"{path}: no such archive")
        return _Found((path,), lambda: _decode_image_root(extract_once(path, cache_dir)), str(path))
    if not path.is_dir():
        raise DataError(f"{path}: no such folder; imagefolder:PATH needs a folder of class folders "
                        "(PATH/<class>/<image>) or a .tar.gz of one")
    files = tuple(_image_files(path))
    return _Found(files, lambda: _decode_image_root(path), str(path))


def _image_files(root: Path) -> list[Path]:
    """Every image file under root, for the cache key: listed by the walker that reading uses, so a file in
    a symlinked class folder is in the key as it is in the data. The class folders are checked here too
    (none empty, none an alias of another), so a cached load refuses what a fresh decode would."""
    files = walk_images(root)
    for folder in (f for f in split_folders(root) if f is not None):
        check_class_folders(folder, list_classes(folder), files)
    return files


def _decode_image_root(root: Path) -> _Decoded:
    train, val, test = split_folders(root)
    return _decode_splits(train, test, val)


def _decode_splits(train_dir: Path, test_dir: Path | None, val_dir: Path | None = None) -> _Decoded:
    """A training folder of class folders and, if given, a test folder and a validation folder with the same
    classes (each of the training images' size: the streaming path reads splits of other sizes)."""
    if not train_dir.is_dir():
        raise DataError(f"{train_dir}: no such folder; expected the training images' class folders there")
    X, y, classes = read_image_folder(train_dir)
    decoded: dict[str, tuple[Tensor, Tensor, tuple[str, ...]]] = {}
    for name, folder in (("test", test_dir), ("val", val_dir)):
        if folder is None:
            continue
        if folder.resolve() == train_dir.resolve():
            raise DataError(f"{folder} is the training folder {train_dir}; a {name} split must hold other images")
        X_other, y_other, _ = read_image_folder(folder, classes)
        if X_other.shape[1] != X.shape[1]:  # one split all gray, the other in colour: keep colour
            X, X_other = X.expand(-1, 3, -1, -1).contiguous(), X_other.expand(-1, 3, -1, -1).contiguous()
            decoded = {k: (v[0].expand(-1, 3, -1, -1).contiguous(), *v[1:]) for k, v in decoded.items()}
        if X_other.shape[-2:] != X.shape[-2:]:
            raise DataError(f"{folder}: images are {X_other.shape[-2]}x{X_other.shape[-1]}, the training images "
                            f"{X.shape[-2]}x{X.shape[-1]}; resize them to one size")
        decoded[name] = (X_other, y_other, _resolved(folder))
    test, val = decoded.get("test", (None, None, ())), decoded.get("val", (None, None, ()))
    return _Decoded(X, y, test[0], test[1], classes, _resolved(train_dir), test[2], val[0], val[1], val[2])


DATASETS: dict[str, _Spec] = {
    "mnist": _Spec("mnist", "MNIST", _probe_idx(tuple(str(i) for i in range(10)), "MNIST"),
                   "train-images-idx3-ubyte.gz and its three siblings"),
    "fashion-mnist": _Spec("fashion-mnist", "FashionMNIST", _probe_idx(FASHION_CLASSES, "FashionMNIST"),
                           "train-images-idx3-ubyte.gz and its three siblings"),
    "cifar10": _Spec("cifar10", "CIFAR10", _probe_cifar10,
                     "cifar-10-batches-py/, cifar-10-python.tar.gz, or the lossless PNGs as train.tar.gz and "
                     "test.tar.gz or train/ and test/ (the JPEG copy cifar10-jpg/ is lossy: read it only as "
                     "--dataset imagefolder:DIR/cifar10-jpg/train.tar.gz)"),
}
_CLASSES = {"mnist": tuple(str(i) for i in range(10)), "fashion-mnist": FASHION_CLASSES, "cifar10": CIFAR10_CLASSES}


def default_cache_dir() -> Path:
    """``$CONVZOO_CACHE``, else ``$XDG_CACHE_HOME/convzoo``, else ``~/.cache/convzoo``."""
    if os.environ.get("CONVZOO_CACHE"):
        return Path(os.environ["CONVZOO_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "convzoo"


def _sources(name: str, data_dir: str | os.PathLike[str] | None, cache_dir: Path) -> list[tuple[str, Path]]:
    sources = []
    if data_dir is not None:
        sources.append(("--data-dir", Path(data_dir)))
    if os.environ.get("CONVZOO_DATA"):
        sources.append(("$CONVZOO_DATA", Path(os.environ["CONVZOO_DATA"])))
    sources += [("Debian", DEBIAN_ROOT / name), ("cache", cache_dir / "datasets" / name)]
    return sources


def _find(spec: _Spec, data_dir: str | os.PathLike[str] | None, cache_dir: Path) -> _Found | None:
    for label, root in _sources(spec.name, data_dir, cache_dir):
        for candidate in (root, root / spec.name):
            try:
                found = spec.probe(candidate, cache_dir) if candidate.is_dir() else None
            except PermissionError as err:  # a folder that cannot be searched
                raise DataError(f"{label} {root}: permission denied ({err.filename or candidate}); make it "
                                "readable (chmod a+rx)") from None
            if found is not None:
                return found
        if label == "--data-dir":
            if not root.is_dir():
                raise DataError(f"--data-dir {root}: no such folder")
            raise DataError(f"{spec.name} not found in --data-dir {root}: expected {spec.expects} there "
                            f"(or in {root}/{spec.name}/)")
    return None


def _download(spec: _Spec, cache_dir: Path) -> None:
    import torchvision.datasets

    root = cache_dir / "datasets" / spec.name
    root.mkdir(parents=True, exist_ok=True)
    print(f"downloading {spec.name} to {root} (torchvision, checksums verified)", file=sys.stderr)
    try:
        for train in (True, False):
            getattr(torchvision.datasets, spec.torchvision)(str(root), train=train, download=True)
    except Exception as err:  # network errors, checksum mismatches
        raise DataError(f"downloading {spec.name} failed ({type(err).__name__}: {err}); "
                        "get the files another way and pass --data-dir DIR") from None


def resolve_dataset_name(name: str) -> str:
    """``name`` as a run stores it: ``imagefolder:PATH`` with PATH made absolute (``~`` expanded, against the
    current folder), so the run's data is found again from any folder (``convzoo eval``); other names, and
    an empty PATH (refused by :func:`load_dataset`), unchanged. So is ``shards:PATH`` (a URL is kept as it is)."""
    from convzoo.data.shards import is_url

    kind, _, path = name.partition(":")
    if kind not in ("imagefolder", "shards") or not path.strip() or (kind == "shards" and is_url(path)):
        return name
    return f"{kind}:" + os.path.abspath(os.path.expanduser(path))


def load_dataset(name: str, *, data_dir: str | os.PathLike[str] | None = None, download: bool = False,
                 cache_dir: str | os.PathLike[str] | None = None) -> Dataset:
    """``mnist``, ``fashion-mnist``, ``cifar10`` or ``imagefolder:PATH`` (a folder of class folders, or of
    ``train/`` and ``test/`` each holding class folders; or a ``.tar.gz`` of one), in memory."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if name.startswith("imagefolder:"):
        typed = name.split(":", 1)[1]
        if not typed.strip():  # Path("") is ".": the current folder would be scanned
            raise DataError("imagefolder:PATH needs a path, e.g. imagefolder:./flowers; got an empty one")
        path = Path(typed).expanduser()
        return _load(name, _image_folder_found(path, cache), cache)
    spec = DATASETS.get(name)
    if spec is None:
        raise DataError(f"unknown data set '{name}'; choose mnist, fashion-mnist, cifar10 or imagefolder:PATH")
    found = _find(spec, data_dir, cache)
    if found is None and download:
        _download(spec, cache)
        found = _find(spec, None, cache)
    if found is None:
        looked = ", ".join(f"{label} {root}" for label, root in _sources(name, data_dir, cache))
        debian = f"; on Debian: apt-get install dataset-{name}" if name == "fashion-mnist" else ""
        raise DataError(f"{name} not found (looked in {looked}); get it one of three ways: --data-dir DIR "
                        f"holding {spec.expects}, the environment variable CONVZOO_DATA=DIR, or --download "
                        f"(torchvision, checksums verified){debian}")
    return _load(name, found, cache)


def _load(name: str, found: _Found, cache_dir: Path) -> Dataset:
    key = _cache_key(name, found.files)
    path = cache_dir / "decoded" / f"{name.replace(':', '-').replace('/', '_')[-60:]}-{key}.safetensors"
    data = _read_cache(path, name, found)
    if data is None:
        d = found.decode()
        train = Split(d.X, d.y, d.train_files, _digest(d.X, d.y), hashes=image_hashes(d.X))
        test = val = None
        if d.X_test is not None and d.y_test is not None:
            test = Split(d.X_test, d.y_test, d.test_files, _digest(d.X_test, d.y_test),
                         hashes=image_hashes(d.X_test))
        if d.X_val is not None and d.y_val is not None:
            val = Split(d.X_val, d.y_val, d.val_files, _digest(d.X_val, d.y_val), hashes=image_hashes(d.X_val))
        mean, std = _channel_stats(d.X)
        data = Dataset(name, d.classes or _CLASSES[name], train, test, mean, std, found.where, val)
        _write_cache(path, data)
    return data


def _cache_key(name: str, files: tuple[Path, ...]) -> str:
    """16 hex digits of the cache format, the decoder's rules and, for each source file, the path it was
    found at (its class folder gives its label), the file it resolves to and that file's size and
    modification time (``os.stat`` follows every symlink: editing a linked file changes the key)."""
    stats = []
    for p in files:
        try:
            s = os.stat(p)
        except OSError as err:
            raise DataError(f"{p}: cannot be read: {err.strerror or err}") from None
        stats.append((os.path.abspath(p), os.path.realpath(p), s.st_size, s.st_mtime_ns))
    blob = json.dumps([_CACHE_FORMAT, DECODER_VERSION, name, stats]).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _digest(X: Tensor, y: Tensor) -> str:
    h = hashlib.sha256()
    h.update(X.contiguous().numpy().data)
    h.update(y.contiguous().numpy().data)
    return h.hexdigest()


def image_hashes(X: Tensor) -> Tensor:
    """Each image's pixels hashed (64-bit BLAKE2b of its bytes) as int64 ``N``: equal pixels, equal hash.

    Computed once per decode and kept in the decoded cache; 60,000 MNIST images take about 0.14 s, 50,000
    CIFAR-10 images 0.3 s (2 cores). 64 bits make a chance collision among 10^5 images a 1-in-10^9 event.
    """
    rows = X.flatten(1).contiguous().numpy()  # N x (C * H * W) uint8, one row per image
    digests = b"".join(hashlib.blake2b(row, digest_size=8).digest() for row in rows)
    return torch.frombuffer(bytearray(digests), dtype=torch.int64) if digests else torch.empty(0, dtype=torch.int64)


def _channel_stats(X: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images on the [0, 1] scale, in float64, in chunks of 4096 images or of
    as many as hold 4096 x 3 x 32 x 32 values (96 MiB in float64), whichever is fewer: a float64 copy of the whole
    data set (8x its uint8 size, the peak of loading 2,000 photos before) is never made. (MNIST and CIFAR-10 are
    summed in the same 4096-image chunks as before, so their statistics are unchanged to the last bit.)"""
    C = X.shape[1]
    total = torch.zeros(C, dtype=torch.float64)
    squares = torch.zeros(C, dtype=torch.float64)
    per_image = max(1, X[0].numel()) if len(X) else 1
    step = min(4096, max(1, 4096 * 3 * 32 * 32 // per_image))
    for lo in range(0, len(X), step):
        chunk = X[lo:lo + step].to(torch.float64).transpose(0, 1).reshape(C, -1) / 255
        total += chunk.sum(1)
        squares += (chunk * chunk).sum(1)
    n = X.numel() // C
    mean = total / n
    std = (squares / n - mean * mean).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def _read_cache(path: Path, name: str, found: _Found) -> Dataset | None:
    if not path.is_file():
        return None
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
        info = json.loads(meta["convzoo"])
        train = Split(tensors["train_images"], tensors["train_labels"], tuple(info["train_files"]),
                      info["train_digest"], hashes=tensors["train_hashes"])
        test = val = None
        if "test_images" in tensors:
            test = Split(tensors["test_images"], tensors["test_labels"], tuple(info["test_files"]),
                         info["test_digest"], hashes=tensors["test_hashes"])
        if "val_images" in tensors:
            val = Split(tensors["val_images"], tensors["val_labels"], tuple(info["val_files"]),
                        info["val_digest"], hashes=tensors["val_hashes"])
        return Dataset(name, tuple(info["classes"]), train, test, tuple(info["mean"]), tuple(info["std"]),
                       found.where, val)
    except (SafetensorError, OSError, KeyError, ValueError, json.JSONDecodeError) as err:
        warnings.warn(f"ignoring the unreadable data cache {path} ({err}); decoding again", stacklevel=3)
        return None


def _write_cache(path: Path, data: Dataset) -> None:
    """Best effort: a read-only or full cache only costs decoding again next time."""
    from safetensors.torch import save_file

    tensors = {"train_images": data.train.images, "train_labels": data.train.labels,
               "train_hashes": _hashes(data.train)}
    if data.test is not None:
        tensors |= {"test_images": data.test.images, "test_labels": data.test.labels,
                    "test_hashes": _hashes(data.test)}
    if data.val is not None:
        tensors |= {"val_images": data.val.images, "val_labels": data.val.labels, "val_hashes": _hashes(data.val)}
    info = {"classes": list(data.classes), "mean": list(data.mean), "std": list(data.std),
            "train_files": list(data.train.files), "test_files": list(data.test.files) if data.test else [],
            "train_digest": data.train.digest, "test_digest": data.test.digest if data.test is not None else "",
            "val_files": list(data.val.files) if data.val else [],
            "val_digest": data.val.digest if data.val is not None else ""}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp),
                      metadata={"convzoo": json.dumps(info)})
    except OSError as err:  # atomic_path has removed its temporary file
        warnings.warn(f"could not write the data cache {path} ({err.strerror or err}); it will be decoded again "
                      "next time", stacklevel=3)


def train_val_index(count: int, val_fraction: float, seed: int = 0) -> tuple[Tensor, Tensor]:
    """(training positions, validation positions) of a split of ``count`` images, each sorted: a random
    ``val_fraction`` held out, the same for the same seed."""
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"--val-split must be between 0 and 1 (exclusive), got {val_fraction}")
    n_val = round(count * val_fraction)
    if n_val == 0 or n_val == count:
        raise DataError(f"--val-split {val_fraction} of {count} images leaves an empty split; choose a "
                        "fraction that keeps images on both sides")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    return order[n_val:].sort().values, order[:n_val].sort().values


def split_train_val(split: Split, val_fraction: float, seed: int = 0) -> tuple[Split, Split]:
    """(train, validation): a random ``val_fraction`` of ``split`` held out, the same for the same seed."""
    index_pair = train_val_index(len(split), val_fraction, seed)
    base = split.indices if split.indices is not None else None
    hashes = _hashes(split)
    parts = []
    for index in index_pair:
        parts.append(Split(split.images[index], split.labels[index], split.files,
                           indices=base[index] if base is not None else index, hashes=hashes[index]))
    return parts[0], parts[1]


def split_train_val_files(split: FileSplit, val_fraction: float, seed: int = 0) -> tuple[FileSplit, FileSplit]:
    """:func:`split_train_val` for a split on disk: the same positions held out for the same seed."""
    train, val = train_val_index(len(split), val_fraction, seed)
    return split.take(train), split.take(val)


def check_disjoint(train: Split | FileSplit, *others: Split | FileSplit) -> None:
    """Refuse evaluation splits that are (part of) the training images: the same source files with
    overlapping positions, the same pixels and labels under another name (notes 004 tested on train), or
    any single image whose pixels are also in the training split (a copy, or the same file in two
    folders), naming the first few by their positions in each split. Splits on disk (:class:`FileSplit`, the
    streaming path) are compared by the hashes of their files' bytes instead of pixels, and named by file."""
    for other in others:
        if train.digest and train.digest == other.digest:
            raise DataError("the evaluation split holds exactly the training images (same pixels and labels); "
                            "evaluate on a separate test split or hold out --val-split")
        if set(train.files) & set(other.files):
            if train.indices is None or other.indices is None or _overlap(train.indices, other.indices):
                raise DataError(f"the evaluation split is read from the training files "
                                f"({', '.join(sorted(set(train.files) & set(other.files))[:2])}) and shares images "
                                "with it; use a separate test split or hold out --val-split")
        _check_no_shared_pixels(train, other)


def _hashes(split: Split | FileSplit) -> Tensor:
    """The split's per-image hashes, computed now if it was built without them (pixels; a split on disk must
    have been inspected, :func:`convzoo.data.folders.inspect_files`)."""
    if split.hashes is not None:
        return split.hashes
    if isinstance(split, FileSplit):
        raise ValueError("a FileSplit's hashes come from inspect_files; inspect it before checking it")
    return image_hashes(split.images)


def _check_no_shared_pixels(train: Split | FileSplit, other: Split | FileSplit) -> None:
    """Refuse when any image of ``other`` has the pixels of a training image (by :func:`image_hashes`), or for
    splits on disk the bytes of a training file."""
    train_hashes, other_hashes = _hashes(train), _hashes(other)
    shared = torch.isin(other_hashes, train_hashes).nonzero().flatten()  # positions in other
    if not len(shared):
        return
    position = {h: i for i, h in enumerate(train_hashes.tolist())}
    if isinstance(other, FileSplit) and isinstance(train, FileSplit):
        pairs = ", ".join(f"{other.files[int(i)]} = {train.files[position[int(other_hashes[i])]]}" for i in shared[:2])
        raise DataError(f"{len(shared)} of the {len(other)} evaluation images are byte-for-byte copies of a training "
                        f"image ({pairs}{', ...' if len(shared) > 2 else ''}); remove the duplicates from one side, "
                        "the accuracy would count images seen in training")
    other_files, train_files = _image_files_of(other), _image_files_of(train)
    if other_files is not None and train_files is not None:
        pairs = ", ".join(f"{other_files[int(i)]} = {train_files[position[int(other_hashes[i])]]}"
                          for i in shared[:2])
        raise DataError(f"{len(shared)} of the {len(other)} evaluation images have the pixels of a training image "
                        f"({pairs}{', ...' if len(shared) > 2 else ''}); remove the duplicates from one side, the "
                        "accuracy would count images seen in training")
    pairs = ", ".join(f"#{int(i)} = training #{position[int(other_hashes[i])]}" for i in shared[:3])
    raise DataError(f"{len(shared)} of the {len(other)} evaluation images have the pixels of a training image "
                    f"(evaluation {pairs}{', ...' if len(shared) > 3 else ''}, positions from 0); "
                    "remove the duplicates from one side, the accuracy would count images seen in training")


def _image_files_of(split: Split | FileSplit) -> list[str] | None:
    """Each image's file, for a split read from one folder of class folders (an image folder, CIFAR-10's PNG
    layout), listed again as it was decoded; None for a split read from files of many images (MNIST's, the
    CIFAR-10 pickles), or when the folder no longer lists as many images as the split was decoded from."""
    if isinstance(split, FileSplit):
        return list(split.files)
    if len(split.files) != 1 or not Path(split.files[0]).is_dir():
        return None
    try:
        paths, _, _ = image_folder_files(Path(split.files[0]))
    except DataError:
        return None
    if split.indices is None:  # all of the folder's images, in its order
        return [str(p) for p in paths] if len(paths) == len(split) else None
    positions = split.indices.tolist()  # a carved subset: its positions among the folder's images
    return [str(paths[p]) for p in positions] if all(p < len(paths) for p in positions) else None


def _overlap(a: Tensor, b: Tensor) -> bool:
    return bool(torch.isin(a, b).any())


_AnySplit = typing.TypeVar("_AnySplit", Split, FileSplit)


def subset(split: Split, index: Tensor) -> Split:
    """The images at ``index`` (e.g. the draw of :func:`stratified_subset` for a quick run)."""
    base = split.indices if split.indices is not None else None
    return replace(split, images=split.images[index], labels=split.labels[index], digest="",
                   indices=base[index] if base is not None else index, hashes=_hashes(split)[index])


def stratified_subset(split: _AnySplit, n: int, seed: int) -> _AnySplit:
    """``n`` images of ``split`` drawn at random per class, each class in proportion to its share
    (``--train-limit``): the first N of a split ordered by class (an image folder) would hold only its
    first classes. Quotas are floors of ``n * share``, the images left over going to the largest
    remainders (ties: the lower class); the same seed draws the same images, kept in their original
    order. A class whose quota rounds to 0 is left out, so ``n`` below the class count leaves some out.
    A split on disk (:class:`FileSplit`) is drawn from its labels alone: nothing is read or decoded."""
    if n >= len(split):
        return split
    classes, counts = split.labels.unique(return_counts=True)  # K each
    quota = counts.double() * n / len(split)
    take = quota.floor().long()
    leftover = n - int(take.sum())
    by_remainder = torch.sort(quota - take, descending=True, stable=True).indices
    take[by_remainder[:leftover]] += 1
    g = torch.Generator().manual_seed(seed)
    picked = []
    for c, k in zip(classes.tolist(), take.tolist(), strict=True):
        members = (split.labels == c).nonzero().flatten()
        picked.append(members[torch.randperm(len(members), generator=g)[:k]])
    index = torch.cat(picked).sort().values
    return split.take(index) if isinstance(split, FileSplit) else subset(split, index)  # type: ignore[return-value]
