"""convzoo train against the standard pipeline of the notes, same model, same hyperparameters.

The reference, written here as the notes and d2l do it: torchvision's ``FashionMNIST`` with
``Resize`` + ``ToTensor``, a ``DataLoader`` with 4 workers, and d2l's ``train_ch6`` loop (Xavier init,
plain SGD, cross-entropy, test accuracy after every epoch). convzoo: ``convzoo train --recipe d2l``.

Runs alternate (reference, convzoo, reference, ...) as child processes of this one, with seeds 0..R-1
for both. An epoch's time is wall clock from its first training batch to the end of its test
evaluation, as both sides measure it. Prints per-run times, medians, the ratio and the accuracy after
each epoch (mean and spread over seeds), and writes everything to ``--json``.

    python benchmarks/vs_reference_loop.py --model lenet --epochs 3 --runs 3
    python benchmarks/vs_reference_loop.py --model googlenet --epochs 1 --runs 2 --train-limit 3000
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def torchvision_root(source: Path, root: Path) -> Path:
    """A folder laid out as torchvision's FashionMNIST expects (``FashionMNIST/raw/`` with unpacked files)."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        target = raw / name
        if target.exists():
            continue
        packed = source / f"{name}.gz"
        if packed.exists():
            with gzip.open(packed) as f_in, open(target, "wb") as f_out:
                shutil.copyfileobj(f_in, f_out)
        else:
            shutil.copy(source / name, target)
    return root


def reference_worker(args: argparse.Namespace) -> dict:
    """The notes' pipeline and d2l's train_ch6, timed per epoch."""
    import torch
    import torchvision
    from torch import nn
    from torch.utils.data import DataLoader, Subset
    from torchvision import transforms

    import convzoo

    d2l = convzoo.model_info(args.model).d2l
    if d2l is None:
        raise SystemExit(f"{args.model} has no d2l recipe; d2l's models: {', '.join(convzoo.models.d2l_models())}")
    resize, batch_size, lr = d2l.resize, d2l.batch_size, d2l.lr
    torch.manual_seed(args.seed)
    trans = [transforms.ToTensor()]
    if resize != 28:
        trans.insert(0, transforms.Resize(resize))
    transform = transforms.Compose(trans)
    train = torchvision.datasets.FashionMNIST(root=args.root, train=True, transform=transform, download=False)
    test = torchvision.datasets.FashionMNIST(root=args.root, train=False, transform=transform, download=False)
    if args.train_limit:
        train = Subset(train, range(args.train_limit))
    train_iter = DataLoader(train, batch_size, shuffle=True, num_workers=args.workers)
    test_iter = DataLoader(test, batch_size, shuffle=False, num_workers=args.workers)

    net = convzoo.create_model(args.model)

    def init_weights(m: nn.Module) -> None:
        if type(m) is nn.Linear or type(m) is nn.Conv2d:
            nn.init.xavier_uniform_(m.weight)

    net.apply(init_weights)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    loss = nn.CrossEntropyLoss()
    epochs = []
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        net.train()
        total_loss, correct, seen = 0.0, 0, 0
        for X, y in train_iter:
            optimizer.zero_grad()
            y_hat = net(X)
            l = loss(y_hat, y)
            l.backward()
            optimizer.step()
            with torch.no_grad():
                total_loss += float(l) * X.shape[0]
                correct += int((y_hat.argmax(dim=1) == y).sum())
                seen += X.shape[0]
        net.eval()
        test_correct, test_seen = 0, 0
        with torch.no_grad():
            for X, y in test_iter:
                test_correct += int((net(X).argmax(dim=1) == y).sum())
                test_seen += X.shape[0]
        epochs.append({"epoch_time": time.perf_counter() - t0, "train_loss": total_loss / seen,
                       "train_acc": correct / seen, "test_acc": test_correct / test_seen})
    return {"epochs": epochs}


