"""Rebuild convzoo's shipped pretrained weights: each entry is one ``convzoo train`` command, rerun here.

    python benchmarks/build_weights.py MODEL [MODEL ...]    # rebuild these entries
    python benchmarks/build_weights.py --all                # every entry, one after the other
    python benchmarks/build_weights.py --list               # the entries and their commands

Each entry's command trains with convzoo's own recipe (``--recipe fast``; d2l's for its sigmoid LeNet,
airbench's for ``airbench_cifar_small``) for a fixed number of epochs, so nothing is chosen on any evaluation
split: the weights are those of the last epoch and the accuracy is the one the run measured after it, on the
test split (CIFAR-10's official 10,000 test images, from the lossless copy: trained on all 50,000 training
images). The run's last checkpoint is written as ``<model>-<dataset>-<sha256[:8]>.safetensors`` into
``src/convzoo/models/weights/`` (``--out-dir`` elsewhere) and its record into ``index.json`` there, replacing
the entry's old file and record. ``--data-dir``, ``--out`` and ``--quiet`` are added to each command; they
decide where the data and the run are, not the run's numbers (``TrainConfig`` fields with ``run=False``).

The eligible models are the zoo's models whose fp32 weights are at most 5 MB, each on the data set it is
meant for: MNIST for the notes' digit CNNs (001) and the 32x32 LeNet (002/003), Fashion-MNIST for d2l's
LeNets and DenseNet (000, 002), CIFAR-10 for the CIFAR ones; the FastCNNs on the data set they are named
after.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MAX_BYTES = 5_000_000  # fp32 weights of at most 5 MB are shipped
MAX_TOTAL = 20_000_000  # all shipped files together

LICENSES = {
    "mnist": "CC BY-SA 3.0 (Y. LeCun, C. Cortes, C. J. C. Burges)",
    "fashion-mnist": "MIT (Zalando Research)",
    "cifar10": "no license stated by its authors (A. Krizhevsky, V. Nair, G. Hinton, 2009); trained on a lossless "
               "PNG copy of the official release",
}


@dataclass(frozen=True)
class Entry:
    model: str
    dataset: str
    flags: str  # after --model and --dataset: the recipe and what departs from it

    @property
    def command(self) -> str:
        return f"convzoo train --model {self.model} --dataset {self.dataset} {self.flags}"

    @property
    def split(self) -> str:
        return "val" if "--val-split" in self.flags else "test"


# CIFAR-10 flags as benchmarks/time_to_accuracy.py's cifar10-90 task has them, for fewer epochs; all 50,000
# training images, the accuracy on the official test split
_CIFAR = "--batch-size 512 --lr 0.4 --augment crop-flip --crop-padding 2"
ENTRIES: tuple[Entry, ...] = (
    Entry("fastcnn_mnist", "mnist", "--recipe fast --epochs 2 --lr 0.2"),
    Entry("simple_cnn", "mnist", "--recipe fast --epochs 3"),
    Entry("three_conv_cnn", "mnist", "--recipe fast --epochs 3"),
    # no batch norm: the fast recipe's lr 0.1 diverges (inception_cnn: NaN in the first epoch); the zoo's rule
    # for such networks (models/_registry.py FAST_WITHOUT_BATCH_NORM) is lr 0.01 with He init
    Entry("inception_cnn", "mnist", "--recipe fast --epochs 3 --lr 0.01 --init kaiming"),
    Entry("residual_cnn", "mnist", "--recipe fast --epochs 3 --lr 0.01 --init kaiming"),
    Entry("lenet_relu", "mnist", "--recipe fast --epochs 3 --resize 32"),
    Entry("lenet", "fashion-mnist", "--recipe d2l"),
    Entry("lenet_bn", "fashion-mnist", "--recipe fast --epochs 6"),
    Entry("lenet_bn_scratch", "fashion-mnist", "--recipe fast --epochs 6"),
    Entry("fastcnn_fashion", "fashion-mnist", "--recipe fast --epochs 3 --lr 0.2 --augment crop-flip --crop-padding 2"),
    Entry("densenet_d2l", "fashion-mnist", "--recipe fast --epochs 2 --resize 48"),
    Entry("lenet5_cifar", "cifar10", "--recipe fast --epochs 8 --augment flip"),
    Entry("fastcnn_cifar_small", "cifar10", f"--recipe fast --epochs 3 {_CIFAR}"),
    Entry("fastcnn_cifar", "cifar10", f"--recipe fast --epochs 2 {_CIFAR}"),
    # the cifar10-85 task's settings (chosen on a validation split of the JPEG copy), evaluated on one view: the
    # index's accuracy is the plain forward pass the accuracy test measures
    Entry("airbench_cifar_small", "cifar10", "--recipe airbench --epochs 4 --batch-size 256 --lr 0.5 --tta none"),
)


def eligible() -> list[str]:
    """The registered models whose fp32 parameters take at most MAX_BYTES."""
    from convzoo.models import list_models, model_info

    return [name for name in list_models() if model_info(name).num_params * 4 <= MAX_BYTES]


def build(entry: Entry, out_dir: Path, data_dir: Path, extra: list[str], work: Path) -> dict[str, Any]:
    """Run the entry's command, then write its weights file; return its record for the index."""
    from safetensors.torch import load_file, save_file

    from convzoo.models import create_model
    from convzoo.models.weights import file_name

    flags = shlex.split(entry.flags) + extra
    command = f"convzoo train --model {entry.model} --dataset {entry.dataset} {shlex.join(flags)}"
    run_dir = work / entry.model
    where = ["--data-dir", str(data_dir)] if entry.dataset in ("mnist", "cifar10") else []
    argv = [sys.executable, "-m", "convzoo", *shlex.split(command)[1:], *where, "--out", str(run_dir), "--quiet"]
    print(f"$ {command}", flush=True)
    t0 = time.perf_counter()
    subprocess.run(argv, check=True)
    seconds = time.perf_counter() - t0
    last = run_dir / "checkpoints" / "last"
    meta = json.loads((last / "model.json").read_text(encoding="utf-8"))
    metrics = meta["metrics"]
    if meta["epoch"] != metrics["epoch"] or meta["step"] != 0:
        raise RuntimeError(f"{last} is not the end of the last epoch")
    accuracy = metrics[f"{entry.split}_acc"]
    tensors = load_file(last / "model.safetensors")
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{entry.model}-{os.getpid()}.safetensors"
    save_file(tensors, tmp, metadata={"format": "pt", "model": entry.model, "dataset": entry.dataset})
    data = tmp.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    path = out_dir / file_name(entry.model, entry.dataset, sha256)
    os.chmod(tmp, 0o644)  # (safetensors writes 0600)
    os.replace(tmp, path)
    net = create_model(meta["model"], **meta["model_kwargs"])
    spec = meta["input"]
    split = meta["data"]["splits"][entry.split]  # {"images": N, "digest": sha256 of its pixels and labels}
    print(f"{entry.model} on {entry.dataset}: {entry.split} accuracy {accuracy:.4f} after {metrics['epoch']} "
          f"epochs, {seconds:.0f} s; {path.name} ({len(data):,} bytes)", flush=True)
    return {
        "model": entry.model,
        "dataset": entry.dataset,
        "file": path.name,
        "sha256": sha256,
        "file_size": len(data),
        "num_params": sum(p.numel() for p in net.parameters()),
        "classes": meta["classes"],
        "input_size": [spec["channels"], *spec["size"]],
        "mean": spec["mean"],
        "std": spec["std"],
        "accuracy": accuracy,
        "split": entry.split,
        "split_size": split["images"],
        "split_digest": split["digest"],
        "command": command,
        "license": LICENSES[entry.dataset],
        "default": True,
        # how the run's evaluation resized its images to the input size (what transforms_for rebuilds): the
        # in-memory path squashes bilinear (train.pipeline.Preprocess); a run that records its own rule wins
        "interpolation": spec.get("interpolation", "bilinear"),
        "resize_mode": spec.get("resize_mode", "squash"),
        "crop_pct": spec.get("crop_pct", 1.0),
    }


