"""Readers for the official on-disk formats, each validating what it reads.

- IDX (MNIST, Fashion-MNIST), gzipped or not: http://yann.lecun.com/exdb/mnist/ "FILE FORMATS".
- CIFAR-10 python batches: pickled dicts, read with an unpickler that only builds numpy arrays.
- Image folders (``root/<class>/<image>``, torchvision's ``ImageFolder`` layout), listed and decoded by
  :mod:`convzoo.data.images` (the decoder ``predict`` uses too).
- ``.tar.gz`` archives, extracted with every member checked to stay inside the target directory.

Every problem is a :class:`~convzoo.errors.DataError` naming the file and what is wrong with it.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import stat
import struct
import tarfile
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from convzoo.data.images import IMAGE_EXTENSIONS, decode_image, displayed_size, read_file, walk_images
from convzoo.errors import DataError

__all__ = ["IMAGE_EXTENSIONS", "check_class_folders", "extract_once", "image_folder_files", "list_classes",
           "read_cifar_batch", "read_idx", "read_image_folder", "safe_extract"]

_IDX_UBYTE = 0x08


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed if it is gzipped (by content, not by name)."""
    raw = read_file(path, folder="is a folder, expected a file", empty="the file is empty (0 bytes); download it again")
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as err:
            raise DataError(f"{path}: truncated or corrupt gzip ({err}); download it again") from None
    return raw


