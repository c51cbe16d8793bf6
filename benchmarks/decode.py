"""JPEG decoding speed for a 224-pixel pipeline: Pillow (as convzoo decoded before), Pillow's draft mode,
torchvision.io.decode_jpeg, simplejpeg and PyTurboJPEG, single thread, and whether each one's pixels equal
Pillow's (issue 29: decoding speed).

    python benchmarks/decode.py [--photos N] [--synthetic N] [--repeats R] [--json FILE] [--quick]

Inputs: real photos from ``../shared/data/photos/caltech101-top10.tar.gz`` (read from the tarball into memory;
128-494 px, some grayscale) and synthetic photo-like JPEGs of 400x300 and 1000x750 written here (smooth
colour fields with grain, quality 90, Pillow's default 4:2:0 chroma subsampling). Every decoder decodes the
same bytes from memory, so disk speed does not count; each set is decoded once untimed by every decoder (the
pixel check, also a warm-up), then once per repeat by every decoder in turn (the order rotated each repeat,
so a busy machine slows all alike), and the median images/s is shown.

Rows:

- ``pillow``: ``Image.open`` + ``np.asarray``, what ``decode_image`` did before this benchmark.
- ``pillow+draft``: Pillow's ``draft()``, which decodes at 1/2, 1/4 or 1/8 scale in the DCT domain, as
  small as keeps both sides >= 256 (the eval preset's resize of ``round(224 / 0.875)``). Its output is
  smaller, so its "diff" compares the eval preset's 224x224 crops of both; a legitimate option only for a
  path that resizes anyway, never for ``decode_image`` (whose contract is the file's own pixels).
- ``torchvision.io``: ``decode_jpeg`` on a uint8 tensor of the bytes (``ImageReadMode.UNCHANGED``).
- ``simplejpeg`` and ``PyTurboJPEG`` (libjpeg-turbo bindings), accurate DCT and fancy upsampling (their
  defaults, Pillow's settings), header read included; ``simplejpeg fast`` adds ``fastdct`` and
  ``fastupsample``, to show what the inexact settings would buy.
- ``convzoo.decode_image``: convzoo's decoder as it is now, file bytes to ``C x H x W``, checks included
  (simplejpeg inside when installed); ``convzoo, Pillow path``: the same function's Pillow path, what it
  does for every JPEG without simplejpeg.

A decoder whose package is not installed is left out, with a note. ``--quick`` is a smoke run: a few images,
one repeat.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # single thread, before torch is imported

import argparse
import io
import json
import statistics
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PHOTOS = SHARED / "photos" / "caltech101-top10.tar.gz"
SIZE = 224
DRAFT_SIDE = round(SIZE / 0.875)  # 256: the eval preset's shorter side before its centre crop

Decoder = Callable[[bytes], np.ndarray]  # bytes -> H x W x C uint8 (C = 1 or 3)


def photos(limit: int) -> list[bytes]:
    """The tarball's JPEGs in name order, every k-th so that ``limit`` of them spread over all classes."""
    with tarfile.open(PHOTOS) as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile() and m.name.lower().endswith(".jpg")),
                         key=lambda m: m.name)
        if limit:
            members = members[:: max(1, len(members) // limit)][:limit]
        return [tar.extractfile(m).read() for m in members]  # type: ignore[union-attr]


def synthetic(n: int, width: int, height: int, seed: int) -> list[bytes]:
    """``n`` photo-like JPEGs: a smooth random colour field (bicubic from a coarse grid) plus grain."""
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


def _hwc(array: np.ndarray) -> np.ndarray:
    return array[..., None] if array.ndim == 2 else array


def pillow(data: bytes) -> np.ndarray:
    return _hwc(np.asarray(Image.open(io.BytesIO(data))))


def pillow_draft(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    image.draft(image.mode, (DRAFT_SIDE, DRAFT_SIDE))  # the largest 1/2^k scale keeping both sides >= 256
    return _hwc(np.asarray(image))


def decoders() -> tuple[dict[str, Decoder], list[str]]:
    """The decoders whose packages are installed, and a note for each one that is not."""
    from torchvision.io import ImageReadMode, decode_jpeg

    from convzoo.data import images
    from convzoo.data.images import decode_image

    found: dict[str, Decoder] = {"pillow": pillow, "pillow+draft": pillow_draft}
    # decode_jpeg takes a tensor: the loader would read the file into one (torchvision.io.read_file), so the
    # bytes -> tensor view is part of its cost here (no copy)
    found["torchvision.io"] = lambda data: decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8),
                                                       mode=ImageReadMode.UNCHANGED).permute(1, 2, 0).numpy()
    missing = []
    try:
        import simplejpeg
    except ImportError:
        missing.append("simplejpeg (pip install simplejpeg)")
    else:
        def simple(data: bytes, fast: bool = False) -> np.ndarray:
            gray = simplejpeg.decode_jpeg_header(data)[2] == "Gray"
            return simplejpeg.decode_jpeg(data, colorspace="GRAY" if gray else "RGB", fastdct=fast,
                                          fastupsample=fast)

        found["simplejpeg"] = simple
        found["simplejpeg fast"] = lambda data: simple(data, fast=True)
    try:
        import turbojpeg

        tj = turbojpeg.TurboJPEG()  # needs the system's libturbojpeg
    except (ImportError, OSError, RuntimeError) as err:
        missing.append(f"PyTurboJPEG ({type(err).__name__}: {str(err).splitlines()[0]})")
    else:
        def turbo(data: bytes) -> np.ndarray:
            gray = tj.decode_header(data)[3] == turbojpeg.TJCS_GRAY
            return tj.decode(data, pixel_format=turbojpeg.TJPF_GRAY if gray else turbojpeg.TJPF_RGB)

        found["PyTurboJPEG"] = turbo
    found["convzoo.decode_image"] = lambda data: decode_image(data).permute(1, 2, 0).numpy()
    # decode_image's own Pillow path (what it does for every JPEG without simplejpeg), checks included
    found["convzoo, Pillow path"] = lambda data: images._to_tensor(images._canonical(
        images._open(data, "<bytes>", images.MAX_PIXELS))).permute(1, 2, 0).numpy()
    return found, missing


def differences(name: str, decode: Decoder, images: list[bytes]) -> tuple[int, float]:
    """(max, mean) absolute difference from Pillow's pixels over ``images``; for the draft mode, between the
    eval preset's crops of both (its own output is smaller)."""
    from convzoo.data.presets import eval_transform

    crop = eval_transform(SIZE)
    worst, total, count = 0, 0.0, 0
    for data in images:
        mine, reference = decode(data).astype(np.int16), pillow(data).astype(np.int16)
        if name == "pillow+draft":
            mine, reference = (crop(torch.from_numpy(a.astype(np.uint8)).permute(2, 0, 1)).permute(1, 2, 0).numpy()
                               .astype(np.int16) for a in (mine, reference))
        if mine.shape != reference.shape:
            raise AssertionError(f"{name}: shape {mine.shape}, Pillow's {reference.shape}")
        diff = np.abs(mine - reference)
        worst, total, count = max(worst, int(diff.max())), total + float(diff.sum()), count + diff.size
    return worst, total / count


def draft_scaled(images: list[bytes]) -> int:
    """How many of ``images`` the draft mode decodes at a reduced scale."""
    return sum(pillow_draft(d).shape[:2] != pillow(d).shape[:2] for d in images)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=600, help="how many of the real photos (0: all 3,044)")
    parser.add_argument("--synthetic", type=int, default=60, help="synthetic JPEGs of each size")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--quick", action="store_true", help="smoke run: 8 photos, 3 of each size, 1 repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.photos, args.synthetic, args.repeats = 8, 3, 1
    torch.set_num_threads(1)
    sets: dict[str, list[bytes]] = {}
    if PHOTOS.exists():
        sets["caltech101 photos"] = photos(args.photos)
    else:
        print(f"note: {PHOTOS} not found: the real photos are left out")
    sets["synthetic 400x300"] = synthetic(args.synthetic, 400, 300, seed=0)
    sets["synthetic 1000x750"] = synthetic(args.synthetic, 1000, 750, seed=1)
    found, missing = decoders()
    for note in missing:
        print(f"note: not installed, left out: {note}")
    import PIL.features

    print(f"Pillow {Image.__version__} (libjpeg-turbo {PIL.features.version('libjpeg_turbo')}); single thread; "
          f"images/s, median of {args.repeats}; diff = max |pixel - Pillow's| (mean)")
    rows = []
    for set_name, images in sets.items():
        # the pixel check first: it is also every decoder's untimed warm-up pass over the set
        diffs = {name: differences(name, decode, images) for name, decode in found.items()}
        rates: dict[str, list[float]] = {name: [] for name in found}
        for repeat in range(args.repeats):
            names = list(found)
            names = names[repeat % len(names):] + names[: repeat % len(names)]
            for name in names:
                decode = found[name]
                start = time.perf_counter()
                for data in images:
                    decode(data)
                rates[name].append(len(images) / (time.perf_counter() - start))
        base = statistics.median(rates["pillow"])
        scaled = draft_scaled(images)
        print(f"\n{set_name}: {len(images)} JPEGs; the draft mode reduced {scaled} of them")
        print(f"{'decoder':<22}{'images/s':>10}{'x Pillow':>10}  diff")
        for name in found:
            rate = statistics.median(rates[name])
            worst, mean = diffs[name]
            rows.append({"set": set_name, "decoder": name, "images": len(images), "images_per_s": rate,
                         "vs_pillow": rate / base, "max_abs_diff": worst, "mean_abs_diff": mean,
                         "draft_reduced": scaled if name == "pillow+draft" else None})
            print(f"{name:<22}{rate:>10.0f}{rate / base:>10.2f}  {worst} ({mean:.4f})"
                  + ("  (of the 224 crops)" if name == "pillow+draft" else ""), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"repeats": args.repeats, "missing": missing, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
