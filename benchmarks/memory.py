"""What an in-memory data set costs: resident memory before and after loading, against its uint8 size,
and the peak while one epoch of training batches is drawn (issue 4: the data set costs no more than its
uint8 size plus one batch of floats).

    python benchmarks/memory.py [--dataset fashion-mnist] [--data-dir DIR] [--json FILE]

Each stage runs in a fresh process so allocator caches of one stage do not hide another's cost.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def _rss_mib() -> float:
    """Resident set size of this process, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def stage(args: argparse.Namespace) -> dict:
    import torch

    import convzoo  # noqa: F401  (the library's own imports belong to the baseline)
    from convzoo.data import load_dataset

    torch.set_num_threads(2)
    before = _rss_mib()
    data = load_dataset(args.dataset, data_dir=args.data_dir)
    splits = [data.train] + ([data.test] if data.test is not None else [])
    # touch every 4 KiB page (a plain .sum() would first widen the uint8 tensor to int64)
    checksum = sum(int(s.images.reshape(-1)[::4096].sum()) + int(s.labels[::512].sum()) for s in splits)
    loaded = _rss_mib()
    uint8_mib = sum(s.images.nbytes + s.labels.nbytes for s in splits) / 2**20
    result = {"rss_before_mib": before, "rss_after_load_mib": loaded, "load_growth_mib": loaded - before,
              "load_peak_growth_mib": _peak_mib() - before, "dataset_uint8_mib": uint8_mib, "checksum": checksum}
    if args.train:
        from convzoo.train.config import resolve_config
        from convzoo.train.pipeline import Augment, Batches, Preprocess

        config = resolve_config(recipe="fast", overrides={"model": args.model, "dataset": args.dataset})
        preprocess = Preprocess(data.channels, None, data.mean, data.std, channels_last=True)
        batches = Batches(data.train, config.batch_size, device=torch.device("cpu"), preprocess=preprocess,
                          shuffle=True, augment=Augment(crop_padding=2, flip=True))
        peak_before = _peak_mib()
        sample_bytes = 0
        for _, X, _y in batches.epoch(0):
            sample_bytes = X[0].numel() * X.element_size()
        batch_floats = config.batch_size * sample_bytes / 2**20  # a full batch
        result |= {"pipeline_peak_growth_mib": _peak_mib() - peak_before,
                   "pipeline_peak_above_loaded_mib": _peak_mib() - loaded,
                   "batch_floats_mib": batch_floats, "batch_size": config.batch_size}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--data-dir")
    parser.add_argument("--model", default="lenet", help="whose fast-recipe batch size is used")
    parser.add_argument("--json")
    parser.add_argument("--stage", choices=("load", "train"), help=argparse.SUPPRESS)
    parser.add_argument("--train", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:
        print(json.dumps(stage(args)))
        return 0
    base = [sys.executable, __file__, "--dataset", args.dataset, "--model", args.model]
    if args.data_dir:
        base += ["--data-dir", args.data_dir]
    # warm the decoded cache first, so both stages read the same safetensors file
    subprocess.run(base + ["--stage", "load"], check=True, capture_output=True)
    load = json.loads(subprocess.run(base + ["--stage", "load"], check=True, capture_output=True, text=True).stdout)
    train = json.loads(subprocess.run(base + ["--stage", "train", "--train"], check=True, capture_output=True,
                                      text=True).stdout)
    print(f"{args.dataset}: uint8 images + labels {load['dataset_uint8_mib']:.1f} MiB")
    print(f"resident memory: {load['rss_before_mib']:.1f} MiB after importing torch and convzoo, "
          f"{load['rss_after_load_mib']:.1f} MiB after loading: +{load['load_growth_mib']:.1f} MiB "
          f"({load['load_growth_mib'] / load['dataset_uint8_mib']:.2f}x the uint8 size; "
          f"+{load['load_peak_growth_mib']:.1f} MiB at the peak while loading)")
    print(f"one epoch of training batches (batch {train['batch_size']}, shuffled, random crop and flip, "
          f"normalised: {train['batch_floats_mib']:.2f} MiB of floats per batch): the peak is "
          f"{train['pipeline_peak_above_loaded_mib']:.1f} MiB above the loaded data set's resident memory")
    if args.json:
        Path(args.json).write_text(json.dumps({"load": load, "train": train}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