def write_index(out_dir: Path, records: list[dict[str, Any]]) -> None:
    """Merge ``records`` into ``out_dir/index.json`` (an entry's old record and file replaced)."""
    from convzoo.models.weights import WEIGHTS_FORMAT
    from convzoo.utils.atomic import write_text_atomic

    index = out_dir / "index.json"
    old = json.loads(index.read_text(encoding="utf-8"))["weights"] if index.exists() else []
    new_keys = {(r["model"], r["dataset"]) for r in records}
    kept = [r for r in old if (r["model"], r["dataset"]) not in new_keys]
    for r in old:
        if (r["model"], r["dataset"]) in new_keys and r["file"] not in {n["file"] for n in records}:
            (out_dir / r["file"]).unlink(missing_ok=True)
    entries = sorted(kept + records, key=lambda r: (r["model"], r["dataset"]))
    write_text_atomic(index, json.dumps({"format": WEIGHTS_FORMAT, "weights": entries}, indent=2) + "\n")
    total = sum(r["file_size"] for r in entries)
    print(f"{index}: {len(entries)} entries, {total:,} bytes of weights" +
          (f"; OVER the {MAX_TOTAL:,}-byte limit" if total > MAX_TOTAL else ""), flush=True)


def main(argv: list[str] | None = None) -> int:
    from convzoo.models.weights import WEIGHTS_DIR

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="the entries to rebuild (by model name)")
    parser.add_argument("--all", action="store_true", help="rebuild every entry")
    parser.add_argument("--list", action="store_true", help="print the entries and their commands")
    parser.add_argument("--out-dir", type=Path, default=WEIGHTS_DIR, help=f"default: {WEIGHTS_DIR}")
    parser.add_argument("--data-dir", type=Path, default=SHARED, help=f"MNIST and CIFAR-10 (default: {SHARED}); "
                        "Fashion-MNIST is found where convzoo finds it")
    parser.add_argument("--epochs", type=int, help="override the entries' epochs (smoke runs)")
    parser.add_argument("--train-limit", type=int, help="train on N images (smoke runs)")
    args = parser.parse_args(argv)
    by_model = {e.model: e for e in ENTRIES}
    missing = sorted(set(eligible()) - set(by_model))
    if missing:
        raise SystemExit(f"eligible models without an entry: {', '.join(missing)}")
    if args.list or not (args.models or args.all):
        for e in ENTRIES:
            print(f"{e.model:<20} {e.command}")
        return 0
    unknown = sorted(set(args.models) - set(by_model))
    if unknown:
        parser.error(f"no entry for {', '.join(unknown)}; entries: {', '.join(by_model)}")
    chosen = list(ENTRIES) if args.all else [by_model[m] for m in args.models]
    extra = [*(["--epochs", str(args.epochs)] if args.epochs else []),
             *(["--train-limit", str(args.train_limit)] if args.train_limit else [])]
    failed = []
    with tempfile.TemporaryDirectory(prefix="convzoo-weights-") as tmp:
        for entry in chosen:  # one at a time, each written as soon as it is done
            try:
                record = build(entry, args.out_dir, args.data_dir, extra, Path(tmp))
            except subprocess.CalledProcessError as err:  # (convzoo train printed why)
                print(f"{entry.model}: convzoo train failed (exit {err.returncode}); its entry is unchanged",
                      file=sys.stderr, flush=True)
                failed.append(entry.model)
                continue
            write_index(args.out_dir, [record])
    if failed:
        print(f"not rebuilt: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