def read_idx(path: Path, ndim: int) -> Tensor:
    """An IDX file of unsigned bytes with ``ndim`` dimensions as a uint8 tensor of that shape."""
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path}: {len(data)} bytes is too short for an IDX file")
    zero, dtype, dims = struct.unpack(">HBB", data[:4])
    if zero != 0:
        raise DataError(f"{path}: not an IDX file (magic number {data[:4].hex()} does not start with 0000)")
    if dtype != _IDX_UBYTE:
        raise DataError(f"{path}: IDX element type 0x{dtype:02x}, convzoo reads unsigned bytes (0x08)")
    if dims != ndim:
        raise DataError(f"{path}: IDX file with {dims} dimensions, expected {ndim}"
                        f" ({'images' if ndim == 3 else 'labels'}); is this the right file?")
    header = 4 + 4 * dims
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{dims}I", data[4:header])
    expected = int(np.prod(shape, dtype=np.int64))
    if len(data) - header != expected:
        raise DataError(f"{path}: header says {'x'.join(map(str, shape))} = {expected:,} bytes of data, the file "
                        f"has {len(data) - header:,}; the file is truncated or corrupt, download it again")
    array = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)
    return torch.from_numpy(array.copy())  # own the memory; the decompressed bytes are freed


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Builds the dicts, lists, bytes and numpy arrays of a CIFAR batch and nothing else: a pickle that
    names any other callable (``os.system``, ``builtins.eval``, ...) is refused before it runs."""

    ALLOWED = frozenset({
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # how protocol-2 pickles spell bytes
    })

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise DataError(f"refusing to unpickle {module}.{name}: a CIFAR batch holds only arrays and lists")
        return super().find_class(module, name)


def _unpickle(path: Path) -> object:
    data = _read_bytes(path)
    try:
        return _NumpyOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
    except DataError as err:
        raise DataError(f"{path}: {err}") from None
    except Exception as err:  # any malformed pickle
        raise DataError(f"{path}: not a readable CIFAR python batch ({type(err).__name__}: {err})") from None


def _key(d: dict, name: str, path: Path) -> object:
    for k in (name.encode(), name):
        if k in d:
            return d[k]
    raise DataError(f"{path}: CIFAR batch without the key '{name}' (keys: "
                    f"{', '.join(sorted(str(k) for k in d)) or 'none'}); is this a CIFAR-10 python batch?")


def read_cifar_batch(path: Path, num_classes: int = 10) -> tuple[Tensor, Tensor]:
    """One CIFAR-10 python batch: uint8 images ``N x 3 x 32 x 32`` and int64 labels."""
    d = _unpickle(path)
    if not isinstance(d, dict):
        raise DataError(f"{path}: a CIFAR batch is a dict, found {type(d).__name__}")
    data, labels = _key(d, "data", path), _key(d, "labels", path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", type(data).__name__)
        raise DataError(f"{path}: 'data' must be a uint8 array N x 3072, found {shape}")
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    if y.ndim != 1 or len(y) != len(data):
        raise DataError(f"{path}: {len(data)} images but {y.numel()} labels")
    _check_labels(y, num_classes, path)
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), y


def read_cifar_meta(path: Path) -> tuple[str, ...] | None:
    """Class names from ``batches.meta``, or None if the file is absent."""
    if not path.exists():
        return None
    d = _unpickle(path)
    names = _key(d, "label_names", path) if isinstance(d, dict) else None
    if not isinstance(names, list):
        raise DataError(f"{path}: 'label_names' must be a list of names")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


def _check_labels(y: Tensor, num_classes: int, path: Path | str) -> None:
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        bad = int(y.max()) if int(y.max()) >= num_classes else int(y.min())
        raise DataError(f"{path}: label {bad} is out of range for {num_classes} classes (0..{num_classes - 1})")


def check_labels(y: Tensor, num_classes: int, path: Path | str) -> None:
    """Every label in ``0 .. num_classes - 1``, or a DataError naming the file."""
    _check_labels(y, num_classes, path)


def list_classes(root: Path) -> tuple[str, ...]:
    """The class folders of an image folder, sorted as torchvision's ``ImageFolder`` sorts them."""
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    try:
        classes = tuple(sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")))
    except PermissionError:
        raise DataError(f"{root}: permission denied; make it readable (chmod a+rx)") from None
    if not classes:
        raise DataError(f"{root}: no class folders; expected {root}/<class>/<image>.png (one folder per class)")
    seen: dict[tuple[int, int], str] = {}
    for name in classes:  # a class folder that is a link to another would put its images in two classes
        st = os.stat(root / name)
        other = seen.setdefault((st.st_dev, st.st_ino), name)
        if other != name:
            raise DataError(f"{root / other} and {root / name} are the same folder (one is a symlink to "
                            f"{os.path.realpath(root / name)}); its images would be two classes: remove the link")
    return classes


def check_class_folders(root: Path, classes: tuple[str, ...], files: list[Path]) -> None:
    """Refuse a class folder of ``root`` that holds no image among ``files`` (as torchvision's
    ``ImageFolder`` refuses it): a class without images could never be learned, only mispredicted."""
    holding = {f.relative_to(root).parts[0] for f in files if f.is_relative_to(root)}
    for name in classes:
        if name not in holding and (root / name).is_dir():
            raise DataError(f"{root / name}: class folder without images (looked for "
                            f"{', '.join(IMAGE_EXTENSIONS)}); add images to it or remove it")


def image_folder_files(root: Path, classes: tuple[str, ...] | None = None
                       ) -> tuple[list[Path], list[int], tuple[str, ...]]:
    """The image files of ``root/<class>/...`` in the order :func:`read_image_folder` decodes them (class by
    class, each listed by :func:`~convzoo.data.images.walk_images`), their labels, and the class names
    (``classes``, the training classes, when given: a folder of another class is refused)."""
    found = list_classes(root)
    classes = classes or found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"{root}: class folders {', '.join(unknown)} are not among the training classes "
                        f"{', '.join(classes)}")
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        if name in found:
            files = walk_images(root / name)
            check_class_folders(root, (name,), files)
            paths += files
            labels += [label] * len(files)
    return paths, labels, classes


