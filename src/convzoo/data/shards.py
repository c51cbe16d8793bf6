"""Image folders as shards of litdata's format (``convzoo pack``), and shards read back as the splits of an image
folder (``--dataset shards:WHERE``): a local folder, or a URL litdata reads (``s3://``, ``gs://``, ...).

What ``convzoo pack DIR OUT`` writes, one litdata data set per split of ``DIR``'s layout (``train/`` with
``val/`` and/or ``test/``, or one folder):

- ``OUT/<split>/``: litdata's chunks (``chunk-*.bin``) and its ``index.json``; item ``i`` is
  ``{"image": bytes, "label": int}``, the ``i``-th file of the split in the order the folder path lists it
  (class by class, :func:`~convzoo.data.images.walk_images`'s order): the file's own bytes, or, with
  ``--max-side N`` and a longer side above ``N``, the image re-encoded at longer side ``N``, aspect ratio kept;
- ``OUT/<split>/convzoo-files.safetensors``: per image its label, the 64-bit hash of its stored bytes and its
  height and width (what the leakage check and the run's record of its data use, as
  :func:`~convzoo.data.folders.inspect_files` gives them for a folder), and the images' names in the folder
  (NUL-separated UTF-8, named in messages);
- ``OUT/convzoo-shards.json``: the manifest: format, classes, each split's image count and digest.

So a run needs nothing of the folder: the splits, labels, hashes and sizes are read from the manifest, and an
image's bytes from its chunk by its position (litdata's ``StreamingDataset[i]``). Which positions, in which
order, and which augmentation each image gets are the streaming path's (:mod:`convzoo.data.streaming`), the
same as from the folder: packed without ``--max-side``, a run from the shards is the run from the folder, bit for
bit. Read from a URL, an image's chunk is downloaded whole into the cache (``$CONVZOO_CACHE/shards``) the first
time one of its images is asked for (docs/training.md).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from convzoo.data.folders import FileSplit, ImageFolder, file_digest, inspect_bytes, scan_image_folder
from convzoo.data.images import decode_image, read_file
from convzoo.errors import ConvzooError, DataError
from convzoo.utils.extras import require_extra

__all__ = ["CHUNK_BYTES", "FILES", "FORMAT", "MANIFEST", "PackReport", "ShardReader", "is_url", "open_shards",
           "pack_folder", "require_shards"]

FORMAT = 1  # bump when what pack writes changes; open_shards refuses another
MANIFEST = "convzoo-shards.json"
FILES = "convzoo-files.safetensors"
CHUNK_BYTES = 64 << 20  # litdata chunk size: what a remote read downloads at a time (about 600 photos of 100 kB)
JPEG_QUALITY = 95  # a JPEG shrunk by --max-side is written again at this quality (anything else as PNG)
_URL_PREFIXES = ("s3://", "gs://", "azure://", "r2://", "hf://", "local:")  # litdata's remote stores


def require_shards() -> None:
    require_extra("shards", ("litdata",), "shards (convzoo pack, --dataset shards:)")


def is_url(where: str) -> bool:
    """Whether ``where`` names a remote store litdata reads (``local:/path`` is litdata's stand-in for one: its
    chunks are copied into the cache as a download would be)."""
    return where.startswith(_URL_PREFIXES)


@dataclass(frozen=True)
class PackReport:
    out: Path
    images: dict[str, int]  # per split
    resized: int  # images re-encoded by --max-side
    stored_bytes: int  # the images' bytes in the chunks
    seconds: float


# ---- packing ----------------------------------------------------------------------------------------------


def pack_folder(folder: Path, out: Path, *, cache_dir: Path, max_side: int | None = None, force: bool = False,
                threads: int | None = None, chunk_bytes: int = CHUNK_BYTES) -> PackReport:
    """Write the image folder (or ``.tar``/``.tar.gz`` of one) at ``folder`` as shards in ``out`` (the module's
    docstring). Every file is read once and its header checked (a file that is no image is refused, naming it,
    as the folder path refuses it); with ``max_side`` an image whose longer side is larger is decoded, resized
    (Lanczos, aspect ratio kept) and re-encoded. ``out`` is written beside itself and renamed into place when
    complete; an existing ``out`` is refused unless ``force`` (and then only an empty folder or earlier shards
    are replaced)."""
    require_shards()
    if max_side is not None and max_side < 1:
        raise ConvzooError(f"--max-side must be a positive number of pixels, got {max_side}")
    if not folder.exists():
        raise DataError(f"{folder}: no such folder; convzoo pack needs an image folder: DIR/<class>/<image>, or "
                        "DIR/train/ with DIR/val/ or DIR/test/ of class folders (or a .tar.gz of one)")
    _check_out(out, force)
    start = time.perf_counter()
    scanned = scan_image_folder(folder, cache_dir)
    splits = {name: split for name, split in (("train", scanned.train), ("val", scanned.val),
                                              ("test", scanned.test)) if split is not None}
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{out.name}.packing-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        manifest: dict[str, Any] = {"format": FORMAT, "library": "litdata", "classes": list(scanned.classes),
                                    "max_side": max_side, "splits": {}}
        resized = stored = 0
        for name, split in splits.items():
            count, digest, shrunk, size = _pack_split(split, scanned.root, work / name, max_side=max_side,
                                                      threads=threads, chunk_bytes=chunk_bytes)
            manifest["splits"][name] = {"images": count, "digest": digest, "resized": shrunk}
            resized += shrunk
            stored += size
        import litdata

        manifest["litdata"] = litdata.__version__
        (work / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        if out.exists():
            shutil.rmtree(out)
        work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return PackReport(out, {n: s["images"] for n, s in manifest["splits"].items()}, resized, stored,
                      time.perf_counter() - start)


def _check_out(out: Path, force: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise DataError(f"{out} exists and is not a folder; choose another OUT")
    if not force:
        raise DataError(f"{out} exists; choose another OUT, or give --force to replace it")
    if any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise DataError(f"{out} exists and holds files that are not convzoo shards; --force replaces only an empty "
                        "folder or earlier shards: choose another OUT")


def _pack_split(split: FileSplit, root: Path, dest: Path, *, max_side: int | None, threads: int | None,
                chunk_bytes: int) -> tuple[int, str, int, int]:
    """Write one split's images in order; (images, digest, how many were resized, bytes stored)."""
    from litdata.streaming.writer import BinaryWriter
    from safetensors.torch import save_file

    dest.mkdir(parents=True)
    writer = BinaryWriter(str(dest), chunk_bytes=chunk_bytes)
    hashes: list[int] = []
    sizes: list[tuple[int, int]] = []
    resized = stored = 0
    labels = split.labels.tolist()
    for i, (data, digest, height, width, shrunk) in enumerate(_prepared(split.files, max_side, threads)):
        writer.add_item(i, {"image": data, "label": labels[i]})
        hashes.append(digest)
        sizes.append((height, width))
        resized += shrunk
        stored += len(data)
    writer.done()
    writer.merge()
    hash_tensor = torch.tensor(hashes, dtype=torch.int64)
    names = [os.path.relpath(f, root) for f in split.files]
    joined = "\0".join(names).encode()  # (NUL is in no path; a tensor, not the header: that is limited to 100 MB)
    save_file({"labels": split.labels.contiguous(), "hashes": hash_tensor,
               "sizes": torch.tensor(sizes, dtype=torch.int32).view(-1, 2),
               "names": torch.from_numpy(np.frombuffer(joined, dtype=np.uint8).copy())},
              str(dest / FILES))
    os.chmod(dest / FILES, 0o644)  # (safetensors writes it for its owner alone; shards are read by others)
    return len(labels), file_digest(hash_tensor, split.labels), resized, stored


