"""Training from shards against training from the folder (issue 29): the same run, several processes (torchrun,
gloo), once with ``--dataset imagefolder:DIR --stream`` and once with ``--dataset shards:OUT`` after ``convzoo
pack DIR OUT``, on synthetic photo-like JPEGs.

    python benchmarks/shard_training.py [--images 600] [--model fastcnn_cifar_small] [--image-size 64] [--epochs 2]
                                        [--batch-size 32] [--processes 2] [--workers 1] [--runs 2]
                                        [--json FILE] [--quick]

Each round trains the run once from each source, the two taking turns (the order swapped every round) so that
a busy machine slows both alike. Figures, medians over the rounds: the run's own training throughput
(``e2e_img_s`` of metrics.jsonl: training images per second of each epoch, evaluation included, the
processes' start-up left out; median over epochs) and the whole command's wall time. The two runs read the
same images in the same order with the same crops, so their weights must agree to float rounding: checked and
printed (the largest difference). ``--quick`` is a smoke run: a few images, one round, one epoch.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def write_folder(root: Path, images: int, width: int, height: int, seed: int = 0) -> None:
    """``images`` photo-like JPEGs (smooth colour fields with grain, quality 90) in ``root/train/<class>/``, 4
    classes each tinted its own way, and a tenth as many in ``root/val/``."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", images), ("val", max(4, images // 10))):
        for i in range(count):
            label = i % 4
            coarse = rng.integers(0, 256, (height // 24 + 2, width // 24 + 2, 3), dtype=np.uint8)
            coarse[..., label % 3] = 200 if label < 3 else coarse[..., 0]
            smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), np.int16)
            pixels = np.clip(smooth + rng.normal(0, 6, smooth.shape), 0, 255).astype(np.uint8)
            path = root / split / f"class{label}" / f"{i:06d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
            path.write_bytes(buffer.getvalue())


def train(args: argparse.Namespace, dataset: str, out: Path) -> dict[str, float]:
    command = [sys.executable, "-m", "convzoo", "train", "--model", args.model, "--dataset", dataset,
               "--image-size", str(args.image_size), "--epochs", str(args.epochs), "--batch-size",
               str(args.batch_size), "--workers", str(args.workers), "--optimizer", "momentum", "--lr", "0.03",
               "--quiet", "--out", str(out)]
    if dataset.startswith("imagefolder:"):
        command.append("--stream")  # (shards always stream)
    if args.processes > 1:
        command += ["--nproc-per-node", str(args.processes)]
    else:
        command += ["--threads", "1"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")} | {"OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"shard_training: the run failed ({' '.join(command)}):\n{done.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"img_s": statistics.median(r["e2e_img_s"] for r in rows), "wall": wall,
            "epoch_time": sum(r["epoch_time"] for r in rows), "val_acc": rows[-1]["val_acc"]}


def max_difference(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    one, two = (load_file(p / "checkpoints" / "last" / "model.safetensors") for p in (a, b))
    return max(float((one[k].double() - two[k].double()).abs().max()) for k in one)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600, help="training images, 400x300 JPEGs (default 600)")
    parser.add_argument("--model", default="fastcnn_cifar_small")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1, help="loader workers per process (default 1)")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--quick", action="store_true", help="smoke run: 48 images, 1 epoch, 1 round")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.epochs, args.runs, args.batch_size = 48, 1, 1, 8
    from convzoo.data.shards import pack_folder

    with tempfile.TemporaryDirectory(prefix="shard-training-") as tmp:
        work = Path(tmp)
        write_folder(work / "photos", args.images, 400, 300)
        packed = pack_folder(work / "photos", work / "shards", cache_dir=work / "cache")
        sources = {"folder": f"imagefolder:{work / 'photos'}", "shards": f"shards:{work / 'shards'}"}
        results: dict[str, list[dict[str, float]]] = {name: [] for name in sources}
        differences = []
        for round_ in range(args.runs):
            names = list(sources) if round_ % 2 == 0 else list(reversed(sources))
            for name in names:
                results[name].append(train(args, sources[name], work / f"{name}-{round_}"))
            differences.append(max_difference(work / f"folder-{round_}", work / f"shards-{round_}"))
    print(f"{args.images} training JPEGs of 400x300 (+{max(4, args.images // 10)} val), {args.model} at "
          f"{args.image_size} px, batch {args.batch_size}, {args.epochs} epoch(s), {args.processes} process(es) x "
          f"{args.workers} loader worker(s); median of {args.runs} round(s)")
    print(f"convzoo pack: {sum(packed.images.values())} images, {packed.stored_bytes / 1e6:.1f} MB in "
          f"{packed.seconds:.2f} s")
    print(f"{'source':<8} {'train img/s':>12} {'epochs s':>9} {'wall s':>7} {'val acc':>8}")
    figures: dict[str, dict[str, float]] = {}
    for name, runs in results.items():
        figures[name] = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        f = figures[name]
        print(f"{name:<8} {f['img_s']:>12,.1f} {f['epoch_time']:>9.2f} {f['wall']:>7.2f} {f['val_acc']:>8.3f}")
    ratio = figures["shards"]["img_s"] / figures["folder"]["img_s"]
    print(f"shards / folder throughput: {ratio:.2f}x; largest weight difference between the two runs "
          f"{max(differences):.2e}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "figures": figures, "ratio": ratio,
                                               "max_weight_difference": max(differences),
                                               "pack_seconds": packed.seconds}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