def read_image_folder(root: Path, classes: tuple[str, ...] | None = None) -> tuple[Tensor, Tensor, tuple[str, ...]]:
    """Every image of ``root/<class>/...`` as uint8 ``N x C x H x W``, int64 labels and the class names.

    Files are listed by :func:`~convzoo.data.images.walk_images` and decoded by
    :func:`~convzoo.data.images.decode_image`, as ``predict`` decodes them. C = 1 when every image is gray
    (all its channels equal), else 3, gray images repeated into three channels. Images of another size
    than the most common one are resized to it (bilinear, antialiased).
    """
    paths, labels, classes = image_folder_files(root, classes)
    if not paths:
        raise DataError(f"{root}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)} in {root}/<class>/)")
    # the sizes from the headers first, so that the images are decoded straight into the one N x C x H x W
    # tensor, a few at a time: the peak is that tensor and a window of images, not every image twice
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:  # Pillow decodes without holding the GIL
        shapes = list(pool.map(displayed_size, paths))
        (H, W), _ = Counter(shapes).most_common(1)[0]
        X: Tensor | None = None
        window = 8 * (os.cpu_count() or 1)
        for lo in range(0, len(paths), window):
            for i, image in enumerate(pool.map(decode_image, paths[lo:lo + window]), lo):  # C x H x W, C = 1 or 3
                if X is None:
                    X = torch.empty(len(paths), len(image), H, W, dtype=torch.uint8)
                elif len(image) > X.shape[1]:  # the first colour image after gray ones: three channels from now
                    X = X.expand(-1, len(image), -1, -1).contiguous()
                if tuple(image.shape[-2:]) != (H, W):
                    image = F.interpolate(image[None].float(), size=(H, W), mode="bilinear", antialias=True,
                                          align_corners=False)[0].round().clamp(0, 255).to(torch.uint8)
                X[i] = image  # a gray 1 x H x W image is repeated into the three channels
    assert X is not None
    if X.shape[1] == 3 and torch.equal(X[:, 0], X[:, 1]) and torch.equal(X[:, 1], X[:, 2]):
        X = X[:, :1].contiguous()  # colour modes holding only gray pixels: N x 1 x H x W
    return X, torch.tensor(labels, dtype=torch.int64), classes


def extract_once(archive: Path, cache_dir: Path) -> Path:
    """The archive extracted (once, by :func:`safe_extract`) under ``cache_dir/extracted``, keyed by its content."""
    import hashlib

    digest = hashlib.sha256()
    with open(archive, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    target = cache_dir / "extracted" / f"{archive.name.split('.')[0]}-{digest.hexdigest()[:16]}"
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        safe_extract(archive, target)
    return target


def safe_extract(archive: Path, target: Path) -> None:
    """Extract a ``.tar``/``.tar.gz`` into ``target`` (which must not exist yet), refusing any member that
    would land outside it: absolute paths, ``..``, links, devices. Extracts into a temporary sibling first
    and renames it, so ``target`` is either complete or absent."""
    tmp = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for m in members:
                _check_member(m, archive)
            tmp.mkdir(parents=True)
            tar.extractall(tmp, members=members, filter="data")
    except DataError:
        _remove_tree(tmp)
        raise
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        _remove_tree(tmp)
        if isinstance(err, tarfile.FilterError):
            raise DataError(f"{archive}: unsafe member refused ({err}); nothing was extracted") from None
        raise DataError(f"{archive}: not a readable tar archive ({err}); download it again") from None
    os.replace(tmp, target)


def _check_member(m: tarfile.TarInfo, archive: Path) -> None:
    name = m.name
    parts = Path(name).parts
    if name.startswith(("/", "\\")) or os.path.isabs(name) or ".." in parts or (parts and ":" in parts[0]):
        raise DataError(f"{archive}: member '{name}' would be written outside the extraction folder; refused")
    if m.issym() or m.islnk():
        raise DataError(f"{archive}: member '{name}' is a link (to '{m.linkname}'); image archives hold only "
                        "files and folders; refused")
    if not (m.isfile() or m.isdir()):
        raise DataError(f"{archive}: member '{name}' is a device or special file; refused")
    if m.mode & (stat.S_ISUID | stat.S_ISGID):
        raise DataError(f"{archive}: member '{name}' is set-uid/set-gid; refused")


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