def _prepared(files: tuple[str, ...], max_side: int | None,
              threads: int | None) -> Iterator[tuple[bytes, int, int, int, bool]]:
    """Each file's stored bytes, their hash, height, width and whether they were re-encoded, in order; read in
    ``threads`` threads a window at a time (so that memory holds a window of images, not the folder)."""
    workers = threads or min(8, os.cpu_count() or 1)
    window = 8 * workers
    with ThreadPoolExecutor(workers) as pool:
        for lo in range(0, len(files), window):
            yield from pool.map(lambda f: _prepare(f, max_side), files[lo:lo + window])


def _prepare(file: str, max_side: int | None) -> tuple[bytes, int, int, int, bool]:
    data = read_file(Path(file))
    digest, height, width = inspect_bytes(data, file)
    if max_side is None or max(height, width) <= max_side:
        return data, digest, height, width, False
    data = shrink(data, file, max_side)
    digest, height, width = inspect_bytes(data, file)
    return data, digest, height, width, True


def shrink(data: bytes, name: str, max_side: int) -> bytes:
    """The image ``data`` decoded as training decodes it (:func:`~convzoo.data.images.decode_image`: EXIF
    orientation applied, transparency over black), resized to longer side ``max_side`` with its aspect ratio
    kept (Lanczos), encoded again: a JPEG as a JPEG (quality 95), anything else as PNG (lossless)."""
    from PIL import Image

    X = decode_image(data, name=name)  # C x H x W uint8
    H, W = X.shape[1:]
    scale = max_side / max(H, W)
    size = (max(1, round(W * scale)), max(1, round(H * scale)))
    pixels = X[0].numpy() if X.shape[0] == 1 else X.permute(1, 2, 0).numpy()
    image = Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if data[:3] == b"\xff\xd8\xff":  # a JPEG
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


