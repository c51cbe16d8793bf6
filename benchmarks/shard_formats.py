"""Which streaming library's shards ``convzoo pack`` writes (issue 29): pack time and read images/s of litdata,
MosaicML Streaming (MDS) and WebDataset on the same synthetic JPEGs, each library that is installed.

    python benchmarks/shard_formats.py [--images N] [--repeats R] [--json FILE] [--quick]

Every library stores the same thing: each image's JPEG bytes and its label, in shards of ``--shard-mb`` MB
(the JPEGs are made once, in memory, so the files' disk speed does not count). Measured per library:

- ``pack``: writing every image into a fresh folder, the library's own writer, index included; and for
  litdata also ``convzoo pack`` of the same images as a folder (every file read, its header parsed and hashed:
  what the command does, not only the library);
- ``sequential``: reading every image's bytes back in the stored order through the library's dataset;
- ``random``: reading them by index in a random order, what convzoo's sampler asks for (the order of the
  folder path's global batches); WebDataset has no index (tar files read front to back), so it has no
  random row: reaching image ``i`` means reading the shard up to it.

Nothing is decoded (decoding is the same for all; ``benchmarks/decode.py`` times it). Each figure is the median
of ``--repeats`` rounds, the libraries taking turns within each round (a busy machine slows all alike).
A library that is not installed is left out with a note. ``--quick`` is a smoke run: a few images, one round.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import io
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

Item = tuple[bytes, int]


def synthetic(n: int, width: int, height: int, seed: int = 0) -> list[bytes]:
    """``n`` photo-like JPEGs (a smooth random colour field plus grain, quality 90), as decode.py makes them."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        coarse = rng.integers(0, 256, (height // 24 + 2, width // 24 + 2, 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), np.int16)
        grain = rng.normal(0, 6, smooth.shape).astype(np.int16)
        buffer = io.BytesIO()
        Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


class Library:
    """One library's writer and readers: ``pack`` writes ``items`` to ``folder``; ``sequential`` and ``random``
    give back the bytes of every image (``random``: in the order ``order``), or None when it cannot."""

    name = ""

    def pack(self, items: list[Item], folder: Path, shard_bytes: int) -> None:
        raise NotImplementedError

    def sequential(self, folder: Path) -> list[bytes]:
        raise NotImplementedError

    def random(self, folder: Path, order: list[int]) -> list[bytes] | None:
        return None


class Litdata(Library):
    name = "litdata"

    def pack(self, items: list[Item], folder: Path, shard_bytes: int) -> None:
        from litdata.streaming.writer import BinaryWriter

        writer = BinaryWriter(str(folder), chunk_bytes=shard_bytes)
        for i, (data, label) in enumerate(items):
            writer.add_item(i, {"image": data, "label": label})
        writer.done()
        writer.merge()

    def sequential(self, folder: Path) -> list[bytes]:
        from litdata import StreamingDataset

        return [bytes(item["image"]) for item in StreamingDataset(str(folder))]

    def random(self, folder: Path, order: list[int]) -> list[bytes]:
        from litdata import StreamingDataset

        dataset = StreamingDataset(str(folder))
        return [bytes(dataset[i]["image"]) for i in order]


class Mosaic(Library):
    name = "MosaicML Streaming"

    def pack(self, items: list[Item], folder: Path, shard_bytes: int) -> None:
        from streaming import MDSWriter

        with MDSWriter(out=str(folder), columns={"image": "bytes", "label": "int"}, size_limit=shard_bytes) as out:
            for data, label in items:
                out.write({"image": data, "label": label})

    def _dataset(self, folder: Path):  # type: ignore[no-untyped-def]
        from streaming import StreamingDataset
        from streaming.base.util import clean_stale_shared_memory

        clean_stale_shared_memory()  # (its shared-memory names are per local folder)
        return StreamingDataset(local=str(folder), shuffle=False, batch_size=1)

    def sequential(self, folder: Path) -> list[bytes]:
        return [bytes(item["image"]) for item in self._dataset(folder)]

    def random(self, folder: Path, order: list[int]) -> list[bytes]:
        dataset = self._dataset(folder)
        return [bytes(dataset[i]["image"]) for i in order]


class Webdataset(Library):
    name = "WebDataset"

    def pack(self, items: list[Item], folder: Path, shard_bytes: int) -> None:
        import webdataset

        folder.mkdir(parents=True, exist_ok=True)
        with webdataset.ShardWriter(str(folder / "shard-%06d.tar"), maxsize=shard_bytes, verbose=0) as out:
            for i, (data, label) in enumerate(items):
                out.write({"__key__": f"{i:08d}", "jpg": data, "cls": label})

    def sequential(self, folder: Path) -> list[bytes]:
        import webdataset

        urls = [str(p) for p in sorted(folder.glob("shard-*.tar"))]
        return [sample["jpg"] for sample in webdataset.WebDataset(urls, shardshuffle=False, empty_check=False)]


