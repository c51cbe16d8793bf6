"""convzoo train on a folder of real photos against the usual script, same model, transforms and recipe.

The reference is written the way torchvision's ``references/classification/train.py`` trains: torchvision's
``ImageFolder`` on ``train/`` and ``val/``, ``transforms.v2`` presets (training: ``RandomResizedCrop(S)`` and a
horizontal flip; evaluation: ``Resize(round(S / 0.875))`` and ``CenterCrop(S)``; both ``ToDtype`` and
``Normalize`` with ImageNet's mean and std, as the reference script does), a ``DataLoader`` with worker
processes, SGD with momentum and weight decay, cross-entropy with label smoothing, and the learning rate set
every step by the same warm-up + cosine formula convzoo's schedule uses (the reference steps its scheduler per
epoch; per step here, so that the two sides follow one schedule). The model is convzoo's (``create_model``),
with its default initialisation. convzoo: ``convzoo train`` with the same settings as flags.

Runs alternate (reference, convzoo) per seed as child processes; each side's time is the whole process's
wall clock (start-up, data, every epoch with its evaluation of ``val/``). Prints the times, the ratio
(reference / convzoo) and the val accuracy after the last epoch of each side.

    python benchmarks/vs_reference_photos.py --data /path/to/caltech101-top10 --model resnet18 --image-size 160 \
        --epochs 5 --runs 1
    python benchmarks/vs_reference_photos.py --data ../shared/data/photos/caltech101-top10.tar.gz ...  (extracted once)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def lr_at(step: int, steps_per_epoch: int, args: argparse.Namespace) -> float:
    """The learning rate of step ``step``: linear warm-up from 0, then cosine to 0 (convzoo's formula)."""
    total, warm = args.epochs * steps_per_epoch, args.warmup_epochs * steps_per_epoch
    if step < warm:
        return args.lr * (step + 1) / warm
    progress = (step - warm) / max(1.0, total - warm)
    return args.lr * 0.5 * (1 + math.cos(math.pi * progress))


def reference_worker(args: argparse.Namespace) -> dict:
    import torch
    import torchvision
    from torch import nn
    from torch.utils.data import DataLoader
    from torchvision.transforms import v2

    import convzoo

    torch.manual_seed(args.seed)
    size = args.image_size
    normalize = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    train_tf = v2.Compose([v2.PILToTensor(), v2.RandomResizedCrop(size, antialias=True),
                           v2.RandomHorizontalFlip(0.5), *normalize])
    eval_tf = v2.Compose([v2.PILToTensor(), v2.Resize(round(size / 0.875), antialias=True), v2.CenterCrop(size),
                          *normalize])
    loader = lambda path: torchvision.datasets.folder.pil_loader(path)  # noqa: E731  (RGB, as the reference)
    train = torchvision.datasets.ImageFolder(str(args.data / "train"), transform=train_tf, loader=loader)
    val = torchvision.datasets.ImageFolder(str(args.data / "val"), transform=eval_tf, loader=loader)
    train_iter = DataLoader(train, args.batch_size, shuffle=True, num_workers=args.workers, drop_last=False,
                            persistent_workers=args.workers > 0)
    val_iter = DataLoader(val, args.batch_size, shuffle=False, num_workers=args.workers,
                          persistent_workers=args.workers > 0)
    net = convzoo.create_model(args.model, num_classes=len(train.classes), in_channels=3)  # (RGB, as convzoo)
    optimizer = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=0.9, weight_decay=args.weight_decay)
    criterion = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    steps, step, epochs = len(train_iter), 0, []
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        net.train()
        for X, y in train_iter:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, steps, args)
            loss = criterion(net(X), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
        net.eval()
        correct = seen = 0
        with torch.inference_mode():
            for X, y in val_iter:
                correct += int((net(X).argmax(1) == y).sum())
                seen += len(y)
        epochs.append({"epoch_time": time.perf_counter() - t0, "val_acc": correct / seen})
    return {"epochs": epochs}


def convzoo_command(args: argparse.Namespace, out: Path) -> list[str]:
    return [sys.executable, "-m", "convzoo", "train", "--model", args.model, "--dataset", f"imagefolder:{args.data}",
            "--image-size", str(args.image_size), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
            "--optimizer", "momentum", "--momentum", "0.9", "--lr", str(args.lr), "--weight-decay",
            str(args.weight_decay), "--schedule", "cosine", "--warmup-epochs", str(args.warmup_epochs),
            "--label-smoothing", str(args.label_smoothing), "--seed", str(args.seed), "--out", str(out), "--quiet",
            *args.convzoo_flag]


def _val_acc(row: dict) -> float:
    for key in ("val_acc", "test_acc"):
        if row.get(key) is not None:
            return float(row[key])
    raise KeyError(f"no val accuracy in {sorted(row)}")


def extracted(data: Path, work: Path) -> Path:
    """A folder with train/ and val/: ``data`` itself, or the .tar.gz extracted once into ``work``."""
    if data.is_dir():
        return data
    target = work / data.name.removesuffix(".tar.gz")
    if not (target / ".complete").exists():
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(data) as tar:
            tar.extractall(target, filter="data")
        (target / ".complete").write_text("")
    inner = [p for p in target.iterdir() if p.is_dir()]
    return inner[0] if len(inner) == 1 and not (target / "train").exists() else target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with train/ and val/, or a .tar.gz of one")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--warmup-epochs", type=float, default=1.0)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the reference")
    parser.add_argument("--runs", type=int, default=1, help="runs per side (seeds 0..runs-1)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "convzoo-vs-reference-photos")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--convzoo-flag", action="append", default=[], metavar="FLAG",
                        help="an extra flag for convzoo train (repeatable)")
    parser.add_argument("--worker", choices=("reference",), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "reference":
        print(json.dumps(reference_worker(args)))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    args.data = extracted(args.data, args.work)
    if not (args.data / "train").is_dir() or not (args.data / "val").is_dir():
        sys.exit(f"{args.data}: expected train/ and val/ folders of class folders")
    results: dict[str, list[dict]] = {"reference": [], "convzoo": []}
    for seed in range(args.runs):
        command = [sys.executable, __file__, "--worker", "reference", "--seed", str(seed)]
        for name in ("data", "model", "image_size", "epochs", "batch_size", "lr", "weight_decay", "warmup_epochs",
                     "label_smoothing", "workers"):
            command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
        t0 = time.perf_counter()
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        ref = json.loads(done.stdout.strip().splitlines()[-1]) | {"seconds": time.perf_counter() - t0}
        results["reference"].append(ref)
        out = Path(tempfile.mkdtemp(dir=args.work, prefix="convzoo-")) / "run"
        t0 = time.perf_counter()
        subprocess.run(convzoo_command(argparse.Namespace(**{**vars(args), "seed": seed}), out), check=True,
                       stdout=subprocess.DEVNULL)
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        ours = {"seconds": time.perf_counter() - t0,
                "epochs": [{"epoch_time": r["epoch_time"], "val_acc": _val_acc(r)} for r in rows]}
        results["convzoo"].append(ours)
        print(f"seed {seed}: reference {ref['seconds']:.0f} s, val acc {ref['epochs'][-1]['val_acc']:.4f}; "
              f"convzoo {ours['seconds']:.0f} s, val acc {ours['epochs'][-1]['val_acc']:.4f}", flush=True)
    ref_s = statistics.median(r["seconds"] for r in results["reference"])
    our_s = statistics.median(r["seconds"] for r in results["convzoo"])
    print(f"\n{args.model} at {args.image_size} px, {args.epochs} epochs, {args.runs} run(s) per side, "
          f"{os.cpu_count()} cores: whole process median reference {ref_s:.0f} s, convzoo {our_s:.0f} s; "
          f"convzoo is {ref_s / our_s:.2f}x faster (goal >= 1.5x)")
    for side in ("reference", "convzoo"):
        accs = [r["epochs"][-1]["val_acc"] for r in results[side]]
        print(f"  {side:<9} val accuracy after the last epoch: mean {statistics.mean(accs):.4f} "
              f"({min(accs):.4f}..{max(accs):.4f})")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results,
                                         "ratio": ref_s / our_s}, indent=2))


if __name__ == "__main__":
    main()