# ---- reading ----------------------------------------------------------------------------------------------


class ShardReader:
    """The images of one packed split, read by position: ``read(i)`` is item ``i``'s bytes. litdata's
    ``StreamingDataset`` is opened in the process that reads (a DataLoader worker opens its own; nothing of it is
    pickled or inherited across a fork), and used by one thread at a time."""

    def __init__(self, where: str, split: str, cache_dir: str | None) -> None:
        self.where, self.split, self.cache_dir = where, split, cache_dir
        self._dataset: Any = None
        self._pid = -1
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"where": self.where, "split": self.split, "cache_dir": self.cache_dir}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.where, self.split, self.cache_dir = state["where"], state["split"], state["cache_dir"]
        self._dataset, self._pid, self._lock = None, -1, threading.Lock()

    def _open(self) -> Any:
        if self._dataset is None or self._pid != os.getpid():
            from litdata import StreamingDataset

            self._dataset = StreamingDataset(_join(self.where, self.split), cache_dir=self.cache_dir)
            self._pid = os.getpid()
        return self._dataset

    def __len__(self) -> int:
        with self._lock:
            return len(self._open())

    def read(self, position: int) -> bytes:
        with self._lock:
            try:
                item = self._open()[position]
            except Exception as err:  # noqa: BLE001  (whatever litdata raises: a missing chunk, a failed download)
                raise ConvzooError(f"shards:{self.where}: image {position} of {self.split}/ could not be read from "
                                   f"its chunk ({type(err).__name__}: {err})") from None
        return bytes(item["image"])


def _join(where: str, name: str) -> str:
    return f"{where.rstrip('/')}/{name}" if is_url(where) else str(Path(where) / name)