def libraries() -> tuple[list[Library], list[str]]:
    found: list[Library] = []
    missing = []
    for library, module, package in ((Litdata(), "litdata", "litdata"), (Mosaic(), "streaming", "mosaicml-streaming"),
                                     (Webdataset(), "webdataset", "webdataset")):
        try:
            __import__(module)
        except ImportError as err:
            missing.append(f"{library.name} (pip install {package}: {err})")
        else:
            found.append(library)
    return found, missing


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def convzoo_pack_seconds(jpegs: list[bytes], work: Path, shard_bytes: int) -> float:
    """``convzoo pack`` of the same images written as a folder of two classes (train/ only)."""
    from convzoo.data.shards import pack_folder

    root = work / "folder"
    if not root.exists():
        for i, data in enumerate(jpegs):
            path = root / "train" / f"class{i % 2}" / f"{i:06d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    shutil.rmtree(work / "convzoo-pack", ignore_errors=True)
    return pack_folder(root, work / "convzoo-pack", cache_dir=work / "cache", chunk_bytes=shard_bytes).seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=400, help="synthetic 400x300 JPEGs (default 400)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shard-mb", type=float, default=4.0, help="shard size in MB (default 4: several shards)")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--quick", action="store_true", help="smoke run: 24 images, one round")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.repeats, args.shard_mb = 24, 1, 0.2
    found, missing = libraries()
    jpegs = synthetic(args.images, 400, 300)
    items = [(data, i % 2) for i, data in enumerate(jpegs)]
    megabytes = sum(map(len, jpegs)) / 1e6
    shard_bytes = int(args.shard_mb * 1e6)
    order = list(range(len(items)))
    random.Random(0).shuffle(order)
    times: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="shard-formats-") as tmp:
        work = Path(tmp)
        for round_ in range(args.repeats):
            turn = found[round_ % len(found):] + found[:round_ % len(found)] if found else []
            for library in turn:
                folder = work / f"{type(library).__name__}-{round_}"
                seconds, _ = _timed(lambda: library.pack(items, folder, shard_bytes))  # noqa: B023
                times.setdefault((library.name, "pack"), []).append(seconds)
                seconds, got = _timed(lambda: library.sequential(folder))  # noqa: B023
                assert got == jpegs, f"{library.name}: sequential read gave other bytes"
                times.setdefault((library.name, "sequential"), []).append(seconds)
                seconds, got = _timed(lambda: library.random(folder, order))  # noqa: B023
                if got is not None:
                    assert got == [jpegs[i] for i in order], f"{library.name}: random read gave other bytes"
                    times.setdefault((library.name, "random"), []).append(seconds)
                shutil.rmtree(folder, ignore_errors=True)
            if any(isinstance(library, Litdata) for library in found):
                times.setdefault(("convzoo pack (litdata)", "pack"), []).append(
                    convzoo_pack_seconds(jpegs, work, shard_bytes))
    print(f"{len(jpegs)} synthetic 400x300 JPEGs, {megabytes:.1f} MB, shards of {args.shard_mb:g} MB; median of "
          f"{args.repeats} round(s)")
    for note in missing:
        print(f"left out: {note}")
    rows = []
    header = f"{'library':<24} {'pack s':>8} {'pack img/s':>11} {'sequential img/s':>17} {'random img/s':>13}"
    print(header)
    for name in dict.fromkeys(n for n, _ in times):
        row: dict[str, object] = {"library": name}
        cells = []
        for what in ("pack", "sequential", "random"):
            values = times.get((name, what))
            median = statistics.median(values) if values else None
            row[f"{what}_s"] = median
            row[f"{what}_images_per_s"] = len(jpegs) / median if median else None
            if what == "pack":
                cells.append(f"{median:>8.3f} {len(jpegs) / median:>11,.0f}" if median else f"{'-':>8} {'-':>11}")
            else:
                width = 17 if what == "sequential" else 13
                cells.append(f"{len(jpegs) / median:>{width},.0f}" if median else f"{'n/a':>{width}}")
        rows.append(row)
        print(f"{name:<24} {' '.join(cells)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"images": len(jpegs), "megabytes": megabytes, "rows": rows,
                                               "missing": missing}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