def convzoo_worker(args: argparse.Namespace, out: Path) -> dict:
    command = [sys.executable, "-m", "convzoo", "train", "--recipe", "d2l", "--model", args.model,
               "--epochs", str(args.epochs), "--seed", str(args.seed), "--out", str(out), "--quiet",
               "--data-dir", str(args.source)]
    if args.train_limit:
        command += ["--train-limit", str(args.train_limit)]
    command += args.convzoo_flag
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"epochs": [{k: row[k] for k in ("epoch_time", "train_loss", "train_acc", "test_acc")} for row in rows]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="lenet", help="a model with a d2l recipe (lenet, googlenet, ...)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3, help="runs per side (seeds 0..runs-1)")
    parser.add_argument("--train-limit", type=int, default=0,
                        help="train on N images only (0: all): convzoo draws them per class, the reference takes "
                             "the first N")
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers of the reference (d2l: 4)")
    parser.add_argument("--source", type=Path, default=DEBIAN, help="folder with the Fashion-MNIST IDX files")
    parser.add_argument("--json", type=Path, help="write the measurements here")
    parser.add_argument("--convzoo-flag", action="append", default=[], metavar="FLAG",
                        help="an extra flag for convzoo train, e.g. --convzoo-flag=--compile (repeatable)")
    parser.add_argument("--worker", choices=("reference",), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker == "reference":
        print(json.dumps(reference_worker(args)))
        return
    if not (args.source / "train-images-idx3-ubyte.gz").exists() and not (args.source / FILES[0]).exists():
        sys.exit(f"Fashion-MNIST not found in {args.source}: apt-get install dataset-fashion-mnist or --source DIR")
    work = Path(tempfile.mkdtemp(prefix="convzoo-vs-reference-"))
    root = torchvision_root(args.source, work / "torchvision")
    results: dict[str, list] = {"reference": [], "convzoo": []}
    try:
        for seed in range(args.runs):
            command = [sys.executable, __file__, "--worker", "reference", "--model", args.model, "--epochs",
                       str(args.epochs), "--seed", str(seed), "--root", str(root), "--workers", str(args.workers),
                       "--train-limit", str(args.train_limit)]
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            results["reference"].append(json.loads(done.stdout.strip().splitlines()[-1]))
            ns = argparse.Namespace(**{**vars(args), "seed": seed})
            results["convzoo"].append(convzoo_worker(ns, work / f"convzoo-{seed}"))
            for side in ("reference", "convzoo"):
                times = ", ".join(f"{e['epoch_time']:.2f}" for e in results[side][-1]["epochs"])
                print(f"seed {seed}  {side:<9}  epoch times (s): {times}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def times(side: str) -> list[float]:
        return [e["epoch_time"] for run in results[side] for e in run["epochs"]]

    ref, ours = statistics.median(times("reference")), statistics.median(times("convzoo"))
    images = args.train_limit or 60000
    print(f"\n{args.model}, {images:,} training images + 10,000 test images per epoch, {args.runs} runs x "
          f"{args.epochs} epochs per side")
    print(f"median epoch time: reference {ref:.2f} s, convzoo {ours:.2f} s; ratio {ref / ours:.2f}x"
          + (f" (convzoo with {' '.join(args.convzoo_flag)})" if args.convzoo_flag else ""))

    def epoch_times(side: str, first: bool) -> list[float]:
        return [e["epoch_time"] for run in results[side] for e in (run["epochs"][:1] if first else run["epochs"][1:])]

    if args.epochs > 1:
        for label, first in (("first epochs", True), ("later epochs", False)):
            r, o = statistics.median(epoch_times("reference", first)), statistics.median(epoch_times("convzoo", first))
            print(f"  {label}: reference {r:.2f} s, convzoo {o:.2f} s; ratio {r / o:.2f}x")
    print("test accuracy after each epoch, mean (min..max) over seeds:")
    for e in range(args.epochs):
        cells = []
        for side in ("reference", "convzoo"):
            accs = [run["epochs"][e]["test_acc"] for run in results[side]]
            cells.append(f"{side} {statistics.mean(accs):.4f} ({min(accs):.4f}..{max(accs):.4f})")
        print(f"  epoch {e + 1}: " + "   ".join(cells))
    if args.json:
        import platform

        import torch

        args.json.write_text(json.dumps({
            "model": args.model, "epochs": args.epochs, "convzoo_flags": args.convzoo_flag, "runs": args.runs,
            "train_limit": args.train_limit,
            "median_epoch_time": {"reference": ref, "convzoo": ours}, "ratio": ref / ours, "results": results,
            "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
        }, indent=2))


if __name__ == "__main__":
    main()
