"""The streaming loader against the usual one: images/s at 224 px, and the training step it feeds (issue 29).

    python benchmarks/loader.py [--data FOLDER_OR_TAR] [--size 224] [--workers 2] [--batch-size 64]
        [--images 1500] [--repeats 3] [--model resnet18] [--json FILE]

Both sides read the same training files (by default the real photos of ../shared/data/photos, extracted
once) and give normalised float batches ``B x 3 x S x S``: decode, ``RandomResizedCrop(S)``, horizontal flip,
scale and normalise.

- convzoo: ``convzoo.train.loader.StreamBatches`` (files decoded by ``decode_image`` in ``DataLoader``
  workers, uint8 crops collated, normalised in the training process), as ``convzoo train --stream`` uses it;
- usual: torchvision's ``ImageFolder`` (Pillow loader, RGB) + ``DataLoader`` with the same workers, batch size
  and a ``transforms.v2`` pipeline of the same steps (``ToImage``, ``RandomResizedCrop``, flip, ``ToDtype``,
  ``Normalize``) in the workers, as torchvision's reference recipe does.

The sides alternate, ``--repeats`` times each, in this one process (each pass over ``--images`` images with
fresh workers; the workers' start is inside the time); the median images/s of each and their ratio are
printed. Beside them, the images/s of ``--model``'s training step at that size on random data
(``convzoo.bench.benchmark_model``): the loader is not the bottleneck when it delivers more than the step eats.
The loader's workers and the step share the machine's cores when training; each is timed alone here.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PHOTOS = SHARED / "photos" / "caltech101-top10.tar.gz"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def extracted(data: Path, work: Path) -> Path:
    """The training folder (class folders) of ``data``: a folder, or a .tar.gz extracted once into ``work``."""
    if data.is_file():
        target = work / data.name.removesuffix(".tar.gz")
        if not (target / ".complete").exists():
            target.mkdir(parents=True, exist_ok=True)
            with tarfile.open(data) as tar:
                tar.extractall(target, filter="data")
            (target / ".complete").write_text("")
        data = target
    for candidate in (data / "train", *(p / "train" for p in data.iterdir() if p.is_dir())):
        if candidate.is_dir():
            return candidate
    return data


def files_of(train: Path, limit: int) -> list[tuple[str, int]]:
    """The first ``limit`` files of a fixed seeded shuffle of the folder, with their labels."""
    import random

    classes = sorted(p.name for p in train.iterdir() if p.is_dir())
    files = [(str(f), label) for label, c in enumerate(classes) for f in sorted((train / c).iterdir()) if f.is_file()]
    random.Random(0).shuffle(files)
    return files[:limit]


def convzoo_pass(files: list[tuple[str, int]], args: argparse.Namespace) -> float:
    import torch

    from convzoo.data.folders import FileSplit
    from convzoo.data.presets import train_transform
    from convzoo.train.loader import StreamBatches
    from convzoo.train.pipeline import Preprocess

    split = FileSplit(tuple(f for f, _ in files), torch.tensor([y for _, y in files], dtype=torch.int64))
    start = time.perf_counter()
    batches = StreamBatches(split, args.batch_size, device=torch.device("cpu"),
                            preprocess=Preprocess(3, None, MEAN, STD, channels_last=True),
                            transform=train_transform(args.size), channels=3, shuffle=True, seed=0,
                            workers=args.workers)
    seen = sum(len(y) for _, _X, y in batches.epoch(0))
    seconds = time.perf_counter() - start
    del batches
    return seen / seconds


def torchvision_pass(files: list[tuple[str, int]], args: argparse.Namespace) -> float:
    import torch
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    transform = v2.Compose([v2.ToImage(), v2.RandomResizedCrop(args.size, antialias=True), v2.RandomHorizontalFlip(),
                            v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])
    dataset = ImageFolder(str(Path(files[0][0]).parents[1]), transform=transform)
    dataset.samples = dataset.imgs = list(files)  # the same files as convzoo's side, in the same set
    dataset.targets = [y for _, y in files]
    torch.manual_seed(0)
    start = time.perf_counter()
    loader = DataLoader(dataset, args.batch_size, shuffle=True, num_workers=args.workers, drop_last=True,
                        persistent_workers=False)
    seen = sum(len(y) for _X, y in loader)
    return seen / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=PHOTOS, help="folder (class folders or train/) or .tar.gz")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--images", type=int, default=1500, help="images per pass (default 1500)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="resnet18", help="whose training step is timed beside ('' to skip)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "convzoo-loader-bench")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not args.data.exists():
        sys.exit(f"{args.data}: not found; give --data a folder of class folders or a .tar.gz of one")
    args.work.mkdir(parents=True, exist_ok=True)
    files = files_of(extracted(args.data, args.work), args.images)
    rates: dict[str, list[float]] = {"convzoo": [], "torchvision": []}
    for r in range(args.repeats):
        for side, run in (("torchvision", torchvision_pass), ("convzoo", convzoo_pass)):
            rates[side].append(run(files, args))
            print(f"pass {r + 1}: {side:<11} {rates[side][-1]:7.1f} images/s", flush=True)
    ours, theirs = statistics.median(rates["convzoo"]), statistics.median(rates["torchvision"])
    print(f"\n{len(files)} files at {args.size} px, {args.workers} workers, batch {args.batch_size}, {os.cpu_count()} "
          f"cores: convzoo {ours:.1f} images/s, torchvision ImageFolder + DataLoader {theirs:.1f} images/s; "
          f"ratio {ours / theirs:.2f}x (goal >= 1.0x)")
    step = None
    if args.model:
        import torch

        from convzoo.bench import benchmark_model

        torch.set_num_threads(os.cpu_count() or 1)
        step = benchmark_model(args.model, input_size=(3, args.size, args.size), batch_size=args.batch_size,
                               mode="train", seconds=10.0, channels_last=True, peak=1.0).images_per_s
        print(f"{args.model}'s training step at {args.size} px, batch {args.batch_size}, channels_last: {step:.1f} "
              f"images/s; the loader delivers {ours / step:.1f}x what it eats")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rates": rates,
                                         "median": {"convzoo": ours, "torchvision": theirs}, "ratio": ours / theirs,
                                         "train_step_images_per_s": step}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