def open_shards(where: str, cache_dir: Path) -> ImageFolder:
    """The shards at ``where`` (a folder ``convzoo pack`` wrote, or a URL of one) as an image folder: each split
    a :class:`~convzoo.data.folders.FileSplit` with its labels, hashes and sizes from the manifest, its images
    read from the chunks. Checked: the manifest's format and digests, each split's image count in litdata's
    index."""
    require_shards()
    if not is_url(where):
        where = str(Path(where).expanduser())
        if not Path(where).is_dir():
            raise DataError(f"{where}: no such folder; shards:PATH needs a folder written by convzoo pack DIR PATH "
                            "(or a URL of one, e.g. shards:s3://bucket/data)")
    local = _manifest_files(where, cache_dir)
    try:
        manifest = json.loads((local / MANIFEST).read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"shards:{where}: no readable {MANIFEST} ({err}); is this a folder convzoo pack "
                        "wrote?") from None
    if manifest.get("format") != FORMAT:
        raise DataError(f"shards:{where}: written in shard format {manifest.get('format')!r}, this convzoo reads "
                        f"format {FORMAT}; pack the folder again with this convzoo")
    classes = tuple(manifest["classes"])
    chunk_cache = str(cache_dir / "shards") if is_url(where) else None
    splits: dict[str, FileSplit | None] = {"train": None, "val": None, "test": None}
    for name, recorded in manifest["splits"].items():
        splits[name] = _read_split(where, local, name, recorded, chunk_cache)
    if splits["train"] is None:
        raise DataError(f"shards:{where}: the manifest lists no train split")
    return ImageFolder(Path(where) if not is_url(where) else local, classes, splits["train"], splits["val"],
                       splits["test"], f"shards:{where}")


def _read_split(where: str, local: Path, name: str, recorded: dict[str, Any], chunk_cache: str | None) -> FileSplit:
    from safetensors import SafetensorError, safe_open

    path = local / name / FILES
    try:
        with safe_open(str(path), framework="pt") as f:
            labels, hashes, sizes = (f.get_tensor(k) for k in ("labels", "hashes", "sizes"))
            names = f.get_tensor("names").numpy().tobytes().decode().split("\0")
        indexed = sum(int(c["chunk_size"]) for c in json.loads((local / name / "index.json").read_text())["chunks"])
    except (OSError, ValueError, KeyError, SafetensorError) as err:
        raise DataError(f"shards:{where}: {name}/ is damaged or incomplete ({type(err).__name__}: {err}); pack the "
                        "folder again") from None
    count = int(recorded["images"])
    digest = file_digest(hashes, labels)
    if not len(labels) == len(hashes) == len(sizes) == len(names) == indexed == count or digest != recorded["digest"]:
        raise DataError(f"shards:{where}: {name}/ does not hold what the manifest records ({count} images, "
                        f"{indexed} in litdata's index); pack the folder again")
    return FileSplit(tuple(f"shards:{where}[{n}]" for n in names), labels, hashes, sizes, digest,
                     torch.arange(count), ShardReader(where, name, chunk_cache))


def _manifest_files(where: str, cache_dir: Path) -> Path:
    """A local folder holding the manifest and each split's ``convzoo-files.safetensors`` and ``index.json``:
    ``where`` itself, or for a URL a copy fetched now (through litdata's downloader) into the cache."""
    if not is_url(where):
        return Path(where)
    from litdata.streaming.downloader import get_downloader

    local = cache_dir / "shards" / "manifests" / hashlib.sha256(where.encode()).hexdigest()[:24]
    local.mkdir(parents=True, exist_ok=True)
    downloader = get_downloader(where, str(local), [])

    def fetch(name: str) -> None:
        target = local / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)  # always fetched again: the shards at a URL may have been packed anew
        try:
            downloader.download_file(_join(where, name), str(target))
        except Exception as err:  # noqa: BLE001  (each store's client raises its own)
            raise DataError(f"shards:{where}: could not fetch {name} ({type(err).__name__}: {err})") from None
        if not target.is_file():
            raise DataError(f"shards:{where}: could not fetch {name}; is this where convzoo pack wrote the shards, "
                            "and can this machine read it?")

    fetch(MANIFEST)
    try:
        splits = json.loads((local / MANIFEST).read_text())["splits"]
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"shards:{where}: {MANIFEST} is not readable ({err})") from None
    for name in splits:
        fetch(f"{name}/{FILES}")
        fetch(f"{name}/index.json")
    return local
